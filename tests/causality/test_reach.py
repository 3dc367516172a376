"""The happens-before index agrees with a breadth-first search, on random graphs and on a
real trace."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.tracetext import chunk, process, write_trace
from willowisp.causality.link import link
from willowisp.causality.reach import ReachIndex
from willowisp.ingest import load


def _brute(n: int, unit: list[int], src: list[int], dst: list[int]) -> list[set[int]]:
    """Per event, every event it happens before: BFS over program order and the edges."""
    succ: list[list[int]] = [[] for _ in range(n)]
    last: dict[int, int] = {}
    for e in range(n):
        if unit[e] in last:
            succ[last[unit[e]]].append(e)
        last[unit[e]] = e
    for a, b in zip(src, dst, strict=True):
        succ[a].append(b)
    out = []
    for e in range(n):
        seen: set[int] = set()
        todo = deque(succ[e])
        while todo:
            x = todo.popleft()
            if x not in seen:
                seen.add(x)
                todo.extend(succ[x])
        out.append(seen)
    return out


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], list[int]]:
    """Events 0..n-1 in a topological order (index), each in one of a few units; edges go
    forwards in index between units; times are the index, jittered so some edges run
    backwards in time (the sweep must repair its order)."""
    n = draw(st.integers(2, 40))
    units = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n))
    src, dst = [], []
    for x, y in pairs:
        lo, hi = min(x, y), max(x, y)
        if lo != hi and units[lo] != units[hi]:
            src.append(lo)
            dst.append(hi)
    jitter = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    time = [10 * i + j for i, j in enumerate(jitter)]
    return units, time, src, dst


@settings(max_examples=300, deadline=None)
@given(dag=dags(), every=st.integers(1, 3))
def test_index_agrees_with_breadth_first_search(
    dag: tuple[list[int], list[int], list[int], list[int]], every: int
) -> None:
    """For every pair of the events the index was built for, ordered(a, b) is exactly BFS
    reachability, and last_before names the latest event of a unit that reaches b."""
    units, time, src, dst = dag
    n = len(units)
    truth = _brute(n, units, src, dst)
    asked = list(range(0, n, every))
    index = ReachIndex.from_edges(
        np.array(units, np.int32), np.array(time, np.int64), src, dst, asked
    )
    assert index.dropped == 0
    a = np.repeat(asked, len(asked))
    b = np.tile(asked, len(asked))
    got = index.ordered(a, b)
    want = np.array([int(y) in truth[int(x)] for x, y in zip(a, b, strict=True)])
    assert (got == want).all()
    first = {units[x]: x for x in reversed(asked)}  # each tracked unit's first asked event
    for u, lowest in first.items():
        for y in asked:
            if units[y] != u:
                reaching = [e for e in range(lowest, n) if units[e] == u and y in truth[e]]
                assert index.last_before(y, u) == max(reaching, default=-1)


def test_a_cycle_drops_the_edge_that_closes_it() -> None:
    """Edges that close a cycle (damaged input: an edge into the past) are left out and
    counted, not looped on; the rest still answer."""
    units = np.array([0, 1, 0, 1], np.int32)
    time = np.arange(4, dtype=np.int64) * 10
    # 2 -> 1, then 1 -> 3 in program order, 3 -> 0, 0 -> 2 in program order: a cycle
    index = ReachIndex.from_edges(units, time, [2, 3], [1, 0], range(4))
    assert index.dropped == 1
    assert index.happens_before(2, 3)  # 2 -> 1 -> 3 survives


def test_an_event_not_asked_for_is_refused() -> None:
    """Naming an event the index was not built for is an error, not a wrong answer."""
    units = np.array([0, 0, 1], np.int32)
    index = ReachIndex.from_edges(units, np.arange(3, dtype=np.int64), [1], [2], [1, 2])
    assert index.happens_before(1, 2)
    with pytest.raises(ValueError, match="not one the index was built for"):
        index.ordered(np.array([0]), np.array([2]))


def test_lock_and_request_edges_of_a_real_trace(tmp_path: Path) -> None:
    """A lock hand-off orders two threads' work; a third thread is ordered with neither."""
    write_trace(
        tmp_path / "a.wtrace",
        chunk(
            process("aa", 1, "svc", run_root=1),
            'rec resource 1 kind="lock"',
            "ev 10 unit.start u=1",
            "ev 20 lock.acquired u=1 r=1",
            "ev 30 lock.release u=1 r=1",
            "ev 40 lock.acquired u=2 r=1",
            "ev 50 lock.release u=2 r=1",
            "ev 45 gc.begin u=3",
            "ev 55 gc.end u=3",
        ),
    )
    trace = load([tmp_path])
    t = trace.events.time.tolist()
    at = {time: i for i, time in enumerate(t)}
    index = ReachIndex.build(link(trace), list(at.values()))
    assert index.happens_before(at[10], at[40])
    assert not index.happens_before(at[40], at[30])
    assert index.concurrent(np.array([at[45]]), np.array([at[20]])).all()
