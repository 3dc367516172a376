"""The asyncio hooks: tasks are units whose steps are bracketed on their carrier thread, waits
on tasks, gathers and asyncio's primitives are recorded as docs/format.md says, at the
program's own source lines, and nothing of asyncio's internals shows up as a resource."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import weakref

import pytest
from tracekit import Ev, ProcessTrace, kill_group, read_run, run_program, start_program, wait_for

from willowisp.agent import aio, aio_sync
from willowisp.model.spec import EndStatus, Outcome, Reason

SCHEDULING = ("unit.run", "unit.yield", "gc.begin", "gc.end")


def line(p: ProcessTrace, ev: Ev) -> int:
    return int(p.locations[ev.loc]["line"]) if ev.loc else 0


def task_of(p: ProcessTrace, coro_suffix: str) -> int:
    found = [
        n
        for n, u in p.units.items()
        if u.get("kind") == "task" and str(u.get("coro", "")).endswith(coro_suffix)
    ]
    assert len(found) == 1, (coro_suffix, found)
    return found[0]


def after(evs: list[Ev], i: int) -> list[str]:
    return [e.kind for e in evs[i:]]


def first(evs: list[Ev], kind: str, res: int = -1) -> int:
    for i, e in enumerate(evs):
        if e.kind == kind and (res < 0 or e.res == res):
            return i
    raise AssertionError(f"no {kind} on {res} in {[(e.kind, e.res) for e in evs]}")


def test_tasks_are_units_with_names_parents_and_creation_lines(agent, marks):
    """Each task is a unit of kind task with its name, coroutine, creator and creation line."""

    async def leaf() -> int:
        return 1

    async def main() -> None:
        a = asyncio.create_task(leaf(), name="alpha")  # @create-alpha
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf(), name="beta")  # @create-beta
        await a
        await asyncio.gather(leaf())  # @gather-leaf

    asyncio.run(main())  # @run
    p = agent.stop()
    main_task = task_of(p, "<locals>.main")
    thread = p.unit_named("MainThread")
    assert p.units[main_task]["parent"] == thread
    assert p.locations[p.units[main_task]["loc"]]["line"] == marks["run"]
    for name, mark in (("alpha", "create-alpha"), ("beta", "create-beta")):
        n = p.unit_named(name)
        u = p.units[n]
        assert (u["kind"], u["parent"]) == ("task", main_task)
        assert u["coro"].endswith("<locals>.leaf")
        assert p.locations[u["loc"]]["line"] == marks[mark]
        created = [e for e in p.of_unit(main_task) if e.kind == "unit.create" and e.arg == n]
        assert [line(p, e) for e in created] == [marks[mark]]
    gathered = [
        n
        for n, u in p.units.items()
        if u.get("coro", "").endswith("leaf") and u.get("name") not in ("alpha", "beta")
    ]
    assert [p.locations[p.units[n]["loc"]]["line"] for n in gathered] == [marks["gather-leaf"]]


def test_the_agent_keeps_no_task_alive(agent):
    """A task the program drops is freed, and the agent forgets it."""

    async def main() -> tuple[weakref.ref[asyncio.Task[None]], int]:
        t = asyncio.create_task(asyncio.sleep(0))
        await t
        return weakref.ref(t), id(t)

    ref, key = asyncio.run(main())
    gc.collect()
    assert ref() is None
    assert key not in aio._infos
    agent.stop()


def test_each_step_is_bracketed_and_the_end_says_how(agent):
    """unit.start/run before each step and yield/end after it; end is ok, error or cancelled."""
    never = asyncio.Event()

    async def worker() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("on purpose")

    async def sleeper(started: asyncio.Event) -> None:
        started.set()
        await never.wait()

    async def main() -> None:
        started = asyncio.Event()
        s = asyncio.create_task(sleeper(started))
        await asyncio.create_task(worker())
        await asyncio.gather(fails(), return_exceptions=True)
        await started.wait()
        s.cancel()
        await asyncio.gather(s, return_exceptions=True)

    asyncio.run(main())
    p = agent.stop()
    thread, main_task = p.unit_named("MainThread"), task_of(p, "<locals>.main")
    w = p.of_unit(task_of(p, "<locals>.worker"))
    assert [e.kind for e in w] == [
        "unit.start",
        "unit.yield",
        "unit.run",
        "unit.yield",
        "unit.run",
        "unit.end",
    ]
    assert w[0].arg == main_task
    assert {e.arg for e in w if e.kind == "unit.run"} == {thread}
    assert w[-1].arg == EndStatus.OK
    assert p.of_unit(task_of(p, "<locals>.fails"))[-1].arg == EndStatus.ERROR
    s = p.of_unit(task_of(p, "<locals>.sleeper"))
    never_rid = p.resource("never")
    assert [(e.kind, e.res, e.arg) for e in s if e.kind not in SCHEDULING][-3:] == [
        ("unit.block", never_rid, Reason.WAIT),
        ("unit.wake", never_rid, Outcome.CANCELLED),
        ("unit.end", 0, EndStatus.CANCELLED),
    ]


def test_pure_python_tasks_are_recorded_too(agent):
    """Tasks of the pure Python Task class (their steps are bound methods) are units too."""
    gate = asyncio.Event()

    async def opener() -> None:
        gate.set()

    async def worker() -> None:
        await asyncio.sleep(0)  # a step the task schedules itself
        o = asyncio.create_task(opener())  # runs once this step is over
        await gate.wait()  # a wakeup the event's future schedules
        await o

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda loop, coro, **kw: asyncio.tasks._PyTask(coro, loop=loop, **kw))
        await asyncio.create_task(worker(), name="py-worker")

    asyncio.run(main())
    p = agent.stop()
    evs = p.of_unit(p.unit_named("py-worker"))
    assert [e.kind for e in evs] == [
        "unit.start",
        "unit.yield",
        "unit.run",
        "unit.create",
        "unit.block",
        "unit.yield",
        "unit.run",
        "unit.wake",
        "unit.end",
    ]


def test_awaiting_a_task_is_a_join_block_ended_by_join_done(agent, marks):
    """A step that ends awaiting a task blocks on its join resource; join.done follows its end."""
    gate = asyncio.Event()

    async def child() -> int:
        await gate.wait()
        return 5

    async def opener() -> None:
        gate.set()

    async def main() -> int:
        t = asyncio.create_task(child(), name="child")
        o = asyncio.create_task(opener())
        r = await t  # @await-child
        await o
        return r

    assert asyncio.run(main()) == 5
    p = agent.stop()
    parent, child_unit = task_of(p, "<locals>.main"), p.unit_named("child")
    evs = p.of_unit(parent)
    i = first(evs, "unit.block")
    join = evs[i].res
    assert p.resources[join] == {
        "kind": "join",
        "name": "end of child",
        "unit": child_unit,
        "loc": p.resources[join].get("loc"),
    }
    assert p.locations[p.resources[join]["loc"]]["line"] == marks["await-child"]
    assert (evs[i].arg, line(p, evs[i])) == (Reason.JOIN, marks["await-child"])
    assert (evs[i + 1].kind, evs[i + 1].res) == ("unit.yield", join)
    assert evs[i + 2].kind == "unit.run"
    done = evs[i + 3]
    assert (done.kind, done.res, done.arg, line(p, done)) == (
        "join.done",
        join,
        child_unit,
        marks["await-child"],
    )
    assert p.of_unit(child_unit)[-1].time <= done.time


def test_gather_of_tasks_blocks_on_a_future_that_waits_for_them(agent, marks):
    """Awaiting a gather of tasks is a block on a future whose waits_for lists their units."""
    gate = asyncio.Event()

    async def part(i: int) -> int:
        await gate.wait()
        return i

    async def opener() -> None:
        gate.set()

    async def main() -> list[int]:
        o = asyncio.create_task(opener())
        r = await asyncio.gather(part(1), part(2))  # @gather
        await o
        return r

    assert asyncio.run(main()) == [1, 2]
    p = agent.stop()
    parent = task_of(p, "<locals>.main")
    parts = sorted(n for n, u in p.units.items() if str(u.get("coro")).endswith("part"))
    evs = p.of_unit(parent)
    i = first(evs, "unit.block")
    fut = evs[i].res
    assert p.resources[fut]["kind"] == "future"
    assert p.resources[fut]["waits_for"] == ",".join(map(str, parts))
    assert p.locations[p.resources[fut]["loc"]]["line"] == marks["gather"]
    assert (evs[i].arg, line(p, evs[i])) == (Reason.AWAIT, marks["gather"])
    assert after(evs, i + 1)[:3] == ["unit.yield", "unit.run", "unit.wake"]
    assert (evs[i + 3].res, evs[i + 3].arg) == (fut, Outcome.OK)
    ends = [p.of_unit(n)[-1] for n in parts]
    assert all(e.kind == "unit.end" and e.time <= evs[i + 3].time for e in ends)


def test_asyncio_wait_all_blocks_on_a_future_that_waits_for_them(agent, marks):
    """asyncio.wait(ALL_COMPLETED) is a block on a future whose waits_for lists the tasks;
    FIRST_COMPLETED waits for any one, so it writes no such block."""
    gate = asyncio.Event()

    async def part(i: int) -> int:
        await gate.wait()
        return i

    async def opener() -> None:
        gate.set()

    async def main() -> None:
        ts = [asyncio.create_task(part(i)) for i in range(2)]
        o = asyncio.create_task(opener())
        await asyncio.wait(ts)  # @wait-all
        await o
        t = asyncio.create_task(part(3))
        await asyncio.wait([t], return_when=asyncio.FIRST_COMPLETED)

    asyncio.run(main())
    p = agent.stop()
    parent = task_of(p, "<locals>.main")
    parts = sorted(n for n, u in p.units.items() if str(u.get("coro")).endswith("part"))
    evs = p.of_unit(parent)
    blocks = [e for e in evs if e.kind == "unit.block" and p.resources[e.res]["kind"] == "future"]
    assert len(blocks) == 1
    fut = blocks[0].res
    assert p.resources[fut]["waits_for"] == ",".join(map(str, parts[:2]))
    assert p.resources[fut]["name"].startswith("wait of ")
    assert line(p, blocks[0]) == marks["wait-all"]
    assert [e.kind for e in evs if e.res == fut and e.kind != "unit.yield"] == [
        "unit.block",
        "unit.wake",
    ]


def test_task_groups_and_renamed_tasks_are_located_at_the_programs_lines(agent, marks):
    """A TaskGroup's future is located at the ``async with`` line; a task renamed after its
    creation keeps its creation line in the unit record that carries the new name."""
    gate = asyncio.Event()

    async def part() -> None:
        await gate.wait()

    async def opener() -> None:
        gate.set()

    async def main() -> None:
        t = asyncio.create_task(opener(), name="first name")  # @create-renamed
        t.set_name("second name")
        async with asyncio.TaskGroup() as tg:  # @group
            tg.create_task(part())
        await t

    asyncio.run(main())
    p = agent.stop()
    renamed = p.units[p.unit_named("second name")]
    assert p.locations[renamed["loc"]]["line"] == marks["create-renamed"]
    group = [r for r in p.resources.values() if str(r.get("name")).startswith("task group of")]
    assert [p.locations[r["loc"]]["line"] for r in group] == [marks["group"]]
    blocks = [e for e in p.of_unit(task_of(p, "<locals>.main")) if e.kind == "unit.block"]
    assert [line(p, e) for e in blocks] == [marks["group"]]


def test_lock_contention_is_block_yield_run_acquired_on_the_waiting_task(agent, marks):
    """A task that finds an asyncio.Lock held blocks on it and acquires it after the release."""
    lock = asyncio.Lock()  # @lock
    held, go = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with lock:  # @holder-acquire
            held.set()
            await go.wait()

    async def waiter() -> None:
        await held.wait()
        go.set()  # the holder may run again, but only after this step
        async with lock:  # @waiter-acquire
            pass

    async def main() -> None:
        await asyncio.gather(holder(), waiter())

    asyncio.run(main())
    p = agent.stop()
    rid = p.resource("lock")
    assert p.resources[rid]["kind"] == "lock"
    assert p.locations[p.resources[rid]["loc"]]["line"] == marks["lock"]
    h, w = p.of_unit(task_of(p, "<locals>.holder")), p.of_unit(task_of(p, "<locals>.waiter"))
    acquired = h[first(h, "lock.acquired", rid)]
    assert line(p, acquired) == marks["holder-acquire"]
    i = first(w, "unit.block", rid)
    assert (w[i].arg, line(p, w[i])) == (Reason.ACQUIRE, marks["waiter-acquire"])
    assert [(e.kind, e.res) for e in w[i + 1 : i + 4]] == [
        ("unit.yield", rid),
        ("unit.run", 0),
        ("lock.acquired", rid),
    ]
    assert line(p, w[i + 3]) == marks["waiter-acquire"]
    released = h[first(h, "lock.release", rid)]
    assert released.time <= w[i + 3].time
    assert w[i + 4].kind == "lock.release"


def test_cancelled_acquire_ends_its_wait_with_wake_cancelled(agent):
    """Cancelling a task waiting for a lock leaves block → yield → run → wake(cancelled) → end."""
    lock = asyncio.Lock()
    trying, done = asyncio.Event(), asyncio.Event()

    async def waiter() -> None:
        trying.set()
        await lock.acquire()

    async def main() -> None:
        async with lock:
            w = asyncio.create_task(waiter())
            await trying.wait()  # the waiter's step ended inside acquire()
            w.cancel()
            await asyncio.gather(w, return_exceptions=True)
            done.set()

    asyncio.run(main())
    p = agent.stop()
    rid = p.resource("lock")
    evs = [e for e in p.of_unit(task_of(p, "<locals>.waiter")) if e.kind != "sync.notify"]
    i = first(evs, "unit.block", rid)
    assert [(e.kind, e.res, e.arg) for e in evs[i:]] == [
        ("unit.block", rid, Reason.ACQUIRE),
        ("unit.yield", rid, 0),
        ("unit.run", 0, p.unit_named("MainThread")),
        ("unit.wake", rid, Outcome.CANCELLED),
        ("unit.end", 0, EndStatus.CANCELLED),
    ]


def test_condition_wait_and_notify(agent, marks):
    """Condition.wait: its lock's release, block, wake after the notify, then re-acquisition."""
    cond = asyncio.Condition()  # @cond
    ready = asyncio.Event()

    async def waiter() -> None:
        async with cond:
            ready.set()
            await cond.wait()  # @wait

    async def notifier() -> None:
        await ready.wait()
        async with cond:
            cond.notify()  # @notify

    async def main() -> None:
        await asyncio.gather(waiter(), notifier())

    asyncio.run(main())
    p = agent.stop()
    rid = p.resource("cond")
    assert p.resources[rid]["kind"] == "condition"
    w = [e for e in p.of_unit(task_of(p, "<locals>.waiter")) if e.res == rid]
    assert [(e.kind, e.arg) for e in w] == [
        ("lock.acquired", 0),
        ("lock.release", 0),
        ("unit.block", Reason.WAIT),
        ("unit.yield", 0),
        ("unit.wake", Outcome.OK),
        ("lock.acquired", 0),
        ("lock.release", 0),
    ]
    assert line(p, w[2]) == line(p, w[4]) == marks["wait"]
    n = [e for e in p.of_unit(task_of(p, "<locals>.notifier")) if e.kind == "sync.notify"]
    assert [(e.res, e.arg, line(p, e)) for e in n] == [(rid, 1, marks["notify"])]
    assert n[0].time <= w[4].time


