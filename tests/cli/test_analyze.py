"""``willowisp analyze``: output formats, exit statuses, bad input, options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from willowisp.cli.main import main
from willowisp.wtrace.text import from_text
from willowisp.wtrace.writer import write_file

# Not imported from tests/golden: this folder is not a package, so it stands alone.
CASE = Path(__file__).resolve().parents[1] / "golden" / "lock_order_killed" / "bank.wtxt"


@pytest.fixture
def deadlocked(tmp_path: Path) -> Path:
    """A run folder with the golden trace of two threads deadlocked on two locks."""
    run = tmp_path / "run"
    run.mkdir()
    write_file(run / "bank-4242-4b1d0c0f-1.wtrace", from_text(CASE.read_text(), str(CASE)))
    return run


def test_json_output_and_exit_zero(deadlocked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json prints one JSON object; findings alone do not fail the command."""
    assert main(["analyze", str(deadlocked), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["schema"] == "willowisp.findings/1"
    assert [f["kind"] for f in doc["findings"]] == ["deadlock"]
    assert err == ""


def test_fail_on_sets_exit_one(deadlocked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--fail-on exits 1 when one of its kinds is found, 0 otherwise."""
    assert main(["analyze", str(deadlocked), "--fail-on", "race,deadlock"]) == 1
    assert main(["analyze", str(deadlocked), "--fail-on", "race,clock-skew"]) == 0
    assert "ERROR deadlock" in capsys.readouterr().out


def test_unreadable_input_exits_two_but_reports_the_rest(
    deadlocked: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad file gets one stderr line naming it; the good run is still analyzed."""
    bad = tmp_path / "broken.wtrace"
    bad.write_bytes(b"PK\x03\x04 not a trace at all")
    code = main(["analyze", str(deadlocked), str(bad), "--format", "json", "--fail-on", "deadlock"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.splitlines() == [
        f"willowisp analyze: {bad}: not a .wtrace file (starts with b'PK\\x03\\x04 n', "
        "expected b'WTRACE')"
    ]
    doc = json.loads(out)
    assert [f["kind"] for f in doc["findings"]] == ["deadlock"]
    assert doc["trace"]["unreadable_files"][0]["path"] == str(bad)


def test_corrupt_chunk_exits_two_and_uses_the_good_chunks(
    deadlocked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file with a damaged chunk is still used, and named as damaged (exit 2)."""
    (path,) = deadlocked.glob("*.wtrace")
    data = bytearray(path.read_bytes())
    last = data.rfind(b"WCHK")
    data[last + 16] ^= 0x55  # the last chunk's checksum field
    path.write_bytes(bytes(data))
    assert main(["analyze", str(deadlocked)]) == 2
    out, err = capsys.readouterr()
    assert "ERROR deadlock" in out  # the first chunk holds the whole deadlock
    assert "checksum" in err and str(path) in err and "the good chunks were used" in err
    assert "Traceback" not in err


def test_bad_usage_exits_two_with_one_line(
    deadlocked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown --reference, --fail-on kind or --boundary key: exit 2, no traceback."""
    assert main(["analyze", str(deadlocked), "--reference", "nope"]) == 2
    assert capsys.readouterr().err.startswith("willowisp analyze: --reference 'nope' names")
    for args in (["--fail-on", "hang"], ["--boundary", "start=http:GET /"]):
        with pytest.raises(SystemExit) as exc:
            main(["analyze", str(deadlocked), *args])
        assert exc.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_options_are_recorded(deadlocked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--boundary, --no-suppress and --reference show up in the document."""
    spec = "entry=http:POST /checkout;exit=http:reply;runtimes=python,go"
    assert (
        main(
            [
                "analyze",
                str(deadlocked),
                "--format",
                "json",
                "--boundary",
                spec,
                "--no-suppress",
                "--reference",
                "bank",
            ]
        )
        == 0
    )
    t = json.loads(capsys.readouterr().out)["trace"]
    assert t["boundaries"] == [
        {
            "spec": spec,
            "entry": "http:POST /checkout",
            "exit": "http:reply",
            "runtimes": ["python", "go"],
            "source": "given",
            "instances": 0,  # the deadlock program serves no HTTP
            "events": 0,
            "units": 0,
            "latency_ns": None,
        }
    ]
    assert t["suppress"] is False


def test_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    """--help documents the options, the exit statuses and the finding kinds."""
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    text = capsys.readouterr().out
    for word in (
        "--format",
        "--boundary",
        "--no-suppress",
        "--reference",
        "--fail-on",
        "exit status",
        "false-causality",
    ):
        assert word in text


def test_real_subprocess(deadlocked: Path) -> None:
    """``python -m willowisp analyze`` in a real process: output, status, stderr."""
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "willowisp",
            "analyze",
            str(deadlocked),
            str(deadlocked / "missing.wtrace"),
            "--fail-on",
            "deadlock",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "ERROR deadlock" in proc.stdout
    assert proc.stderr.strip() == (
        f"willowisp analyze: {deadlocked / 'missing.wtrace'}: no such file or directory"
    )


def test_nothing_readable_still_prints_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no readable input at all the report is empty, not a crash, and the exit is 2."""
    assert main(["analyze", str(tmp_path / "nope"), "--format", "json"]) == 2
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert (doc["trace"]["files"], doc["findings"], doc["clocks"]) == (0, [], [])
    assert err == f"willowisp analyze: {tmp_path / 'nope'}: no such file or directory\n"


def test_file_cut_inside_its_first_chunk_is_named_unreadable(
    deadlocked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 40-byte file (header and part of a chunk): one stderr line naming it, exit 2."""
    (path,) = deadlocked.glob("*.wtrace")
    path.write_bytes(path.read_bytes()[:40])
    assert main(["analyze", str(deadlocked), "--format", "json", "--no-cache"]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"willowisp analyze: {path}: no complete chunk after the file header: chunk 0 at "
        "byte 16 needs " + err.split("needs ", 1)[1].rstrip("\n")
    ]
    assert "(writer killed?)" in err
    assert json.loads(out)["trace"]["unreadable_files"][0]["path"] == str(path)


def test_html_into_a_missing_folder_is_refused(
    deadlocked: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--html into a folder that does not exist: exit 2 naming it, the folder not created."""
    target = tmp_path / "nosuch" / "dir" / "r.html"
    assert main(["analyze", str(deadlocked), "--html", str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"willowisp analyze: --html {target}: no such folder {target.parent}\n"
    assert not (tmp_path / "nosuch").exists()
