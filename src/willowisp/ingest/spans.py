"""Spans (from any span format) as processes, units and hops: the one mapping all share.

The OTLP importers (JSON and protobuf) read their input into :class:`Span` objects grouped
by resource; Jaeger and Zipkin convert to OTLP's shape first. This module turns each
resource's spans into what a ``.wtrace`` file gives the loader — one
:class:`~willowisp.wtrace.reader.TraceFile` per process — so everything after that (clock
domains, the hop linker, the analyses) is the ordinary path.

Mapping (docs/import.md):

* each resource (``service.name``, ``service.namespace``, ``service.instance.id``,
  ``host.name``, ``process.pid``; ``telemetry.sdk.language`` is the runtime) is a process
  whose id is a hash of those attributes, so the same resource in several batches, lines
  or requests is one process. No boot id is known, so each process is its own clock
  domain (the contract's rule for spans: one domain per (host, pid), else per (service,
  instance));
* the process gets one clock anchor whose wall reading equals its time, so raw time is the
  spans' own wall-clock time;
* each span is a unit of kind ``span`` that starts and ends with the span (``unit.end``
  status 1 when the span's status is ERROR); a span whose parent span is in the same process
  is created by the parent's unit (``unit.create``), so program order links them;
* CLIENT and PRODUCER spans send (``msg.send`` on an ``rpc``/``message`` resource carrying
  the trace id and their span id; ``rpc.response`` at a CLIENT's end), SERVER and CONSUMER
  spans receive (``msg.recv`` at start carrying the parent span id — for a CONSUMER without
  a parent, its first link's; ``rpc.reply`` at a SERVER's end), so the hop linker pairs a
  client span with its server child. A CLIENT span waits for its reply (``unit.block``,
  reason rpc, right after its send, ended by its ``rpc.response``), as native clients
  record it, so the critical path walks into the server; a PRODUCER does not wait. A
  CLIENT or SERVER span with ``willowisp.unanswered=true`` (what ``willowisp export``
  writes on a request that never got its reply, ending the span where the trace ended)
  gets no reply, no response and no ``unit.end``: its client's wait is still open when
  the trace ends, as in the recording it came from. OTel's current and older
  attribute names are both read (``http.request.method``/``http.method``,
  ``messaging.destination.name``/``messaging.destination``, ``rpc.system.name``/
  ``rpc.system``, ...), and Zipkin's ``http.path`` for the target;
* a span waits for its child spans (:func:`_child_waits`): without that a handler span
  would be "running" while its outgoing call ran, and a slower backend would be blamed on
  its caller;
* a span repeated exactly (a retried export) is dropped and counted in a note; one whose
  ids repeat with other content is malformed.

Speed: a million spans is a normal export, so the events are built as numpy columns — one
Python pass to collect each span's numbers, then array operations and one ``lexsort`` —
not a Python tuple per event.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.errors import TraceFormatError
from willowisp.model.spec import FORMAT_MAJOR, FORMAT_MINOR, K, Outcome, Reason
from willowisp.wtrace.payload import AttrValue, DecodedEvents, Record
from willowisp.wtrace.reader import Chunk, TraceFile

MAX_SPANS = 5_000_000  # in one input
R_PROCESS, R_UNIT, R_RESOURCE = 1, 2, 3
INTERNAL_KIND, SERVER_KIND, CLIENT_KIND, PRODUCER_KIND, CONSUMER_KIND = 1, 2, 3, 4, 5
_REMOTE = (SERVER_KIND, CLIENT_KIND, PRODUCER_KIND, CONSUMER_KIND)
_URL_ORIGIN = re.compile(r"^[a-z]+://[^/]*")


class BadSpan(Exception):
    """One span (or resource) breaks the rules: skipped and counted."""


@dataclass(slots=True)
class Span:
    """What the mapping needs of one span; ids are lowercase hex, times ns since the epoch."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start: int
    end: int
    error: bool
    attrs: dict[str, Any]  # only read for CLIENT/SERVER/PRODUCER/CONSUMER spans
    library: str
    link_trace_id: str = ""
    link_span_id: str = ""