def test_semaphores_and_events(agent):
    """Semaphores are counted locks (block → acquired after a release); Event.set notifies."""
    sem = asyncio.BoundedSemaphore(1)
    flag = asyncio.Event()

    async def first_holder() -> None:
        async with sem:
            await flag.wait()

    async def second() -> None:
        flag.set()
        async with sem:
            pass

    async def main() -> None:
        await asyncio.gather(first_holder(), second())
        await flag.wait()  # already set: a wake with no block

    asyncio.run(main())
    p = agent.stop()
    sem_rid, flag_rid = p.resource("sem"), p.resource("flag")
    assert p.resources[sem_rid]["kind"] == "semaphore"
    s = [
        (e.kind, e.arg)
        for e in p.of_unit(task_of(p, "<locals>.second"))
        if e.res in (sem_rid, flag_rid) and e.kind != "unit.yield"
    ]
    assert s == [
        ("sync.notify", -1),
        ("unit.block", Reason.ACQUIRE),
        ("lock.acquired", 0),
        ("lock.release", 0),
    ]
    m = [(e.kind, e.res) for e in p.of_unit(task_of(p, "<locals>.main")) if e.res == flag_rid]
    assert m == [("unit.wake", flag_rid)]


def test_queue_puts_and_gets_pair_by_token(agent, marks):
    """asyncio.Queue: one put and one get per item with the same token; waits on both sides."""
    q: asyncio.Queue[int] = asyncio.Queue(maxsize=1)  # @queue
    got: list[int] = []

    async def consumer() -> None:
        for _ in range(3):
            got.append(await q.get())  # @get

    async def producer() -> None:
        for i in range(3):
            await q.put(i)  # @put

    async def main() -> None:
        await asyncio.gather(consumer(), producer())

    asyncio.run(main())
    assert got == [0, 1, 2]
    p = agent.stop()
    rid = p.resource("q")
    assert p.locations[p.resources[rid]["loc"]]["line"] == marks["queue"]
    c, pr = task_of(p, "<locals>.consumer"), task_of(p, "<locals>.producer")
    puts = [e for e in p.of_unit(pr) if e.kind == "queue.put"]
    gets = [e for e in p.of_unit(c) if e.kind == "queue.get"]
    assert len(puts) == len(gets) == 3
    assert {line(p, e) for e in puts} == {marks["put"]}
    assert {line(p, e) for e in gets} == {marks["get"]}
    assert [e.arg for e in puts] == [e.arg for e in gets]
    assert all(put.time <= get.time for put, get in zip(puts, gets, strict=True))
    cons = p.of_unit(c)
    i = first(cons, "unit.block", rid)  # the consumer starts first, on an empty queue
    assert cons[i].arg == Reason.GET
    assert next(e.kind for e in cons[i + 1 :] if e.kind not in SCHEDULING) == "queue.get"
    assert any(e.kind == "unit.block" and e.arg == Reason.PUT for e in p.of_unit(pr))


