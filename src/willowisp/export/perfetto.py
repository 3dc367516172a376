"""An analysis as a Perfetto native protobuf trace (``Trace`` of ``TracePacket``s, TrackEvent).

The mapping is the Chrome export's (``willowisp.export.chrome``; docs/export.md has both for
users), drawn with Perfetto's own track model:

- a process track per process, pid 1..N in process order, named ``service (pid N, host)``;
  under it a thread track per unit, tid N+1.. in unit order, named ``kind name``. Both ids
  are small synthetic integers, unique across the whole trace and never equal to each
  other: Perfetto reads them as 32-bit ints, treats a tid equal to its pid as the main
  thread, and would merge two hosts' equal pids. Real pids, process ids and unit numbers
  are in the names and in each track's ``description``.
- times are the analysis' adjusted, clock-aligned nanoseconds, as they are (on a recorded
  run: ns since the Unix epoch on the reference clock), shifted only if one is negative,
  since packet timestamps are unsigned. Packets are sorted by time, stably (a slice's end
  and the next one's begin at the same instant keep their order), a cause before its
  effect at equal times.
- a wait (``unit.block`` to the event that ended it) and a lock hold (acquire to release)
  are slices, ``SLICE_BEGIN``/``SLICE_END`` on the unit's track. Slices on one track must
  nest; holds of two locks released out of order do not, so a slice that does not fit goes
  to the unit's first child track ("overlap 1", "overlap 2", ...) where it does. Slices
  still open when the trace ends end at its last event of any kind (a final flush or clock
  anchor: the wait was still open then) and say so (``still``).
- an imported span (a unit of kind ``span``) is a slice, not a track: on its thread's
  track (a Chrome slice) or its process' ``spans`` track, nested in its parent span
  (``willowisp.export.span_tree`` decides where); its waits nest in it.
- every other event of a unit, and every endpoint of a happens-before edge, is an
  ``INSTANT`` on its unit's track (an endpoint done by no unit sits on its process track).
- every cross-unit happens-before edge of the analysis is one flow, id = edge number + 1:
  in ``flow_ids`` of the cause's instant and ``terminating_flow_ids`` of the effect's. An
  event carries all its edges' ids, so one instant per event, unlike Chrome's one anchor
  per edge. Perfetto links a flow in time order, so an effect that alignment left a little
  before its cause (within the clock uncertainty) is drawn at its cause's time and says by
  how much (``moved_ns``).
- findings are instants on a global track ``findings``, named by kind, at their earliest
  event, with ``summary``, ``explanation`` (one array entry per line), units and resources
  as debug annotations.

The encoding is written here by hand (a varint and length-delimited writer for the few
fields used; numbers from perfetto's ``perfetto_trace.proto``) rather than with the
``perfetto`` package's generated classes: no protobuf runtime dependency, bytes that depend
on the input alone, and a packet costs a few byte joins. The tests parse the output with
the real generated classes. Strings from the trace are cut to ``MAX_STR`` characters and
encoded as UTF-8 (a lone surrogate becomes ``?``); protobuf strings carry any text,
NULs and markup included, as data.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from willowisp.analysis.engine import Analysis
from willowisp.analysis.naming import event_where, resource_name, track_label
from willowisp.analysis.stuck import runtime_units_of
from willowisp.causality.graph import EdgeKind
from willowisp.causality.waits import holds, wait_outcome, waits
from willowisp.export.chrome import MAX_STR, cut, kind_name
from willowisp.export.span_tree import ANY, PROCESS, Item, Spans, place, spans
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K, Reason

# Events that are not drawn as instants (unless they end a flow): waits and holds draw
# them, or they are bookkeeping. The same sets as the Chrome export.
_NOT_INSTANTS = {int(K.UNIT_BLOCK), int(K.LOCK_ACQUIRED), int(K.LOCK_RELEASE)}
_BOOKKEEPING = {int(K.CLOCK_ANCHOR), int(K.AGENT_FLUSH)}
_SPAN_BOUNDS = {int(K.UNIT_START), int(K.UNIT_END)}  # a span slice draws these
SEQUENCE_ID = 1  # every packet is on one writer sequence
MAX_LIST = 100  # entries of a finding's explanation; units and resources get half
_ORDER_PASSES = 256  # bound on the passes that put effects after their causes

# Field numbers, from perfetto's protos (protos/perfetto/trace/...).
_TRACE_PACKET = 1  # Trace.packet
_P_TIMESTAMP, _P_SEQ_ID, _P_TRACK_EVENT, _P_SEQ_FLAGS, _P_TRACK_DESCRIPTOR = 8, 10, 11, 13, 60
_SEQ_INCREMENTAL_STATE_CLEARED = 1
_TD_UUID, _TD_NAME, _TD_PROCESS, _TD_THREAD, _TD_PARENT = 1, 2, 3, 4, 5
_TD_CHILD_ORDERING, _TD_SIBLING_RANK, _TD_DESCRIPTION = 11, 12, 14
_CHILD_ORDERING_EXPLICIT = 3
_PD_PID, _PD_NAME = 1, 6  # ProcessDescriptor
_THD_PID, _THD_TID, _THD_NAME = 1, 2, 5  # ThreadDescriptor
_TE_ANNOTATION, _TE_TYPE, _TE_TRACK, _TE_CATEGORY, _TE_NAME = 4, 9, 11, 22, 23
_TE_FLOW, _TE_TERMINATING_FLOW = 47, 48
SLICE_BEGIN, SLICE_END, INSTANT = 1, 2, 3  # TrackEvent.Type
_DA_BOOL, _DA_INT, _DA_STRING, _DA_NAME, _DA_ARRAY = 2, 4, 6, 10, 12  # DebugAnnotation

# Track uuids: a kind in the top bits, a dense number below. Fixed, so output is stable.
_FINDINGS_UUID = 1 << 48
_PROCESS, _UNIT, _LANE, _SPANS = 2 << 48, 3 << 48, 4 << 48, 5 << 48

Value = str | int | bool | list[str]
Annotations = list[tuple[str, Value]]


# --- protobuf wire format: just what the fields above need ---------------------------------


_ONE_BYTE = [bytes([n]) for n in range(0x80)]  # most values and every key: one byte


def _varint(n: int) -> bytes:
    """Base-128 varint of an unsigned value (a negative int64 as its 64-bit two's complement)."""
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    n &= 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@functools.cache
def _key(num: int, wire: int) -> bytes:
    """A field's tag: its number and wire type (0 varint, 1 fixed64, 2 length-delimited)."""
    return _varint(num << 3 | wire)


def _uint(num: int, value: int) -> bytes:
    return _key(num, 0) + _varint(value)


def _fixed64(num: int, value: int) -> bytes:
    return _key(num, 1) + struct.pack("<Q", value)


def _bytes(num: int, body: bytes) -> bytes:
    return _key(num, 2) + _varint(len(body)) + body


def _str(num: int, text: str) -> bytes:
    return _bytes(num, text.encode("utf-8", "replace"))


# --- messages ----------------------------------------------------------------------------


def _annotation(name: str, value: Value) -> bytes:
    head = _str(_DA_NAME, name)
    if isinstance(value, bool):
        return head + _uint(_DA_BOOL, int(value))
    if isinstance(value, int):
        return head + _uint(_DA_INT, value)
    if isinstance(value, str):
        return head + _str(_DA_STRING, value)
    return head + b"".join(_bytes(_DA_ARRAY, _str(_DA_STRING, v)) for v in value)


def _track_event(
    kind: int,
    track: int,
    name: str = "",
    categories: Iterable[str] = (),
    annotations: Annotations | None = None,
    flows: Sequence[int] = (),
    terminating: Sequence[int] = (),
) -> bytes:
    parts = [_uint(_TE_TYPE, kind), _uint(_TE_TRACK, track)]
    if name:
        parts.append(_str(_TE_NAME, name))
    parts += [_str(_TE_CATEGORY, c) for c in categories]
    # An empty list is left out: an annotation without a value reads as malformed.
    parts += [_bytes(_TE_ANNOTATION, _annotation(k, v)) for k, v in annotations or () if v != []]
    parts += [_fixed64(_TE_FLOW, f) for f in flows]
    parts += [_fixed64(_TE_TERMINATING_FLOW, f) for f in terminating]
    return b"".join(parts)


def _packet(ts: int, payload_field: int, payload: bytes, first: bool = False) -> bytes:
    body = _uint(_P_TIMESTAMP, ts) + _uint(_P_SEQ_ID, SEQUENCE_ID)
    if first:
        body += _uint(_P_SEQ_FLAGS, _SEQ_INCREMENTAL_STATE_CLEARED)
    return _bytes(_TRACE_PACKET, body + _bytes(payload_field, payload))


# --- the analysis as tracks and events -----------------------------------------------------


@dataclass(slots=True)
class _Slice:
    start: int
    end: int
    name: str
    category: str
    annotations: Annotations
    node: int = -1  # the span unit this slice draws, -1 for a wait or hold
    under: int = ANY  # what it must nest under (see span_tree)
    depth: int = 0


@dataclass(slots=True)
class _Out:
    """Track descriptors in creation order, and events as (time, rank, TrackEvent bytes).

    The rank orders events of equal time: 0 for slices and findings, an event's depth in the
    happens-before graph for instants, so a cause precedes its effect even at the same ns.
    Invariant: the slice events of any one track are appended in non-decreasing time, so a
    stable sort by (time, rank) keeps each track's begin/end order.
    """

    descriptors: list[bytes] = field(default_factory=list)
    events: list[tuple[int, int, bytes]] = field(default_factory=list)


def _descriptor(
    uuid: int,
    *,
    name: str = "",
    parent: int = 0,
    process: bytes = b"",
    thread: bytes = b"",
    description: str = "",
    rank: int | None = None,
    explicit_children: bool = False,
) -> bytes:
    parts = [_uint(_TD_UUID, uuid)]
    if parent:
        parts.append(_uint(_TD_PARENT, parent))
    if name:
        parts.append(_str(_TD_NAME, name))
    if process:
        parts.append(_bytes(_TD_PROCESS, process))
    if thread:
        parts.append(_bytes(_TD_THREAD, thread))
    if explicit_children:
        parts.append(_uint(_TD_CHILD_ORDERING, _CHILD_ORDERING_EXPLICIT))
    if rank is not None:
        parts.append(_uint(_TD_SIBLING_RANK, rank))
    if description:
        parts.append(_str(_TD_DESCRIPTION, description))
    return b"".join(parts)


def _tracks(trace: Trace, sp: Spans, out: _Out, max_str: int) -> tuple[list[int], dict[int, str]]:
    """Process tracks, a thread track per unit that is not drawn as a span slice, and a
    ``spans`` track per process with root spans. Returns each owner's track uuid (processes
    first, then units: a span's is its host's) and every track's name by uuid."""
    n_proc = len(trace.processes)
    names: dict[int, str] = {}
    for p in trace.processes:
        name = cut(p.track_name(), max_str)
        names[_PROCESS + p.index] = name
        proc = _uint(_PD_PID, p.index + 1) + _str(_PD_NAME, name)
        about = f"process id {p.id}, pid {p.pid}, host {p.host or '?'}, runtime {p.runtime}"
        out.descriptors.append(
            _descriptor(
                _PROCESS + p.index,
                process=proc,
                description=cut(about, max_str),
                explicit_children=True,
            )
        )
    own = runtime_units_of(trace)
    for u in trace.units:
        if sp.is_slice(u.index):
            continue
        name = cut(track_label(trace, u.index, u.index in own), max_str)
        names[_UNIT + u.index] = name
        pid = u.proc + 1
        thread = (
            _uint(_THD_PID, pid) + _uint(_THD_TID, n_proc + 1 + u.index) + _str(_THD_NAME, name)
        )
        about = f"unit {u.number} of process {trace.processes[u.proc].id}"
        out.descriptors.append(
            _descriptor(
                _UNIT + u.index,
                parent=_PROCESS + u.proc,
                thread=thread,
                description=cut(about, max_str),
                rank=u.index,
            )
        )
    uuids = [_PROCESS + p.index for p in trace.processes]
    for u in trace.units:
        host = sp.host[u.index] if sp.is_slice(u.index) else u.index
        uuids.append(_UNIT + host if host != PROCESS else _SPANS + u.proc)
    for pi in sorted({uuid - _SPANS for uuid in uuids if uuid >= _SPANS}):
        # after the threads, in the process' explicit child order
        names[_SPANS + pi] = "spans"
        out.descriptors.append(
            _descriptor(_SPANS + pi, parent=_PROCESS + pi, name="spans", rank=len(trace.units))
        )
    return uuids, names


def _owner(trace: Trace, i: int) -> int:
    """Index into the owner tracks of ``_tracks``: the unit's, or its process' if none."""
    u = int(trace.events.unit[i])
    return len(trace.processes) + u if u >= 0 else int(trace.events.proc[i])


def _lay_out(
    slices: list[_Slice],
    track: int,
    name: str,
    out: _Out,
    lanes: list[int],
    max_str: int,
    span_track: dict[int, int],
) -> None:
    """Slices of one owner track as nested begin/end pairs, on as few tracks as nest them.

    Lane 0 is the owner track; a slice that nests in no existing lane (partly overlaps its
    open slices, or is a span whose parent is not the lane's innermost open span) starts a
    new child track. Records the track of each span slice in ``span_track``.
    """
    placed = place([Item(s.start, s.end, s.node, s.under, s.depth) for s in slices])
    uuids: list[int] = []
    for k, order in enumerate(placed.order):
        if k == 0:
            uuids.append(track)
        else:
            uuids.append(_LANE + len(lanes))
            lanes.append(track)
            lane = cut(f"{name} (overlap {k})", max_str)
            out.descriptors.append(_descriptor(uuids[k], parent=track, name=lane, rank=k))
        for t, i, begin in order:
            if not begin:
                out.events.append((t, 0, _track_event(SLICE_END, uuids[k])))
                continue
            s = slices[i]
            body = _track_event(SLICE_BEGIN, uuids[k], s.name, [s.category], s.annotations)
            out.events.append((t, 0, body))
            if s.node >= 0:
                span_track[s.node] = uuids[k]


def _flow_order(
    times: npt.NDArray[np.int64], src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per event, a time no earlier than its causes' and a rank above theirs.

    ``times`` with every effect moved up to its causes' time, and each event's longest
    chain of edges leading to it. Both are fixpoints over the (acyclic) graph, reached in as
    many passes as its longest chain; the passes are bounded, for safety.
    """
    t = times.copy()
    rank = np.zeros(len(times), dtype=np.int64)
    for _ in range(_ORDER_PASSES):
        t_was, rank_was = t[dst], rank[dst]
        np.maximum.at(t, dst, t[src])
        np.maximum.at(rank, dst, rank[src] + 1)
        if np.array_equal(t_was, t[dst]) and np.array_equal(rank_was, rank[dst]):
            break
    return t, rank


@dataclass(slots=True)
class _Ctx:
    """What every part of one export reads: the trace, its times and its owner tracks."""

    trace: Trace
    adjusted: npt.NDArray[np.int64]  # the analysis' adjusted time per event
    shift: int  # added to every time so that none is negative
    t_end: int  # where still-open slices end (adjusted)
    max_str: int
    owners: list[int]  # owner track uuids: processes, then units (see _owner)
    track_names: dict[int, str]  # by track uuid
    spans: Spans
    span_track: dict[int, int] = field(default_factory=dict)  # span unit -> its slice's track

    def res_label(self, r: int) -> str:
        t = self.trace
        return f"{t.resources[r].kind} {resource_name(t, r)}" if r >= 0 else ""

    def event_name(self, i: int) -> str:
        ev = self.trace.events
        text = f"{kind_name(int(ev.kind[i]))} {self.res_label(int(ev.res[i]))}"
        return cut(text.strip(), self.max_str)

    def event_args(self, i: int) -> Annotations:
        args: Annotations = [("event", str(self.trace.event_id(i)))]
        where = event_where(self.trace, i)
        if where:
            args.append(("where", cut(where, self.max_str)))
        return args

    def slice(self, start: int, end: int, name: str, category: str, args: Annotations) -> _Slice:
        """A slice from event ``start`` to event ``end`` (NO_INDEX: the end of the trace)."""
        t0 = int(self.adjusted[start])
        t1 = max(int(self.adjusted[end]) if end >= 0 else self.t_end, t0)
        if end < 0:
            args.append(("still", True))
        return _Slice(t0 + self.shift, t1 + self.shift, cut(name, self.max_str), category, args)


def perfetto_trace(a: Analysis, max_str: int = MAX_STR) -> bytes:
    """The Perfetto protobuf trace of an analysis (see the module doc): a ``Trace`` message.

    Deterministic: the same analysis gives the same bytes.
    """
    trace = a.trace
    ev = trace.events
    g = a.causality.graph
    adjusted = a.causality.clocks.adjusted.astype(np.int64)
    # The events drawn: those of a unit but bookkeeping, and every flow endpoint.
    drawn = (ev.unit >= 0) & ~np.isin(ev.kind, list(_BOOKKEEPING))
    drawn[g.src] = True
    drawn[g.dst] = True
    times = adjusted[drawn] if drawn.any() else adjusted
    t_first = int(times.min()) if len(times) else 0
    # open slices end at the recording's last event of any kind (see chrome.py)
    t_end = max(int(adjusted.max()), t_first) if len(adjusted) else 0
    shift = max(0, -t_first)
    out = _Out()
    sp = spans(trace)
    owners, track_names = _tracks(trace, sp, out, max_str)
    ctx = _Ctx(trace, adjusted, shift, t_end, max_str, owners, track_names, sp)
    _slices(ctx, out)
    _instants(ctx, a, drawn, out)
    _findings(ctx, a, t_first, out)
    return _serialize(out, t_first + shift)


def _span_slices(ctx: _Ctx) -> dict[int, list[_Slice]]:
    """Every span unit that started, as a slice on its host track, by track uuid."""
    trace, sp = ctx.trace, ctx.spans
    ev = trace.events
    per_track: dict[int, list[_Slice]] = {}
    for u in trace.units:
        if not sp.is_slice(u.index):
            continue
        b, e = sp.start[u.index], sp.end[u.index]
        args = ctx.event_args(b) + [("unit", str(trace.unit_id(u.index)))]
        if e >= 0 and int(ev.arg[e]):
            args.append(("error", True))  # unit.end's status: the span's was ERROR
        s = ctx.slice(b, e, u.name or "span", "span", args)
        s.node, s.under, s.depth = u.index, sp.under[u.index], sp.depth[u.index]
        per_track.setdefault(ctx.owners[len(trace.processes) + u.index], []).append(s)
    return per_track


def _slices(ctx: _Ctx, out: _Out) -> None:
    """Spans, waits and lock holds, laid out per owner track; a wait or hold of a span
    nests in that span's slice."""
    trace, sp = ctx.trace, ctx.spans
    per_owner = _span_slices(ctx)

    def add(i: int, s: _Slice) -> None:
        u = int(trace.events.unit[i])
        if u >= 0 and sp.is_slice(u):
            s.under, s.depth = u, sp.depth[u] + 1
        per_owner.setdefault(ctx.owners[_owner(trace, i)], []).append(s)

    w = waits(trace)
    for b, e, r, reason in zip(
        w.block.tolist(), w.end.tolist(), w.res.tolist(), w.reason.tolist(), strict=True
    ):
        try:
            why = Reason(reason).name.lower()
        except ValueError:
            why = f"reason {reason}"
        args = ctx.event_args(b) + [("reason", why), ("outcome", wait_outcome(trace, e))]
        add(b, ctx.slice(b, e, ctx.res_label(r) or why, "wait", args))
    h = holds(trace)
    for acq, rel, r in zip(h.acquire.tolist(), h.release.tolist(), h.res.tolist(), strict=True):
        add(acq, ctx.slice(acq, rel, f"hold {ctx.res_label(r)}", "hold", ctx.event_args(acq)))
    lanes: list[int] = []
    for track in sorted(per_owner):
        name = ctx.track_names[track]
        _lay_out(per_owner[track], track, name, out, lanes, ctx.max_str, ctx.span_track)


def _instants(ctx: _Ctx, a: Analysis, drawn: npt.NDArray[np.bool_], out: _Out) -> None:
    """Every drawn event that is not a wait or hold boundary, and every flow endpoint."""
    trace = ctx.trace
    g = a.causality.graph
    at, rank = _flow_order(ctx.adjusted, g.src, g.dst)
    at += ctx.shift
    starts: dict[int, list[int]] = {}
    ends: dict[int, list[int]] = {}
    edge_kinds: dict[int, set[str]] = {}
    for k, (s, d, kind) in enumerate(
        zip(g.src.tolist(), g.dst.tolist(), g.kind.tolist(), strict=True)
    ):
        starts.setdefault(s, []).append(k + 1)
        ends.setdefault(d, []).append(k + 1)
        label = EdgeKind(kind).name.lower()
        edge_kinds.setdefault(s, set()).add(label)
        edge_kinds.setdefault(d, set()).add(label)
    kinds = trace.events.kind.tolist()
    units = trace.events.unit.tolist()
    sp = ctx.spans
    for i in range(len(kinds)):
        is_end = i in edge_kinds
        if not is_end and (not drawn[i] or kinds[i] in _NOT_INSTANTS):
            continue
        if not is_end and kinds[i] in _SPAN_BOUNDS and units[i] >= 0 and sp.is_slice(units[i]):
            continue  # the span's slice begins and ends there
        args = ctx.event_args(i)
        categories = ["event"]
        if is_end:
            labels = sorted(edge_kinds[i])
            categories = [f"hb.{x}" for x in labels]
            args.append(("edges", labels))
            moved = int(at[i]) - ctx.shift - int(ctx.adjusted[i])
            if moved:
                args.append(("moved_ns", moved))
        track = ctx.span_track.get(units[i], ctx.owners[_owner(trace, i)])
        body = _track_event(
            INSTANT, track, ctx.event_name(i), categories, args, starts.get(i, ()), ends.get(i, ())
        )
        out.events.append((int(at[i]), int(rank[i]), body))


def _findings(ctx: _Ctx, a: Analysis, t_first: int, out: _Out) -> None:
    """Findings as instants on the global ``findings`` track, at their earliest event."""
    if not a.findings:
        return
    out.descriptors.append(_descriptor(_FINDINGS_UUID, name="findings", rank=0))
    m = ctx.max_str
    for f in a.findings:
        rows = ctx.trace.event_indices(f.events).values()
        ts = min(int(ctx.adjusted[i]) for i in rows) if rows else t_first
        args: Annotations = [
            ("id", f.id),
            ("severity", f.severity),
            ("summary", cut(f.summary, m)),
            ("explanation", [cut(x, m) for x in f.explanation[:MAX_LIST]]),
            ("units", [cut(u.name, m) for u in f.units[: MAX_LIST // 2]]),
            ("resources", [cut(f"{r.kind} {r.name}", m) for r in f.resources[: MAX_LIST // 2]]),
        ]
        body = _track_event(INSTANT, _FINDINGS_UUID, f.kind, ["finding"], args)
        out.events.append((max(ts + ctx.shift, 0), 0, body))


def _serialize(out: _Out, t_first: int) -> bytes:
    """Descriptors first (at the earliest time), then events sorted by time, stably."""
    out.events.sort(key=lambda e: (e[0], e[1]))
    t0 = min(t_first, out.events[0][0]) if out.events else t_first
    packets = [
        _packet(t0, _P_TRACK_DESCRIPTOR, d, first=k == 0) for k, d in enumerate(out.descriptors)
    ]
    packets += [_packet(ts, _P_TRACK_EVENT, body) for ts, _, body in out.events]
    return b"".join(packets)