def first_str(a: dict[str, Any], *keys: str) -> str:
    """The first of ``keys`` with a non-empty string (or integer) value, as a string."""
    for k in keys:
        v = a.get(k)
        if v is not None:
            t = type(v)
            if t is str:
                if v:
                    return v  # type: ignore[no-any-return]
            elif t is int:
                return str(v)
    return ""


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# how messages name the spans of each span format
FORMAT_NAMES = {
    "otlp-json": "OTLP JSON",
    "otlp-proto": "OTLP protobuf",
    "jaeger": "Jaeger",
    "zipkin": "Zipkin",
}


class SpanSet:
    """Spans grouped into processes by resource, with the skips counted per input."""

    def __init__(self, imported: str, path: str = "") -> None:
        self.imported = imported
        self.path = path
        self.procs: dict[str, SpanProcess] = {}
        self.total = 0
        self.skipped = 0
        self.duplicates = 0  # spans dropped as exact repeats (a retried export)
        self.first_problem = ""
        self._base = (0, 0, 0)

    def begin(self, imported: str, path: str) -> None:
        """The next input: its format and path (for new processes and for its notes)."""
        self.imported, self.path = imported, path
        self._base = (self.total, self.skipped, self.duplicates)
        self.first_problem = ""

    def process(self, resource_attrs: dict[str, Any]) -> SpanProcess:
        """The process of a resource (created on first sight)."""
        a = resource_attrs
        service = first_str(a, "service.name") or "unknown_service"
        instance = first_str(a, "service.instance.id")
        host = first_str(a, "host.name")
        pid_s = first_str(a, "process.pid")
        key = json.dumps(
            [service, first_str(a, "service.namespace"), instance, host, pid_s], ensure_ascii=True
        )
        process_id = hashlib.sha256(b"otlp\0" + key.encode()).hexdigest()[:32]
        proc = self.procs.get(process_id)
        if proc is None:
            pid = int(pid_s) if pid_s.isascii() and pid_s.isdigit() and len(pid_s) < 12 else 0
            attrs: dict[str, AttrValue] = {
                "process_id": process_id,
                "pid": pid,
                "host": host,
                "service": service,
                "runtime": first_str(a, "telemetry.sdk.language"),
                "runtime_version": first_str(a, "process.runtime.version"),
                "imported": self.imported,
            }
            if instance:
                attrs["service_instance"] = instance
            proc = self.procs[process_id] = SpanProcess(attrs, self.path)
        return proc

    def skip(self, problem: str) -> None:
        self.skipped += 1
        self.first_problem = self.first_problem or problem

    def add(self, proc: SpanProcess, span: Span) -> None:
        """Add one span to ``proc``, counting an exact repeat as a duplicate; raises
        BadSpan as :meth:`SpanProcess.add` does."""
        if not proc.add(span):
            self.duplicates += 1

    def notes(self, path: str) -> list[str]:
        """The notes about this input's skipped and duplicate spans (since ``begin``)."""
        total, skipped = self.total - self._base[0], self.skipped - self._base[1]
        repeats = self.duplicates - self._base[2]
        out = []
        if repeats:
            out.append(
                f"{path}: {plural(repeats, 'duplicate span')} dropped (same ids and content "
                "as a span already read: a retried export)"
            )
        if skipped:
            out.append(
                f"{path}: {skipped} of {plural(total, 'span')} skipped as malformed "
                f"(first: {self.first_problem}); the others were imported"
            )
        return out

    def require_some(self) -> None:
        """Raise TraceFormatError when this input (since ``begin``) had spans and every one
        was malformed, saying how many and why the first was; an input with no span at
        all is left to the caller (an empty export is not malformed).

        Importers call it only on a set of their own; with a shared set, the reader of a
        file calls it (``import``, ``analyze FILE``), not the reader of a ``.wtrace``'s
        embedded streams: one request of many that ``collect`` stored with only bad spans
        is a note in a good file, not an unreadable file.
        """
        total, skipped = self.total - self._base[0], self.skipped - self._base[1]
        what = FORMAT_NAMES.get(self.imported, self.imported)
        if total and skipped == total:
            raise TraceFormatError(
                f"no usable {what} span: {skipped} of {plural(total, what + ' span')} "
                f"skipped as malformed (first: {self.first_problem})"
            )

    def trace_files(self, path: str = "", size: int = 0) -> list[TraceFile]:
        return [p.trace_file(path or p.path, size) for p in self.procs.values() if len(p)]


_SHARED: ContextVar[SpanSet | None] = ContextVar("willowisp_shared_spans", default=None)