@pytest.mark.parametrize(
    ("cls", "order"), [(asyncio.LifoQueue, [2, 1, 0]), (asyncio.PriorityQueue, [0, 1, 2])]
)
def test_lifo_and_priority_queues_pair_tokens_with_their_items(agent, cls, order):
    """Tokens follow the items whatever order the queue hands them out in."""

    async def main() -> list[int]:
        q = cls()
        for i in (1, 2, 0) if cls is asyncio.PriorityQueue else (0, 1, 2):
            q.put_nowait(i)
        return [q.get_nowait() for _ in range(3)]

    assert asyncio.run(main()) == order
    p = agent.stop()
    evs = [e for e in p.of_unit(task_of(p, "<locals>.main")) if e.kind.startswith("queue.")]
    put_token = {
        item: e.arg
        for item, e in zip(
            (1, 2, 0) if cls is asyncio.PriorityQueue else (0, 1, 2), evs[:3], strict=True
        )
    }
    assert [e.arg for e in evs[3:]] == [put_token[i] for i in order]


def test_asyncio_internals_are_not_resources(agent):
    """Only what the program created is a resource: not a Condition's lock, nor a Queue's event."""

    async def main() -> None:
        lock = asyncio.Lock()
        cond = asyncio.Condition()
        sem = asyncio.Semaphore(2)
        bounded = asyncio.BoundedSemaphore(1)
        ev = asyncio.Event()
        q: asyncio.Queue[int] = asyncio.Queue()
        async with lock, cond, sem, bounded:
            cond.notify_all()
            ev.set()
            await q.put(1)
            await q.get()
            q.task_done()
            await q.join()
        await asyncio.gather(asyncio.sleep(0), asyncio.wait_for(asyncio.sleep(0), 5))

    asyncio.run(main())
    p = agent.stop()
    ours = {
        (r["kind"], r.get("name"))
        for r in p.resources.values()
        if r["kind"] in ("lock", "rlock", "condition", "semaphore", "event", "queue")
        and r.get("loc")
        and "test_asyncio_hooks" in p.locations[r["loc"]]["file"]
    }
    everything = {
        (r["kind"], r.get("name"))
        for r in p.resources.values()
        if r["kind"] in ("lock", "condition", "semaphore", "event", "queue")
    }
    expected = {
        ("lock", "lock"),
        ("condition", "cond"),
        ("semaphore", "sem"),
        ("semaphore", "bounded"),
        ("event", "ev"),
        ("queue", "q"),
    }
    assert ours == expected
    assert everything == expected
    cond = p.resource("cond")
    assert [e.kind for e in p.events if e.res == cond] == [
        "lock.acquired",
        "sync.notify",
        "lock.release",
    ]


