"""Importing OTLP protobuf: ``TracesData`` bytes (wire-identical to an
``ExportTraceServiceRequest``, which is what ``willowisp collect`` stores as it arrived).

Parsing is protobuf's own (the ``upb`` C parser behind ``opentelemetry-proto``'s generated
classes); the spans then take the mapping every span format shares
(:mod:`willowisp.ingest.spans`). In protobuf, ids are bytes (16 and 8), enums and times are
integers: a span whose ids have the wrong length or are all zeros, or that ends before it
starts, is skipped and counted — the same rules the collector's ``partial_success`` counts.
"""

from __future__ import annotations

from typing import Any

from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.ingest.spans import MAX_SPANS, BadSpan, Span, span_set
from willowisp.wtrace.reader import TraceFile

NAME = "otlp-proto"
_MAX_TIME = (1 << 63) - 1
_ZERO16, _ZERO8 = bytes(16), bytes(8)


def _traces_data() -> Any:
    try:
        from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
    except ImportError as exc:  # pragma: no cover - a dependency; say what is missing
        raise TraceFormatError(
            "reading OTLP protobuf needs the opentelemetry-proto package (pip install "
            "opentelemetry-proto)"
        ) from exc
    return TracesData


def sniff(head: bytes) -> bool:
    """Starts like a TracesData message: field 1 (resource_spans, length-delimited) whose
    body starts with one of ResourceSpans' fields (resource, scope_spans, schema_url)."""
    if len(head) < 3 or head[0] != 0x0A:
        return False
    i, n = 1, 0
    for shift in range(0, 35, 7):
        if i >= len(head):
            return False
        b = head[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            break
    else:
        return False
    return n > 0 and i < len(head) and head[i] in (0x0A, 0x12, 0x1A)


def prepare(data: bytes, path: str) -> tuple[str, bytes]:
    return NAME, data


def decode(stored: str, data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    return parse_proto(data, path)


def parse_proto(data: bytes, path: str = "<bytes>") -> tuple[list[TraceFile], list[str]]:
    """TracesData bytes → processes and notes. Raises TraceFormatError."""
    msg = _traces_data()()
    try:
        msg.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError and friends: one clear line
        raise TraceFormatError(f"not OTLP protobuf ({type(exc).__name__}: {exc})") from None
    found, shared = span_set(NAME, path)
    for rs in msg.resource_spans:
        proc = found.process(attr_dict(rs.resource.attributes))
        for ss in rs.scope_spans:
            library = ss.scope.name
            found.total += len(ss.spans)
            if found.total > MAX_SPANS:
                raise TraceLimitError(f"more than {MAX_SPANS} spans (the bound for one input)")
            for s in ss.spans:
                try:
                    found.add(proc, _span(s, library))
                except BadSpan as exc:
                    found.skip(str(exc))
    if not msg.resource_spans and data:
        raise TraceFormatError("not OTLP protobuf: no resource_spans in it")
    if not shared:
        found.require_some()
    return ([] if shared else found.trace_files(path, len(data))), found.notes(path)


def attr_dict(kvs: Any) -> dict[str, Any]:
    """KeyValue messages → dict of scalars (arrays, maps and bytes are left out)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        if which == "string_value":
            out[kv.key] = v.string_value
        elif which == "int_value":
            out[kv.key] = v.int_value
        elif which == "bool_value":
            out[kv.key] = v.bool_value
        elif which == "double_value":
            out[kv.key] = v.double_value
    return out


def _span(s: Any, library: str) -> Span:
    tid, sid, pid = s.trace_id, s.span_id, s.parent_span_id
    if len(tid) != 16 or tid == _ZERO16:
        raise BadSpan(f"trace_id of {len(tid)} bytes" if len(tid) != 16 else "trace_id is zero")
    if len(sid) != 8 or sid == _ZERO8:
        raise BadSpan(f"span_id of {len(sid)} bytes" if len(sid) != 8 else "span_id is zero")
    if pid and len(pid) != 8:
        raise BadSpan(f"parent_span_id of {len(pid)} bytes")
    start, end = s.start_time_unix_nano, s.end_time_unix_nano
    if not 0 < start <= _MAX_TIME:
        raise BadSpan(f"start_time_unix_nano {start} is out of range")
    if end == 0:
        end = start
    if end < start or end > _MAX_TIME:
        raise BadSpan(f"span {sid.hex()} ends before it starts")
    kind = s.kind
    span = Span(
        tid.hex(),
        sid.hex(),
        pid.hex() if pid and pid != _ZERO8 else "",
        s.name,
        kind if 0 <= kind <= 5 else 0,
        start,
        end,
        s.status.code == 2,
        attr_dict(s.attributes) if kind > 1 else {},
        library,
    )
    for link in s.links:
        if len(link.trace_id) == 16 and len(link.span_id) == 8 and link.span_id != _ZERO8:
            span.link_trace_id = link.trace_id.hex()
            span.link_span_id = link.span_id.hex()
            break
    return span
