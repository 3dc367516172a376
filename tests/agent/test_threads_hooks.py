"""The threading hooks: threads become units; locks, conditions, events, semaphores and
barriers record the events docs/format.md promises, at the program's own source lines."""

from __future__ import annotations

from tracekit import kill_group, read_run, run_program, start_program, wait_for


def test_thread_units_and_lock_events(tmp_path):
    """Threads are units with names and parents; lock ops are acquired/release at their lines."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading
        counter_lock = threading.Lock()
        total = 0
        def work():
            global total
            for _ in range(100):
                with counter_lock:
                    total += 1
        ts = [threading.Thread(target=work, name=f"w{i}") for i in range(3)]
        for t in ts: t.start()
        for t in ts: t.join()
        print(total)
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "300"
    p = read_run(out)["prog"]
    lock = p.resource("counter_lock")
    assert p.resources[lock]["kind"] == "lock"
    main = p.unit_named("MainThread")
    for i in range(3):
        u = p.unit_named(f"w{i}")
        assert p.units[u]["kind"] == "thread"
        assert p.units[u]["parent"] == main
        evs = p.of_unit(u)
        assert evs[0].kind == "unit.start" and evs[-1].kind == "unit.end"
        acq = [e for e in evs if e.kind == "lock.acquired" and e.res == lock]
        rel = [e for e in evs if e.kind == "lock.release" and e.res == lock]
        assert len(acq) == len(rel) == 100
        assert {p.where(e) for e in acq} == {"prog.py:8"}
    # every release precedes the next acquire by another thread (hand-off order by time)
    holder = None
    for e in p.events:
        if e.res != lock:
            continue
        if e.kind == "lock.acquired":
            assert holder is None, "two holders at once"
            holder = e.unit
        elif e.kind == "lock.release":
            assert holder == e.unit
            holder = None
    joins = [e for e in p.of_unit(main) if e.kind == "join.done"]
    assert len(joins) == 3


def test_contended_lock_blocks_then_acquires(tmp_path):
    """A thread that finds the lock taken writes unit.block, then lock.acquired."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import sys, threading, time
        gate = threading.Lock()
        gate.acquire()
        def waiter():
            with gate:
                pass
        t = threading.Thread(target=waiter, name="waiter")
        t.start()
        # release only once the waiter is inside the blocking acquire (its current frame)
        while True:
            f = sys._current_frames().get(t.ident)
            if f is not None and f.f_code.co_name == "_blocking_acquire":
                break
            time.sleep(0)
        gate.release()
        t.join()
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    gate = p.resource("gate")
    w = p.unit_named("waiter")
    kinds = [(e.kind, e.res) for e in p.of_unit(w) if e.res == gate]
    assert kinds == [("unit.block", gate), ("lock.acquired", gate), ("lock.release", gate)]


def test_condition_wait_notify_and_rlock(tmp_path):
    """Condition.wait releases the lock, blocks, wakes on notify and re-acquires, in that order."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading
        cond = threading.Condition()
        items = []
        def consumer():
            with cond:
                while not items:
                    cond.wait()
                items.pop()
        t = threading.Thread(target=consumer, name="consumer")
        t.start()
        while True:
            with cond:
                if cond._waiters:
                    items.append(1)
                    cond.notify()
                    break
        t.join()
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    cond = p.resource("cond")
    c = p.unit_named("consumer")
    seq = [e.kind for e in p.of_unit(c) if e.kind not in ("unit.start", "unit.end")]
    i = seq.index("unit.block")
    assert seq[i - 1] == "lock.release"
    assert seq[i : i + 3] == ["unit.block", "unit.wake", "lock.acquired"] or seq[i : i + 4] == [
        "unit.block",
        "unit.wake",
        "unit.block",
        "lock.acquired",
    ]
    notify = [e for e in p.events if e.kind == "sync.notify" and e.res == cond]
    assert len(notify) == 1
    rlock = [rid for rid, r_ in p.resources.items() if r_["kind"] == "rlock"]
    assert rlock, "a Condition without a lock gets a recorded RLock"


def test_internal_primitives_are_not_user_resources(tmp_path):
    """Locks inside queue.Queue, Event and Semaphore never appear as user resources."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading, queue, concurrent.futures
        q = queue.Queue()
        ev = threading.Event()
        sem = threading.Semaphore(2)
        with sem:
            q.put(1); q.get()
        ev.set(); ev.wait()
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            list(ex.map(abs, range(10)))
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    kinds = sorted(
        (r_["kind"], r_.get("name")) for r_ in p.resources.values() if r_["kind"] not in ("join",)
    )
    names = {n for _, n in kinds}
    assert {"q", "ev", "sem"} <= names
    assert not [k for k in kinds if k[0] in ("lock", "rlock", "condition")], kinds