def test_a_hook_fault_never_reaches_the_program_and_is_recorded(agent, monkeypatch):
    """Errors inside the hooks are caught, counted and written as agent.fault records."""

    def broken(*args: object) -> int:
        raise ValueError("broken on purpose")

    monkeypatch.setattr(aio, "_await_key", broken)
    monkeypatch.setattr(aio, "_current_task", broken)
    lock = asyncio.Lock()

    async def child() -> int:
        async with lock:
            return 7

    async def main() -> int:
        async with lock:
            t = asyncio.create_task(child())
            await asyncio.sleep(0)  # the child blocks on the lock
        return await t  # a join: _await_key fails after this step

    assert asyncio.run(main()) == 7
    p = agent.stop()
    wheres = {f["where"] for f in p.faults.values()}
    assert {"asyncio step", "asyncio block"} <= wheres
    assert all("broken on purpose" in f["message"] for f in p.faults.values())
    assert len([e for e in p.events if e.kind == "agent.fault"]) == len(p.faults)
    lock_rid = p.resource("lock")
    kinds = [e.kind for e in p.of_unit(task_of(p, "child")) if e.kind not in SCHEDULING]
    assert kinds == [
        "unit.start",
        "unit.block",
        "agent.fault",
        "lock.acquired",
        "lock.release",
        "unit.end",
    ]
    assert [e.res for e in p.of_unit(task_of(p, "child")) if e.kind.startswith("lock.")] == [
        lock_rid,
        lock_rid,
    ]


