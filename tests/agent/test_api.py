"""Starting and stopping the agent in-process (agent/api.py): arm() puts the primitive hooks
in ahead of recording, and start() says which of the program's locks it cannot see."""

from __future__ import annotations

import _thread
import importlib.util
import queue
import sys
import threading
from pathlib import Path

from tracekit import read_run

from willowisp.agent import api
from willowisp.agent import recorder as _r


def test_arm_records_primitives_made_before_each_recording(tmp_path: Path) -> None:
    """After arm(), a lock and a queue made before any recording are defined, named after
    their variables and recorded in every later recording; their use in between is dropped
    and harmless, and disarm() gives the program plain locks again."""
    assert _r.RECORDER is None
    api.arm()
    try:
        module_lock = threading.Lock()
        jobs: queue.Queue[int] = queue.Queue()
        with module_lock:  # no recording runs: nothing to write it to
            jobs.put(0)
        for n in (1, 2):
            out = str(tmp_path / f"run{n}")
            api.start(out=out, service="inproc")
            with module_lock:
                jobs.put(n)
            assert jobs.get() == n - 1
            api.stop()
            pt = read_run(out)["inproc"]
            lock = pt.resource("module_lock")
            assert [e.kind for e in pt.events if e.res == lock] == [
                "lock.acquired",
                "lock.release",
            ]
            assert pt.resources[lock]["kind"] == "lock"
            assert pt.where(next(e for e in pt.events if e.res == lock)).startswith("test_api.py:")
            q = pt.resource("jobs")
            assert [e.kind for e in pt.events if e.res == q] == ["queue.put", "queue.get"]
            assert pt.faults == {}
        assert api.armed()
    finally:
        api.disarm()
    assert not api.armed()
    assert type(threading.Lock()) is type(_thread.allocate_lock())


def test_start_names_module_locks_it_cannot_see(tmp_path: Path) -> None:
    """start() after a module made its lock: the lock is left alone (others hold it) and one
    agent fault names it, so a race it prevents is not taken at face value."""
    source = tmp_path / "early_mod.py"
    source.write_text("import threading\n\nearly_lock = threading.Lock()\nok = 1\n")
    spec = importlib.util.spec_from_file_location("early_mod", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["early_mod"] = module
    try:
        spec.loader.exec_module(module)
        lock = module.early_lock
        out = str(tmp_path / "run")
        api.start(out=out, service="inproc")
        api.stop()
        assert module.early_lock is lock
    finally:
        del sys.modules["early_mod"]
    messages = [f["message"] for f in read_run(out)["inproc"].faults.values()]
    ours = [m for m in messages if "early_mod.py" in m]
    assert ours == [
        "UnseenLockWarning: early_lock in early_mod.py is a threading.Lock made before the "
        "agent started: its uses are not recorded, so what it orders may be reported as a "
        "race (start the agent before it is made: willowisp.start() first, willowisp run, "
        "or pytest --wisp)"
    ], messages


def test_start_takes_mode_and_ratio_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    """start() without a mode or ratio uses WILLOWISP_MODE and WILLOWISP_TRACE_RATIO (the
    contract's variables); what start() is given wins over them."""
    monkeypatch.setenv("WILLOWISP_MODE", "hops")
    monkeypatch.setenv("WILLOWISP_TRACE_RATIO", "0.25")
    for n, kwargs, expected in (
        (1, {}, ("hops", 0.25)),
        (2, {"mode": "full", "trace_ratio": 1.0}, ("full", 1.0)),
    ):
        out = str(tmp_path / f"run{n}")
        rec = api.start(out=out, service="inproc", **kwargs)
        assert rec is not None
        try:
            assert (rec.config.mode, rec.config.trace_ratio) == expected
        finally:
            api.stop()
        assert read_run(out)["inproc"].process["mode"] == expected[0]


def test_start_with_a_bad_variable_says_so_and_the_program_goes_on(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A WILLOWISP_* value that means nothing: one line on stderr naming it, no recording,
    no exception into the program (as under `willowisp run`)."""
    for name, value in (("WILLOWISP_TRACE_RATIO", "lots"), ("WILLOWISP_MODE", "bogus")):
        monkeypatch.setenv(name, value)
        assert api.start(out=str(tmp_path / "run"), service="inproc") is None
        assert _r.RECORDER is None
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{name}={value!r}" in err, err
        monkeypatch.delenv(name)
    assert not (tmp_path / "run").exists()
