"""The agent's threads block the program's signals, so that a signal sent to the process
reaches the main thread, where CPython runs its handlers (else a main thread blocked in a
wait would not see its Ctrl-C until the wait ended)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

# A recorded program (flusher and control channel running) that prints, per thread, whether
# SIGINT and SIGTERM are blocked; the main thread first.
PROGRAM = """
import os, threading
threading.Lock()
me = threading.get_native_id()
rows = []
for tid in sorted(os.listdir('/proc/self/task'), key=lambda t: int(t) != me):
    status = open(f'/proc/self/task/{tid}/status').read()
    blk = int(next(l for l in status.splitlines() if l.startswith('SigBlk:')).split()[1], 16)
    rows.append(f"{'main' if int(tid) == me else 'other'} {blk >> 1 & 1} {blk >> 14 & 1}")
print(';'.join(rows))
"""


def test_the_agents_threads_block_the_programs_signals(tmp_path: Path) -> None:
    assert (signal.SIGINT, signal.SIGTERM) == (2, 15)  # the bits read above
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "run", "--out", str(tmp_path / "run"), "--"]
        + [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = done.stdout.strip().split(";")
    assert rows[0] == "main 0 0"  # the program's own thread takes its signals
    assert len(rows) >= 2, "the agent's flusher (and control channel) run"
    assert all(r == "other 1 1" for r in rows[1:]), rows


def test_ctrl_c_interrupts_a_recorded_main_thread_blocked_in_a_wait(tmp_path: Path) -> None:
    """SIGINT to a recorded program whose main thread waits on an Event (with the agent's
    threads running beside it) raises KeyboardInterrupt at once, every time."""
    prog = (
        "import threading, sys\n"
        "threading.Lock()\n"
        "try:\n"
        "    print('ready', flush=True)\n"
        "    threading.Event().wait(120)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "willowisp", "run", "--out", str(tmp_path / "run"), "--"]
            + [sys.executable, "-c", prog],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
            proc.send_signal(signal.SIGINT)  # passed on by willowisp run
            assert proc.wait(timeout=30) == 0  # not 120 s later
            assert proc.stdout.read() == "interrupted\n"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # run and the program: its own session
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
