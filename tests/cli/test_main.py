"""``willowisp`` dispatch: usage errors shown by the command that owns the option, and
output cut off by its reader (``| head``) ending any command quietly."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from willowisp.cli.main import EXIT_BROKEN_PIPE, main
from willowisp.wtrace.text import from_text
from willowisp.wtrace.writer import write_file

CASE = Path(__file__).resolve().parents[1] / "golden" / "lock_order_killed" / "bank.wtxt"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run folder with the golden trace of two threads deadlocked on two locks."""
    folder = tmp_path / "run"
    folder.mkdir()
    write_file(folder / "bank-4242-4b1d0c0f-1.wtrace", from_text(CASE.read_text(), str(CASE)))
    return folder


def test_misspelled_option_shows_the_command_usage(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``analyze RUN --formt json``: exit 2 with analyze's usage and the unknown option."""
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(run), "--formt", "json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: willowisp analyze ")
    assert "willowisp analyze: error: unrecognized arguments: --formt json" in err


def test_unknown_top_level_option_shows_the_top_level_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An option before any command is still the top-level parser's to refuse."""
    with pytest.raises(SystemExit) as exc:
        main(["--bogus"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("usage: willowisp [-h]")


@pytest.mark.parametrize(
    ("name", "where"),
    [("whatif", "willowisp replay PATH --delay"), ("gate", "willowisp validate --ci-mode")],
)
def test_a_command_known_by_another_name_says_where_it_is(
    name: str, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``willowisp whatif RUN``: exit 2, and the refusal names the command that does it."""
    with pytest.raises(SystemExit) as exc:
        main([name, "run"])
    assert exc.value.code == 2
    assert where in capsys.readouterr().err


def test_export_takes_format_like_the_other_commands(run: Path, tmp_path: Path) -> None:
    """``export --format perfetto`` is ``--to perfetto`` (it was 'required: --to')."""
    out = tmp_path / "run.pftrace"
    assert main(["export", str(run), "--format", "perfetto", "-o", str(out)]) == 0
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    "args",
    [
        ["diff", "{run}", "{run}"],
        ["analyze", "{run}", "--no-cache", "--format", "json"],
        ["query", "{run}", "SELECT count(*) FROM events"],
        ["replay", "{run}", "--script", "{script}"],  # the QA case: replay ... | head
    ],
    ids=["diff", "analyze-json", "query", "replay"],
)
def test_output_to_a_closed_pipe_ends_quietly(run: Path, tmp_path: Path, args: list[str]) -> None:
    """stdout whose reader is gone: no traceback, the status a shell gives SIGPIPE (141)."""
    script = tmp_path / "steps"
    script.write_text("next\nnext\n")
    argv = [a.replace("{run}", str(run)).replace("{script}", str(script)) for a in args]
    # The reading end is closed before the command starts, so its first write of output
    # fails, whatever the size of that output: deterministic, no race with a reader.
    r, w = os.pipe()
    os.close(r)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "willowisp", *argv],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(w)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == EXIT_BROKEN_PIPE, done.stderr


def test_an_output_that_is_a_fifo_or_device_is_written_not_replaced(
    run: Path, tmp_path: Path
) -> None:
    """``export -o /dev/null`` (as root) renamed a regular file over the device: every
    program on the machine lost /dev/null. A target that exists and is not a regular file
    (a device, a FIFO) is written into; checked here with a FIFO and a reader."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    try:
        assert main(["export", str(run), "--to", "chrome", "-o", str(fifo)]) == 0
    finally:
        if reader.is_alive():
            with open(fifo, "wb"):
                pass  # unblock the reader if export never opened the FIFO
        reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the FIFO, not a renamed file
    assert got and got[0].startswith(b"{") and b"traceEvents" in got[0]
