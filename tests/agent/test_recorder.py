"""The recorder's promises: bounded memory with every drop counted, faults caught and
recorded, fork and subprocess children linked, readable files after SIGKILL at any moment,
WILLOWISP_DISABLED, and the in-process start/stop API."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from tracekit import PYTHON, kill_group, read_run, run_program, start_program, wait_for

from willowisp.errors import TraceFormatError
from willowisp.wtrace.reader import read_file


def test_full_buffers_drop_and_count(tmp_path):
    """With room for two buffers and no flush in between, the overflow is dropped and counted."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading
        spin = threading.Lock()
        for _ in range(10000):
            spin.acquire(); spin.release()
    """,
        out,
        env_extra={
            "WILLOWISP_MAX_BUFFER_BYTES": str(2 * 2048 * 48),
            "WILLOWISP_FLUSH_MS": "600000",
        },
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    lock = p.resource("spin")
    recorded = sum(1 for e in p.events if e.res == lock)
    drops = [e for e in p.events if e.kind == "agent.drop"]
    dropped = sum(e.arg for e in drops)
    assert drops and dropped > 0
    assert recorded + dropped == 20000
    assert p.stats["dropped"] == dropped
    assert {e.unit for e in drops} == {p.unit_named("MainThread")}


def test_hook_fault_is_recorded_not_raised(tmp_path):
    """An exception inside the agent is caught, counted and written as agent.fault."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading
        from willowisp.agent import recorder
        def broken(*a, **k):
            raise RuntimeError("boom in the agent")
        recorder.Recorder.new_resource = broken
        guard = threading.Lock()
        with guard:
            print("still works")
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "still works"
    p = read_run(out)["prog"]
    faults = [f for f in p.faults.values() if "boom in the agent" in f["message"]]
    assert faults and faults[0]["where"] == "threading.Lock"
    assert any(e.kind == "agent.fault" for e in p.events)
    assert p.stats["faults"] >= 1