@contextmanager
def shared_spans() -> Iterator[SpanSet]:
    """While active, every span importer adds to one set instead of building its own
    processes, so one process's spans from several inputs (two files, or the many requests
    ``collect`` stored) become one process whose parents and children find each other
    across batches. The reader builds the processes at the end."""
    found = SpanSet("")
    token = _SHARED.set(found)
    try:
        yield found
    finally:
        _SHARED.reset(token)


def require_usable_input() -> None:
    """With a shared set active, raise TraceFormatError when the input just read had spans
    and all were malformed (:meth:`SpanSet.require_some`); for a reader of whole files."""
    shared = _SHARED.get()
    if shared is not None:
        shared.require_some()


def span_set(imported: str, path: str) -> tuple[SpanSet, bool]:
    """Where an input's spans go: the shared set when a reader collects several inputs
    (True), else a set of their own (False), ready for this input."""
    shared = _SHARED.get()
    found = shared if shared is not None else SpanSet(imported, path)
    found.begin(imported, path)
    return found, shared is not None


@dataclass(slots=True)
class Remote:
    """What only CLIENT, SERVER, PRODUCER and CONSUMER spans need: their hop's fields."""

    attrs: dict[str, Any]
    library: str
    link_trace_id: str = ""
    link_span_id: str = ""


@dataclass(slots=True)
class SpanProcess:
    """One process's spans as columns (a list per field), so that a well-formed batch of
    spans is added with a few list operations instead of an object per span."""

    attrs: dict[str, AttrValue]
    path: str  # the input it was first seen in
    trace_id: list[str] = field(default_factory=list)
    span_id: list[str] = field(default_factory=list)
    parent: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    error: list[bool] = field(default_factory=list)
    remote: dict[int, Remote] = field(default_factory=dict)  # by span index
    seen: dict[str, int] = field(default_factory=dict)  # trace id + span id -> span index

    def __len__(self) -> int:
        return len(self.span_id)

    def add(self, span: Span) -> bool:
        """Add a span; False, adding nothing, when it repeats one already here exactly (a
        retried export delivers a batch twice). Raises BadSpan when its ids repeat a span
        whose content differs: which one is right cannot be told."""
        key = span.trace_id + span.span_id
        if (i := self.seen.get(key)) is not None:
            if self._same(i, span):
                return False
            raise BadSpan(f"span {span.span_id} appears twice, with different content")
        self.seen[key] = len(self.span_id)
        if span.kind in _REMOTE:
            self.remote[len(self.span_id)] = Remote(
                span.attrs, span.library, span.link_trace_id, span.link_span_id
            )
        self.trace_id.append(span.trace_id)
        self.span_id.append(span.span_id)
        self.parent.append(span.parent_span_id)
        self.name.append(span.name)
        self.kind.append(span.kind)
        self.start.append(span.start)
        self.end.append(span.end)
        self.error.append(span.error)
        return True

    def _same(self, i: int, span: Span) -> bool:
        """Does span ``i`` hold what the model keeps of ``span`` (parent, name, kind, times,
        status; a remote span's attributes, library and link)?"""
        mine = (self.parent[i], self.name[i], self.kind[i], self.start[i], self.end[i])
        theirs = (span.parent_span_id, span.name, span.kind, span.start, span.end)
        if mine != theirs or self.error[i] != span.error:
            return False
        rem = self.remote.get(i)
        if rem is None:
            return True
        again = (span.attrs, span.library, span.link_trace_id, span.link_span_id)
        return (rem.attrs, rem.library, rem.link_trace_id, rem.link_span_id) == again

    def add_columns(
        self,
        trace_id: list[str],
        span_id: list[str],
        parent: list[str],
        name: list[str],
        kind: list[int],
        start: list[int],
        end: list[int],
        error: list[bool],
        remote: dict[int, Remote],
    ) -> bool:
        """Add a batch already checked span by span (ids lowercase hex of the right length
        and not zero, ``0 < start <= end``, kinds 0..5); False, adding nothing, when a
        span repeats one already here or in the batch — the caller then adds them one by
        one, which says which."""
        keys = [t + s for t, s in zip(trace_id, span_id, strict=True)]
        base = len(self.span_id)
        if len(set(keys)) != len(keys) or not self.seen.keys().isdisjoint(keys):
            return False
        self.seen.update(zip(keys, range(base, base + len(keys)), strict=True))
        for i, r in remote.items():
            self.remote[base + i] = r
        self.trace_id += trace_id
        self.span_id += span_id
        self.parent += parent
        self.name += name
        self.kind += kind
        self.start += start
        self.end += end
        self.error += error
        return True

    def trace_file(self, path: str, size: int) -> TraceFile:
        records, events = build(self)
        return TraceFile(
            path, FORMAT_MAJOR, FORMAT_MINOR, [Chunk(0, 0, records, events)], size=size
        )


