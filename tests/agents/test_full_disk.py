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

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wispkit import analyze_json, clean_env

UNSHARE = shutil.which("unshare")
MOUNT = shutil.which("mount")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or UNSHARE is None or MOUNT is None,
    reason="needs root with unshare and mount (the test command runs as root)",
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


def run_on_full_disk(
    tmp_path: Path, argv: list[str], size: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``willowisp run`` ARGV with its run folder on a SIZE tmpfs; what the folder held
    when the program ended is copied out (the tmpfs dies with the namespace)."""
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    kept.mkdir()
    run = shlex.join([sys.executable, "-m", "willowisp", "run", "--out", str(disk), "--", *argv])
    script = (
        f"mount -t tmpfs -o size={size} willowisp-full {shlex.quote(str(disk))} || exit 97; "
        f"{run}; rc=$?; cp -a {shlex.quote(str(disk))}/. {shlex.quote(str(kept))}/; exit $rc"
    )
    done = subprocess.run(
        [str(UNSHARE), "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=300,
        check=False,
    )
    assert done.returncode != 97, done.stderr
    return done, kept


def check_loss_reported(kept: Path, service: str) -> dict[str, object]:
    """The trace on the full disk: whole chunks only, and the loss in it."""
    files = sorted(kept.glob("*.wtrace"))
    assert files, list(kept.iterdir())
    assert not list(kept.glob(".willowisp-reserve-*")), "the reserve is removed at exit"
    doc = analyze_json(kept)
    notes = " ".join(doc["trace"].get("notes", []))
    assert "writer killed" not in notes and not doc["trace"]["unreadable_files"], notes
    (proc,) = [p for p in doc["processes"] if p["service"] == service]
    agent = proc["agent"]
    assert agent["dropped"] > 0 and agent["faults"] >= 1, agent
    kinds = {f["kind"] for f in doc["findings"]}
    assert {"buffer-drop", "agent-fault"} <= kinds, kinds
    return agent


def test_python_program_on_a_full_disk(tmp_path: Path) -> None:
    program = tmp_path / "threads.py"
    program.write_text(THREADS)
    done, kept = run_on_full_disk(tmp_path, [sys.executable, str(program)], "160k")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "200000\n"
    assert "Traceback" not in done.stderr, done.stderr
    said = [line for line in done.stderr.splitlines() if "could not be written" in line]
    assert len(said) == 1 and "No space left on device" in said[0], done.stderr
    lost = int(said[0].split("willowisp: ", 1)[1].split(" events", 1)[0])
    agent = check_loss_reported(kept, "threads")
    # the file counts what was lost up to its last chunk; the line at exit, all of it
    assert 0 < int(str(agent["dropped"])) <= lost


def test_a_killed_programs_reserve_is_removed_when_the_run_ends(tmp_path: Path) -> None:
    """SIGKILL leaves the agent no time to remove its reserve; ``willowisp run`` does."""
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "willowisp",
            "run",
            "--out",
            str(out),
            "--",
            sys.executable,
            "-c",
            "import os, signal; print(sorted(os.listdir(os.environ['WILLOWISP_OUT'])), "
            "flush=True); os.kill(os.getpid(), signal.SIGKILL)",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 128 + 9, done.stderr
    assert ".willowisp-reserve-" in done.stdout  # it was there while the program ran
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert list(out.glob("*.wtrace"))