def test_disabled_leaves_program_untouched(tmp_path):
    """WILLOWISP_DISABLED=1: no hooks, no files."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading, _thread
        print(type(threading.Lock()) is type(_thread.allocate_lock()))
    """,
        out,
        env_extra={"WILLOWISP_DISABLED": "1"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
    assert not os.path.exists(out) or not os.listdir(out)


def test_fork_child_is_its_own_linked_process(tmp_path):
    """A forked child records under a new process id, linked to the parent by proc.spawn/start."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import os, threading
        before = threading.Lock()
        pid = os.fork()
        if pid == 0:
            child_lock = threading.Lock()
            with child_lock:
                pass
            os._exit(0)
        os.waitpid(pid, 0)
        with before:
            pass
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    procs = read_run(out)
    assert len(procs) == 2
    parent = next(p for p in procs.values() if not p.process["parent_process_id"])
    child = next(p for p in procs.values() if p.process["parent_process_id"])
    assert child.process["parent_process_id"] == parent.process["process_id"]
    assert child.process["process_id"] != parent.process["process_id"]
    spawn = next(r_ for r_ in parent.resources.values() if r_["kind"] == "spawn")
    start = next(r_ for r_ in child.resources.values() if r_["kind"] == "spawn")
    assert start["parent_span_id"] == spawn["span_id"]
    assert any(e.kind == "proc.start" for e in child.events)
    assert "before" not in {r_.get("name") for r_ in child.resources.values()}
    child_lock = child.resource("child_lock")
    assert [e.kind for e in child.events if e.res == child_lock] == [
        "lock.acquired",
        "lock.release",
    ]


def test_subprocess_child_gets_traceparent(tmp_path):
    """A Python child started with subprocess inherits the context and links back."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import subprocess, sys
        show = "import os; print(os.environ['TRACEPARENT'])"
        subprocess.run([sys.executable, "-c", show], check=True)
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    procs = read_run(out)
    parent = procs["prog"]
    child = next(p for name, p in procs.items() if name != "prog")
    spawn = next(r_ for r_ in parent.resources.values() if r_["kind"] == "spawn")
    assert r.stdout.strip() == f"00-{spawn['trace_id']}-{spawn['span_id']}-01"
    assert child.process["traceparent"] == r.stdout.strip()
    assert child.process["parent_process_id"] == parent.process["process_id"]


@pytest.mark.parametrize("after_events", [50, 2000, 20000])
def test_sigkill_at_any_moment_leaves_readable_files(tmp_path, after_events):
    """A busy program killed with SIGKILL leaves files that read without corruption."""
    out = str(tmp_path / "run")
    proc = start_program(
        """
        import threading, queue
        box = queue.Queue()
        tick = threading.Lock()
        def pump():
            while True:
                with tick:
                    box.put(1)
                box.get()
        for i in range(3):
            threading.Thread(target=pump, name=f"pump{i}", daemon=True).start()
        threading.Event().wait()
    """,
        out,
    )

    def enough() -> bool:
        try:
            return sum(len(p.events) for p in read_run(out).values()) >= after_events
        except TraceFormatError:
            return False  # a segment just created, its header not written yet: read again

    try:
        wait_for(enough, what=f"{after_events} events on disk")
    finally:
        kill_group(proc)
    for name in os.listdir(out):
        if not name.endswith(".wtrace"):
            assert name.startswith(".willowisp-reserve-")  # killed: its room is left
            continue
        tf = read_file(os.path.join(out, name))
        assert tf.problems == []
        assert tf.events >= after_events
        assert tf.chunks


def _embedding_env() -> dict[str, str]:
    """A program that imports willowisp itself (maybe under another interpreter): the
    package is importable through the agent folder; nothing starts the agent for it."""
    from willowisp.agent.bootstrap import agent_path

    env = dict(os.environ)
    env.pop("WILLOWISP_OUT", None)
    env["PYTHONPATH"] = agent_path()
    return env


def test_in_process_start_stop(tmp_path):
    """willowisp.start()/stop() record in this process and remove every hook afterwards."""
    code = f"""
import threading, _thread, willowisp
willowisp.start(out={str(tmp_path / "run")!r}, service="embedded")
inner = threading.Lock()
with inner:
    pass
willowisp.stop()
print(type(threading.Lock()) is type(_thread.allocate_lock()))
"""
    env = _embedding_env()
    script = tmp_path / "embed.py"
    script.write_text(code)
    r = subprocess.run(
        [PYTHON, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
    p = read_run(str(tmp_path / "run"))["embedded"]
    inner = p.resource("inner")
    assert [e.kind for e in p.events if e.res == inner] == ["lock.acquired", "lock.release"]


OTHER_PYTHONS = [
    p
    for p in (
        "/root/.pyenv/versions/3.12.1/bin/python3.12",
        "/root/.pyenv/versions/3.13.0/bin/python3.13",
        shutil.which("python3.12") or "",
        shutil.which("python3.13") or "",
    )
    if p and os.path.exists(p) and "/shims/" not in p
]


@pytest.mark.parametrize(
    "python",
    sorted(set(map(os.path.realpath, OTHER_PYTHONS)))
    or [pytest.param("none", marks=pytest.mark.skip(reason="no other CPython installed"))],
)
def test_agent_on_other_interpreters(tmp_path, python):
    """The agent (stdlib only) records threads, locks, queues and HTTP under other CPythons."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading, queue
        pair = threading.Lock()
        q = queue.Queue()
        def w():
            with pair:
                q.put(1)
        t = threading.Thread(target=w, name="w"); t.start(); t.join()
        q.get()
    """,
        out,
        python=python,
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    assert p.process["runtime_version"].startswith(
        os.path.basename(python).removeprefix("python")[:4]
    )
    w = p.unit_named("w")
    assert ("lock.acquired", p.resource("pair")) in [(e.kind, e.res) for e in p.of_unit(w)]
    assert [e.kind for e in p.events if e.res == p.resource("q")] == ["queue.put", "queue.get"]


def test_restart_takes_over_running_threads(tmp_path):
    """stop() then start(): a thread that outlived the first recorder records into the second."""
    code = f"""
import threading, willowisp
go_on = threading.Event()
done = threading.Event()
def worker():
    go_on.wait()
    with late:
        pass
    done.set()
late = threading.Lock()
t = threading.Thread(target=worker, name="survivor")
willowisp.start(out={str(tmp_path / "first")!r}, service="first")
t.start()
willowisp.stop()
willowisp.start(out={str(tmp_path / "second")!r}, service="second")
late_lock = threading.Lock()
late = late_lock
go_on.set()
done.wait()
t.join()
willowisp.stop()
"""
    script = tmp_path / "restart.py"
    script.write_text(code)
    env = _embedding_env()
    r = subprocess.run(
        [PYTHON, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    p = read_run(str(tmp_path / "second"))["second"]
    lock = p.resource("late_lock")
    survivor = p.unit_named("survivor")
    assert [e.kind for e in p.events if e.res == lock and e.unit == survivor] == [
        "lock.acquired",
        "lock.release",
    ]


@pytest.mark.parametrize("round_", range(3))
def test_sigterm_during_the_agents_own_work_flushes_and_dies_by_it(tmp_path, round_):
    """SIGTERM while the main thread is busy inside recorded operations (the agent's own
    critical sections run on it all the time): the program still dies of SIGTERM, promptly,
    with everything recorded before it flushed — the handler never waits on itself."""
    import signal

    out = str(tmp_path / "run")
    proc = start_program(
        """
        import threading
        lock = threading.Lock()
        def spin():
            while True:
                with lock:
                    pass
        threading.Thread(target=spin, daemon=True).start()
        while True:  # the main thread: lock events and thread starts, without pause
            with lock:
                pass
            threading.Thread(target=lambda: None).start()
        """,
        out,
    )
    try:
        wait_for(
            lambda: sum(len(p.events) for p in read_run(out).values()) >= 2000,
            what="2000 events on disk",
        )
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        kill_group(proc)
    (p,) = read_run(out).values()
    assert len(p.events) >= 2000


@pytest.mark.parametrize("round_", range(4))
def test_a_process_group_sigterm_under_willowisp_run_loses_nothing(tmp_path, round_):
    """`willowisp run` and its program in one process group, SIGTERM to the group (what
    `kill -- -PGID` and a supervisor stopping a cgroup do): the program gets it from the
    group and again from `run`, which passes it on. The second, moments later, is the same
    stop: the flush finishes (the request's events are in the trace), the control channel's
    files are removed, and the program dies of SIGTERM."""
    import signal
    import sys

    out = tmp_path / "run"
    import tempfile
    from pathlib import Path

    runtime = Path(tempfile.mkdtemp(prefix="wr-", dir="/tmp"))  # short: a socket path's limit
    script = tmp_path / "svc.py"
    script.write_text(
        "import threading\n"
        "served = threading.Lock()\n"
        "with served:\n"
        "    pass\n"
        "print('ready', flush=True)\n"
        "threading.Event().wait()\n"
    )
    env = {**os.environ, "WILLOWISP_RUNTIME_DIR": str(runtime)}
    env = {k: v for k, v in env.items() if k not in ("WILLOWISP_OUT", "WILLOWISP_DISABLED")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--",
         sys.executable, str(script)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        wait_for(lambda: any(runtime.glob("*.json")), what="the control descriptor")
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        kill_group(proc)
    (p,) = read_run(str(out)).values()
    served = p.resource("served")
    assert [e.kind for e in p.events if e.res == served] == ["lock.acquired", "lock.release"]
    left = list(runtime.iterdir())
    shutil.rmtree(runtime, ignore_errors=True)
    assert not left, left
