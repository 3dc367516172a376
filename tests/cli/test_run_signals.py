"""``willowisp run`` and signals: Ctrl-C at a terminal reaches the program once (it is in
the terminal's foreground process group with us); a signal sent to ``willowisp run`` alone
is passed on. Real processes on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
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


def read_until(fd: int, word: bytes, deadline: float) -> bytes:
    out = b""
    while word not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"no {word!r} in {out!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the terminal closed: everything has been read
                break
            if not chunk:
                break
            out += chunk
    return out


def start_on_terminal(tmp_path: Path) -> tuple[int, int]:
    prog = tmp_path / "count_signals.py"
    prog.write_text(PROGRAM)
    cmd = [sys.executable, "-m", "willowisp", "run", "--out", str(tmp_path / "run"), "--"]
    cmd += [sys.executable, str(prog)]
    pid, fd = pty.fork()
    if pid == 0:  # the child: willowisp run, the terminal's foreground process group
        os.execv(sys.executable, cmd)
    return pid, fd


def finish(pid: int, fd: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status)


def test_ctrl_c_at_a_terminal_reaches_the_program_once(tmp_path: Path) -> None:
    pid, fd = start_on_terminal(tmp_path)
    deadline = time.monotonic() + 60
    try:
        read_until(fd, b"ready", deadline)
        os.write(fd, b"\x03")  # Ctrl-C: the kernel signals the foreground process group
        read_until(fd, b"sigint 1", deadline)
        os.kill(pid, signal.SIGTERM)  # sent to willowisp run alone: passed on
        out = read_until(fd, b"sigints at sigterm", deadline)
        out += read_until(fd, b"run saved", deadline)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        code = finish(pid, fd)
    assert b"sigints at sigterm: 1" in out, out
    assert b"sigint 2" not in out
    assert code == 0


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
            proc.kill()
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
