"""The sparse offset solver: agreement with all-pairs, chains, contradictions and drift."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from willowisp.causality.difference_constraints import INF, least_slack, reduce_edges
from willowisp.causality.drift import drift
from willowisp.causality.offsets import Interval, solve_edges

I64 = npt.NDArray[np.int64]
Case = tuple[int, int, list[int], I64, I64, I64]


def _floyd_warshall(n: int, ref: int, a: I64, b: I64, bound: I64) -> tuple[list[Interval], int]:
    """The previous all-pairs solver, kept as an oracle: intervals and least slack."""

    def closure(w: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        d = w.copy()
        for k in range(n):
            via = d[:, k : k + 1] + d[k : k + 1, :]
            via = np.where((d[:, k : k + 1] >= INF) | (d[k : k + 1, :] >= INF), INF, via)
            np.minimum(d, np.clip(via, -INF, INF), out=d)
        return d

    def relaxed(s: int) -> npt.NDArray[np.int64]:
        out = np.where(w >= INF, INF, np.minimum(w + s, INF))
        np.fill_diagonal(out, 0)
        return out

    w = np.full((n, n), INF, dtype=np.int64)
    for x, y, c in zip(a.tolist(), b.tolist(), bound.tolist(), strict=True):
        if x != y:
            w[y, x] = min(int(w[y, x]), c)
    np.fill_diagonal(w, 0)
    slack = 0
    if np.any(np.diagonal(closure(w)) < 0):
        lo, hi = 0, int(np.abs(w[w < INF]).max()) + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if np.any(np.diagonal(closure(relaxed(mid))) < 0):
                lo = mid + 1
            else:
                hi = mid
        slack = lo
    d = closure(relaxed(slack) if slack else w)
    out = []
    for v in range(n):
        lo_, hi_ = -int(d[v, ref]), int(d[ref, v])
        out.append(Interval(None if lo_ <= -INF else lo_, None if hi_ >= INF else hi_))
    return out, slack


@st.composite
def systems(draw: st.DrawFn, consistent: bool = True) -> Case:
    """Constraints from edges between domains with true offsets (plus lies if not consistent)."""
    n = draw(st.integers(2, 9))
    ref = draw(st.integers(0, n - 1))
    truth = draw(st.lists(st.integers(-(10**10), 10**10), min_size=n, max_size=n))
    rows = []
    for _ in range(draw(st.integers(0, 40))):
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        t = draw(st.integers(0, 10**11))
        latency = draw(st.integers(0, 10**7))
        if not consistent and draw(st.booleans()):
            latency = -draw(st.integers(1, 10**8))  # an effect stamped before its cause
        rows.append((a, b, (t + latency - truth[b]) - (t - truth[a])))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return n, ref, truth, arr[:, 0], arr[:, 1], arr[:, 2]


@settings(max_examples=300, deadline=None)
@given(systems(consistent=False))
def test_same_intervals_and_slack_as_all_pairs(case: Case) -> None:
    """On any system, consistent or not, the sparse solver equals Floyd-Warshall."""
    n, ref, _, a, b, bound = case
    expected, slack = _floyd_warshall(n, ref, a, b, bound)
    sol = solve_edges(n, ref, a, b, bound)
    assert sol.slack_ns == slack
    assert list(sol.intervals) == expected


@settings(max_examples=300, deadline=None)
@given(systems())
def test_truth_lies_in_every_interval(case: Case) -> None:
    """Constraints generated from true offsets are consistent and never exclude the truth."""
    n, ref, truth, a, b, bound = case
    sol = solve_edges(n, ref, a, b, bound)
    assert sol.slack_ns == 0
    assert sol.intervals[ref] == Interval(0, 0)
    for d in range(n):
        assert sol.intervals[d].contains(truth[d] - truth[ref]), (d, sol.intervals[d])


@settings(max_examples=200, deadline=None)
@given(systems(), st.data())
def test_chains_are_no_looser_than_their_links(case: Case, data: st.DataObject) -> None:
    """C relative to A is within (B rel. A) + (C rel. B): bounds compose along chains."""
    n, _, _, a, b, bound = case
    x, y, z = (data.draw(st.integers(0, n - 1)) for _ in range(3))
    from_x = solve_edges(n, x, a, b, bound).intervals
    from_y = solve_edges(n, y, a, b, bound).intervals
    ab, bc, ac = from_x[y], from_y[z], from_x[z]
    if ab.lo is not None and bc.lo is not None:
        assert ac.lo is not None and ac.lo >= ab.lo + bc.lo
    if ab.hi is not None and bc.hi is not None:
        assert ac.hi is not None and ac.hi <= ab.hi + bc.hi


@settings(max_examples=200, deadline=None)
@given(systems(), st.integers(1, 10**9))
def test_a_contradiction_is_measured(case: Case, lie: int) -> None:
    """A negative cycle is found and the slack is the least that makes the system consistent."""
    n, ref, truth, a, b, bound = case
    # Two edges each claiming the other direction arrived `lie` ns before it was sent.
    x, y = 0, 1
    a2 = np.append(a, [x, y])
    b2 = np.append(b, [y, x])
    rel = truth[y] - truth[x]
    bound2 = np.append(bound, [-rel - lie, rel - lie])  # o_x - o_y <= -rel - lie, and back
    g = reduce_edges(n, b2, a2, bound2)
    s = least_slack(g)
    assert s >= lie  # that 2-cycle alone weighs -2 * lie
    sol = solve_edges(n, ref, a2, b2, bound2)
    assert sol.slack_ns == s
    assert least_slack(reduce_edges(n, b2, a2, bound2 + s)) == 0
    assert s == 0 or least_slack(reduce_edges(n, b2, a2, bound2 + s - 1)) > 0


def test_chain_of_three_domains_recovers_known_offsets() -> None:
    """A -> B -> C request/reply chains place C relative to A although they never talk."""
    truth = [0, 250_000_000, -40_000_000]  # B runs 250 ms behind, C 40 ms ahead
    rows = []
    for i, (x, y) in enumerate([(0, 1), (1, 2)] * 5):
        t = 1_000_000_000 * i
        for cause, effect, lat in ((x, y, 300_000 + i), (y, x, 200_000 + 7 * i)):
            rows.append((cause, effect, (t + lat - truth[effect]) - (t - truth[cause])))
    arr = np.array(rows, dtype=np.int64)
    sol = solve_edges(3, 0, arr[:, 0], arr[:, 1], arr[:, 2])
    assert sol.slack_ns == 0
    for d in range(3):
        iv = sol.intervals[d]
        assert iv.contains(truth[d]), (d, iv)
        assert iv.half_width is not None and iv.half_width <= 2 * 310_000
    # C's interval is the sum of the two links' intervals, no wider.
    assert sol.intervals[2].half_width == (
        solve_edges(3, 1, arr[:, 0], arr[:, 1], arr[:, 2]).intervals[2].half_width or 0
    ) + (sol.intervals[1].half_width or 0)


def _drifting(rate_ns_per_s: int, seconds: int = 20) -> tuple[I64, I64, I64, I64]:
    """Request/reply pairs every 10 ms between A and B, B's offset growing by the rate."""
    t = np.arange(0, seconds * 10**9, 10_000_000, dtype=np.int64)
    truth_b = rate_ns_per_s * t // 10**9
    lat = 150_000
    # A -> B at t: o_A - o_B <= raw_b - raw_a = (t + lat - truth_b) - t
    # B -> A at t + 2 lat: o_B - o_A <= (t + 3 lat) - (t + 2 lat - truth_b)
    a = np.concatenate([np.zeros_like(t), np.ones_like(t)])
    b = 1 - a
    bound = np.concatenate([lat - truth_b, lat + truth_b])
    return a, b, bound, np.concatenate([t, t + 2 * lat])