@pytest.mark.parametrize(
    ("module", "succeed"),
    [pytest.param(aio_sync, 3, id="in aio_sync"), pytest.param(aio, 2, id="in aio after aio_sync")],
)
def test_a_failed_install_leaves_asyncio_as_it_was(monkeypatch, module, succeed):
    """If patching fails halfway, in either module, what was already patched is put back."""
    run, create_task = asyncio.events.Handle._run, asyncio.BaseEventLoop.create_task
    lock_dict, queue_dict = dict(vars(asyncio.Lock)), dict(vars(asyncio.Queue))
    done: list[str] = []
    real_set = module._set

    def set_some(cls: type, attr: str, value: object) -> None:
        if len(done) == succeed:
            raise AttributeError(f"{cls.__name__} has no {attr} in this Python")
        done.append(attr)
        real_set(cls, attr, value)

    monkeypatch.setattr(module, "_set", set_some)
    with pytest.raises(AttributeError, match="in this Python"):
        aio.install()
    assert asyncio.events.Handle._run is run
    assert asyncio.BaseEventLoop.create_task is create_task
    assert dict(vars(asyncio.Lock)) == lock_dict
    assert dict(vars(asyncio.Queue)) == queue_dict
    assert not aio._patched
    assert not aio_sync._patched


# --- in a child process: real kills, other interpreters ------------------------------------

