"""Clock offsets between domains from causal constraints: a system of difference constraints.

Every cross-domain happens-before edge ``a -> b`` (a request sent and received, a reply
sent and received, a child process spawned and started) says that, once both raw times are
put on one line, ``raw_a + o_A <= raw_b + o_B``, i.e. ``o_A - o_B <= raw_b - raw_a``. A
request/reply pair therefore brackets the peer's offset from both sides; a one-way edge
bounds it on one side only.

Such a system is a graph: a constraint ``x_v - x_u <= w`` is an edge ``u -> v`` of weight w,
and the tightest bound on ``x_v - x_u`` implied by all constraints together is the
shortest-path distance ``d(u, v)`` (infinite if v cannot be reached). With the reference
domain's offset fixed at 0, domain D's offset lies in ``[-d(D, ref), d(ref, D)]``: one
single-source search in the graph and one in its reverse
(:mod:`willowisp.causality.difference_constraints`), after the raw constraints are reduced
to the tightest one per ordered pair of domains. A thousand domains and a million edges
solve in well under a second (``bench/bench_clocks.py``).

Inconsistent constraints (a negative cycle: clocks that stepped or drifted during the run,
or two processes wrongly put in one domain) have no solution. Rather than fail, the solver
finds the smallest ``slack`` that, added to every bound, makes them consistent and reports
it, so the output says how far from consistent the evidence was instead of hiding it.

Drift. One constant offset per domain is the model; :func:`drift` tests it. The edges are
cut into time windows and each window is solved on its own. If the intervals of two windows
are disjoint, no constant offset explains the evidence, and the domain's offset is fitted
as a line over time (least squares through the window midpoints): its slope is the drift.
Without such evidence a domain has no measured drift and its offset stays constant.

Integers throughout: int64 with saturation at +/-2^61 stands for infinity, so nanosecond
values never lose precision to floating point.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.causality.difference_constraints import (
    INF,
    least_slack,
    reduce_edges,
    shortest_from,
)

I64 = npt.NDArray[np.int64]

DRIFT_WINDOWS = 8  # time windows the drift test cuts the edges into
DRIFT_METHOD = (
    f"causal edges: offset interval per time window ({DRIFT_WINDOWS}), "
    "least-squares line through the window midpoints"
)


@dataclass(frozen=True, slots=True)
class Constraint:
    """``o[a] - o[b] <= bound`` (from an edge a-event -> b-event: bound = raw_b - raw_a)."""

    a: int
    b: int
    bound: int


@dataclass(frozen=True, slots=True)
class Interval:
    """The offsets the constraints allow; None where unbounded on that side."""

    lo: int | None
    hi: int | None

    @property
    def midpoint(self) -> int:
        """Midpoint when bounded on both sides, else the finite bound, else 0."""
        if self.lo is not None and self.hi is not None:
            return (self.lo + self.hi) // 2
        if self.lo is not None:
            return self.lo
        return self.hi if self.hi is not None else 0

    @property
    def half_width(self) -> int | None:
        if self.lo is None or self.hi is None:
            return None
        return (self.hi - self.lo + 1) // 2

    def contains(self, x: int) -> bool:
        return (self.lo is None or self.lo <= x) and (self.hi is None or x <= self.hi)


@dataclass(frozen=True, slots=True)
class Solution:
    intervals: tuple[Interval, ...]  # one per domain; the reference's is [0, 0]
    slack_ns: int  # added to every bound to make the system consistent; 0 normally


def solve(n: int, reference: int, constraints: Iterable[Constraint]) -> Solution:
    """Offset intervals of n domains relative to ``reference`` (see the module doc)."""
    cs = list(constraints)
    a = np.array([c.a for c in cs], dtype=np.int64)
    b = np.array([c.b for c in cs], dtype=np.int64)
    bound = np.array([_clip(c.bound) for c in cs], dtype=np.int64)
    return solve_edges(n, reference, a, b, bound)


def solve_edges(n: int, reference: int, a: I64, b: I64, bound: I64) -> Solution:
    """:func:`solve` over columns: ``o[a[i]] - o[b[i]] <= bound[i]`` for every i.

    Any number of constraints per domain pair, in any order; only the tightest per ordered
    pair is used. Domains are ``0 .. n-1``; ``reference`` gets the interval [0, 0].
    """
    if n == 0:  # nothing loaded: no domains, nothing to solve
        return Solution((), 0)
    # o_a - o_b <= bound is the edge b -> a of weight bound.
    g = reduce_edges(n, b, a, bound)
    slack = 0
    if shortest_from(g, None).cycle:
        slack = least_slack(g)
    hi = shortest_from(g, reference, slack).dist  # d(ref, D)
    lo = shortest_from(g.reversed(), reference, slack).dist  # d(D, ref)
    intervals = tuple(
        Interval(None if l_ >= INF else -l_, None if h >= INF else h)
        for l_, h in zip(lo.tolist(), hi.tolist(), strict=True)
    )
    return Solution(intervals, slack)


def _clip(v: int) -> int:
    return max(-INF, min(INF, v))


@dataclass(frozen=True, slots=True)
class Drift:
    """Evidence that a domain's offset changed over the run, and the fitted rate."""

    ns_per_s: int  # slope of the fitted offset line (offset change per second of trace)
    # Two windows no constant offset satisfies together (one's lower bound is above the
    # other's upper bound), in time order, with the median edge time of each.
    early: Interval
    late: Interval
    early_at_ns: int
    late_at_ns: int
    method: str = DRIFT_METHOD


