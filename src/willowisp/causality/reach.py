"""Happens-before queries: does event ``a`` happen before event ``b``?

The relation is program order within each unit plus the cross-unit edges of the
happens-before graph (:mod:`willowisp.causality.graph`, facts only: confidence 1.0) and of
locks shared between processes (:mod:`willowisp.causality.shared_locks`). Races ask it for
many pairs of accesses; a diff or a query may ask it too. Usage::

    index = ReachIndex.build(causality, events)   # the events queries will name
    index.happens_before(a, b)                    # one pair
    index.ordered(a_array, b_array)               # many: a[i] happens before b[i]

**How.** Each unit is a chain (its events are totally ordered by program order), so a
vector clock needs one entry per chain, and only at *synchronization points*: the events
where an edge leaves or enters a unit. For an event ``a`` of unit U and an event ``b`` of
another unit, ``a`` happens before ``b`` exactly when some synchronization point of U at or
after ``a`` reaches ``b``; so the clock of ``b``'s unit at ``b`` needs to say, per chain,
only the latest event of that chain known there: ``a -> b`` iff ``VC(b)[U] >= a``. Events
are global indices and within a unit they increase in program order, so they serve as
chain positions.

Clocks are computed by one sweep over the synchronization points (and the events asked
about) in a topological order: a unit's running clock takes the entry-wise maximum of
what each incoming edge carries, and an edge carries a copy of its sender's clock with the
sender's own position, made when it is sent and dropped once every receiver has it (only
edges in flight hold one). Clocks are kept only at the ``events`` given (a row per event,
shared by consecutive events of a unit whose clock did not change), never per event x
unit for the whole trace.

**Which chains.** Only the units of ``events`` are chains, and a chain's positions below
its first event are not recorded: races pass their accesses, so clocks are as wide as the
units that touch shared data, not as the trace. Chains are swept in blocks of
``BLOCK`` columns, so the running clocks take units x BLOCK integers whatever the width.

**Order of the sweep.** Adjusted time is almost a topological order (clock alignment keeps
every certain cross-process edge in order); ties and the rare edge that runs backwards
(inconsistent clocks) are repaired by relaxing sort keys in whole-array rounds (an edge
pushes its destination after its source; a unit's keys never decrease), a handful of
rounds in practice. Edges still against the order after 64 rounds close a cycle (damaged
input: an edge into the past); they are left out and counted in ``dropped``. Points before
the first event asked about carry nothing yet and points after the last are never asked
about: both are skipped.

**Cost.** With V synchronization points, E edges, T events asked about and W chains:
O((V + T) log(V + T)) for the order, then per block of chains one pass of a Python loop
doing one numpy row operation per edge end (about 1 µs): O((V + E) x ceil(W / BLOCK))
time. Memory O(V + E + units x BLOCK + R x W), R <= T the distinct clock rows kept. A
million events with 320,000 edges and 64 chains take about a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.causality.link import Causality
from willowisp.causality.shared_locks import shared_lock_edges
from willowisp.ingest.tables import NO_INDEX

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Bools = npt.NDArray[np.bool_]

MAX_ROUNDS = 64  # order-repair rounds before the remaining backward edges are dropped
BLOCK = 256  # chains per sweep: the running clocks are units x BLOCK int32
NONE32 = np.int32(NO_INDEX)


@dataclass(frozen=True, slots=True)
class ReachIndex:
    """Answers happens-before for pairs of the events it was built for (see module doc).

    Read-only once built. Invariant: for an event ``events[i]`` of unit u, ``rows[row[i],
    c]`` is the latest event of chain c's unit that happens before it (NO_INDEX if none),
    for every chain c but u's own.
    """

    unit: I32  # per event of the trace: its unit (NO_INDEX for none)
    chain_of_unit: I64  # per unit: its chain number (a column of rows), NO_INDEX if none
    first: I64  # per chain: its least event in ``events``
    events: I64  # the events queries may name, sorted
    row: I64  # per event of ``events``: its clock's row in ``rows``, NO_INDEX if empty
    rows: I32  # distinct clocks, one column per chain
    src: I64  # the edges used, sorted by (dst, src): for explanations
    dst: I64
    dropped: int  # edges left out because they ran against every topological order

    @staticmethod
    def build(c: Causality, events: npt.ArrayLike) -> ReachIndex:
        """The index over ``c``'s certain happens-before edges and its shared locks, for
        queries naming only ``events`` (on either side)."""
        g = c.graph
        keep = g.certain
        s_lock, d_lock = shared_lock_edges(c.trace, c.clocks.domain_of_proc)
        src = np.concatenate([g.src[keep], s_lock])
        dst = np.concatenate([g.dst[keep], d_lock])
        return ReachIndex.from_edges(c.trace.events.unit, c.clocks.adjusted, src, dst, events)

    @staticmethod
    def from_edges(
        unit: npt.ArrayLike,
        time: npt.ArrayLike,
        src: npt.ArrayLike,
        dst: npt.ArrayLike,
        events: npt.ArrayLike,
    ) -> ReachIndex:
        """The index over explicit edges. ``unit`` and ``time`` are per event: a unit's
        events must be in program order by index, and ``time`` should order most edges
        forwards (it only seeds the sweep order). Events of no unit are ignored."""
        unit = np.asarray(unit, dtype=np.int32)
        time = np.asarray(time, dtype=np.int64)
        s = np.asarray(src, dtype=np.int64)
        d = np.asarray(dst, dtype=np.int64)
        ok = (s >= 0) & (d >= 0)
        s, d = s[ok], d[ok]
        ok = (unit[s] >= 0) & (unit[d] >= 0) & (unit[s] != unit[d])
        s, d = s[ok], d[ok]
        if len(s):  # unique (dst, src) pairs, sorted: one key per pair
            span = np.int64(len(unit) + 1)
            pair = sorted_unique(d * span + s)
            d, s = pair // span, pair % span
        asked = sorted_unique(np.asarray(events, dtype=np.int64))
        asked = asked[unit[asked] >= 0] if len(asked) else asked
        n_units = int(unit.max()) + 1 if len(unit) else 0
        chain_of_unit = np.full(n_units, NO_INDEX, dtype=np.int64)
        tracked, at = np.unique(unit[asked], return_index=True)
        chain_of_unit[tracked] = np.arange(len(tracked))
        first = asked[at].astype(np.int64)  # asked is sorted: each unit's first event
        order, live, forward, dropped = _sweep_order(unit, time, s, d, asked)
        row, rows = _sweep(unit, chain_of_unit, first, order, s[live], d[live], asked)
        s, d = s[forward], d[forward]
        return ReachIndex(unit, chain_of_unit, first, asked, row, rows, s, d, dropped)

    # --- queries --------------------------------------------------------------------------

    def ordered(self, a: npt.ArrayLike, b: npt.ArrayLike) -> Bools:
        """Per pair: does ``a[i]`` happen before ``b[i]``? (An event does not happen before
        itself.) Raises ValueError for an event the index was not built for."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        ua, ub = self.unit[a], self.unit[b]
        out = np.zeros(len(a), dtype=bool)
        same = ua == ub
        out[same] = a[same] < b[same]
        other = np.flatnonzero(~same)
        if len(other):
            a, b = a[other], b[other]
            self._rows_of(a)  # a must have been asked for (its chain's positions are kept)
            chain = self.chain_of_unit[ua[other]]
            out[other] = self._known(b, chain) >= a
        return out

    def happens_before(self, a: int, b: int) -> bool:
        """Does event ``a`` happen before event ``b``? (See ``ordered``.)"""
        return bool(self.ordered(np.array([a]), np.array([b]))[0])

    def concurrent(self, a: npt.ArrayLike, b: npt.ArrayLike) -> Bools:
        """Per pair: distinct events neither of which happens before the other."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        out: Bools = ~self.ordered(a, b) & ~self.ordered(b, a) & (a != b)
        return out

    def last_before(self, b: int, u: int) -> int:
        """The latest event of unit ``u`` (the unit of some event asked about) that
        happens before event ``b`` of another unit, a synchronization point: where ``b``
        last heard from ``u``. NO_INDEX if it never did."""
        if not 0 <= u < len(self.chain_of_unit) or self.chain_of_unit[u] < 0:
            raise ValueError(f"unit {u} has no event this index was built for")
        if int(self.unit[b]) == u:
            return NO_INDEX
        return int(self._known(np.array([b]), self.chain_of_unit[[u]])[0])

    def incoming(self, event: int) -> I64:
        """Sources of the edges into ``event`` (for explanations)."""
        lo, hi = np.searchsorted(self.dst, [event, event + 1])
        return self.src[lo:hi]

    def _rows_of(self, e: I64) -> I64:
        pos = np.searchsorted(self.events, e)
        found = pos < len(self.events)
        found[found] = self.events[pos[found]] == e[found]
        if not found.all():
            i = int(e[np.argmin(found)])
            raise ValueError(f"event {i}: not one the index was built for (ReachIndex.build)")
        return self.row[pos]

    def _known(self, b: I64, chain: I64) -> I64:
        """Per query: the latest event of ``chain`` known at ``b``, NO_INDEX if none."""
        row = self._rows_of(b)
        has = row >= 0
        out = np.full(len(b), NO_INDEX, dtype=np.int64)
        out[has] = self.rows[row[has], chain[has]]
        return out


def sorted_unique(x: npt.ArrayLike) -> I64:
    """The distinct values of an int64 array, sorted. A sort and a mask: numpy 2's
    ``np.unique`` takes a hash-based path for plain integers that is an order of magnitude
    slower on millions of values."""
    k = np.sort(np.asarray(x, dtype=np.int64))
    if len(k) > 1:
        k = k[np.concatenate([[True], k[1:] != k[:-1]])]
    return k


def _sweep_order(unit: I32, time: I64, s: I64, d: I64, asked: I64) -> tuple[I64, Bools, Bools, int]:
    """The synchronization points and asked events in a topological order, trimmed to the
    span from the first to the last asked event; which edges the sweep needs (forward and
    within that span), which are forward at all, and how many were dropped.

    Keys start at each point's time; each round pushes every edge's destination after its
    source and makes keys non-decreasing along each unit; a few rounds reach a fixed point.
    Ties are broken by event index, which is program order within a unit."""
    nodes = sorted_unique(np.concatenate([s, d, asked]))
    no = np.zeros(len(s), dtype=bool)
    if not len(nodes) or not len(asked):
        return nodes[:0], no, no, 0
    sn = np.searchsorted(nodes, s)
    dn = np.searchsorted(nodes, d)
    key = time[nodes] - int(time[nodes].min())
    by_unit = np.argsort(unit[nodes], kind="stable")  # nodes is sorted: program order kept
    seg_unit = unit[nodes][by_unit].astype(np.int64)
    seg = np.cumsum(np.concatenate([[0], seg_unit[1:] != seg_unit[:-1]]))
    for _ in range(MAX_ROUNDS):
        new = key.copy()
        np.maximum.at(new, dn, key[sn] + 1)
        base = int(new.max()) + 1
        if base * (int(seg[-1]) + 1) >= 2**62:
            raise ValueError("times out of range for the sweep order")
        run = new[by_unit] + seg * base
        new[by_unit] = np.maximum.accumulate(run) - seg * base
        if np.array_equal(new, key):
            break
        key = new
    forward = key[dn] > key[sn]
    sorted_nodes = np.lexsort((nodes, key))
    rank = np.empty(len(nodes), dtype=np.int64)
    rank[sorted_nodes] = np.arange(len(nodes))
    asked_rank = rank[np.searchsorted(nodes, asked)]
    lo, hi = int(asked_rank.min()), int(asked_rank.max())
    # Before the first asked event every clock is empty; after the last nothing is asked.
    live = forward & (rank[sn] >= lo) & (rank[dn] <= hi)
    dropped = int(np.count_nonzero(~forward))
    return nodes[sorted_nodes[lo : hi + 1]], live, forward, dropped


def _sweep(
    unit: I32, chain_of_unit: I64, first: I64, order: I64, s: I64, d: I64, asked: I64
) -> tuple[I64, I32]:
    """The clock rows of the asked events (see the module doc): per asked event its row,
    and the rows. ``s``/``d`` are sorted by destination.

    Hot loop: one pass per block over the points in sweep order, with every per-point fact
    precomputed into Python lists zipped together (indexing numpy per point costs more
    than the work), one numpy row maximum per edge and one row copy per sending point."""
    n_chains = len(first)
    n_units = len(chain_of_unit)
    pos = np.full(len(unit), NO_INDEX, dtype=np.int64)
    pos[order] = np.arange(len(order))
    lo = np.searchsorted(d, order, side="left")
    hi = np.searchsorted(d, order, side="right")
    # An edge's snapshot is dropped at its source's last edge, in sweep order.
    by_src = np.lexsort((pos[d], s))
    last = np.zeros(len(s), dtype=bool)
    if len(s):
        ends = np.flatnonzero(np.concatenate([s[by_src][1:] != s[by_src][:-1], [True]]))
        last[by_src[ends]] = True
    is_src = np.zeros(len(unit), dtype=bool)
    is_src[s] = True
    is_asked = np.zeros(len(unit), dtype=bool)
    is_asked[asked] = True
    units = unit[order]
    # Rows: an asked event gets a new row when its unit's clock changed since the unit's
    # last row (the same in every block: merges happen at the same points).
    row_at = [NO_INDEX] * len(order)
    n_rows = 0
    dirty = [False] * n_units
    last_row = [NO_INDEX] * n_units
    merges = (hi > lo).tolist()
    flags = zip(units.tolist(), merges, is_asked[order].tolist(), strict=True)
    for i, (u, merge, ask) in enumerate(flags):
        if merge:
            dirty[u] = True
        if ask:
            if dirty[u]:
                dirty[u] = False
                last_row[u] = n_rows
                n_rows += 1
            row_at[i] = last_row[u]
    rows = np.full((n_rows, n_chains), NONE32, dtype=np.int32)
    chain = chain_of_unit.tolist()
    first_of = [int(first[c]) if c >= 0 else 0 for c in chain]
    # Own positions: a sending point of a tracked unit at or after its first asked event.
    own_ok = (
        [
            c >= 0 and e >= first_of[u]
            for e, u, c in zip(
                order.tolist(), units.tolist(), chain_of_unit[units].tolist(), strict=True
            )
        ]
        if n_units
        else []
    )
    # Per point, zipped afresh for each block (no tuple per point is kept).
    columns = (
        order.tolist(),
        units.tolist(),
        lo.tolist(),
        hi.tolist(),
        row_at,
        is_src[order].tolist(),
        own_ok,
    )
    srcs = s.tolist()
    lasts = last.tolist()
    maximum = np.maximum
    for c0 in range(0, max(n_chains, 1), BLOCK):
        width = min(BLOCK, n_chains - c0)
        if width <= 0:
            break
        clocks = np.full((n_units, width), NONE32, dtype=np.int32)
        col = [c - c0 if c0 <= c < c0 + width else NO_INDEX for c in chain]
        sent: dict[int, npt.NDArray[np.int32]] = {}
        written = [NO_INDEX] * n_units
        for e, u, a, b, r, sends, own in zip(*columns, strict=True):
            if b > a:
                mine = clocks[u]
                for j in range(a, b):
                    x = srcs[j]
                    maximum(mine, sent.pop(x) if lasts[j] else sent[x], out=mine)
            if r >= 0 and written[u] != r:
                written[u] = r
                rows[r, c0 : c0 + width] = clocks[u]
            if sends:
                copy = clocks[u].copy()
                if own and col[u] >= 0:
                    copy[col[u]] = e
                sent[e] = copy
    at = pos[asked]
    row = np.full(len(asked), NO_INDEX, dtype=np.int64)
    inside = at >= 0  # asked events outside the swept span have no row
    row[inside] = np.array(row_at, dtype=np.int64)[at[inside]]
    # The own unit's column of a row may hold what others knew of it: a unit is never
    # asked about itself through rows (program order answers), so it does no harm.
    return row, rows
