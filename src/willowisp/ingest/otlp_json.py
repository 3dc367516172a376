"""Importing OTLP JSON (``TracesData`` objects, or JSON Lines of them) at the edge.

An OTLP JSON file is turned into the same thing a ``.wtrace`` file gives the loader: one
:class:`~willowisp.wtrace.reader.TraceFile` per process, holding its definition records and
one chunk of events. Everything after that (grouping, numbering, clock domains, the hop
linker) is the ordinary path, so imported spans and recorded events mix freely.

Mapping (docs/analysis.md, "Importing OTLP JSON"):

* each resource (``service.name``, ``service.instance.id``, ``host.name``, ``process.pid``,
  ``telemetry.sdk.language`` as the runtime) is a process whose id is a hash of those
  attributes, so the same resource in several batches or lines is one process. No boot id is
  recorded, so each process is its own clock domain (the contract's rule for spans: one
  domain per (host, pid), else per (service, instance));
* the process gets one clock anchor whose wall reading equals its time, so raw time is the
  span's own wall-clock time;
* each span is a unit of kind ``span`` that starts and ends with the span (``unit.end``
  status 1 when the span's status is ERROR); a span whose parent span is in the same process
  is created by the parent's unit (``unit.create``), so program order links them;
* CLIENT and PRODUCER spans send (``msg.send`` on an ``rpc``/``message`` resource carrying
  the trace id and their span id; ``rpc.response`` at a CLIENT's end), SERVER and CONSUMER
  spans receive (``msg.recv`` at start carrying the parent span id; ``rpc.reply`` at a
  SERVER's end), so the hop linker pairs a client span with its server child.

Ids are hex (not base64); enums are integers (names are accepted too); 64-bit integers are
strings or numbers. A span that breaks these rules is skipped and counted in a note; a file
with no OTLP JSON at all is one :class:`TraceFormatError`, which is the only error raised.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.model.spec import FORMAT_MAJOR, FORMAT_MINOR, K
from willowisp.wtrace.payload import AttrValue, DecodedEvents, Record
from willowisp.wtrace.reader import Chunk, TraceFile

MAX_OTLP_BYTES = 256 * 1024 * 1024  # the parsed objects take several times this
MAX_SPANS = 2_000_000
_MAX_TIME = (1 << 63) - 1
_HEX = re.compile(r"[0-9a-fA-F]*")
_INT = re.compile(r"-?[0-9]{1,20}")

R_PROCESS, R_UNIT, R_RESOURCE = 1, 2, 3
CLIENT_KIND, SERVER_KIND, PRODUCER_KIND, CONSUMER_KIND = 3, 2, 4, 5
_KIND_NAMES = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class _BadSpan(Exception):
    """One span (or resource) breaks the rules: skipped and counted."""


def looks_like_json(data: bytes) -> bool:
    """Does the content start like JSON (an object, after optional BOM and whitespace)?"""
    head = data[:64].lstrip(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"{")


def read_otlp(path: str | os.PathLike[str]) -> tuple[list[TraceFile], list[str]]:
    """Read one OTLP JSON file: its processes and notes. Raises OSError or TraceFormatError."""
    p = os.fspath(path)
    size = os.path.getsize(p)
    if size > MAX_OTLP_BYTES:
        raise TraceLimitError(
            f"{size} bytes is over the {MAX_OTLP_BYTES}-byte bound for OTLP JSON files"
        )
    with open(p, "rb") as f:
        data = f.read(MAX_OTLP_BYTES + 1)
    if len(data) > MAX_OTLP_BYTES:
        raise TraceLimitError(f"over the {MAX_OTLP_BYTES}-byte bound for OTLP JSON files")
    return parse_otlp(data, p)


def parse_otlp(data: bytes, path: str = "<bytes>") -> tuple[list[TraceFile], list[str]]:
    """OTLP JSON bytes → processes (one TraceFile each) and notes. Raises TraceFormatError."""
    docs, bad_lines = _documents(data)
    procs: dict[str, _Proc] = {}
    total = skipped = 0
    first_problem = ""
    for doc in docs:
        for rs in _list(doc.get("resourceSpans")):
            spans = [
                s
                for ss in _list(rs.get("scopeSpans") if isinstance(rs, dict) else None)
                if isinstance(ss, dict)
                for s in _list(ss.get("spans"))
            ]
            total += len(spans)
            if total > MAX_SPANS:
                raise TraceLimitError(f"more than {MAX_SPANS} spans (the bound for one file)")
            if not isinstance(rs, dict):
                continue
            rattrs = _attrs(_dict(rs.get("resource")).get("attributes"))
            proc = _proc_for(procs, rattrs)
            for ss in _list(rs.get("scopeSpans")):
                if not isinstance(ss, dict):
                    continue
                library = _dict(ss.get("scope")).get("name")
                for s in _list(ss.get("spans")):
                    try:
                        proc.add(_span(s, library if isinstance(library, str) else ""))
                    except _BadSpan as exc:
                        skipped += 1
                        first_problem = first_problem or str(exc)
    notes: list[str] = []
    if bad_lines:
        notes.append(f"{path}: {_plural(bad_lines, 'line')} not OTLP JSON, skipped")
    if skipped:
        notes.append(
            f"{path}: {skipped} of {_plural(total, 'span')} skipped as malformed "
            f"(first: {first_problem}); the others were imported"
        )
    files = [p.trace_file(path, len(data)) for p in procs.values() if p.spans]
    return files, notes


# -- documents --------------------------------------------------------------------------


def _documents(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The TracesData objects of a file (one JSON object, or JSON Lines) and bad lines."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"not OTLP JSON: not UTF-8 text ({exc.reason})") from exc
    try:
        whole = json.loads(text)
    except (ValueError, RecursionError):
        whole = None
    else:
        return [_traces_data(whole, "the file")], 0
    docs: list[dict[str, Any]] = []
    bad = 0
    first = ""
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            docs.append(_traces_data(json.loads(line), f"line {lineno}"))
        except (ValueError, RecursionError, TraceFormatError) as exc:
            bad += 1
            first = first or f"line {lineno}: {_short(exc)}"
    if not docs:
        raise TraceFormatError(f"not OTLP JSON ({first or 'empty'})")
    return docs, bad


def _traces_data(obj: Any, where: str) -> dict[str, Any]:
    if isinstance(obj, dict) and "resourceSpans" not in obj and isinstance(obj.get("result"), dict):
        obj = obj["result"]  # Jaeger api_v3 wraps TracesData in {"result": ...}
    if not isinstance(obj, dict) or not isinstance(obj.get("resourceSpans"), list):
        raise TraceFormatError(f"not OTLP JSON: {where} is not an object with resourceSpans")
    return obj


def _short(exc: BaseException) -> str:
    s = str(exc) or type(exc).__name__
    return s if len(s) <= 80 else s[:77] + "..."


# -- values -----------------------------------------------------------------------------


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _any_value(v: Any) -> Any:
    """An AnyValue as a Python scalar (str, int, float, bool), None if it is not one."""
    if not isinstance(v, dict):
        return None
    if isinstance(s := v.get("stringValue"), str):
        return s
    if isinstance(b := v.get("boolValue"), bool):
        return b
    if "intValue" in v:
        try:
            return _int64(v["intValue"])
        except _BadSpan:
            return None
    if isinstance(d := v.get("doubleValue"), int | float) and not isinstance(d, bool):
        return d
    return None


def _attrs(v: Any) -> dict[str, Any]:
    """KeyValue list → dict; malformed entries are ignored (unknown fields must be)."""
    out: dict[str, Any] = {}
    for kv in _list(v):
        if isinstance(kv, dict) and isinstance(k := kv.get("key"), str):
            val = _any_value(kv.get("value"))
            if val is not None:
                out[k] = val
    return out


def _int64(v: Any) -> int:
    if isinstance(v, bool):
        raise _BadSpan("a boolean where an integer belongs")
    if isinstance(v, int):
        n = v
    elif (isinstance(v, str) and _INT.fullmatch(v)) or (isinstance(v, float) and v.is_integer()):
        n = int(v)
    else:
        raise _BadSpan(f"{_repr(v)} is not an integer")
    if not -(1 << 63) <= n < (1 << 64):
        raise _BadSpan(f"{n} is out of the 64-bit range")
    return n


def _repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _hex_id(v: Any, digits: int, what: str, *, optional: bool = False) -> str:
    if v is None or v == "":
        if optional:
            return ""
        raise _BadSpan(f"no {what}")
    if not isinstance(v, str) or len(v) != digits or not _HEX.fullmatch(v):
        raise _BadSpan(f"{what} {_repr(v)} is not {digits} hex digits")
    if v.strip("0") == "":
        if optional:
            return ""
        raise _BadSpan(f"{what} is all zeros")
    return v.lower()


def _time(v: Any, what: str) -> int:
    t = _int64(v)
    if not 0 < t <= _MAX_TIME:
        raise _BadSpan(f"{what} {t} is out of range")
    return t


def _enum(v: Any, names: dict[str, int], top: int, what: str) -> int:
    if v is None:
        return 0
    if isinstance(v, str) and v in names:
        return names[v]
    n = _int64(v) if not isinstance(v, str) or v.isdigit() else None
    if n is None or not 0 <= n <= top:
        raise _BadSpan(f"{what} {_repr(v)} is not a known value")
    return n


def _first_str(a: dict[str, Any], *keys: str) -> str:
    for k in keys:
        v = a.get(k)
        if isinstance(v, str) and v:
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
    return ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- spans ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start: int
    end: int
    error: bool
    attrs: dict[str, Any]
    library: str
    link_trace_id: str = ""
    link_span_id: str = ""


def _span(s: Any, library: str) -> _Span:
    if not isinstance(s, dict):
        raise _BadSpan("a span that is not an object")
    trace_id = _hex_id(s.get("traceId"), 32, "traceId")
    span_id = _hex_id(s.get("spanId"), 16, "spanId")
    parent = _hex_id(s.get("parentSpanId"), 16, "parentSpanId", optional=True)
    name = s.get("name", "")
    if not isinstance(name, str):
        raise _BadSpan(f"name {_repr(name)} is not a string")
    kind = _enum(s.get("kind"), _KIND_NAMES, 5, "kind")
    start = _time(s.get("startTimeUnixNano"), "startTimeUnixNano")
    end = _time(s.get("endTimeUnixNano", start), "endTimeUnixNano")
    if end < start:
        raise _BadSpan(f"span {span_id} ends before it starts")
    status = _enum(_dict(s.get("status")).get("code"), _STATUS_NAMES, 2, "status code")
    span = _Span(
        trace_id,
        span_id,
        parent,
        name,
        kind,
        start,
        end,
        status == 2,
        _attrs(s.get("attributes")),
        library,
    )
    for link in _list(s.get("links")):
        if isinstance(link, dict):
            try:
                span.link_trace_id = _hex_id(link.get("traceId"), 32, "link traceId")
                span.link_span_id = _hex_id(link.get("spanId"), 16, "link spanId")
                break
            except _BadSpan:
                continue  # a bad link is not worth the span
    return span


# -- processes --------------------------------------------------------------------------


def _proc_for(procs: dict[str, _Proc], a: dict[str, Any]) -> _Proc:
    service = _first_str(a, "service.name") or "unknown_service"
    instance = _first_str(a, "service.instance.id")
    host = _first_str(a, "host.name")
    pid_s = _first_str(a, "process.pid")
    key = json.dumps(
        [service, _first_str(a, "service.namespace"), instance, host, pid_s], ensure_ascii=True
    )
    pid = int(pid_s) if pid_s.isascii() and pid_s.isdigit() and len(pid_s) < 12 else 0
    process_id = hashlib.sha256(b"otlp-json\0" + key.encode()).hexdigest()[:32]
    proc = procs.get(process_id)
    if proc is None:
        attrs: dict[str, AttrValue] = {
            "process_id": process_id,
            "pid": pid,
            "host": host,
            "service": service,
            "runtime": _first_str(a, "telemetry.sdk.language"),
            "runtime_version": _first_str(a, "process.runtime.version"),
            "imported": "otlp-json",
        }
        if instance:
            attrs["service_instance"] = instance
        proc = procs[process_id] = _Proc(attrs)
    return proc


# Event order within one time: starts (shallow spans first; start, send/recv, creates),
# then ends (deep spans first; reply/response, end).
_START, _END = 1, 2


@dataclass(slots=True)
class _Proc:
    attrs: dict[str, AttrValue]
    spans: list[_Span] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, span: _Span) -> None:
        key = (span.trace_id, span.span_id)
        if key in self.seen:
            raise _BadSpan(f"span {span.span_id} appears twice")
        self.seen.add(key)
        self.spans.append(span)

    def trace_file(self, path: str, size: int) -> TraceFile:
        spans = sorted(self.spans, key=lambda s: (s.start, -s.end, s.trace_id, s.span_id))
        unit_of = {(s.trace_id, s.span_id): u for u, s in enumerate(spans, 1)}
        parent_of: dict[int, int] = {}
        for u, s in enumerate(spans, 1):
            pu = unit_of.get((s.trace_id, s.parent_span_id), 0) if s.parent_span_id else 0
            if pu and spans[pu - 1].start <= s.start and pu != u:
                parent_of[u] = pu
        depth = _depths(parent_of, len(spans))
        records = [Record(R_PROCESS, 0, tuple(self.attrs.items()))]
        rows: list[tuple[tuple[int, int, int, int], tuple[int, int, int, int, int]]] = []
        res_n = 0
        for u, s in enumerate(spans, 1):
            p = parent_of.get(u, 0)
            d = depth[u]
            records.append(Record(R_UNIT, u, (("kind", "span"), ("name", s.name), ("parent", p))))
            if p:
                rows.append(((s.start, _START, depth[p], 2), (K.UNIT_CREATE, p, s.start, 0, u)))
            rows.append(((s.start, _START, d, 0), (K.UNIT_START, u, s.start, 0, p)))
            r = 0
            if s.kind in (CLIENT_KIND, SERVER_KIND, PRODUCER_KIND, CONSUMER_KIND):
                res_n += 1
                r = res_n
                records.append(Record(R_RESOURCE, r, _resource_attrs(s)))
                k = K.MSG_SEND if s.kind in (CLIENT_KIND, PRODUCER_KIND) else K.MSG_RECV
                rows.append(((s.start, _START, d, 1), (k, u, s.start, r, 0)))
            code = _status_code(s.attrs)
            if s.kind == CLIENT_KIND:
                arg = -1 if s.error and code == 0 else code
                rows.append(((s.end, _END, -d, 0), (K.RPC_RESPONSE, u, s.end, r, arg)))
            elif s.kind == SERVER_KIND:
                rows.append(((s.end, _END, -d, 0), (K.RPC_REPLY, u, s.end, r, code)))
            rows.append(((s.end, _END, -d, 1), (K.UNIT_END, u, s.end, 0, 1 if s.error else 0)))
        rows.sort(key=lambda row: row[0])
        t0 = rows[0][1][2] if rows else 1
        ev = [(int(K.CLOCK_ANCHOR), 0, t0, 0, t0)] + [tuple(int(x) for x in e) for _, e in rows]
        cols = list(zip(*ev, strict=True))
        events = DecodedEvents(
            first_seq=1,
            kind=np.asarray(cols[0], dtype=np.uint8),
            unit=np.asarray(cols[1], dtype=np.uint32),
            time=np.asarray(cols[2], dtype=np.int64),
            res=np.asarray(cols[3], dtype=np.uint32),
            arg=np.asarray(cols[4], dtype=np.int64),
            loc=np.zeros(len(ev), dtype=np.uint32),
        )
        return TraceFile(
            path, FORMAT_MAJOR, FORMAT_MINOR, [Chunk(0, 0, records, events)], size=size
        )


def _depths(parent_of: dict[int, int], n: int) -> dict[int, int]:
    """Each unit's depth under its in-process parents; a cycle (bad ids) is cut."""
    depth: dict[int, int] = {}
    for u in range(1, n + 1):
        chain: list[int] = []
        x = u
        while x not in depth and x in parent_of and x not in chain:
            chain.append(x)
            x = parent_of[x]
        if x in chain:  # a cycle: x becomes a root
            parent_of.pop(x, None)
            depth[x] = 0
        base = depth.setdefault(x, 0)
        for i, y in enumerate(reversed(chain)):
            depth.setdefault(y, base + i + 1)
    return depth


