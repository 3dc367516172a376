"""A full disk never breaks the recorded program, and what it cost is counted and said.

Each program runs under ``willowisp run`` with its run folder on a real, tiny file system:
a tmpfs mounted in a mount namespace of its own (``unshare -m``, as root, which the test
command is), so every write past its size fails with ENOSPC as on a full disk. The program
must print what it prints without an agent and exit as it would; the agent says the loss
in one stderr line (no traceback), and the trace on that disk ends at a whole chunk and
reports the loss to ``analyze`` (a dropped-events count and an agent fault), because the
agent kept a little room for that news.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from wispkit import CAN_MOUNT, analyze_json, check_loss_reported, clean_env, run_on_full_disk, wisp

pytestmark = pytest.mark.skipif(
    not CAN_MOUNT, reason="needs root with unshare and mount (the test command runs as root)"
)

THREADS = textwrap.dedent(
    """
    import threading
    lock = threading.Lock()
    n = 0
    def work():
        global n
        for _ in range(50000):
            with lock:
                n += 1
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(n)
    """
)


def test_python_program_on_a_full_disk(tmp_path: Path) -> None:
    program = tmp_path / "threads.py"
    program.write_text(THREADS)
    done, kept = run_on_full_disk(tmp_path, [sys.executable, str(program)], "160k")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "200000\n"
    assert "Traceback" not in done.stderr, done.stderr
    assert "is full (" in done.stderr  # and willowisp run says the disk is full
    said = [line for line in done.stderr.splitlines() if "could not be written" in line]
    assert len(said) == 1 and "No space left on device" in said[0], done.stderr
    lost = int(said[0].split("willowisp: ", 1)[1].split(" events", 1)[0])
    agent = check_loss_reported(kept, "threads")
    (drop,) = [f for f in analyze_json(kept)["findings"] if f["kind"] == "buffer-drop"]
    assert any("file system refused" in line for line in drop["explanation"]), drop
    # the file counts what was lost up to its last chunk; the line at exit, all of it
    assert 0 < int(str(agent["dropped"])) <= lost


def test_a_killed_programs_reserve_is_removed_when_the_run_ends(tmp_path: Path) -> None:
    """SIGKILL leaves the agent no time to remove its reserve; ``willowisp run`` does."""
    out = tmp_path / "run"
    done = wisp(
        "run",
        "--out",
        str(out),
        "--",
        sys.executable,
        "-c",
        "import os, signal; print(sorted(os.listdir(os.environ['WILLOWISP_OUT'])), "
        "flush=True); os.kill(os.getpid(), signal.SIGKILL)",
        env=clean_env(),
    )
    assert done.returncode == 128 + 9, done.stderr
    assert ".willowisp-reserve-" in done.stdout  # it was there while the program ran
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert list(out.glob("*.wtrace"))