INTERPRETERS = [
    pytest.param(sys.executable, id="this"),
    pytest.param("/root/.pyenv/versions/3.12.1/bin/python", id="3.12"),
    pytest.param("/root/.pyenv/versions/3.13.0/bin/python", id="3.13"),
]


def _need(python: str) -> None:
    if not os.path.exists(python):
        pytest.skip(f"{python} is not installed here")


DEADLOCK = """
    import asyncio

    async def main():
        left = asyncio.Lock()
        right = asyncio.Lock()
        has_left, has_right = asyncio.Event(), asyncio.Event()

        async def one():
            async with left:
                has_left.set()
                await has_right.wait()
                async with right:  # @one-right
                    pass

        async def two():
            async with right:
                has_right.set()
                await has_left.wait()
                async with left:  # @two-left
                    pass

        await asyncio.gather(asyncio.create_task(one(), name="one"),
                             asyncio.create_task(two(), name="two"))

    asyncio.run(main())
"""


def _last_wait(p: ProcessTrace, unit: int) -> Ev:
    return [e for e in p.of_unit(unit) if e.kind not in SCHEDULING][-1]


@pytest.mark.parametrize("python", INTERPRETERS)
def test_two_tasks_deadlocked_on_two_locks_end_blocked_on_each_other(tmp_path, python, marks_of):
    """Killed mid-deadlock, each task's last wait is a block on the lock the other holds."""
    _need(python)
    out = str(tmp_path / "run")
    proc = start_program(DEADLOCK, out, python=python)

    def both_blocked() -> bool:
        p = read_run(out)["prog"]
        one, two = p.unit_named("one"), p.unit_named("two")
        return _last_wait(p, one).kind == _last_wait(p, two).kind == "unit.block"

    try:
        wait_for(both_blocked, what="both tasks blocked")
    finally:
        kill_group(proc)
    p = read_run(out)["prog"]
    at = marks_of(DEADLOCK)
    left, right = p.resource("left"), p.resource("right")
    one, two = p.unit_named("one"), p.unit_named("two")
    for unit, wants, holds, mark in (
        (one, right, left, "one-right"),
        (two, left, right, "two-left"),
    ):
        last = _last_wait(p, unit)
        assert (last.kind, last.res, last.arg, line(p, last)) == (
            "unit.block",
            wants,
            Reason.ACQUIRE,
            at[mark],
        )
        assert p.of_unit(unit)[-1].kind == "unit.yield"
        holder = [e.unit for e in p.events if e.res == wants and e.kind == "lock.acquired"]
        assert holder == [two if unit == one else one]
        assert not [e for e in p.events if e.res == holds and e.kind == "lock.release"]


