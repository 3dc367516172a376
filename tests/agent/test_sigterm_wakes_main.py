"""A recorded program whose main thread waits for good (an untimed ``Event.wait()``, or a
C library's wait that sleeps and retries whatever signal comes) still dies of SIGTERM,
however the kernel picks the thread that takes it, and its recording is complete.

CPython runs the agent's SIGTERM handler on the main thread only, when it next runs
bytecode; when the signal lands on another thread (a program thread, spinning in Python or
inside a C call), or on the main thread on its way into its wait, a main thread asleep for
good never runs it, and the process the default action would have killed lives on. Sending
the signal on to the main thread was not enough (1 run in 5 hung: taken between dropping
the GIL and sleeping, it only set CPython's flag). The C extension's handler takes every
SIGTERM in place of CPython's and wakes an agent thread that runs the handler. Without it
nothing is done (blocking SIGTERM in the program's threads was tried: the programs they
start inherit the mask and cannot be stopped with SIGTERM any more), which the last tests
guard.

Real processes: each test starts fresh programs under the agent (the environment
``willowisp run`` gives) with a flush interval far longer than the test, so whatever is in
the recording was written by the agent's last flush on the way to dying.
"""

from __future__ import annotations

import os
import platform
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tracekit import PYTHON, read_run

from willowisp.cli.run import build_env
from wispkit import tgkill

DEADLINE_S = 10.0  # a SIGTERM'd process dies within a few seconds, or it hung
ROUNDS = 20  # fresh processes per kind of run: the hang was 3 in 45 under load
SERVICE = "sigterm-prog"
SYS_FUTEX = {"x86_64": 202, "aarch64": 98}[platform.machine()]
# nanosleep and clock_nanosleep: where sqlite's busy handler waits between its retries
SYS_SLEEPS = {"x86_64": {35, 230}, "aarch64": {101, 115}}[platform.machine()]

PROGRAM = r"""
import hashlib, os, sys, threading, time
try:
    from willowisp import _native
except ImportError:  # an interpreter the C extension was not built for
    _native = None

if "--forked" in sys.argv:  # the same in a child forked by the main thread
    child = os.fork()
    if child:
        print("CHILD", os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]), flush=True)
        sys.exit(0)

data = b"w" * (1 << 20)
ready = threading.Barrier(4)
stop = threading.Event()  # never set: the main thread's untimed wait

def spin():  # in Python bytecode, holding the GIL
    ready.wait()
    n = 0
    while True:
        n += 1

def hashing():  # in a C call that lets the GIL go
    ready.wait()
    while True:
        hashlib.sha256(data).digest()

def sleeping():  # in a blocking C call
    ready.wait()
    while True:
        time.sleep(0.005)

workers = [threading.Thread(target=f, name=n, daemon=True)
           for n, f in (("spin", spin), ("hash", hashing), ("sleep", sleeping))]
for t in workers:
    t.start()
ready.wait()
fields = [f"{t.name}={t.native_id}" for t in workers]
forwarded = int(_native is not None and _native.sigterm_forwarded())
fields += [f"pid={os.getpid()}", f"forwarded={forwarded}"]
if "--children" in sys.argv:  # do the programs a worker starts block SIGTERM?
    import subprocess
    CHECK = ("import sys; sys.exit(any(l.startswith('SigBlk:') and int(l.split()[1], 16)"
             " & (1 << 14) for l in open('/proc/self/status')))")
    codes = {}
    def children():
        pid = os.fork()  # a fork: a copy of this thread
        if pid == 0:
            os.execv(sys.executable, [sys.executable, "-c", CHECK])
        codes["forked"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        codes["spawned"] = subprocess.run([sys.executable, "-c", CHECK]).returncode
    starter = threading.Thread(target=children, name="starter")
    starter.start()
    starter.join()
    fields += [f"{k}={v}" for k, v in codes.items()]
if "--sqlite" in sys.argv:  # the main thread in a C library's wait that retries on EINTR
    import sqlite3
    db = os.path.join(os.path.dirname(os.path.abspath(__file__)), "held.db")
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    blocked = sqlite3.connect(db, timeout=3600, isolation_level=None)
    print("READY", *fields, flush=True)
    blocked.execute("BEGIN EXCLUSIVE")  # sqlite sleeps and retries for an hour
print("READY", *fields, flush=True)
stop.wait()
"""