def _status_code(a: dict[str, Any]) -> int:
    for k in ("http.response.status_code", "http.status_code", "rpc.grpc.status_code"):
        v = a.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 31:
            return v
        if isinstance(v, str) and v.isascii() and v.isdigit() and len(v) < 10:
            return int(v)
    return 0


def _resource_attrs(s: _Span) -> tuple[tuple[str, AttrValue], ...]:
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
    http_method = _first_str(a, "http.request.method", "http.method")
    rpc_system = _first_str(a, "rpc.system.name", "rpc.system")
    if message:
        protocol = _first_str(a, "messaging.system")
        out["method"] = _first_str(a, "messaging.operation.type", "messaging.operation")
        out["destination"] = _first_str(a, "messaging.destination.name", "messaging.destination")
        out["message_id"] = _first_str(a, "messaging.message.id", "messaging.message_id")
        out["target"] = out["destination"]
    elif rpc_system and not http_method:
        protocol = rpc_system
        out["method"] = _first_str(a, "rpc.method")
        out["target"] = _first_str(a, "rpc.service")
    else:
        protocol = "http" if http_method else ""
        out["method"] = http_method
        target = _first_str(a, "url.path", "http.target", "http.route")
        if not target and (full := _first_str(a, "url.full", "http.url")):
            target = re.sub(r"^[a-z]+://[^/]*", "", full.split("?", 1)[0]) or "/"
        out["target"] = target.split("?", 1)[0]
    out["protocol"] = protocol
    out["library"] = s.library
    host = _first_str(a, "server.address", "net.peer.name", "net.host.name")
    port = _first_str(a, "server.port", "net.peer.port", "net.host.port")
    if host:
        out["peer"] = f"{host}:{port}" if port else host
    return tuple((k, v) for k, v in out.items() if v != "" or k in ("kind", "name"))
