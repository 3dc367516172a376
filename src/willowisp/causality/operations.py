"""Logical operations, and each event's time since the root of its operation.

A logical operation is a trace in the W3C sense, keyed by its trace id. An event belongs to
one by the first of these rules that applies:

1. it is on a hop resource (a request, a message, a spawn) that carries a trace id: that
   trace (the client's ``msg.send``, ``unit.block`` and ``rpc.response``, the server's
   ``msg.recv`` and ``rpc.reply``, ``proc.spawn``/``proc.start``);
2. its unit is handling an inbound request or message: from the server side's
   ``msg.recv`` to its ``rpc.reply`` on the same unit, or, for a message (or a request the
   unit never answered itself), to the unit's next inbound receive or its end;
3. its unit works through a thread pool's queue (a ``queue`` resource with ``pool`` 1):
   from each ``queue.get`` on it to the unit's next get there (or its end), the operation
   of the ``queue.put`` that handed it that item — the job's submitter's; a pool worker
   between jobs belongs to none;
4. its unit inherited the operation: a unit created by an event of an operation
   (``unit.create``) belongs to it for its whole life, and so do the units it creates; a
   process started inside one (its ``proc.start`` carries the parent's context) gives it to
   its parentless units. Inheritance follows creation, never timing (a pool worker started
   by the first job inherits nothing: rule 3 says whose its work is).

The **root** of an operation is its earliest event in causal order, taken as the event of
the operation with the least adjusted time: alignment keeps certain cross-domain edges in
order and a process's events are in its own clock's order, so nothing else of the operation
happened before it. A client with no inbound context roots the trace at its ``msg.send``
(or at ``proc.spawn``, if it started a child first); a request handled in a thread created
for it roots nothing, since the thread's start came before the request reached it.

Events in no operation are timed against the root of their unit's creation tree: the
earliest event of the units descended from the same parentless unit (a program's main
thread and everything it started), or, for events done by no unit (agent metadata), their
process's first event.

``root_rel_ns = adjusted - adjusted[root]``: non-negative for an operation's events (up to
the alignment's uncertainty), comparable across processes and clocks.

Cost: one gather per rule; for the inbound intervals a visit of the rows inside them (the
row number is a process's time order), or, when they are long, one binary search per event
over keys ``unit * rows + row`` that order all units' intervals at once; a sort of the
events that belong to some operation. Python loops only over resources, units and
``unit.create`` events, never over events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.causality.graph import queue_pairs
from willowisp.causality.hops import HopKind, Hops
from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

NO_OPERATION = -1  # an event that belongs to no logical operation


@dataclass(frozen=True, slots=True)
class Operations:
    """Per event: its operation and its time since that operation's root."""

    trace_ids: tuple[str, ...]  # operation index -> W3C trace id
    op: I32  # per event: operation index, NO_OPERATION if none
    root: I64  # per operation: its root event, NO_INDEX if it has no events
    root_rel_ns: I64  # per event: adjusted time minus its root's (see the module doc)
    # The fallback roots: per unit, the first event of its creation tree (NO_INDEX if the
    # tree has none); per process, its first event.
    tree_root: I64
    proc_root: I64

    def root_of(self, trace: Trace, i: int) -> int:
        """The event that event i's ``root_rel_ns`` is measured from."""
        o = int(self.op[i])
        if o != NO_OPERATION:
            return int(self.root[o])
        u = int(trace.events.unit[i])
        if u >= 0 and self.tree_root[u] >= 0:
            return int(self.tree_root[u])
        return int(self.proc_root[int(trace.events.proc[i])])

    def trace_id_of(self, i: int) -> str | None:
        o = int(self.op[i])
        return self.trace_ids[o] if o != NO_OPERATION else None


