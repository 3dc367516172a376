"""Cost of the asyncio hooks per task step, with and without the agent, in the same run.

Not a test: prints figures and ratios. Each workload runs under a fresh event loop, best of
``--repeat`` runs, alternating plain and recorded runs so both see the same machine state.

  steps      N tasks each awaiting ``asyncio.sleep(0)`` M times: a bare step (unit.run and
             unit.yield, nothing else recorded).
  lock       the same steps, each also taking and releasing an uncontended asyncio.Lock.
  join       a task awaiting another task that takes one more step: the join block,
             join.done and the child's create/start/end on top of the steps.
  callbacks  loop.call_soon callbacks that are not task steps: the miss path of
             Handle._run every callback pays.
  map        the task -> unit lookup three ways, per lookup (why aio.py keys by id()).

Usage: python bench/bench_asyncio_steps.py [--tasks N] [--steps M] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import timeit
import weakref
from collections.abc import Callable, Coroutine
from typing import Any


async def steps(tasks: int, per_task: int) -> int:
    async def worker() -> None:
        for _ in range(per_task):
            await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return tasks * (per_task + 1)


async def locked_steps(tasks: int, per_task: int) -> int:
    lock = asyncio.Lock()

    async def worker() -> None:
        for _ in range(per_task):
            async with lock:
                pass
            await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return tasks * (per_task + 1)


async def joins(tasks: int, per_task: int) -> int:
    async def child() -> None:
        await asyncio.sleep(0)

    async def worker() -> None:
        for _ in range(per_task):
            await asyncio.create_task(child())

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return tasks * (per_task * 3 + 1)  # per join: the parent resumes, the child runs twice


async def callbacks(tasks: int, per_task: int) -> int:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    n = tasks * per_task
    left = [n]

    def tick() -> None:
        left[0] -= 1
        if left[0]:
            loop.call_soon(tick)
        else:
            done.set_result(None)

    loop.call_soon(tick)
    await done
    return n


Workload = Callable[[int, int], Coroutine[Any, Any, int]]


def best_ns_per_step(work: Workload, tasks: int, per_task: int) -> float:
    loop = asyncio.new_event_loop()
    try:
        t0 = time.perf_counter_ns()
        n = loop.run_until_complete(work(tasks, per_task))
        return (time.perf_counter_ns() - t0) / n
    finally:
        loop.close()


def compare(name: str, work: Workload, args: argparse.Namespace, out: str) -> None:
    import willowisp
    from willowisp.agent import recorder

    plain: list[float] = []
    traced: list[float] = []
    dropped = 0
    best_ns_per_step(work, args.tasks, args.steps)  # warm-up: caches, allocator, CPU clock
    for _ in range(args.repeat):
        plain.append(best_ns_per_step(work, args.tasks, args.steps))
        willowisp.start(out=out)
        rec = recorder.RECORDER
        assert rec is not None
        traced.append(best_ns_per_step(work, args.tasks, args.steps))
        willowisp.stop()
        dropped += rec.total_dropped
    base, with_agent = min(plain), min(traced)
    note = f"  ({dropped} events dropped)" if dropped else ""
    print(
        f"{name:10s} {base:8.0f} ns plain  {with_agent:8.0f} ns recorded  "
        f"+{with_agent - base:6.0f} ns  {with_agent / base:5.2f}x{note}"
    )


class _Info:
    __slots__ = ("unit",)

    def __init__(self, unit: int) -> None:
        self.unit = unit


class _Ref(weakref.ref):  # type: ignore[type-arg]
    __slots__ = ("key",)
    key: int


def bench_map() -> None:
    async def noop() -> None:
        pass

    loop = asyncio.new_event_loop()
    tasks = [loop.create_task(noop()) for _ in range(1000)]
    loop.run_until_complete(asyncio.gather(*tasks))
    loop.close()
    callbacks_ = [t.get_name for t in tasks]  # bound methods whose __self__ is the task
    by_id = {id(t): _Info(i) for i, t in enumerate(tasks)}
    refs = []
    for t in tasks:
        r = _Ref(t, lambda ref: by_id.pop(ref.key, None))
        r.key = id(t)
        refs.append(r)
    weak = weakref.WeakKeyDictionary({t: _Info(i) for i, t in enumerate(tasks)})
    strong = {t: _Info(i) for i, t in enumerate(tasks)}

    def by_id_lookup() -> None:
        for cb in callbacks_:
            by_id.get(id(getattr(cb, "__self__", None)))

    def weak_lookup() -> None:
        for cb in callbacks_:
            weak.get(getattr(cb, "__self__", None))

    def strong_lookup() -> None:
        for cb in callbacks_:
            strong.get(getattr(cb, "__self__", None))

    print("task -> unit lookup, per lookup (the getattr of __self__ included):")
    for label, fn in (
        ("dict by id(task), weakref-cleaned (used)", by_id_lookup),
        ("WeakKeyDictionary", weak_lookup),
        ("dict by task (keeps tasks alive)", strong_lookup),
    ):
        ns = min(timeit.repeat(fn, number=200, repeat=5)) / (200 * len(callbacks_)) * 1e9
        print(f"  {label:42s} {ns:6.1f} ns")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.tasks} tasks x {args.steps} awaits, best of {args.repeat}; per step:")
    with tempfile.TemporaryDirectory() as out:
        compare("steps", steps, args, out)
        compare("lock", locked_steps, args, out)
        compare("join", joins, args, out)
        compare("callbacks", callbacks, args, out)
    bench_map()


if __name__ == "__main__":
    main()
