"""The wait-for graph over time, across threads, tasks and processes, and its cycles.

Nodes are units; an edge ``u -> v`` says "u cannot go on until v does something", and it
exists for a time interval (on the reference clock line, i.e. adjusted time):

- **lock**: u is blocked acquiring an owned lock that v holds. Interval: the overlap of u's
  wait and v's hold. A waiter holding the (non-reentrant) lock itself gets ``u -> u``.
- **rpc**: u is blocked on a request whose server side was received by v, who has not
  replied yet. Interval: from max(u's block, v's ``msg.recv``) to min(u's wake, v's reply).
- **join**: u is blocked joining (or awaiting) v, which has not ended; or awaiting a
  ``future`` resource whose ``waits_for`` lists v (an asyncio gather, a TaskGroup's exit,
  asyncio.wait for all): an edge to each listed unit that has not ended.

Rather than replaying every event, the edges are generated directly from the waits (few)
and, for each lock wait, the holds of that lock overlapping it (found by binary search over
that lock's holds, which are sorted by start). The sweep then walks edge starts and ends in
time order (ends first at equal times: an edge that ends when another begins never
coexists with it), maintaining the current graph; whenever an edge appears it searches for
a path back from its target to its source, which is exactly when a new cycle can form
(block, acquire under waiters, a server receiving a request someone waits on). Any cycle
still present at the end was detected when its last edge appeared.

Before the sweep, edges that cannot be on any cycle even ignoring time (those not inside a
strongly connected component of the union of all edges) are dropped, so the common case —
lots of contention, no deadlock — costs one Tarjan pass over the units.

Trade-off: times across processes are adjusted times, so an ordering within the offset
uncertainty may be misjudged; each rpc edge is bounded by its own hop's causally ordered
events, which keeps the error to edges whose intervals barely touch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from willowisp.causality.graph import waits_for_pairs
from willowisp.causality.link import Causality
from willowisp.causality.program_order import first_per_unit
from willowisp.causality.waits import OWNED_LOCKS, STILL, Holds, Waits, times_or_still
from willowisp.ingest.tables import NO_INDEX
from willowisp.model.spec import K, Reason


class Via(enum.IntEnum):
    LOCK = 1
    RPC = 2
    JOIN = 3


@dataclass(frozen=True, slots=True)
class WaitEdge:
    waiter: int  # unit
    target: int  # unit
    via: Via
    resource: int  # what the waiter blocked on
    wait: int  # row in Waits
    cause: int  # the target's event that put it in the way (lock.acquired, msg.recv); or NO_INDEX
    start: int  # adjusted ns
    end: int  # adjusted ns; STILL if it had not ended when the trace ends


@dataclass(frozen=True, slots=True)
class Cycle:
    edges: tuple[WaitEdge, ...]  # edges[i].target is edges[i + 1].waiter (cyclically)
    formed_at: int  # adjusted time the last edge appeared
    repeats: int  # how many times this same cycle formed

    @property
    def broken_at(self) -> int:
        """When the first of its edges went away; STILL if it never did."""
        return min(e.end for e in self.edges)

    def key(self) -> frozenset[tuple[int, int, int]]:
        return frozenset((e.waiter, e.target, e.resource) for e in self.edges)


def wait_edges(c: Causality, waits: Waits, holds: Holds) -> list[WaitEdge]:
    """All wait-for edges with their intervals (see the module doc)."""
    trace = c.trace
    adj = c.clocks.adjusted
    ev = trace.events
    w_start = times_or_still(adj, waits.block)
    w_end = times_or_still(adj, waits.end)
    h_start = times_or_still(adj, holds.acquire)
    h_end = times_or_still(adj, holds.release)
    rows_of_client = c.hops.server_of_client()
    unit_end = times_or_still(adj, first_per_unit(trace, K.UNIT_END))
    edges: list[WaitEdge] = []
    kinds = [r.kind for r in trace.resources]
    join_unit = [int(r.unit) for r in trace.resources]
    awaited: dict[int, list[int]] = {}  # future resource -> the units it waits for
    for r, v in waits_for_pairs(trace).tolist():
        awaited.setdefault(r, []).append(v)
    hold_ptr = np.searchsorted(holds.res, np.arange(len(trace.resources) + 1)).tolist()
    h_unit, h_acq = holds.unit.tolist(), holds.acquire.tolist()
    recv_unit = ev.unit
    # Plain lists: this loop runs once per wait, and numpy scalars are slow to index.
    for row, (r, u, reason, ws, we) in enumerate(
        zip(
            waits.res.tolist(),
            waits.unit.tolist(),
            waits.reason.tolist(),
            w_start.tolist(),
            w_end.tolist(),
            strict=True,
        )
    ):
        if r < 0:
            continue
        kind = kinds[r]
        if kind in OWNED_LOCKS and reason in (Reason.ACQUIRE, Reason.ACQUIRE_SHARED):
            lo, hi = hold_ptr[r], hold_ptr[r + 1]
            if lo == hi:
                continue
            hs, he = h_start[lo:hi], h_end[lo:hi]
            for h in _overlapping(hs, he, holds.shared[lo:hi], ws, we):
                if reason == Reason.ACQUIRE_SHARED and holds.shared[lo + h]:
                    continue  # readers do not wait for readers
                s, e = max(ws, int(hs[h])), min(we, int(he[h]))
                if s < e:
                    edges.append(WaitEdge(u, h_unit[lo + h], Via.LOCK, r, row, h_acq[lo + h], s, e))
        elif kind == "rpc" or reason == Reason.RPC:
            hop = rows_of_client.get(r)
            if hop is None:
                continue
            recv, reply = int(c.hops.recv[hop]), int(c.hops.reply[hop])
            if recv < 0 or recv_unit[recv] < 0:
                continue
            s = max(ws, int(adj[recv]))
            e = min(we, int(adj[reply]) if reply >= 0 else STILL)
            if s < e:
                edges.append(WaitEdge(u, int(recv_unit[recv]), Via.RPC, r, row, recv, s, e))
        elif kind == "join" or reason == Reason.JOIN:
            v = join_unit[r]
            if v < 0:
                continue
            e = min(we, int(unit_end[v]))
            if ws < e:
                edges.append(WaitEdge(u, v, Via.JOIN, r, row, NO_INDEX, ws, e))
        elif r in awaited:
            for v in awaited[r]:
                e = min(we, int(unit_end[v]))
                if ws < e:
                    edges.append(WaitEdge(u, v, Via.JOIN, r, row, NO_INDEX, ws, e))
    return edges


def _overlapping(hs: np.ndarray, he: np.ndarray, shared: np.ndarray, ws: int, we: int) -> list[int]:
    """Rows of one lock's holds (sorted by start) that overlap [ws, we).

    Holds starting inside the wait are a contiguous range; of those starting before it,
    only the latest can still be running for an exclusive lock, and for an rwlock the
    readers back to the last writer (readers and a writer never overlap).
    """
    lo = int(np.searchsorted(hs, ws, side="right"))
    hi = int(np.searchsorted(hs, we, side="left"))
    rows = [h for h in range(lo, hi) if he[h] > ws]
    h = lo - 1
    while h >= 0:
        if he[h] > ws:
            rows.insert(0, h)
        if not shared[h]:
            break
        h -= 1
    return rows


def find_cycles(edges: list[WaitEdge]) -> list[Cycle]:
    """Each distinct cycle once, in the order they formed (see the module doc)."""
    edges = [e for e in edges if e.start < e.end]
    candidates = _on_static_cycles(edges)
    points: list[tuple[int, int, int]] = []
    for i in candidates:
        points.append((edges[i].start, 1, i))
        points.append((edges[i].end, 0, i))
    points.sort()
    active: dict[int, dict[int, list[int]]] = {}
    found: dict[frozenset[tuple[int, int, int]], Cycle] = {}
    for t, is_start, i in points:
        e = edges[i]
        if not is_start:
            if t < STILL:
                out = active[e.waiter][e.target]
                out.remove(i)
                if not out:
                    del active[e.waiter][e.target]
            continue
        active.setdefault(e.waiter, {}).setdefault(e.target, []).append(i)
        path = _path(active, e.target, e.waiter)
        if path is None:
            continue
        cycle = Cycle(tuple(edges[j] for j in [i, *path]), t, 1)
        key = cycle.key()
        if key in found:
            old = found[key]
            found[key] = Cycle(old.edges, old.formed_at, old.repeats + 1)
        else:
            found[key] = cycle
    return list(found.values())


def _path(active: dict[int, dict[int, list[int]]], start: int, goal: int) -> list[int] | None:
    """Edge ids of a path start -> ... -> goal in the current graph (empty if start == goal)."""
    if start == goal:
        return []
    parent: dict[int, tuple[int, int]] = {start: (start, -1)}
    stack = [start]
    while stack:
        node = stack.pop()
        for nxt, ids in active.get(node, {}).items():
            if nxt in parent:
                continue
            parent[nxt] = (node, ids[0])
            if nxt == goal:
                path: list[int] = []
                node_back = nxt
                while node_back != start:
                    node_back, edge = parent[node_back]
                    path.append(edge)
                return path[::-1]
            stack.append(nxt)
    return None


def _on_static_cycles(edges: list[WaitEdge]) -> list[int]:
    """Ids of edges inside a strongly connected component of the time-less graph
    (Tarjan's algorithm, iterative), or on a self-loop: only these can be on a cycle."""
    succ: dict[int, set[int]] = {}
    for e in edges:
        succ.setdefault(e.waiter, set()).add(e.target)
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    comp: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    counter = 0
    for root in list(succ):
        if root in index:
            continue
        work = [(root, iter(sorted(succ.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(succ.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp[w] = node
                    if w == node:
                        break
    size: dict[int, int] = {}
    for c in comp.values():
        size[c] = size.get(c, 0) + 1
    return [
        i
        for i, e in enumerate(edges)
        if e.waiter == e.target
        or (comp.get(e.waiter) == comp.get(e.target) and size[comp[e.waiter]] > 1)
    ]