I64 = npt.NDArray[np.int64]


def build(sp: SpanProcess) -> tuple[list[Record], DecodedEvents]:
    """One process's records and event columns.

    Units are numbered by (start, longest first, input order). Within one time, starts come
    before ends; among starts shallow spans first (start, then send/recv, then the creates
    it makes); among ends deep spans first (reply/response, then end) — so a parent is
    always open around its children, even at equal times.
    """
    n = len(sp)
    start = np.asarray(sp.start, np.int64)
    end = np.asarray(sp.end, np.int64)
    order = np.lexsort((np.arange(n), -end, start))
    start, end = start[order], end[order]
    o = order.tolist()
    tids = [sp.trace_id[i] for i in o]
    sids = [sp.span_id[i] for i in o]
    parents = [sp.parent[i] for i in o]
    unit_of = {t + s: u for u, (t, s) in enumerate(zip(tids, sids, strict=True), 1)}
    par = [0] * (n + 1)
    dep = [0] * (n + 1)
    get = unit_of.get
    for u, (t, ps) in enumerate(zip(tids, parents, strict=True), 1):
        if ps:
            found = get(t + ps, 0)
            if 0 < found < u:  # numbered by start: a parent that starts later is no parent
                par[u] = found
                dep[u] = dep[found] + 1
    parent = np.asarray(par, np.int64)
    depth = np.asarray(dep, np.int64)
    units = np.arange(1, n + 1, dtype=np.int64)
    pu, du = parent[1:], depth[1:]

    records = [Record(R_PROCESS, 0, tuple(sp.attrs.items()))]
    names = sp.name
    records += [
        Record(R_UNIT, u, (("kind", "span"), ("name", names[i]), ("parent", p)))
        for u, i, p in zip(range(1, n + 1), o, par[1:], strict=True)
    ]
    kinds = np.asarray(sp.kind, np.int64)[order]
    error = np.asarray(sp.error, np.bool_)[order]
    res = np.zeros(n, np.int64)
    codes = np.zeros(n, np.int64)
    pending = np.zeros(n, np.bool_)  # CLIENT/SERVER spans whose reply never came
    if sp.remote:
        position = np.empty(n, np.int64)
        position[order] = np.arange(n)
        at = sorted((int(position[i]), i) for i in sp.remote)
        for r, (pos, i) in enumerate(at, 1):
            rem = sp.remote[i]
            res[pos] = r
            codes[pos] = status_code(rem.attrs)
            pending[pos] = sp.kind[i] in (CLIENT_KIND, SERVER_KIND) and unanswered(rem.attrs)
            records.append(Record(R_RESOURCE, r, resource_attrs(_span_at(sp, i, rem))))

    # blocks of (time, phase, depth key, sub) keys and (kind, unit, time, res, arg) rows
    blocks: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
    has_parent = pu > 0
    blocks.append(
        (
            (start[has_parent], 1, depth[pu[has_parent]], 2),
            (K.UNIT_CREATE, pu[has_parent], start[has_parent], 0, units[has_parent]),
        )
    )
    blocks.append(((start, 1, du, 0), (K.UNIT_START, units, start, 0, pu)))
    sends = np.isin(kinds, (CLIENT_KIND, PRODUCER_KIND))
    recvs = np.isin(kinds, (SERVER_KIND, CONSUMER_KIND))
    for mask, k in ((sends, K.MSG_SEND), (recvs, K.MSG_RECV)):
        blocks.append(((start[mask], 1, du[mask], 1), (k, units[mask], start[mask], res[mask], 0)))
    # Every CLIENT span waits for its reply from just after its send, as a native client
    # records it (docs/format.md, "RPC resources"): the rpc.response ends the wait, so
    # the critical path and what-if delays walk into the server instead of calling the
    # caller "running". An unanswered one is still waiting when the trace ends.
    waiting = kinds == CLIENT_KIND
    blocks.append(
        (
            (start[waiting], 1, du[waiting], 3),
            (K.UNIT_BLOCK, units[waiting], start[waiting], res[waiting], int(Reason.RPC)),
        )
    )
    client = (kinds == CLIENT_KIND) & ~pending
    arg = np.where(error[client] & (codes[client] == 0), -1, codes[client])
    blocks.append(
        (
            (end[client], 2, -du[client], 0),
            (K.RPC_RESPONSE, units[client], end[client], res[client], arg),
        )
    )
    server = (kinds == SERVER_KIND) & ~pending
    blocks.append(
        (
            (end[server], 2, -du[server], 0),
            (K.RPC_REPLY, units[server], end[server], res[server], codes[server]),
        )
    )
    waits = _child_waits(par, kinds, start, end)
    w_unit = np.asarray([w[0] for w in waits], np.int64)
    w_at = np.asarray([w[2] for w in waits], np.int64)
    w_until = np.asarray([w[3] for w in waits], np.int64)
    w_res = np.arange(len(sp.remote) + 1, len(sp.remote) + 1 + len(waits), dtype=np.int64)
    for r, (p, children, _, _) in zip(w_res.tolist(), waits, strict=True):
        name = f"child spans of {names[o[p - 1]]}"
        attrs = (("kind", "future"), ("name", name), ("waits_for", ",".join(map(str, children))))
        records.append(Record(R_RESOURCE, r, attrs))
    w_depth = depth[w_unit]
    blocks.append(((w_at, 1, w_depth, 3), (K.UNIT_BLOCK, w_unit, w_at, w_res, int(Reason.AWAIT))))
    blocks.append(
        ((w_until, 2, -w_depth, -1), (K.UNIT_WAKE, w_unit, w_until, w_res, int(Outcome.OK)))
    )
    done = ~pending
    blocks.append(
        (
            (end[done], 2, -du[done], 1),
            (K.UNIT_END, units[done], end[done], 0, error[done].astype(np.int64)),
        )
    )
    sizes = [len(b[0][0]) for b in blocks]

    def col(parts: list[Any]) -> I64:
        pairs = zip(parts, sizes, strict=True)
        return np.concatenate([np.broadcast_to(np.asarray(v, np.int64), (m,)) for v, m in pairs])

    keys = [col([b[0][j] for b in blocks]) for j in range(4)]
    rows = [col([b[1][j] for b in blocks]) for j in range(5)]
    ordered = np.lexsort((keys[3], keys[2], keys[1], keys[0]), axis=0)
    t0 = int(start.min()) if n else 1
    m = len(ordered) + 1

    def with_anchor(c: I64, first: int, dtype: Any) -> Any:
        out = np.empty(m, dtype)
        out[0] = first
        out[1:] = c[ordered]
        return out

    events = DecodedEvents(
        first_seq=1,
        kind=with_anchor(rows[0], int(K.CLOCK_ANCHOR), np.uint8),
        unit=with_anchor(rows[1], 0, np.uint32),
        time=with_anchor(rows[2], t0, np.int64),
        res=with_anchor(rows[3], 0, np.uint32),
        arg=with_anchor(rows[4], t0, np.int64),
        loc=np.zeros(m, dtype=np.uint32),
    )
    return records, events


