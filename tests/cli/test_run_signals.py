"""``willowisp run`` and signals: Ctrl-C at a terminal reaches the program once (it is in
the terminal's foreground process group with us); a signal sent to ``willowisp run`` alone
is passed on. Real processes on a real pseudo-terminal."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from wispkit import clean_env, start_collector, stop_collector

# Counts SIGINTs; at SIGTERM prints the count and exits. Python runs pending handlers in
# signal-number order, so a SIGINT passed on before the SIGTERM is counted before it.
PROGRAM = """
import signal, sys, threading
seen = 0
done = threading.Event()
def on_int(signum, frame):
    global seen
    seen += 1
    print(f"sigint {seen}", flush=True)
def on_term(signum, frame):
    print(f"sigints at sigterm: {seen}", flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, on_int)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while not done.wait(60):
    pass
"""


# Run in a new session (start_new_session): make stdin, the terminal, its controlling
# terminal, then become the command (willowisp run) in the same process.
TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0);"
    " os.execv(sys.argv[1], sys.argv[1:])"
)


def read_until(fd: int, word: bytes, deadline: float) -> bytes:
    """What the terminal shows up to and including ``word``."""
    out = b""
    while word not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"no {word!r} in {out!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            out += os.read(fd, 4096)
    return out


def test_ctrl_c_at_a_terminal_reaches_the_program_once(tmp_path: Path) -> None:
    prog = tmp_path / "count_signals.py"
    prog.write_text(PROGRAM)
    cmd = [sys.executable, "-m", "willowisp", "run", "--out", str(tmp_path / "run"), "--"]
    # a terminal of its own: willowisp run leads a new session whose controlling terminal
    # it is, so run and the program are its foreground process group; the slave stays open
    # here too, so reading the master never fails when they close it
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", TAKE_TERMINAL, *cmd, sys.executable, str(prog)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    try:
        out = read_until(master, b"ready", deadline)
        os.write(master, b"\x03")  # Ctrl-C: the kernel signals the foreground process group
        out += read_until(master, b"sigint 1", deadline)
        proc.send_signal(signal.SIGTERM)  # sent to willowisp run alone: passed on
        out += read_until(master, b"sigints at sigterm", deadline)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # run and the program: its own session
            proc.wait()
        os.close(master)
        os.close(slave)
    assert b"sigint 2" not in out, out
    assert b"sigints at sigterm: 1" in out, out


def test_a_sigint_sent_to_willowisp_run_alone_is_passed_on(tmp_path: Path) -> None:
    prog = tmp_path / "count_signals.py"
    prog.write_text(PROGRAM)
    cmd = [sys.executable, "-m", "willowisp", "run", "--out", str(tmp_path / "run"), "--"]
    proc = subprocess.Popen(
        [*cmd, sys.executable, str(prog)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # no terminal: nothing else signals the program
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline() == "sigint 1\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == "sigints at sigterm: 1\n"
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # run and the program: its own session
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_run_streamed_to_a_collector_says_so(tmp_path: Path) -> None:
    """With WILLOWISP_COLLECTOR the recording goes to the collector: `run` says so instead
    of naming an empty folder, and leaves no empty folder behind."""
    collector, address = start_collector(tmp_path / "collected")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "willowisp", "run", "--out", str(tmp_path / "run"), "--"]
            + [sys.executable, "-c", "import threading; threading.Lock()"],
            env={**clean_env(), "WILLOWISP_COLLECTOR": address},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        stop_collector(collector)
    assert done.returncode == 0, done.stderr
    assert f"run streamed to the collector at {address}" in done.stderr
    assert "run saved in" not in done.stderr
    assert not (tmp_path / "run").exists()
    assert list((tmp_path / "collected").rglob("*.wtrace"))