def test_drift_of_one_ms_per_second_is_detected() -> None:
    """An offset growing 1 ms/s is reported as drift within a few percent."""
    a, b, bound, when = _drifting(1_000_000)
    found = drift(2, 0, a, b, bound, when)
    assert found[0] is None
    d1 = found[1]
    assert d1 is not None
    assert abs(d1.ns_per_s - 1_000_000) <= 20_000
    assert d1.early_at_ns < d1.late_at_ns
    assert d1.early.hi is not None and d1.late.lo is not None and d1.early.hi < d1.late.lo
    # One constant offset cannot fit: the whole-run solve reports the contradiction.
    assert solve_edges(2, 0, a, b, bound).slack_ns > 0


def test_no_drift_without_evidence() -> None:
    """A constant offset (and latencies that vary) is not reported as drift."""
    a, b, bound, when = _drifting(0)
    rng = np.random.default_rng(1)
    bound = bound + rng.integers(0, 2_000_000, len(bound))  # jittery latency, looser bounds
    assert drift(2, 0, a, b, bound, when) == [None, None]
    assert drift(2, 0, a[:1], b[:1], bound[:1], when[:1]) == [None, None]


@settings(max_examples=300, deadline=None)
@given(systems(consistent=False))
def test_every_bound_is_the_sum_of_a_chain_of_constraints(case: Case) -> None:
    """Each finite interval end is the sum, along Solution.chain, of the tightest
    constraint of each domain pair plus the slack: the bound can be traced to its edges."""
    n, ref, _, a, b, bound = case
    sol = solve_edges(n, ref, a, b, bound)
    tightest: dict[tuple[int, int], int] = {}
    for x, y, c in zip(a.tolist(), b.tolist(), bound.tolist(), strict=True):
        if x != y:
            tightest[(x, y)] = min(c, tightest.get((x, y), c))
    for d in range(n):
        iv = sol.intervals[d]
        for upper, end in ((True, iv.hi), (False, iv.lo)):
            chain = sol.chain(d, upper)
            if d == ref or end is None:
                assert chain == []
                continue
            total = sum(tightest[pair] + sol.slack_ns for pair in chain)
            assert end == (total if upper else -total), (d, upper, chain)
            path = [d] + [p[1] if upper else p[0] for p in chain]
            assert path[-1] == ref and len(set(path)) == len(path)
