"""A sparse solver for systems of difference constraints ``x_v - x_u <= w``.

Each constraint is an edge ``u -> v`` of weight ``w``; the tightest bound on ``x_v - x_u``
that all constraints imply together is the shortest-path distance ``d(u, v)``. Clock
alignment needs distances from one source only (the reference domain) in the graph and in
its reverse, so single-source Bellman-Ford suffices; all pairs would cost O(n^3) and is
what kept the old solver to a few domains.

Shape of the work. Millions of raw constraints are first reduced, with one argsort, to the
tightest one per ordered pair of nodes: no other can matter. Bellman-Ford then runs in
Jacobi rounds, each a few whole-array numpy operations over the reduced edges (gather the
source distances, add, minimum per destination with ``reduceat``), so Python pays per round,
not per edge. Rounds needed = edges on the longest shortest path + 1; clock graphs are
shallow (hosts talk to a few hubs), so that is a handful, but a chain of n domains takes n.

Negative cycles (contradictory constraints) are detected without waiting n rounds: every
node remembers the edge that last lowered it (its parent), and a cycle among parents is
always a negative cycle (Cherkassky and Goldberg, "Negative-cycle detection algorithms",
1999). Parent cycles are found by pointer doubling, O(n log n) per round.

Contradictions are measured, not fatal: :func:`least_slack` finds the least integer ``s``
such that adding ``s`` to every weight leaves no negative cycle, i.e. the largest
ceil(-weight/length) over all cycles. Binary search over ``s``, where each infeasible probe
also returns a cycle whose own need raises the lower end, so it usually takes few probes.

Integers throughout: int64 saturating at +/-``INF`` (2^61) for "no bound", so nanosecond
values never pass through floating point and a sum of two saturated values still fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]

INF = 1 << 61  # "no bound"; sums of two saturated values still fit in int64
NO_PARENT = -1  # parent of a node no edge has lowered yet


@dataclass(frozen=True, slots=True)
class Graph:
    """Reduced constraints: one edge per ordered node pair, sorted by destination.

    Invariant: ``src != dst``; ``(src, dst)`` unique; ``-INF <= w < INF``; ``heads`` holds the
    distinct destinations in increasing order and ``starts[i]`` the first edge into
    ``heads[i]``.
    """

    n: int
    src: I64
    dst: I64
    w: I64
    heads: I64
    starts: I64

    def reversed(self) -> Graph:
        """The same constraints with every edge turned round (distances *to* a node)."""
        return reduce_edges(self.n, self.dst, self.src, self.w)


def reduce_edges(n: int, u: I64, v: I64, w: I64) -> Graph:
    """The graph of constraints ``x_v - x_u <= w``, keeping the least ``w`` per (u, v).

    Self-loops are dropped (a non-negative one says nothing; a negative one would say the
    node contradicts itself, which a caller building clock constraints never produces) and
    weights at or beyond ``INF`` ("no bound") are dropped too.
    """
    u, v, w = np.asarray(u, np.int64), np.asarray(v, np.int64), np.asarray(w, np.int64)
    keep = (u != v) & (w < INF)
    u, v, w = u[keep], v[keep], np.maximum(w[keep], -INF)
    # One key per ordered pair, destination-major so the reduced edges come out grouped by
    # destination, which is the layout the relaxation's reduceat needs.
    key = v * n + u
    order = np.argsort(key, kind="stable")
    key, w = key[order], w[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(first)
    least = np.minimum.reduceat(w, starts) if len(starts) else w[:0]
    pair = key[starts]
    src, dst = pair % n, pair // n
    head_first = np.ones(len(dst), dtype=bool)
    head_first[1:] = dst[1:] != dst[:-1]
    heads_at = np.flatnonzero(head_first)
    return Graph(n, src, dst, least, dst[heads_at], heads_at.astype(np.int64))


@dataclass(frozen=True, slots=True)
class Relaxation:
    """Result of Bellman-Ford: distances, or a negative cycle that prevents them."""

    dist: I64  # INF where unreachable; meaningful only when cycle is empty
    cycle: tuple[int, ...]  # nodes of a negative cycle in parent order; () if none
    cycle_weight: int  # its weight with the slack that was added (< 0); 0 if none
    rounds: int
    # The node whose edge last lowered each node (NO_PARENT for the source and the
    # unreachable). Without a cycle it is a shortest-path tree: dist[v] == dist[parent[v]]
    # + w(parent[v] -> v) + slack, since a node lowered after its child would have lowered
    # the child again in the next round. It is how a bound is traced back to its edges.
    parent: I64


def shortest_from(g: Graph, source: int | None, slack: int = 0) -> Relaxation:
    """Distances from ``source`` with ``slack`` added to every weight.

    ``source=None`` starts every node at 0 (a virtual source with a zero edge to each), which
    finds a negative cycle anywhere in the graph, reachable or not. Terminates in at most n
    rounds; stops early when a round changes nothing or parents close a cycle.
    """
    n = g.n
    dist = np.full(n, INF, dtype=np.int64)
    if source is None:
        dist[:] = 0
    else:
        dist[source] = 0
    parent = np.full(n, NO_PARENT, dtype=np.int64)
    parent_w = np.zeros(n, dtype=np.int64)
    w = np.minimum(g.w + slack, INF - 1) if slack else g.w
    for rounds in range(1, n + 2):
        from_d = dist[g.src]
        cand = np.where(from_d >= INF, INF, np.clip(from_d + w, -INF, INF))
        best = np.minimum.reduceat(cand, g.starts) if len(cand) else cand
        lowered = best < dist[g.heads]
        if not lowered.any():
            return Relaxation(dist, (), 0, rounds, parent)
        new = dist.copy()
        new[g.heads[lowered]] = best[lowered]
        # Parent of each lowered node: any edge that achieved its new value from the old
        # distances (fancy assignment keeps the last of duplicates, which is as good).
        via = (cand == new[g.dst]) & (cand < dist[g.dst])
        parent[g.dst[via]] = g.src[via]
        parent_w[g.dst[via]] = w[via]
        dist = new
        cycle = _parent_cycle(parent)
        if cycle:
            return Relaxation(dist, cycle, int(parent_w[list(cycle)].sum()), rounds, parent)
    raise AssertionError("Bellman-Ford neither converged nor found a cycle in n + 1 rounds")


def _parent_cycle(parent: I64) -> tuple[int, ...]:
    """A cycle of the parent pointers, or () if they form a forest."""
    n = len(parent)
    # Node n is a sink standing for "no parent"; after >= n jumps every node is either in
    # the sink or on a cycle.
    jump = np.append(np.where(parent == NO_PARENT, n, parent), n)
    steps = 1
    while steps <= n:
        jump = jump[jump]
        steps *= 2
    on_cycle = np.flatnonzero(jump[:n] != n)
    if len(on_cycle) == 0:
        return ()
    start = int(jump[int(on_cycle[0])])
    cycle = [start]
    node = int(parent[start])
    while node != start:
        cycle.append(node)
        node = int(parent[node])
    return tuple(cycle)


def least_slack(g: Graph) -> int:
    """The least integer s >= 0 such that weights + s leave no negative cycle.

    Feasibility is monotone in s, and s = max(0, -min weight) always suffices (every cycle
    then weighs >= 0). A cycle C found infeasible at some probe needs s >= ceil(-w(C)/|C|),
    a proven lower bound. So the search probes that lower bound first: feasible there means
    it is the answer (typically after one or two cycles, since the worst cycle is often
    the first found). Only when lifting creeps up does it fall back to bisection, where an
    infeasible probe still lifts the lower end past itself.
    """
    if len(g.w) == 0:
        return 0
    lo, hi = 0, max(0, -int(g.w.min()))
    lifts = 0
    while lo < hi:
        probe = lo if lifts < _EAGER_LIFTS else (lo + hi) // 2
        r = shortest_from(g, None, probe)
        if not r.cycle:
            if probe == lo:
                return lo  # feasible at a proven lower bound: the least
            hi = probe
            continue
        base = r.cycle_weight - probe * len(r.cycle)  # the cycle's own weight, no slack
        lo = max(probe + 1, -(base // len(r.cycle)))  # ceil(-base / len)
        lifts += 1
    return lo


_EAGER_LIFTS = 8  # probes at the lower bound before least_slack falls back to bisection