def operations(trace: Trace, hops: Hops, adjusted: I64) -> Operations:
    """Attribute every event to a logical operation and time it from the root."""
    ev = trace.events
    # Trace id -> operation index, once per resource ("" -> none).
    tids = [r.trace_id for r in trace.resources]
    seen = dict.fromkeys(tids)
    seen.pop("", None)
    ids = {t: i for i, t in enumerate(seen)}
    ids_or_none = {**ids, "": NO_OPERATION}
    res_op = np.fromiter(map(ids_or_none.__getitem__, tids), np.int32, len(tids))
    op = np.full(len(ev), NO_OPERATION, dtype=np.int32)
    on_res = np.flatnonzero(ev.res >= 0)
    if len(res_op):
        op[on_res] = res_op[ev.res[on_res]]
    _inbound(trace, hops, res_op, op)
    unit_op = _inherited(trace, op)
    workers = _pooled(trace, op, unit_op)
    if workers.any():  # again: units created inside a job take the job's operation
        unit_op = _inherited(trace, op, workers[:-1])
    free = np.flatnonzero((op == NO_OPERATION) & (ev.unit >= 0))
    free = free[~workers[ev.unit[free]]]
    op[free] = unit_op[ev.unit[free]]

    root = np.full(len(ids), NO_INDEX, dtype=np.int64)
    member = np.flatnonzero(op != NO_OPERATION)
    if len(member):
        order = member[np.lexsort((member, adjusted[member], op[member]))]
        first = np.ones(len(order), dtype=bool)
        first[1:] = op[order[1:]] != op[order[:-1]]
        root[op[order[first]]] = order[first]

    tree_root = _tree_roots(trace)
    proc_root = trace.proc_bounds[:-1].copy()
    # unit NO_INDEX (-1) picks the appended NO_INDEX: those few go to their process's root
    base = np.append(tree_root, NO_INDEX)[ev.unit]
    unrooted = np.flatnonzero(base < 0)
    base[unrooted] = proc_root[ev.proc[unrooted]]
    base[member] = root[op[member]]
    rel: I64 = adjusted - adjusted[base] if len(ev) else np.zeros(0, np.int64)
    return Operations(tuple(ids), op, root, rel, tree_root, proc_root)


def _inbound(trace: Trace, hops: Hops, res_op: I32, op: I32) -> None:
    """Rule 2: events of a unit between its inbound receive and its reply (in place, only
    where ``op`` is still unset)."""
    ev = trace.events
    n = len(ev)
    rows = np.flatnonzero((hops.kind != HopKind.SPAWN) & (hops.server >= 0) & (hops.recv >= 0))
    recv, first = np.unique(hops.recv[rows], return_index=True)
    rows = rows[first]
    which = res_op[hops.server[rows]] if len(res_op) else np.zeros(0, np.int32)
    unit = ev.unit[recv].astype(np.int64)
    keep = (which != NO_OPERATION) & (unit >= 0)
    recv, rows, which, unit = recv[keep], rows[keep], which[keep], unit[keep]
    if not len(recv):
        return
    reply = hops.reply[rows]
    answered = (reply >= recv) & (ev.unit[np.maximum(reply, 0)] == unit)
    last_row = trace.proc_bounds[ev.proc[recv].astype(np.int64) + 1] - 1
    order = np.lexsort((recv, unit))
    start, unit, which = recv[order], unit[order], which[order]
    end = np.where(answered, reply, last_row)[order]
    # An interval ends, at the latest, just before the unit's next inbound receive.
    same = unit[1:] == unit[:-1]
    end[:-1][same] = np.minimum(end[:-1][same], start[1:][same] - 1)
    length = np.maximum(end - start + 1, 0)
    if int(length.sum()) <= n:
        # Handling is usually short: visit the rows inside the intervals (every unit's,
        # since rows interleave units) and keep the handling unit's own.
        k = np.repeat(np.arange(len(start)), length)
        inside = start[k] + np.arange(len(k)) - np.repeat(np.cumsum(length) - length, length)
        mine = (ev.unit[inside] == unit[k]) & (op[inside] == NO_OPERATION)
        op[inside[mine]] = which[k[mine]]
        return
    # Long intervals (a consumer working until its next message): one binary search per
    # event of a handling unit, over keys ``unit * n + row`` that order all intervals.
    start_key, end_key = unit * n + start, unit * n + end
    handles = np.zeros(len(trace.units) + 1, dtype=bool)  # last: unit NO_INDEX
    handles[unit] = True
    todo = np.flatnonzero((op == NO_OPERATION) & handles[ev.unit])
    key = ev.unit[todo].astype(np.int64) * n + todo
    at = np.searchsorted(start_key, key, side="right") - 1
    hit = (at >= 0) & (key <= end_key[np.maximum(at, 0)])
    op[todo[hit]] = which[at[hit]]


