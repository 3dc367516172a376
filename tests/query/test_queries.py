"""Queries a person would ask: longest waits, happens-before across a hop, laziness."""

from __future__ import annotations

import itertools
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from willowisp.analysis.engine import analyze
from willowisp.causality.link import link
from willowisp.causality.program_order import unit_order
from willowisp.errors import UsageError
from willowisp.ingest import load
from willowisp.query import query, session
from willowisp.query.order import PairSearch, hb_edges

from .conftest import GOLDEN, build_run


def rows(run: Path, sql: str) -> list[tuple]:
    answer = query([run], sql)
    assert answer.result is not None
    return answer.result.rows


def test_longest_lock_wait(tmp_path: Path) -> None:
    """The longest wait for a lock is the one the convoy's own events say."""
    run = build_run(GOLDEN / "lock_contention_convoy", tmp_path / "run")
    got = rows(
        run,
        "SELECT resource_name, unit, duration_ns, outcome FROM waits "
        "WHERE resource_kind = 'lock' ORDER BY duration_ns DESC NULLS LAST LIMIT 1",
    )
    # The same from the events alone: each block on a lock and the unit's next acquire.
    expected = rows(
        run,
        "SELECT b.resource_name, b.unit, min(a.time_ns) - b.time_ns AS d, 'acquired' "
        "FROM events b JOIN events a ON a.unit = b.unit AND a.resource = b.resource "
        "AND a.kind = 'lock.acquired' AND a.idx > b.idx "
        "WHERE b.kind = 'unit.block' AND b.resource_kind = 'lock' "
        "GROUP BY b.idx, b.resource_name, b.unit, b.time_ns ORDER BY d DESC LIMIT 1",
    )
    assert got == expected
    assert got[0][2] > 0


def test_longest_lock_hold_and_still_held(bank_run: Path) -> None:
    """A killed deadlock's locks are still held at the end: no release, no duration."""
    got = rows(
        bank_run,
        "SELECT lock_name, release, duration_ns FROM lock_holds ORDER BY lock_name",
    )
    assert got == [("lock_a", None, None), ("lock_b", None, None)]
    waits = rows(
        bank_run,
        "SELECT resource_name, reason, outcome FROM waits WHERE resource_kind = 'lock' "
        "ORDER BY resource_name",
    )
    assert waits == [("lock_a", "acquire", "still waiting"), ("lock_b", "acquire", "still waiting")]


def test_happens_before_across_a_hop(callback_run: Path) -> None:
    """A request's send happens before its receive, the reply before the response; never
    the other way; and two sides of different requests can be concurrent."""
    got = rows(
        callback_run,
        "SELECT name, happens_before(send, recv), happens_before(recv, send), "
        "happens_before(reply, response), happens_before(response, reply) "
        "FROM hops WHERE linked AND kind = 'rpc' ORDER BY send",
    )
    assert len(got) >= 3
    for name, fwd, back, rfwd, rback in got:
        assert (fwd, back) == (True, False), name
        assert rback in (False, None) and rfwd in (True, None), name
    same = rows(callback_run, "SELECT happens_before(id, id) FROM events LIMIT 1")
    assert same == [(False,)]


def test_concurrent_pairs_are_unordered(bank_run: Path) -> None:
    """The two deadlocked threads' first acquires are concurrent; a thread's own are not."""
    got = rows(
        bank_run,
        "SELECT concurrent(a.id, b.id) FROM events a, events b "
        "WHERE a.kind = 'lock.acquired' AND b.kind = 'lock.acquired' AND a.unit < b.unit",
    )
    assert got == [(True,)]
    own = rows(
        bank_run,
        "SELECT concurrent(a.id, b.id), happens_before(a.id, b.id) FROM events a, events b "
        "WHERE a.unit = b.unit AND a.kind = 'unit.start' AND b.kind = 'lock.acquired'",
    )
    assert own and all(r == (False, True) for r in own)


def test_unknown_event_id_is_an_error(bank_run: Path) -> None:
    """An id naming no event is a clear SQL error, not a silent false."""
    with pytest.raises(UsageError, match=r"no event 'nope:1'") as caught:
        query([bank_run], "SELECT happens_before('nope:1', id) FROM events")
    # what the function said, without DuckDB's wrapping of a Python exception
    assert str(caught.value) == "SQL: no event 'nope:1' in this trace"


def _closure(c) -> np.ndarray:
    """Reference answer: BFS over explicit event edges (program order + hb_edges)."""
    trace = c.trace
    n = len(trace.events)
    succ: list[list[int]] = [[] for _ in range(n)]
    order, ptr = unit_order(trace)
    for u in range(len(trace.units)):
        chain = order[ptr[u] : ptr[u + 1]].tolist()
        for x, y in itertools.pairwise(chain):
            succ[x].append(y)
    src, dst = hb_edges(c)
    unit = trace.events.unit
    for s, d in zip(src.tolist(), dst.tolist(), strict=True):
        if unit[s] >= 0 and unit[d] >= 0:
            succ[s].append(d)
    reach = np.zeros((n, n), dtype=bool)
    for a in range(n):
        seen = {a}
        todo = deque(succ[a])
        while todo:
            x = todo.popleft()
            if x not in seen:
                seen.add(x)
                reach[a, x] = True
                todo.extend(succ[x])
    return reach


@pytest.mark.parametrize("case", ["http_callback", "lock_contention_convoy", "queues_clean"])
def test_pair_search_is_exact(case: str, tmp_path: Path) -> None:
    """PairSearch answers every pair of a golden trace as a plain graph search does, and
    so does the reachability index races use (the same relation)."""
    c = link(load([build_run(GOLDEN / case, tmp_path / "run")]))
    expected = _closure(c)
    search = PairSearch(c)
    n = len(c.trace.events)
    got = np.array([[search.happens_before(a, b) for b in range(n)] for a in range(n)])
    assert (got == expected).all()
    reach = pytest.importorskip("willowisp.causality.reach")
    index = reach.ReachIndex.build(c, np.arange(n))
    pairs = np.array([(a, b) for a in range(n) for b in range(n) if a != b], dtype=np.int64)
    has_unit = c.trace.events.unit[pairs].min(axis=1) >= 0
    pairs = pairs[has_unit]
    assert (index.ordered(pairs[:, 0], pairs[:, 1]) == expected[pairs[:, 0], pairs[:, 1]]).all()


def test_findings_are_computed_only_when_named(
    bank_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query that does not name findings never runs the analysis."""

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("the analysis ran")

    monkeypatch.setattr(session, "analyze", boom)
    assert rows(bank_run, "SELECT count(*) FROM events") == [(14,)]
    assert rows(bank_run, "SHOW TABLES") and query([bank_run], "DESCRIBE units").result
    with pytest.raises(AssertionError, match="the analysis ran"):
        query([bank_run], "SELECT count(*) FROM Findings", use_cache=False)


def test_findings_match_analyze(callback_run: Path) -> None:
    """The findings table holds analyze's findings, with lists and JSON detail."""
    doc = analyze(load([callback_run])).document()
    got = rows(
        callback_run,
        "SELECT id, units, events, explanation, detail->>'summary' FROM findings "
        "ORDER BY severity, kind, id",
    )
    by_id = {f["id"]: f for f in doc["findings"]}
    assert {r[0] for r in got} == set(by_id)
    for fid, units, events, explanation, summary in got:
        f = by_id[fid]
        assert units == [u["id"] for u in f["units"]]
        assert events == f["events"]
        assert explanation == f["explanation"]
        assert summary == f["summary"]