def start(
    tmp: Path, n: int, *, pure: bool, python: str, flag: str = ""
) -> tuple[subprocess.Popen[str], Path]:
    """The program under the agent, its final flush the only one; returns it and its run."""
    out = tmp / f"run-{n}"
    script = tmp / "prog.py"
    script.write_text(PROGRAM)
    env = build_env(str(out), "full", 1.0, [], SERVICE)
    env["WILLOWISP_FLUSH_MS"] = "600000"
    env["WILLOWISP_PURE_PYTHON"] = "1" if pure else "0"
    args = [python, str(script), *([flag] if flag else [])]
    # its own session: cleanup() ends a forked child with it
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    return proc, out


def line(proc: subprocess.Popen[str], prefix: str) -> str:
    """The next stdout line of ``proc``, which must start with ``prefix``."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], DEADLINE_S * 3)
    assert readable, f"no {prefix!r} line"
    text = proc.stdout.readline()
    assert text.startswith(prefix), text
    return text


def ready(proc: subprocess.Popen[str]) -> dict[str, int]:
    """The READY line's fields: each worker's thread id, the pid, whether the C handler
    forwards SIGTERM, and what a test asked the program to find out."""
    return {k: int(v) for k, v in (w.split("=") for w in line(proc, "READY ").split()[1:])}


def wait_main_blocked(pid: int) -> None:
    """Until the main thread sleeps in an untimed futex wait: /proc's view of its current
    system call and arguments. That is its Event's wait, or, on its way there, the GIL's
    mutex (the GIL's own wait has a timeout): the window that hung 1 run in 5 when the
    signal was sent on to the main thread, so kept on purpose."""
    deadline = time.monotonic() + DEADLINE_S * 3
    while time.monotonic() < deadline:
        fields = Path(f"/proc/{pid}/task/{pid}/syscall").read_text().split()
        if fields[0] == str(SYS_FUTEX) and int(fields[4], 16) == 0:
            return
        time.sleep(0.01)
    raise AssertionError(f"the main thread of {pid} never blocked in its Event.wait()")


def wait_main_sleeping(pid: int) -> None:
    """Until the main thread is in a sleep system call (sqlite's busy handler's)."""
    deadline = time.monotonic() + DEADLINE_S * 3
    while time.monotonic() < deadline:
        fields = Path(f"/proc/{pid}/task/{pid}/syscall").read_text().split()
        if fields[0] in {str(n) for n in SYS_SLEEPS}:
            return
        time.sleep(0.01)
    raise AssertionError(f"the main thread of {pid} never slept in sqlite's busy wait")


def sigterm_blocked(pid: int, tid: int) -> bool:
    """Does thread ``tid`` of ``pid`` block SIGTERM (its mask, as /proc shows it)?"""
    for text in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if text.startswith("SigBlk:"):
            return bool(int(text.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    raise AssertionError(f"no SigBlk for thread {tid} of {pid}")


def dies_of_sigterm(proc: subprocess.Popen[str]) -> None:
    """``proc`` ends by SIGTERM's default action within DEADLINE_S (else it hung)."""
    try:
        code = proc.wait(DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"pid {proc.pid} still alive {DEADLINE_S} s after SIGTERM") from None
    assert code == -signal.SIGTERM


def assert_flushed(out: Path) -> None:
    """The last flush wrote the workers' starts and the main thread's wait (nothing else
    could have: the flush interval outlasts the test)."""
    trace = read_run(str(out))[SERVICE]
    assert not trace.problems, trace.problems
    stop = trace.resource("stop")
    main = trace.unit_named("MainThread")
    assert ("unit.block", stop) in [(e.kind, e.res) for e in trace.of_unit(main)]
    for name in ("spin", "hash", "sleep"):
        assert "unit.start" in trace.kinds(trace.unit_named(name)), name


def cleanup(proc: subprocess.Popen[str]) -> None:
    """Whatever a failed test left of the program's process group goes."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


WORKERS = ("spin", "hash", "sleep")


@pytest.mark.parametrize("worker", WORKERS)
def test_sigterm_to_a_worker_thread_wakes_the_main_thread(tmp_path: Path, worker: str) -> None:
    """With the C extension, a SIGTERM the kernel hands a worker thread (made so with
    tgkill) while the main thread waits untimed, or is on its way into that wait, ends the
    process by SIGTERM, flushed."""
    # sys.executable: the interpreter the extension is built for
    proc, out = start(tmp_path, 0, pure=False, python=sys.executable)
    try:
        got = ready(proc)
        assert got["forwarded"] == 1
        wait_main_blocked(proc.pid)
        assert not sigterm_blocked(proc.pid, got[worker])  # the C path masks nothing
        tgkill(proc.pid, got[worker], signal.SIGTERM)
        dies_of_sigterm(proc)
    finally:
        cleanup(proc)
    assert_flushed(out)


def test_sigterm_while_the_main_thread_waits_inside_a_c_library(tmp_path: Path) -> None:
    """A main thread in a C library's wait that retries on EINTR (sqlite's busy handler,
    an hour's timeout, a lock this process holds) never runs bytecode again: waking it
    cannot help. SIGTERM to the process still ends it by SIGTERM, flushed."""
    proc, out = start(tmp_path, 0, pure=False, python=sys.executable, flag="--sqlite")
    try:
        assert ready(proc)["forwarded"] == 1
        wait_main_sleeping(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        dies_of_sigterm(proc)
    finally:
        cleanup(proc)
    trace = read_run(str(out))[SERVICE]
    assert not trace.problems, trace.problems
    for name in WORKERS:
        assert "unit.start" in trace.kinds(trace.unit_named(name)), name


def test_a_child_forked_by_the_main_thread_forwards_to_its_own_main(tmp_path: Path) -> None:
    """In a child the main thread forked (only that thread is copied: the agent starts its
    SIGTERM thread again there), a SIGTERM handed a worker ends the child by SIGTERM."""
    proc, _ = start(tmp_path, 0, pure=False, python=sys.executable, flag="--forked")
    try:
        got = ready(proc)
        assert got["pid"] != proc.pid and got["forwarded"] == 1
        wait_main_blocked(got["pid"])
        tgkill(got["pid"], got["hash"], signal.SIGTERM)
        assert line(proc, "CHILD ").split()[1] == str(-signal.SIGTERM)
        assert proc.wait(DEADLINE_S) == 0
    finally:
        cleanup(proc)


@pytest.mark.parametrize("pure", [False, True], ids=["native", "pure-python"])
def test_no_thread_and_no_child_of_the_program_blocks_sigterm(tmp_path: Path, pure: bool) -> None:
    """The agent changes no signal mask: the program's threads, a child a worker forks and
    a program a worker starts with subprocess all take SIGTERM as without the agent (a
    masked child could no longer be stopped with terminate())."""
    python = PYTHON if pure else sys.executable
    proc, out = start(tmp_path, 0, pure=pure, python=python, flag="--children")
    try:
        got = ready(proc)
        assert got["forwarded"] == (0 if pure else 1)
        assert (got["forked"], got["spawned"]) == (0, 0)  # exit status 1 if SIGTERM blocked
        wait_main_blocked(proc.pid)
        blocked = {w: sigterm_blocked(proc.pid, got[w]) for w in WORKERS}
        blocked["main"] = sigterm_blocked(proc.pid, proc.pid)
        assert blocked == dict.fromkeys(("main", *WORKERS), False)
        if pure:
            return  # without the extension a stop can miss the handler (the module doc)
        os.kill(proc.pid, signal.SIGTERM)
        dies_of_sigterm(proc)
    finally:
        cleanup(proc)
    assert_flushed(out)


def test_every_sigterm_stop_of_a_waiting_main_thread_ends_the_process(tmp_path: Path) -> None:
    """SIGTERM sent to the process (os.kill) ROUNDS times, a fresh process each time,
    while its workers run: every one dies of SIGTERM within seconds, its recording flushed.
    Only with the C extension: without it the handler runs on the main thread, and a stop
    taken while that thread is between dropping the GIL and sleeping in its wait is missed
    (CPython's own window, which a program's own SIGTERM handler has as well): 11 of 18
    such runs hung, so the pure-Python agent does not promise this (docs/agent-python.md)."""
    for n in range(ROUNDS):
        proc, out = start(tmp_path, n, pure=False, python=sys.executable)
        try:
            assert ready(proc)["forwarded"] == 1
            wait_main_blocked(proc.pid)
            os.kill(proc.pid, signal.SIGTERM)
            dies_of_sigterm(proc)
        finally:
            cleanup(proc)
        assert_flushed(out)