def _pooled(trace: Trace, op: I32, unit_op: I32) -> npt.NDArray[np.bool_]:
    """Rule 3 (in place, only where ``op`` is still unset): a pool worker's events from a
    ``queue.get`` on its pool's queue to its next get there take the operation of the
    ``queue.put`` that item came from (its own op, or its unit's inherited one). Returns
    per unit (and one more for no unit) whether it is such a worker, whose other events
    belong to no operation."""
    ev = trace.events
    n = len(ev)
    workers = np.zeros(len(trace.units) + 1, dtype=bool)  # last: unit NO_INDEX
    pools = [r.index for r in trace.resources if r.kind == "queue" and ("pool", 1) in r.attrs]
    if not pools or not n:
        return workers
    puts, gets = queue_pairs(trace)
    keep = np.isin(ev.res[gets], pools) & (ev.unit[gets] >= 0)
    puts, gets = puts[keep], gets[keep]
    if not len(gets):
        return workers
    put_unit = ev.unit[puts]
    which = np.where(
        op[puts] != NO_OPERATION,
        op[puts],
        np.where(put_unit >= 0, unit_op[np.maximum(put_unit, 0)], NO_OPERATION),
    ).astype(np.int32)
    unit = ev.unit[gets].astype(np.int64)
    workers[unit] = True
    order = np.lexsort((gets, unit))
    start, unit, which = gets[order].astype(np.int64), unit[order], which[order]
    end = (trace.proc_bounds[ev.proc[start].astype(np.int64) + 1] - 1).astype(np.int64)
    same = unit[1:] == unit[:-1]
    end[:-1][same] = np.minimum(end[:-1][same], start[1:][same] - 1)
    # one binary search per event of a worker, over keys ``unit * n + row``
    start_key, end_key = unit * n + start, unit * n + end
    todo = np.flatnonzero((op == NO_OPERATION) & workers[ev.unit])
    key = ev.unit[todo].astype(np.int64) * n + todo
    at = np.searchsorted(start_key, key, side="right") - 1
    hit = (at >= 0) & (key <= end_key[np.maximum(at, 0)])
    op[todo[hit]] = which[at[hit]]
    return workers


def _inherited(trace: Trace, op: I32, workers: npt.NDArray[np.bool_] | None = None) -> I32:
    """Rule 4: per unit, the operation it inherited from its creation, NO_OPERATION if none;
    never for ``workers`` (pool workers: rule 3 says whose their work is)."""
    ev = trace.events
    unit_op = np.full(len(trace.units), NO_OPERATION, dtype=np.int32)
    proc_op = np.full(len(trace.processes), NO_OPERATION, dtype=np.int32)
    starts = np.flatnonzero((ev.kind == K.PROC_START) & (op != NO_OPERATION))
    for e in starts[::-1].tolist():  # reversed: the first proc.start of a process wins
        proc_op[int(ev.proc[e])] = op[e]
    parentless = np.array([u.parent < 0 for u in trace.units], dtype=bool).reshape(-1)
    if len(unit_op):
        unit_op[parentless] = proc_op[trace.unit_proc[parentless]]
    creates = np.flatnonzero(ev.kind == K.UNIT_CREATE)
    if not len(creates):
        return unit_op
    # Row order is each process's time order: a unit is created before it creates others,
    # so its own operation is known when its unit.create events are reached.
    children = trace.unit_index(ev.proc[creates], ev.arg[creates]).tolist()
    for child, creator, own in zip(
        children, ev.unit[creates].tolist(), op[creates].tolist(), strict=True
    ):
        if child < 0:
            continue
        got = own if own != NO_OPERATION else (unit_op[creator] if creator >= 0 else own)
        if got != NO_OPERATION and (workers is None or not workers[child]):
            unit_op[child] = got
    return unit_op


def _tree_roots(trace: Trace) -> I64:
    """Per unit: the first event of any unit in its creation tree (NO_INDEX if none)."""
    ev = trace.events
    n_units = len(trace.units)
    first = np.full(n_units, np.iinfo(np.int64).max, dtype=np.int64)
    done = np.flatnonzero(ev.unit >= 0)
    np.minimum.at(first, ev.unit[done], done)
    # The parentless ancestor of every unit (a parent chain that loops, which only a
    # damaged trace can give, stops where it would revisit a unit).
    top = [-1] * n_units
    for u in range(n_units):
        chain: list[int] = []
        on_chain: set[int] = set()
        x = u
        while top[x] < 0:
            chain.append(x)
            on_chain.add(x)
            parent = int(trace.units[x].parent)
            if parent < 0 or parent in on_chain:
                top[x] = x
                chain.pop()
                break
            x = parent
        for y in chain:
            top[y] = top[x]
    tops = np.asarray(top, dtype=np.int64)
    tree_first = np.full(n_units, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(tree_first, tops, first)
    out: I64 = tree_first[tops]
    return np.where(out == np.iinfo(np.int64).max, NO_INDEX, out)