EVERYTHING = """
    import asyncio

    async def child(gate):
        await gate.wait()
        return 1

    async def open_gate(gate):
        gate.set()

    async def main():
        lock = asyncio.Lock()
        q = asyncio.Queue()
        gate = asyncio.Event()
        kid = asyncio.create_task(child(gate), name="kid")
        opener = asyncio.create_task(open_gate(gate))
        await kid  # @prog-join
        gate2 = asyncio.Event()
        opener2 = asyncio.create_task(open_gate(gate2))
        await asyncio.gather(child(gate2), child(gate2))  # @prog-gather

        async def holder(held):
            async with lock:
                held.set()
                await asyncio.sleep(0)

        async def waiter(held):
            await held.wait()
            async with lock:  # @prog-contended
                await q.put(5)

        held = asyncio.Event()
        await asyncio.gather(holder(held), waiter(held))
        gate3 = asyncio.Event()
        late = asyncio.create_task(open_gate(gate3))  # @prog-create-late
        late.set_name("late")
        async with asyncio.TaskGroup() as tg:  # @prog-group
            tg.create_task(child(gate3))
        return await q.get()

    print(asyncio.run(main()))
"""


@pytest.mark.parametrize("python", INTERPRETERS)
def test_the_trace_is_the_same_on_each_interpreter(tmp_path, python, marks_of):
    """Units, join, gather, task group, lock contention and queue events, and where each is
    located, on 3.11, 3.12 and 3.13 alike."""
    _need(python)
    out = str(tmp_path / "run")
    r = run_program(EVERYTHING, out, python=python)
    assert (r.returncode, r.stdout.strip()) == (0, "5"), r.stderr
    p = read_run(out)["prog"]
    assert not p.faults
    at = marks_of(EVERYTHING)
    main, kid = task_of(p, "main"), p.unit_named("kid")
    evs = p.of_unit(main)
    join = [e for e in evs if e.kind in ("unit.block", "join.done") and e.arg in (Reason.JOIN, kid)]
    assert [(e.kind, line(p, e)) for e in join] == [
        ("unit.block", at["prog-join"]),
        ("join.done", at["prog-join"]),
    ]
    gather = [e for e in evs if e.kind == "unit.block" and e.arg == Reason.AWAIT]
    assert line(p, gather[0]) == at["prog-gather"]  # and the second gather, of the lock users
    assert len(p.resources[gather[0].res]["waits_for"].split(",")) == 2
    assert line(p, gather[-1]) == at["prog-group"]
    for ev, mark in (
        (join[0], "prog-join"),
        (gather[0], "prog-gather"),
        (gather[-1], "prog-group"),
    ):
        assert p.locations[p.resources[ev.res]["loc"]]["line"] == at[mark]
    assert p.locations[p.units[p.unit_named("late")]["loc"]]["line"] == at["prog-create-late"]
    lock = next(rid for rid, r in p.resources.items() if r["kind"] == "lock")
    w = p.of_unit(task_of(p, "waiter"))
    i = first(w, "unit.block", lock)
    assert line(p, w[i]) == at["prog-contended"]
    assert [e.kind for e in w[i : i + 4]] == [
        "unit.block",
        "unit.yield",
        "unit.run",
        "lock.acquired",
    ]
    q = next(rid for rid, r in p.resources.items() if r["kind"] == "queue")
    assert [e.arg for e in p.events if e.kind == "queue.put" and e.res == q] == [
        e.arg for e in p.events if e.kind == "queue.get" and e.res == q
    ]


