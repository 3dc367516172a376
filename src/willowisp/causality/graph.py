"""The happens-before graph: cross-unit edges as arrays, program order left implicit.

Edges follow docs/format.md ("How the events are used"):

===========  =============================================================================
SPAWN        ``unit.create`` -> the created unit's first ``unit.start``
JOIN         the joined unit's ``unit.end`` -> ``join.done`` naming it; each unit a
             ``future`` resource's ``waits_for`` names (an asyncio gather, a TaskGroup's
             exit, asyncio.wait for all), ``unit.end`` -> a ``unit.wake`` on that resource
             after it, unless the waiter was cancelled
LOCK         ``lock.release`` -> the next ``lock.acquired`` of that lock (for an rlock, the
             release that brings the depth to 0 -> the next outermost acquire)
QUEUE        ``queue.put`` -> ``queue.get`` with the same (queue, token); a reused token
             pairs its k-th put with its k-th get
NOTIFY       the latest ``sync.notify`` on a resource -> a ``unit.wake`` with outcome ok
             on it; at a barrier, every ``sync.arrive`` of a generation -> each ok
             ``unit.wake`` of that generation
REQUEST      client ``msg.send`` -> server ``msg.recv`` (matched by trace context)
REPLY        server ``rpc.reply`` -> client ``rpc.response``
PROCESS      ``proc.spawn`` -> the child's ``proc.start``
MESSAGE      producer ``msg.send`` -> consumer ``msg.recv`` (matched by the span id that
             crossed the wire, else by message id: :mod:`willowisp.causality.messages`)
===========  =============================================================================

Every edge carries its evidence (:mod:`willowisp.causality.provenance`): ``provenance``
says where it came from (the runtime recorded both ends; a span id in a wire header; a
message id; a span link; an inference) and ``confidence`` how sure it is (1.0 for a fact).
Edges within a process are runtime facts; a message linked by an id that recurs in the
trace is below 1.0. Users that need facts filter on ``certain``; the others may ignore the
columns, which is why the three original arrays are unchanged.

Program order within a unit is not stored: it is the stable sort by unit
(:mod:`willowisp.causality.program_order`), so storing it would only double the graph.
Only edges between different units are kept. Each rule is a handful of numpy operations
over the events of the kinds involved: "the latest X before Y on the same resource" is a
running maximum over a resource-sorted subset, pairing by token is a sort and an
intersection. Nothing loops per event.

Within a process, resources are local and event order is the process's own clock, which is
what makes "latest before" exact there; across processes the only edges are those the
wire context or a message id proves (REQUEST, REPLY, PROCESS, MESSAGE).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.causality.hops import EdgeWhich, Hops, hop_edge_columns
from willowisp.causality.program_order import first_per_unit
from willowisp.causality.provenance import CERTAIN, Provenance, attr_str
from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K, Outcome

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]


class EdgeKind(enum.IntEnum):
    SPAWN = 1
    JOIN = 2
    LOCK = 3
    QUEUE = 4
    NOTIFY = 5
    REQUEST = 6
    REPLY = 7
    PROCESS = 8
    MESSAGE = 9

    @property
    def crosses_processes(self) -> bool:
        """Can this kind of edge join two processes? (MESSAGE may also stay in one.)"""
        return self in (EdgeKind.REQUEST, EdgeKind.REPLY, EdgeKind.PROCESS, EdgeKind.MESSAGE)


# hops.EdgeWhich -> EdgeKind, indexed by EdgeWhich's value
_HOP_KIND = np.array(
    [EdgeKind.REQUEST, EdgeKind.REPLY, EdgeKind.PROCESS, EdgeKind.MESSAGE], dtype=np.uint8
)
assert [int(w) for w in EdgeWhich] == list(range(len(_HOP_KIND)))


@dataclass(frozen=True, slots=True)
class HBGraph:
    """Cross-unit happens-before edges, sorted by (dst, src). Event indices throughout."""

    src: I64
    dst: I64
    kind: U8  # EdgeKind
    provenance: U8  # Provenance: RUNTIME within a process, WIRE_HEADER / MESSAGE_ID across
    confidence: F32  # in (0, 1]; 1.0 unless the evidence could name another event

    def __len__(self) -> int:
        return len(self.src)

    @property
    def certain(self) -> npt.NDArray[np.bool_]:
        """Edges that are facts (confidence 1.0): the only ones clock alignment may use."""
        certain: npt.NDArray[np.bool_] = self.confidence >= CERTAIN
        return certain

    def provenance_counts(self) -> dict[str, int]:
        """Edges per provenance label, for the document."""
        return {
            p.label: int(np.count_nonzero(self.provenance == p))
            for p in Provenance
            if p != Provenance.NONE
        }

    def incoming(self, event: int) -> I64:
        """Edge rows whose destination is ``event``."""
        lo, hi = np.searchsorted(self.dst, [event, event + 1])
        return np.arange(lo, hi, dtype=np.int64)

    def of_kind(self, *kinds: EdgeKind) -> npt.NDArray[np.bool_]:
        mask: npt.NDArray[np.bool_] = np.isin(self.kind, [int(k) for k in kinds])
        return mask

    def counts(self) -> dict[str, int]:
        return {k.name.lower(): int(np.count_nonzero(self.kind == k)) for k in EdgeKind}


def build(trace: Trace, hops: Hops) -> HBGraph:
    """All cross-unit edges of the trace (see the module doc)."""
    parts = [
        _spawn(trace),
        _join(trace),
        _awaited(trace),
        _lock(trace),
        _queue(trace),
        _notify(trace),
        _barrier(trace),
    ]
    local = sum(len(p[0]) for p in parts)
    hop = hop_edge_columns(hops)
    parts.append((hop.src, hop.dst, _HOP_KIND[hop.which]))
    s = np.concatenate([p[0] for p in parts]).astype(np.int64)
    d = np.concatenate([p[1] for p in parts]).astype(np.int64)
    k = np.concatenate([p[2] for p in parts]).astype(np.uint8)
    prov = np.concatenate([np.full(local, Provenance.RUNTIME, np.uint8), hop.provenance])
    conf = np.concatenate([np.full(local, CERTAIN, np.float32), hop.confidence])
    unit = trace.events.unit
    keep = (s >= 0) & (d >= 0)
    keep[keep] = unit[s[keep]] != unit[d[keep]]
    s, d, k, prov, conf = s[keep], d[keep], k[keep], prov[keep], conf[keep]
    order = np.lexsort((s, d))
    return HBGraph(s[order], d[order], k[order], prov[order], conf[order].astype(np.float32))


Edges = tuple[I64, I64, U8]


def _edges(src: I64, dst: I64, kind: EdgeKind) -> Edges:
    return src, dst, np.full(len(src), kind, dtype=np.uint8)


def _spawn(trace: Trace) -> Edges:
    ev = trace.events
    create = np.flatnonzero(ev.kind == K.UNIT_CREATE)
    child = trace.unit_index(ev.proc[create], ev.arg[create])
    start = first_per_unit(trace, K.UNIT_START)
    dst = np.where(child >= 0, start[np.maximum(child, 0)], NO_INDEX) if len(start) else child
    return _edges(create.astype(np.int64), dst.astype(np.int64), EdgeKind.SPAWN)


def _join(trace: Trace) -> Edges:
    ev = trace.events
    done = np.flatnonzero(ev.kind == K.JOIN_DONE)
    joined = trace.unit_index(ev.proc[done], ev.arg[done])
    end = first_per_unit(trace, K.UNIT_END)
    src = np.where(joined >= 0, end[np.maximum(joined, 0)], NO_INDEX) if len(end) else joined
    return _edges(src.astype(np.int64), done.astype(np.int64), EdgeKind.JOIN)


def _awaited(trace: Trace) -> Edges:
    """The ends of the units a ``future`` resource waits for -> each non-cancelled
    ``unit.wake`` on it that comes after them in the process (a gather that failed early
    resumed before the others ended: only the ends before it are its causes)."""
    pairs = waits_for_pairs(trace)  # (resource, unit) rows, sorted by resource
    ev = trace.events
    empty = np.zeros(0, dtype=np.int64)
    if not len(pairs):
        return _edges(empty, empty, EdgeKind.JOIN)
    wakes = np.flatnonzero(
        (ev.kind == K.UNIT_WAKE) & (ev.arg != Outcome.CANCELLED) & np.isin(ev.res, pairs[:, 0])
    )
    lo = np.searchsorted(pairs[:, 0], ev.res[wakes], side="left")
    hi = np.searchsorted(pairs[:, 0], ev.res[wakes], side="right")
    counts = hi - lo
    dst = np.repeat(wakes, counts).astype(np.int64)
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    units = pairs[np.arange(len(dst)) + starts, 1]
    src = first_per_unit(trace, K.UNIT_END)[units]
    keep = (src >= 0) & (src < dst)  # one process: event order is its clock's
    return _edges(src[keep], dst[keep], EdgeKind.JOIN)


def waits_for_pairs(trace: Trace) -> I64:
    """(resource, unit) index pairs of every ``waits_for`` list, sorted by resource; the
    numbers are the resource's process's (a malformed entry is skipped)."""
    res: list[int] = []
    procs: list[int] = []
    numbers: list[int] = []
    for r in trace.resources:
        if r.kind != "future":
            continue
        listed = attr_str(r, "waits_for").split(",")
        nums = [int(x) for x in listed if x.isdigit() and len(x) < 10]
        res += [int(r.index)] * len(nums)
        procs += [r.proc] * len(nums)
        numbers += nums
    units = trace.unit_index(np.array(procs, dtype=np.int64), np.array(numbers, dtype=np.int64))
    pairs = np.column_stack((np.array(res, dtype=np.int64), units.astype(np.int64)))
    pairs = pairs[pairs[:, 1] >= 0]
    return pairs[np.argsort(pairs[:, 0], kind="stable")]


def latest_before(group: I64, is_src: npt.NDArray[np.bool_]) -> I64:
    """For rows sorted by (group, time): the latest earlier-or-same row of the group with
    ``is_src``, as a row number, or NO_INDEX. A running maximum reset at group starts."""
    n = len(group)
    pos = np.arange(n, dtype=np.int64)
    latest = np.maximum.accumulate(np.where(is_src, pos, NO_INDEX)) if n else pos
    new = np.ones(n, dtype=bool)
    new[1:] = group[1:] != group[:-1]
    start = np.maximum.accumulate(np.where(new, pos, 0)) if n else pos
    return np.where(latest >= start, latest, NO_INDEX)


def _by_resource(trace: Trace, kinds: tuple[int, ...]) -> I64:
    """Events of ``kinds`` on a resource, sorted by (resource, time) (a stable sort keeps
    each resource's events in its process's time order)."""
    ev = trace.events
    idx = np.flatnonzero(np.isin(ev.kind, kinds) & (ev.res >= 0))
    return idx[np.argsort(ev.res[idx], kind="stable")].astype(np.int64)


def _lock(trace: Trace) -> Edges:
    ev = trace.events
    idx = _by_resource(trace, (K.LOCK_ACQUIRED, K.LOCK_RELEASE))
    kind, arg = ev.kind[idx], ev.arg[idx]
    rlock = trace.resource_kind_mask("rlock")[idx]
    # rlocks: only the outermost acquire (depth 1) and the final release (depth 0) count.
    is_rel = (kind == K.LOCK_RELEASE) & (~rlock | (arg == 0))
    is_acq = (kind == K.LOCK_ACQUIRED) & (~rlock | (arg <= 1))
    prev = latest_before(ev.res[idx].astype(np.int64), is_rel)
    rows = np.flatnonzero(is_acq & (prev >= 0))
    return _edges(idx[prev[rows]], idx[rows], EdgeKind.LOCK)


def _queue(trace: Trace) -> Edges:
    ev = trace.events
    puts = np.flatnonzero((ev.kind == K.QUEUE_PUT) & (ev.res >= 0) & (ev.arg != 0))
    gets = np.flatnonzero((ev.kind == K.QUEUE_GET) & (ev.res >= 0) & (ev.arg != 0))
    if not len(puts) or not len(gets):
        return _edges(np.zeros(0, np.int64), np.zeros(0, np.int64), EdgeKind.QUEUE)
    keys = np.concatenate(
        [
            np.stack([ev.res[puts], ev.arg[puts]], axis=1),
            np.stack([ev.res[gets], ev.arg[gets]], axis=1),
        ]
    )
    _, dense = np.unique(keys, axis=0, return_inverse=True)
    dense = dense.reshape(-1).astype(np.int64)
    put_key = _ranked(dense[: len(puts)])
    get_key = _ranked(dense[len(puts) :])
    _, pi, gi = np.intersect1d(put_key, get_key, assume_unique=True, return_indices=True)
    return _edges(puts[pi].astype(np.int64), gets[gi].astype(np.int64), EdgeKind.QUEUE)


def queue_pairs(trace: Trace) -> tuple[I64, I64]:
    """Every (queue.put, queue.get) pair that moved one item (same queue, same token), also
    the pairs within one unit, which the graph leaves out (program order has them): a
    periodic task that hands itself its next run (analysis/boundary.py follows those)."""
    src, dst, _ = _queue(trace)
    return src, dst


def _ranked(key: I64) -> I64:
    """(key, occurrence number of that key in order) folded into one int64."""
    order = np.argsort(key, kind="stable")
    sk = key[order]
    pos = np.arange(len(sk), dtype=np.int64)
    new = np.ones(len(sk), dtype=bool)
    new[1:] = sk[1:] != sk[:-1]
    rank = pos - np.maximum.accumulate(np.where(new, pos, 0))
    out = np.empty(len(key), dtype=np.int64)
    out[order] = sk * (1 << 31) + rank
    return out


def _notify(trace: Trace) -> Edges:
    ev = trace.events
    idx = _by_resource(trace, (K.SYNC_NOTIFY, K.UNIT_WAKE))
    idx = idx[~np.isin(ev.res[idx], _barriers(trace))]  # their wakes: _barrier
    kind = ev.kind[idx]
    prev = latest_before(ev.res[idx].astype(np.int64), kind == K.SYNC_NOTIFY)
    rows = np.flatnonzero((kind == K.UNIT_WAKE) & (ev.arg[idx] == Outcome.OK) & (prev >= 0))
    return _edges(idx[prev[rows]], idx[rows], EdgeKind.NOTIFY)


def _barriers(trace: Trace) -> I64:
    """The resources units arrive at (``sync.arrive``): barriers."""
    ev = trace.events
    return np.unique(ev.res[(ev.kind == K.SYNC_ARRIVE) & (ev.res >= 0)]).astype(np.int64)


def _barrier(trace: Trace) -> Edges:
    """Every arrival of a barrier's generation -> each ok departure (``unit.wake``) of it:
    no party leaves before all have arrived, so what each did before arriving happens
    before what every other does after leaving. A generation starts at an arrival whose
    "parties so far" is 1, or by a unit already in the current one; a departure belongs
    to the generation of its unit's own latest arrival (a fast party may arrive again
    before a slow one's departure is written). A Python loop over the barriers' events
    only: barriers are few and their events fewer."""
    ev = trace.events
    idx = _by_resource(trace, (K.SYNC_ARRIVE, K.UNIT_WAKE))
    idx = idx[np.isin(ev.res[idx], _barriers(trace))]
    src: list[int] = []
    dst: list[int] = []
    res_of, kinds, units, args = (
        ev.res[idx].tolist(),
        ev.kind[idx].tolist(),
        ev.unit[idx].tolist(),
        ev.arg[idx].tolist(),
    )
    gens: list[list[tuple[int, int]]] = []  # per generation: (arrival event, unit)
    current: dict[int, int] = {}  # resource -> its current generation
    member: dict[tuple[int, int], int] = {}  # (resource, unit) -> its latest generation
    for i, r, k, u, a in zip(idx.tolist(), res_of, kinds, units, args, strict=True):
        if k == K.SYNC_ARRIVE:
            g = current.get(r)
            if g is None or a == 1 or any(v == u for _, v in gens[g]):
                g = current[r] = len(gens)
                gens.append([])
            gens[g].append((i, u))
            member[r, u] = g
        elif a == Outcome.OK and (r, u) in member:
            for arrival, v in gens[member[r, u]]:
                if v != u:
                    src.append(arrival)
                    dst.append(i)
    return _edges(np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), EdgeKind.NOTIFY)
