"""Clock offsets between domains from causal constraints: a system of difference constraints.

Every cross-domain happens-before edge ``a -> b`` (a request sent and received, a reply
sent and received, a child process spawned and started) says that, once both raw times are
put on one line, ``raw_a + o_A <= raw_b + o_B``, i.e. ``o_A - o_B <= raw_b - raw_a``. A
request/reply pair therefore brackets the peer's offset from both sides; a one-way edge
bounds it on one side only.

Such a system is a graph: a constraint ``x_v - x_u <= w`` is an edge ``u -> v`` of weight w,
and the tightest bound on ``x_v - x_u`` implied by all constraints together is the
shortest-path distance ``d(u, v)`` (infinite if v cannot be reached). With the reference
domain's offset fixed at 0, domain D's offset lies in ``[-d(D, ref), d(ref, D)]``. There are
few domains (one per host, boot or container, not per event), so all pairs of shortest
paths by Floyd-Warshall, O(n^3) on an n x n matrix, costs nothing next to loading; the many
raw constraints are first reduced to the tightest one per ordered pair of domains.

Inconsistent constraints (a negative cycle: clocks that stepped during the run, or two
processes wrongly put in one domain) have no solution. Rather than fail, the solver finds
the smallest ``slack`` that, added to every bound, makes them consistent (binary search
over integer nanoseconds, checking for negative cycles) and reports it, so the output says
how far from consistent the evidence was instead of hiding it.

Integers throughout: int64 with saturation at +/-2^61 stands for infinity, so nanosecond
values never lose precision to floating point.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

INF = 1 << 61  # "no bound"; sums of two saturated values still fit in int64


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
    w = np.full((n, n), INF, dtype=np.int64)
    for c in constraints:
        if c.a == c.b:
            continue
        # o_a - o_b <= bound is the edge b -> a.
        w[c.b, c.a] = min(int(w[c.b, c.a]), _clip(c.bound))
    np.fill_diagonal(w, 0)
    slack = 0
    dist = _shortest_paths(w)
    if _has_negative_cycle(dist):
        slack = _smallest_slack(w)
        dist = _shortest_paths(_relaxed(w, slack))
    intervals = []
    for d in range(n):
        hi = int(dist[reference, d])
        lo = -int(dist[d, reference])
        intervals.append(Interval(None if lo <= -INF else lo, None if hi >= INF else hi))
    return Solution(tuple(intervals), slack)


def _clip(v: int) -> int:
    return max(-INF, min(INF, v))


def _relaxed(w: npt.NDArray[np.int64], slack: int) -> npt.NDArray[np.int64]:
    out = np.where(w >= INF, INF, np.minimum(w + slack, INF))
    np.fill_diagonal(out, 0)
    return out


def _shortest_paths(w: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Floyd-Warshall with saturating arithmetic (INF + x stays INF)."""
    d = w.copy()
    for k in range(len(d)):
        via = d[:, k : k + 1] + d[k : k + 1, :]
        via = np.where((d[:, k : k + 1] >= INF) | (d[k : k + 1, :] >= INF), INF, via)
        np.minimum(d, np.clip(via, -INF, INF), out=d)
    return d


def _has_negative_cycle(dist: npt.NDArray[np.int64]) -> bool:
    return bool(np.any(np.diagonal(dist) < 0))


def _smallest_slack(w: npt.NDArray[np.int64]) -> int:
    """The least integer s such that adding s to every finite weight leaves no negative cycle.

    Feasibility is monotone in s, and s = max |weight| always suffices (a cycle of k edges
    then weighs at least 0), so a binary search finds it in ~log2(max |weight|) rounds.
    """
    finite = w[(w < INF) & (w > -INF)]
    lo, hi = 0, int(np.abs(finite).max()) + 1 if finite.size else 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _has_negative_cycle(_shortest_paths(_relaxed(w, mid))):
            lo = mid + 1
        else:
            hi = mid
    return lo