def drift(
    n: int,
    reference: int,
    a: I64,
    b: I64,
    bound: I64,
    time: I64,
    windows: int = DRIFT_WINDOWS,
) -> list[Drift | None]:
    """Per domain, the drift of its offset against the reference, or None without evidence.

    ``a``, ``b``, ``bound`` are constraints as for :func:`solve_edges`; ``time`` is when each
    was observed (any common clock; the edges' raw times do, as offsets are tiny next to a
    run's length). The edges are cut into ``windows`` equal spans of time and each span is
    solved on its own (with its own slack if it is itself inconsistent). A domain drifts
    when some window's lower bound exceeds another's upper bound: then no single constant
    offset satisfies both. Its rate is the least-squares slope of the midpoints of the
    windows that bound it on both sides (at their median edge times), or, with fewer than
    two such windows, the slope between the two conflicting bounds.
    """
    result: list[Drift | None] = [None] * n
    if len(time) < 2 or windows < 2:
        return result
    t0, t1 = int(time.min()), int(time.max())
    if t1 <= t0:
        return result
    which = np.minimum((time - t0) * windows // (t1 - t0 + 1), windows - 1)
    found: list[tuple[int, tuple[Interval, ...]]] = []
    for k in range(windows):
        m = which == k
        if m.any():
            sol = solve_edges(n, reference, a[m], b[m], bound[m])
            found.append((int(np.median(time[m])), sol.intervals))
    for d in range(n):
        if d == reference:
            continue
        lows = [(iv[d].lo, t, iv[d]) for t, iv in found if iv[d].lo is not None]
        highs = [(iv[d].hi, t, iv[d]) for t, iv in found if iv[d].hi is not None]
        if not lows or not highs:
            continue
        lo, lo_t, lo_iv = max(lows, key=lambda x: x[0] or 0)
        hi, hi_t, hi_iv = min(highs, key=lambda x: x[0] or 0)
        assert lo is not None and hi is not None
        if lo <= hi or lo_t == hi_t:
            continue
        both = [
            (t, iv[d].midpoint) for t, iv in found if iv[d].lo is not None and iv[d].hi is not None
        ]
        if len(both) >= 2:
            ts = np.array([x[0] for x in both], dtype=np.float64)
            ys = np.array([x[1] for x in both], dtype=np.float64)
            ts -= ts.mean()
            slope = float((ts * (ys - ys.mean())).sum() / (ts * ts).sum())
        else:
            slope = (lo - hi) / (lo_t - hi_t)
        early, late = (
            ((hi_iv, hi_t), (lo_iv, lo_t)) if hi_t < lo_t else ((lo_iv, lo_t), (hi_iv, hi_t))
        )
        result[d] = Drift(round(slope * 1e9), early[0], late[0], early[1], late[1])
    return result