def test_event_semaphore_barrier(tmp_path):
    """Event.set notifies waiters; semaphores are counted locks; barriers record arrivals."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading
        start = threading.Event()
        slots = threading.BoundedSemaphore(1)
        meet = threading.Barrier(2)
        def party(n):
            start.wait()
            with slots:
                pass
            meet.wait()
        ts = [threading.Thread(target=party, args=(i,), name=f"p{i}") for i in range(2)]
        for t in ts: t.start()
        start.set()
        for t in ts: t.join()
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    start, slots, meet = p.resource("start"), p.resource("slots"), p.resource("meet")
    assert p.resources[slots]["kind"] == "semaphore"
    assert [e.kind for e in p.events if e.res == start and e.kind == "sync.notify"] == [
        "sync.notify"
    ]
    for name in ("p0", "p1"):
        u = p.unit_named(name)
        mine = [(e.kind, e.res) for e in p.of_unit(u)]
        assert ("lock.acquired", slots) in mine and ("lock.release", slots) in mine
        assert ("sync.arrive", meet) in mine
        assert mine.index(("unit.block", meet)) < mine.index(("unit.wake", meet))


def test_killed_while_deadlocked_leaves_readable_blocked_state(tmp_path):
    """Two threads deadlocked on two locks, killed with SIGKILL: each one's last event is a
    block on the lock the other holds, and the files read without problems."""
    out = str(tmp_path / "run")
    proc = start_program(
        """
        import threading
        lock_a = threading.Lock()
        lock_b = threading.Lock()
        both = threading.Barrier(2)
        def ab():
            with lock_a:
                both.wait()
                with lock_b:
                    pass
        def ba():
            with lock_b:
                both.wait()
                with lock_a:
                    pass
        threading.Thread(target=ab, name="ab").start()
        threading.Thread(target=ba, name="ba").start()
    """,
        out,
    )

    def both_blocked() -> bool:
        p = read_run(out)["prog"]
        a, b = p.resource("lock_a"), p.resource("lock_b")
        last = {u: p.of_unit(u)[-1] for u in (p.unit_named("ab"), p.unit_named("ba"))}
        return {(e.kind, e.res) for e in last.values()} == {("unit.block", a), ("unit.block", b)}

    try:
        wait_for(both_blocked, what="both threads blocked")
    finally:
        kill_group(proc)
    p = read_run(out)["prog"]
    assert p.problems == []
    ab, ba = p.unit_named("ab"), p.unit_named("ba")
    a, b = p.resource("lock_a"), p.resource("lock_b")
    assert p.of_unit(ab)[-1].res == b and p.where(p.of_unit(ab)[-1]) == "prog.py:9"
    assert p.of_unit(ba)[-1].res == a and p.where(p.of_unit(ba)[-1]) == "prog.py:14"


def test_locks_unpacked_on_one_line_get_their_own_names(tmp_path):
    """``a, b = Lock(), Lock()`` names the locks a and b (threading and asyncio alike),
    not both after the line; so does ``c = Lock(); d = Lock()``; ``self.`` is dropped as
    for a single assignment; a name in any script is a name; ``app["k"] = Lock()`` is k."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import asyncio, threading
        left, right = threading.Lock(), threading.RLock()
        class Pair:
            def __init__(self):
                self.first, self.second = [threading.Lock(), threading.Lock()]
        pair = Pair()
        c = threading.Lock(); d = threading.Lock()
        with c, d:
            pass
        锁_ünï = threading.Lock()
        with 锁_ünï:
            pass
        app = {}
        app["cache_lock"] = threading.Lock()  # app state, a registry: named by its key
        with app["cache_lock"]:
            pass
        async def main():
            a, b = asyncio.Lock(), asyncio.Lock()
            async with a:
                async with b:
                    pass
        with left, right, pair.first, pair.second:
            pass
        asyncio.run(main())
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    names = sorted(str(res.get("name")) for res in p.resources.values())
    for name in ("left", "right", "first", "second", "a", "b", "c", "d", "锁_ünï", "cache_lock"):
        assert name in names, names
    assert p.resources[p.resource("right")]["kind"] == "rlock"