def _child_waits(
    par: list[int], kinds: Any, start: I64, end: I64
) -> list[tuple[int, list[int], int, int]]:
    """Where a parent span waits for its child spans: (parent unit, children, from, until).

    Spans say nothing of what a parent did while a child ran; like Jaeger's critical path,
    we take it that it waited for them, so the critical path and what-if delays walk into
    the child that ended last instead of calling the parent "running". Children that
    overlap (or touch: a start at another's end, which events at one time cannot order
    after that end) are one wait on a ``future`` naming them all, from the last one's
    start to the latest end; before that last start the parent counts as running. A child
    that outlives its parent was not waited for, and a CLIENT parent already waits for
    its reply (a unit waits on one thing at a time).
    """
    starts, ends, client = start.tolist(), end.tolist(), (kinds == CLIENT_KIND).tolist()
    out: list[tuple[int, list[int], int, int]] = []
    open_: dict[int, tuple[list[int], int, int]] = {}  # parent -> its current cluster
    for u in range(1, len(par)):  # numbered by start: each parent's children in order
        p = par[u]
        if not p or client[p - 1] or ends[u - 1] > ends[p - 1]:
            continue
        s, e = starts[u - 1], ends[u - 1]
        cur = open_.get(p)
        if cur is not None and s <= cur[2]:
            cur[0].append(u)
            open_[p] = (cur[0], s, max(cur[2], e))
            continue
        if cur is not None:
            out.append((p, cur[0], cur[1], cur[2]))
        open_[p] = ([u], s, e)
    out += [(p, c, at, until) for p, (c, at, until) in open_.items()]
    return out