EAGER = """
    import asyncio

    async def quick():
        return 1

    async def slow(gate):
        await gate.wait()

    async def main():
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
        gate = asyncio.Event()
        assert await asyncio.create_task(quick(), name="quick") == 1
        t = asyncio.create_task(slow(gate), name="slow")
        gate.set()
        await t

    asyncio.run(main())
"""


@pytest.mark.parametrize("python", INTERPRETERS[1:])
def test_eager_tasks_record_their_first_step_as_their_own(tmp_path, python):
    """With 3.12's eager task factory the first step runs inside create_task: it is still the
    task's, bracketed and with its waits, after the creator's unit.create."""
    _need(python)
    out = str(tmp_path / "run")
    r = run_program(EAGER, out, python=python)
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    quick, slow, main = p.unit_named("quick"), p.unit_named("slow"), task_of(p, "main")
    gate = p.resource("gate")
    assert [e.kind for e in p.of_unit(quick)] == ["unit.start", "unit.end"]
    assert [(e.kind, e.res) for e in p.of_unit(slow)] == [
        ("unit.start", 0),
        ("unit.block", gate),
        ("unit.yield", 0),
        ("unit.run", 0),
        ("unit.wake", gate),
        ("unit.end", 0),
    ]
    creates = [e for e in p.of_unit(main) if e.kind == "unit.create"]
    assert [e.arg for e in creates] == [quick, slow]
    assert creates[0].time <= p.of_unit(quick)[0].time
    assert not [e for e in p.of_unit(main) if e.res == gate and e.kind == "unit.block"]


@pytest.mark.parametrize("python", INTERPRETERS)
def test_the_agent_waits_for_the_program_to_import_asyncio(tmp_path, python):
    """Started before asyncio is imported, the agent does not import it, and still records
    the program's tasks once it does."""
    _need(python)
    out = str(tmp_path / "run")
    r = run_program(
        """
        import sys
        print("asyncio" in sys.modules)
        import asyncio
        assert type(asyncio.__loader__).__name__ == "SourceFileLoader"  # its own, back
        assert asyncio.__spec__.loader is asyncio.__loader__

        async def main():
            await asyncio.create_task(asyncio.sleep(0), name="napper")

        asyncio.run(main())
    """,
        out,
        python=python,
    )
    assert (r.returncode, r.stdout.strip()) == (0, "False"), r.stderr
    p = read_run(out)["prog"]
    assert p.of_unit(p.unit_named("napper"))[0].kind == "unit.start"
