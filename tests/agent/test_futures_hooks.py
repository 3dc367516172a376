"""The concurrent.futures hooks: submit → worker is a queue hand-off paired by a token, waits
on executor futures are blocks ended by a wake, and setting a result notifies."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor, wait

import pytest
from tracekit import Ev, ProcessTrace, read_run, run_program

from willowisp.agent import futures
from willowisp.model.spec import Outcome, Reason


def line(p: ProcessTrace, ev: Ev) -> int:
    return int(p.locations[ev.loc]["line"]) if ev.loc else 0


def named_like(p: ProcessTrace, pattern: str) -> list[int]:
    return [n for n, u in p.units.items() if re.fullmatch(pattern, str(u.get("name")))]


def waiting_inside(fut: object) -> None:
    """Poll until a thread waits inside ``fut.result()``: its condition has a waiter."""
    deadline = time.monotonic() + 30
    while not fut._condition._waiters:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "nobody ever waited on the future"
        time.sleep(0.001)


def test_submit_is_a_put_and_the_worker_gets_the_same_token(agent, marks):
    """submit writes queue.put on the executor; its worker writes queue.get before the work."""
    ran = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="crunch") as pool:  # @pool
        fut = pool.submit(ran.append, 1)  # @submit
        fut.result()
    p = agent.stop()
    assert ran == [1]
    work = p.resource("crunch work")
    assert p.resources[work]["kind"] == "queue"
    assert p.locations[p.resources[work]["loc"]]["line"] == marks["pool"]
    main, worker = p.unit_named("MainThread"), p.unit_named("crunch_0")
    assert p.units[worker]["parent"] == main
    puts = [e for e in p.of_unit(main) if e.kind == "queue.put"]
    gets = [e for e in p.of_unit(worker) if e.kind == "queue.get"]
    assert [(e.res, line(p, e)) for e in puts] == [(work, marks["submit"])]
    assert [(e.res, e.arg) for e in gets] == [(work, puts[0].arg)]
    assert puts[0].time <= gets[0].time
    future = p.resource("fut")
    assert p.resources[future]["kind"] == "future"
    assert p.locations[p.resources[future]["loc"]]["line"] == marks["submit"]


def test_waiting_on_a_pending_future_blocks_then_wakes_after_the_notify(agent, marks):
    """result() on a future not yet done: block (await) → wake, after the worker's notify."""
    gate = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slow")
    fut = pool.submit(lambda: gate.wait() and 42)  # @slow-submit
    with pytest.raises(TimeoutError):
        fut.exception(timeout=0)  # @peek
    opener = threading.Thread(target=lambda: (waiting_inside(fut), gate.set()))
    opener.start()
    assert fut.result() == 42  # @result
    opener.join()
    pool.shutdown()
    p = agent.stop()
    rid = p.resource("fut")
    main, worker = p.unit_named("MainThread"), p.unit_named("slow_0")
    waits = [(e.kind, e.arg, line(p, e)) for e in p.of_unit(main) if e.res == rid]
    assert waits == [
        ("unit.block", Reason.AWAIT, marks["peek"]),
        ("unit.wake", Outcome.TIMEOUT, marks["peek"]),
        ("unit.block", Reason.AWAIT, marks["result"]),
        ("unit.wake", Outcome.OK, marks["result"]),
    ]
    notify = [e for e in p.of_unit(worker) if e.kind == "sync.notify"]
    assert [(e.res, e.arg) for e in notify] == [(rid, -1)]
    woken = [e for e in p.of_unit(main) if e.res == rid][-1]
    assert notify[0].time <= woken.time


def test_reading_a_done_future_is_a_wake_alone(agent, marks):
    """The program reading a future that is already done writes one unit.wake, no block."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(int, "7")
        wait([fut])
        assert fut.result() == 7  # @done-read
    p = agent.stop()
    rid = p.resource("fut")
    main = p.unit_named("MainThread")
    assert [(e.kind, e.arg, line(p, e)) for e in p.of_unit(main) if e.res == rid] == [
        ("unit.wake", Outcome.OK, marks["done-read"])
    ]


def test_errors_and_cancellation_are_the_wake_outcomes(agent):
    """A future that raised wakes its reader with error; a cancelled one notifies and cancels."""
    gate = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        blocker = pool.submit(gate.wait)
        queued = pool.submit(int, "8")
        failing = pool.submit(int, "x")
        assert queued.cancel()
        gate.set()
        with pytest.raises(ValueError, match="invalid literal"):
            failing.result()
        with pytest.raises(CancelledError):
            queued.result()
        blocker.result()
    p = agent.stop()
    main = p.unit_named("MainThread")
    rq, rf = p.resource("queued"), p.resource("failing")
    assert [(e.kind, e.arg) for e in p.of_unit(main) if e.res == rq] == [
        ("sync.notify", -1),
        ("unit.wake", Outcome.CANCELLED),
    ]
    assert [(e.kind, e.arg) for e in p.of_unit(main) if e.res == rf][-1] == (
        "unit.wake",
        Outcome.ERROR,
    )
    assert any(e.kind == "sync.notify" and e.res == rf for e in p.events)


def test_default_executor_names(agent):
    """An unnamed executor's queue and workers carry the names the executor gives them."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(int).result()
    p = agent.stop()
    queues = [r["name"] for r in p.resources.values() if r["kind"] == "queue"]
    assert len(queues) == 1
    assert re.fullmatch(r"ThreadPoolExecutor-\d+ work", queues[0])
    prefix = queues[0].removesuffix(" work")
    assert len(named_like(p, re.escape(prefix) + r"_0")) == 1


def test_asyncio_to_thread_hands_off_from_the_task(agent, marks):
    """asyncio.to_thread: the task puts on the loop's default executor, a worker gets it."""

    async def main() -> int:
        return await asyncio.to_thread(sum, [1, 2])  # @to-thread

    assert asyncio.run(main()) == 3
    p = agent.stop()
    work = p.resource("asyncio work")
    task = next(n for n, u in p.units.items() if str(u.get("coro", "")).endswith("main"))
    puts = [e for e in p.of_unit(task) if e.kind == "queue.put"]
    assert [(e.res, line(p, e)) for e in puts] == [(work, marks["to-thread"])]
    (worker,) = named_like(p, r"asyncio_0")
    assert [e.arg for e in p.of_unit(worker) if e.kind == "queue.get"] == [puts[0].arg]
    assert p.units[worker]["parent"] == task


def test_a_hook_fault_never_reaches_the_program(agent, monkeypatch):
    """A failing hook: the work still runs and returns; the failure is an agent.fault."""

    def broken(*args: object) -> None:
        raise ValueError("broken on purpose")

    monkeypatch.setattr(futures._WorkQueue, "_tag", broken)
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(int, "5").result() == 5
    p = agent.stop()
    assert [(f["where"], f["message"]) for f in p.faults.values()] == [
        ("ThreadPoolExecutor.submit", "ValueError: broken on purpose")
    ]
    assert [e.kind for e in p.events if e.kind == "agent.fault"] == ["agent.fault"]


def test_not_imported_for_programs_that_do_not_use_it(tmp_path):
    """The agent does not import concurrent.futures into a program that never does; when the
    program imports it later, executors are recorded as usual."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import sys
        print("concurrent.futures" in sys.modules)
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="late") as pool:
            print(pool.submit(abs, -3).result())
        """,
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "3"]
    p = read_run(out)["prog"]
    assert any(u["name"].startswith("late") for u in p.units.values())
    assert [e.kind for e in p.events if e.kind in ("queue.put", "queue.get")] == [
        "queue.put",
        "queue.get",
    ]