def _span_at(sp: SpanProcess, i: int, rem: Remote) -> Span:
    return Span(
        sp.trace_id[i],
        sp.span_id[i],
        sp.parent[i],
        sp.name[i],
        sp.kind[i],
        sp.start[i],
        sp.end[i],
        sp.error[i],
        rem.attrs,
        rem.library,
        rem.link_trace_id,
        rem.link_span_id,
    )


UNANSWERED = "willowisp.unanswered"


def unanswered(a: dict[str, Any]) -> bool:
    """Does a span say its request never got a reply (``willowisp export`` writes
    ``willowisp.unanswered=true`` on such spans; Zipkin tags are strings)?"""
    v = a.get(UNANSWERED)
    return v is True or v == "true"


def status_code(a: dict[str, Any]) -> int:
    """The HTTP or gRPC status a span's attributes carry, 0 if none."""
    for k in ("http.response.status_code", "http.status_code", "rpc.grpc.status_code"):
        v = a.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 31:
            return v
        if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) < 10:
            return int(v)
    return 0


def resource_attrs(s: Span) -> tuple[tuple[str, AttrValue], ...]:
    """The ``rpc``/``message`` resource of a CLIENT, SERVER, PRODUCER or CONSUMER span."""
    a = s.attrs
    message = s.kind in (PRODUCER_KIND, CONSUMER_KIND)
    out: dict[str, AttrValue] = {"kind": "message" if message else "rpc", "name": s.name}
    out["trace_id"] = s.trace_id
    out["span_id"] = s.span_id
    if s.kind in (SERVER_KIND, CONSUMER_KIND):
        parent = s.parent_span_id
        if not parent and s.kind == CONSUMER_KIND and s.link_span_id:
            out["trace_id"], parent = s.link_trace_id, s.link_span_id
        if parent:
            out["parent_span_id"] = parent
    if s.kind == SERVER_KIND:
        # the reply is put at the span's end, but a server may end its span after the
        # client already has the answer: that edge orders, it does not bound clocks
        out["reply_at"] = "span-end"
    http_method = first_str(a, "http.request.method", "http.method")
    rpc_system = first_str(a, "rpc.system.name", "rpc.system")
    if message:
        protocol = first_str(a, "messaging.system")
        out["method"] = first_str(a, "messaging.operation.type", "messaging.operation")
        out["destination"] = first_str(a, "messaging.destination.name", "messaging.destination")
        out["message_id"] = first_str(a, "messaging.message.id", "messaging.message_id")
        out["target"] = out["destination"]
    elif rpc_system and not http_method:
        protocol = rpc_system
        out["method"] = first_str(a, "rpc.method")
        out["target"] = first_str(a, "rpc.service")
    else:
        protocol = "http" if http_method else ""
        out["method"] = http_method
        target = first_str(a, "url.path", "http.target", "http.path", "http.route")
        if not target and (full := first_str(a, "url.full", "http.url")):
            target = _URL_ORIGIN.sub("", full.split("?", 1)[0]) or "/"
        out["target"] = target.split("?", 1)[0]
    out["protocol"] = protocol
    out["library"] = s.library
    host = first_str(a, "server.address", "net.peer.name", "net.host.name")
    port = first_str(a, "server.port", "net.peer.port", "net.host.port")
    if host:
        out["peer"] = f"{host}:{port}" if port else host
    return tuple((k, v) for k, v in out.items() if v != "" or k in ("kind", "name"))


def collecting() -> bool:
    """Is a reader collecting spans into a shared set (see :func:`shared_spans`)?"""
    return _SHARED.get() is not None
