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

Drift. A constant offset per domain is the model here; :mod:`willowisp.causality.drift`
tests it and, for a domain whose offset moves during the run, fits a line and rewrites the
bounds so this same solver places the line's offset (the bounds then are "at the domain's
reference time"). Each bound is traceable: :class:`Solution` keeps the shortest-path trees,
whose edges are the constraints an interval's end is the sum of.

Integers throughout: int64 with saturation at +/-2^61 stands for infinity, so nanosecond
values never lose precision to floating point.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from willowisp.causality.difference_constraints import (
    INF,
    NO_PARENT,
    least_slack,
    reduce_edges,
    shortest_from,
)

I64 = npt.NDArray[np.int64]


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
    def estimate(self) -> int:
        """The offset to use: the midpoint when bounded on both sides; on one side only,
        the allowed value nearest 0 (the clock as it reads, unless the evidence says it
        cannot be: a one-way edge bounds the offset, it does not measure it, and taking its
        bound would invent a skew as large as the hop's transit time); 0 when unbounded."""
        if self.lo is not None and self.hi is not None:
            return (self.lo + self.hi) // 2
        if self.lo is not None:
            return max(self.lo, 0)
        if self.hi is not None:
            return min(self.hi, 0)
        return 0

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
    # Shortest-path trees of the two searches (NO_PARENT at the reference and where
    # unbounded). Upper end of D: o[D] - o[p] <= bound(D, p) with p = hi_parent[D], then
    # p's own upper end, back to the reference. Lower end: o[p] - o[D] <= bound(p, D) with
    # p = lo_parent[D], likewise. ``bound(a, b)`` is the tightest constraint o[a] - o[b].
    hi_parent: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    lo_parent: I64 = field(default_factory=lambda: np.zeros(0, np.int64))

    def chain(self, d: int, upper: bool) -> list[tuple[int, int]]:
        """The (a, b) domain pairs whose tightest constraints ``o[a] - o[b] <= bound`` sum
        to D's upper (or lower) end, from D towards the reference; [] at the reference or
        where that end is unbounded."""
        parent = self.hi_parent if upper else self.lo_parent
        out: list[tuple[int, int]] = []
        node = d
        for _ in range(len(parent)):
            p = int(parent[node]) if len(parent) else NO_PARENT
            if p == NO_PARENT:
                break
            out.append((node, p) if upper else (p, node))
            node = p
        return out


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
    up = shortest_from(g, reference, slack)  # d(ref, D)
    down = shortest_from(g.reversed(), reference, slack)  # d(D, ref)
    intervals = tuple(
        Interval(None if l_ >= INF else -l_, None if h >= INF else h)
        for l_, h in zip(down.dist.tolist(), up.dist.tolist(), strict=True)
    )
    return Solution(intervals, slack, up.parent, down.parent)


def _clip(v: int) -> int:
    return max(-INF, min(INF, v))
