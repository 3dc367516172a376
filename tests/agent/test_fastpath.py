"""The optional C fast path and the pure-Python path record the same trace."""

from __future__ import annotations

import os

import pytest
from tracekit import read_run, run_program

from willowisp.agent import recorder

# Deterministic: workers run one after the other, and the one contended acquisition is
# sequenced by an event and the lock's own state.
PROGRAM = """
import threading, queue, time
total_lock = threading.Lock()
cond = threading.Condition()
box = queue.Queue()
def worker(n):
    for i in range(50):
        with total_lock:
            box.put(i)
        box.get()
        total_lock.acquire(); total_lock.release()
    with cond:
        cond.notify_all()
for n in range(2):
    t = threading.Thread(target=worker, args=(n,), name=f"w{n}")
    t.start(); t.join()
held = threading.Event()
main_ident = threading.get_ident()
def main_is_blocked():
    import sys
    f = sys._current_frames().get(main_ident)
    return f is not None and f.f_code.co_name == "_blocking_acquire"
def holder():
    with total_lock:
        held.set()
        while not main_is_blocked():  # the main thread is inside the blocking acquire
            time.sleep(0)
h = threading.Thread(target=holder, name="holder"); h.start()
held.wait()
with total_lock:
    pass
h.join()
"""


def shape(out: str) -> dict[str, list[tuple[str, str, str]]]:
    p = read_run(out)["prog"]
    skip = ("gc.begin", "gc.end", "agent.flush", "clock.anchor")
    res_name = {rid: str(r.get("name")) for rid, r in p.resources.items()}
    # Whether a join blocks depends on whether the thread already ended (scheduling, not
    # the path): a block on a thread's end is left out of the comparison.
    return {
        str(u["name"]): [
            row
            for e in p.of_unit(n, skip)
            if not (
                (row := (e.kind, res_name.get(e.res, "-"), p.where(e)))[0] == "unit.block"
                and row[1].startswith("end of ")
            )
        ]
        for n, u in p.units.items()
    }


def test_fast_path_is_built_here():
    """The C fast path compiled at install time (gcc is on this machine) and imports."""
    import importlib

    fast = importlib.import_module("willowisp._native")
    assert callable(fast.record) and callable(fast.columns)
    if os.environ.get("WILLOWISP_PURE_PYTHON", "") in ("", "0"):
        assert recorder.FAST is fast


@pytest.mark.parametrize("seed", [0])
def test_fast_and_pure_python_paths_agree(tmp_path, seed):
    """Same program, both paths: the same events, resources and source lines per unit."""
    fast = str(tmp_path / "fast")
    pure = str(tmp_path / "pure")
    assert run_program(PROGRAM, fast, name="prog").returncode == 0
    assert (
        run_program(PROGRAM, pure, name="prog", env_extra={"WILLOWISP_PURE_PYTHON": "1"}).returncode
        == 0
    )
    a, b = shape(fast), shape(pure)
    assert a == b
    assert len(a["w0"]) > 200
    main = [(k, r) for k, r, _ in a["MainThread"]]
    i = main.index(("unit.block", "total_lock"))
    assert main[i + 1] == ("lock.acquired", "total_lock")
