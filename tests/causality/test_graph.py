"""Happens-before edges: one test per rule of docs/format.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.tracetext import chunk, process, write_trace
from willowisp.causality.graph import EdgeKind, HBGraph, build
from willowisp.causality.hops import match
from willowisp.ingest import load
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K
from wispkit import wisp

HEAD = process("aa", 1, "svc", run_root=1)


def _graph(tmp_path: Path, *lines: str) -> tuple[Trace, HBGraph]:
    write_trace(tmp_path / "a.wtrace", chunk(HEAD, *lines))
    trace = load([tmp_path])
    return trace, build(trace, match(trace))


def _edges(trace: Trace, g: HBGraph, kind: EdgeKind) -> list[tuple[int, int]]:
    """Edges of a kind as (src time, dst time): the tests give every event its own time."""
    m = g.kind == kind
    t = trace.events.time
    return sorted(zip(t[g.src[m]].tolist(), t[g.dst[m]].tolist(), strict=True))


def test_spawn_and_join(tmp_path: Path) -> None:
    """unit.create -> the child's unit.start; the child's unit.end -> join.done naming it."""
    trace, g = _graph(
        tmp_path,
        'rec resource 1 kind="join" unit=2',
        "ev 10 unit.create u=1 a=2",
        "ev 20 unit.start u=2 a=1",
        "ev 30 unit.end u=2",
        "ev 40 join.done u=1 r=1 a=2",
    )
    assert _edges(trace, g, EdgeKind.SPAWN) == [(10, 20)]
    assert _edges(trace, g, EdgeKind.JOIN) == [(30, 40)]


def test_lock_release_to_next_acquire_of_another_unit(tmp_path: Path) -> None:
    """release -> the next acquire of that lock; same-unit re-acquisition draws nothing."""
    trace, g = _graph(
        tmp_path,
        'rec resource 1 kind="lock"',
        'rec resource 2 kind="lock"',
        "ev 10 lock.acquired u=1 r=1",
        "ev 20 lock.release u=1 r=1",
        "ev 25 lock.acquired u=2 r=2",  # another lock: no edge from 20
        "ev 30 lock.acquired u=1 r=1",
        "ev 40 lock.release u=1 r=1",
        "ev 50 lock.acquired u=2 r=1",
        "ev 60 lock.release u=2 r=1",
    )
    assert _edges(trace, g, EdgeKind.LOCK) == [(40, 50)]


def test_rlock_edges_follow_depth(tmp_path: Path) -> None:
    """For an rlock only the release to depth 0 hands the lock over."""
    trace, g = _graph(
        tmp_path,
        'rec resource 1 kind="rlock"',
        "ev 10 lock.acquired u=1 r=1 a=1",
        "ev 11 lock.acquired u=1 r=1 a=2",
        "ev 12 lock.release u=1 r=1 a=1",
        "ev 13 lock.release u=1 r=1",
        "ev 20 lock.acquired u=2 r=1 a=1",
    )
    assert _edges(trace, g, EdgeKind.LOCK) == [(13, 20)]


def test_queue_pairs_by_token_in_fifo_order(tmp_path: Path) -> None:
    """put -> get with the same token on the same queue; a reused token pairs in order;
    token 0 (unknown) pairs with nothing."""
    trace, g = _graph(
        tmp_path,
        'rec resource 1 kind="queue"',
        'rec resource 2 kind="queue"',
        "ev 10 queue.put u=1 r=1 a=7",
        "ev 11 queue.put u=1 r=2 a=7",
        "ev 20 queue.get u=2 r=1 a=7",
        "ev 30 queue.put u=1 r=1 a=7",
        "ev 40 queue.get u=2 r=1 a=7",
        "ev 50 queue.get u=3 r=2 a=7",
        "ev 60 queue.put u=1 r=1",
        "ev 70 queue.get u=2 r=1",
    )
    assert _edges(trace, g, EdgeKind.QUEUE) == [(10, 20), (11, 50), (30, 40)]


def test_notify_to_wake(tmp_path: Path) -> None:
    """The latest notify on a resource -> an ok wake on it; a timed-out wake gets none."""
    trace, g = _graph(
        tmp_path,
        'rec resource 1 kind="event"',
        "ev 10 unit.block u=2 r=1 a=5",
        "ev 15 unit.block u=3 r=1 a=5",
        "ev 18 unit.wake u=3 r=1 a=1",
        "ev 20 sync.notify u=1 r=1 a=-1",
        "ev 30 unit.wake u=2 r=1",
    )
    assert _edges(trace, g, EdgeKind.NOTIFY) == [(20, 30)]
    assert len(g.incoming(int((trace.events.time == 30).nonzero()[0][0]))) == 1


def test_every_arrival_at_a_barrier_precedes_each_departure(tmp_path: Path) -> None:
    """Three parties: each one's arrival -> every other's ok departure (not only the last
    arrival: the QA's false races after threading.Barrier). A fast party arriving again
    before a slow one left starts the next generation; a broken barrier's wake gets none."""
    trace, g = _graph(
        tmp_path,
        'rec resource 1 kind="barrier"',
        "ev 10 sync.arrive u=1 r=1 a=1",
        "ev 11 unit.block u=1 r=1 a=5",
        "ev 20 sync.arrive u=2 r=1 a=2",
        "ev 21 unit.block u=2 r=1 a=5",
        "ev 30 sync.arrive u=3 r=1 a=3",
        "ev 31 unit.block u=3 r=1 a=5",
        "ev 40 unit.wake u=1 r=1",
        "ev 50 sync.arrive u=1 r=1 a=1",  # generation 2, before 2 and 3 left generation 1
        "ev 51 unit.block u=1 r=1 a=5",
        "ev 60 unit.wake u=2 r=1",
        "ev 70 unit.wake u=3 r=1",
        "ev 80 unit.wake u=1 r=1 a=3",  # broken: no edge
    )
    assert _edges(trace, g, EdgeKind.NOTIFY) == [
        (10, 60),
        (10, 70),
        (20, 40),
        (20, 70),
        (30, 40),
        (30, 60),
    ]


def test_awaited_units_end_before_the_wake(tmp_path: Path) -> None:
    """A future resource's waits_for units: each end before an uncancelled wake on it ->
    that wake (a gather resumed because its tasks ended). An end after the wake (a gather
    that failed early) and a cancelled waiter's wake get none; a malformed entry is skipped."""
    trace, g = _graph(
        tmp_path,
        'rec resource 1 kind="future" waits_for="2,3,x,99999999999"',
        'rec resource 2 kind="future" waits_for="2"',
        "ev 10 unit.block u=1 r=1 a=12",
        "ev 12 unit.block u=4 r=2 a=12",
        "ev 30 unit.end u=2",
        "ev 35 unit.end u=3",
        "ev 40 unit.wake u=1 r=1 a=3",  # error: unit 3 failed
        "ev 42 unit.wake u=4 r=2 a=2",  # cancelled
        "ev 45 unit.block u=1 r=1 a=12",
        "ev 50 unit.wake u=1 r=1",
    )
    assert _edges(trace, g, EdgeKind.JOIN) == [(30, 40), (30, 50), (35, 40), (35, 50)]


def test_gather_of_real_tasks_waits_for_their_ends(tmp_path: Path) -> None:
    """A real asyncio program recorded by the agent: awaiting a gather of three tasks is
    ordered after each task's end (the what-if and critical path follow that edge)."""
    program = tmp_path / "gather.py"
    program.write_text(
        "import asyncio\n"
        "async def leaf(n):\n"
        "    await asyncio.sleep(0.001 * n)\n"
        "async def main():\n"
        "    tasks = [asyncio.create_task(leaf(n), name=f'leaf{n}') for n in (1, 2, 3)]\n"
        "    await asyncio.gather(*tasks)\n"
        "asyncio.run(main())\n"
    )
    out = tmp_path / "run"
    done = wisp("run", "--out", str(out), "--", sys.executable, str(program))
    assert done.returncode == 0, done.stderr
    trace = load([out])
    g = build(trace, match(trace))
    leaves = {u.index: u.name for u in trace.units if u.name.startswith("leaf")}
    assert len(leaves) == 3
    joins = g.kind == EdgeKind.JOIN
    ev = trace.events
    fed = ev.unit[g.src[joins]].tolist()
    assert sorted(leaves[u] for u in fed if u in leaves) == ["leaf1", "leaf2", "leaf3"]
    (waiter,) = set(ev.unit[g.dst[joins]].tolist())
    assert trace.units[waiter].name not in leaves.values()
    assert set(ev.kind[g.dst[joins]].tolist()) == {K.UNIT_WAKE}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 2)), min_size=1, max_size=30))
def test_lock_edges_follow_every_hand_off(
    tmp_path_factory: pytest.TempPathFactory, holds: list[tuple[int, int]]
) -> None:
    """For any sequence of holds of two locks by three units: one LOCK edge per hand-off to
    another unit, each from that lock's previous release to the acquire, forward in time."""
    lines = ['rec resource 1 kind="lock"', 'rec resource 2 kind="lock"']
    t = 0
    last: dict[int, tuple[int, int]] = {}  # lock -> (unit, release time) of its last hold
    want = []
    for unit, lock in holds:
        t += 10
        lines.append(f"ev {t} lock.acquired u={unit} r={lock}")
        if lock in last and last[lock][0] != unit:
            want.append((last[lock][1], t))
        t += 10
        lines.append(f"ev {t} lock.release u={unit} r={lock}")
        last[lock] = (unit, t)
    trace, g = _graph(tmp_path_factory.mktemp("g"), *lines)
    assert _edges(trace, g, EdgeKind.LOCK) == sorted(want)
    assert (trace.events.time[g.src] < trace.events.time[g.dst]).all()
