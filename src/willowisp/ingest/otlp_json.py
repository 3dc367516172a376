"""Importing OTLP JSON: ``TracesData`` objects, JSON Lines of them, Jaeger's api_v3 wrapper.

The spans become processes, units and hops by the mapping all span formats share
(:mod:`willowisp.ingest.spans`); this module only reads the JSON. The OTLP/JSON rules it
holds an input to: ids are hex (not base64; case-insensitive); enums are integers (their
names are accepted too); 64-bit integers are strings or numbers. A span that breaks them is
skipped and counted in a note; unknown fields are ignored; a file with no OTLP JSON at all
is one :class:`TraceFormatError`, the only error raised.

Parsing uses ``orjson`` when it is installed (three times faster than ``json`` on a large
export, and it holds less memory), the standard library otherwise.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.ingest.spans import (
    MAX_SPANS,
    BadSpan,
    Remote,
    Span,
    SpanProcess,
    plural,
    span_set,
)
from willowisp.wtrace.reader import TraceFile

try:
    import orjson

    _loads: Any = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (ValueError, RecursionError, orjson.JSONDecodeError)
except ImportError:  # pragma: no cover - orjson is a dependency; stay usable without it
    _loads = json.loads
    _JSON_ERRORS = (ValueError, RecursionError)

NAME = "otlp-json"
_MAX_TIME = (1 << 63) - 1
_HEX = re.compile(r"[0-9a-fA-F]*")
_INT = re.compile(r"-?[0-9]{1,20}")
_ID32 = re.compile(r"[0-9a-fA-F]{32}")
_ID16 = re.compile(r"[0-9a-fA-F]{16}")
_ZERO32, _ZERO16 = "0" * 32, "0" * 16
_HEX_RUN = re.compile(r"[0-9a-fA-F]*")
_PLAIN_STATUS = (None, 0, 1, 2, "STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
_KIND_NAMES = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_SNIFF = re.compile(rb'^\s*(\{\s*"result"\s*:\s*)?\{\s*"resourceSpans"\s*:')


def sniff(head: bytes) -> bool:
    """An object whose first key is ``resourceSpans`` (or api_v3's ``result`` wrapping one);
    for JSON Lines, the first line is such an object."""
    h = head.lstrip(b"\xef\xbb\xbf")
    if _SNIFF.match(h):
        return True
    # Pretty-printed or reordered: resourceSpans as a key near the top, and no other format's.
    top = h[:4096]
    return h.lstrip().startswith(b"{") and b'"resourceSpans"' in top and b'"traceEvents"' not in top


def prepare(data: bytes, path: str) -> tuple[str, bytes]:
    return NAME, data


def decode(stored: str, data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    return parse_otlp(data, path)


def parse_otlp(data: bytes, path: str = "<bytes>") -> tuple[list[TraceFile], list[str]]:
    """OTLP JSON bytes → processes (one TraceFile each) and notes. Raises TraceFormatError."""
    docs, bad_lines = _documents(data)
    return from_traces_data(docs, path, len(data), bad_lines=bad_lines)


def from_traces_data(
    docs: list[dict[str, Any]],
    path: str,
    size: int,
    *,
    imported: str = NAME,
    bad_lines: int = 0,
) -> tuple[list[TraceFile], list[str]]:
    """TracesData objects in OTLP JSON shape (hex ids; integers as numbers or strings) →
    processes and notes. Other span formats (Jaeger, Zipkin) convert to this shape and call
    it, so every span format maps to units and hops one way; ``imported`` names the format
    in each process record. Inside :func:`~willowisp.ingest.spans.shared_spans` the spans
    join the shared set and no processes are returned (the reader builds them)."""
    found, shared = span_set(imported, path)
    for doc in docs:
        for rs in _list(doc.get("resourceSpans")):
            if not isinstance(rs, dict):
                continue
            proc = found.process(_attrs(_dict(rs.get("resource")).get("attributes")))
            for ss in _list(rs.get("scopeSpans")):
                if not isinstance(ss, dict):
                    continue
                library = _dict(ss.get("scope")).get("name")
                lib = library if isinstance(library, str) else ""
                spans = _list(ss.get("spans"))
                found.total += len(spans)
                if found.total > MAX_SPANS:
                    raise TraceLimitError(f"more than {MAX_SPANS} spans (the bound for one input)")
                if _batch(spans, lib, proc):
                    continue
                for s in spans:
                    try:
                        found.add(proc, _span(s, lib))
                    except BadSpan as exc:
                        found.skip(str(exc))
    if not shared:
        found.require_some()
    notes: list[str] = []
    if bad_lines:
        notes.append(f"{path}: {plural(bad_lines, 'line')} not OTLP JSON, skipped")
    notes += found.notes(path)
    return ([] if shared else found.trace_files(path, size)), notes


# -- documents --------------------------------------------------------------------------


def _documents(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The TracesData objects of a file (one JSON object, or JSON Lines) and bad lines."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        whole = _loads(data)
    except _JSON_ERRORS:
        pass
    else:
        return [_traces_data(whole, "the file")], 0
    docs: list[dict[str, Any]] = []
    bad = 0
    first = ""
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            docs.append(_traces_data(_loads(line), f"line {lineno}"))
        except (*_JSON_ERRORS, TraceFormatError) as exc:  # type: ignore[misc]
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
        except BadSpan:
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
        raise BadSpan("a boolean where an integer belongs")
    if isinstance(v, int):
        n = v
    elif (isinstance(v, str) and _INT.fullmatch(v)) or (isinstance(v, float) and v.is_integer()):
        n = int(v)
    else:
        raise BadSpan(f"{_repr(v)} is not an integer")
    if not -(1 << 63) <= n < (1 << 64):
        raise BadSpan(f"{_repr(v)} is out of the 64-bit range")
    return n


def _repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _hex_id(v: Any, digits: int, what: str, *, optional: bool = False) -> str:
    if v is None or v == "":
        if optional:
            return ""
        raise BadSpan(f"no {what}")
    if not isinstance(v, str) or len(v) != digits or not _HEX.fullmatch(v):
        raise BadSpan(f"{what} {_repr(v)} is not {digits} hex digits")
    if v.strip("0") == "":
        if optional:
            return ""
        raise BadSpan(f"{what} is all zeros")
    return v.lower()


def _time(v: Any, what: str) -> int:
    t = _int64(v)
    if not 0 < t <= _MAX_TIME:
        raise BadSpan(f"{what} {t} is out of range")
    return t


def _enum(v: Any, names: dict[str, int], top: int, what: str) -> int:
    if v is None:
        return 0
    if isinstance(v, str) and v in names:
        return names[v]
    n = _int64(v) if not isinstance(v, str) or v.isdigit() else None
    if n is None or not 0 <= n <= top:
        raise BadSpan(f"{what} {_repr(v)} is not a known value")
    return n


# -- spans ------------------------------------------------------------------------------


def _span(s: Any, library: str) -> Span:
    """One span object → Span. The common, well-formed case is checked inline (a million
    spans is a normal file); anything unusual goes through the careful checks, which
    either accept it or say what is wrong."""
    if type(s) is not dict:
        raise BadSpan("a span that is not an object")
    g = s.get
    trace_id = g("traceId")
    if not (type(trace_id) is str and _ID32.fullmatch(trace_id) and trace_id != _ZERO32):
        trace_id = _hex_id(trace_id, 32, "traceId")
    span_id = g("spanId")
    if not (type(span_id) is str and _ID16.fullmatch(span_id) and span_id != _ZERO16):
        span_id = _hex_id(span_id, 16, "spanId")
    parent = g("parentSpanId")
    if parent:
        if not (type(parent) is str and _ID16.fullmatch(parent)):
            parent = _hex_id(parent, 16, "parentSpanId", optional=True)
        elif parent == _ZERO16:
            parent = ""
    else:
        parent = ""
    name = g("name", "")
    if type(name) is not str:
        raise BadSpan(f"name {_repr(name)} is not a string")
    kind = g("kind")
    if not (type(kind) is int and 0 <= kind <= 5):
        kind = _enum(kind, _KIND_NAMES, 5, "kind")
    start = _fast_time(g("startTimeUnixNano"), "startTimeUnixNano")
    end_v = g("endTimeUnixNano")
    end = start if end_v is None else _fast_time(end_v, "endTimeUnixNano")
    if end < start:
        raise BadSpan(f"span {span_id} ends before it starts")
    status = g("status")
    error = bool(status) and _enum(_dict(status).get("code"), _STATUS_NAMES, 2, "status code") == 2
    span = Span(
        trace_id.lower(),
        span_id.lower(),
        parent.lower(),
        name,
        kind,
        start,
        end,
        error,
        _attrs(g("attributes")) if kind > 1 else {},
        library,
    )
    links = g("links")
    if links:
        span.link_trace_id, span.link_span_id = _first_link(links)
    return span


def _first_link(links: Any) -> tuple[str, str]:
    """The first well-formed link's (trace id, span id); a bad link is not worth the span."""
    for link in _list(links):
        if isinstance(link, dict):
            try:
                return (
                    _hex_id(link.get("traceId"), 32, "link traceId"),
                    _hex_id(link.get("spanId"), 16, "link spanId"),
                )
            except BadSpan:
                continue
    return "", ""


def _lowered(ids: list[str]) -> list[str]:
    """Ids in lower case; the list itself when they already are (the usual case)."""
    joined = "".join(ids)
    return ids if joined == joined.lower() else [i.lower() for i in ids]


def _fast_time(v: Any, what: str) -> int:
    if type(v) is str and v.isascii() and v.isdigit() and len(v) <= 19:
        t = int(v)
        if 0 < t <= _MAX_TIME:
            return t
    elif type(v) is int and 0 < v <= _MAX_TIME:
        return v
    return _time(v, what)


def _ns_column(raw: list[Any]) -> np.ndarray[Any, np.dtype[np.int64]] | None:
    """Times as int64 when every one is an integer or a string of digits, else None (the
    span-by-span path then says which is wrong). Floats are refused before the cast: numpy
    would turn 1e308 into garbage with a RuntimeWarning, and a float64 column loses the
    nanoseconds of any real time."""
    try:
        arr = np.asarray(raw)
        if arr.dtype.kind not in "iuU":
            return None
        return arr.astype(np.int64)
    except (ValueError, TypeError, OverflowError):
        return None


def _batch(spans: list[Any], library: str, proc: SpanProcess) -> bool:
    """Add one scope's spans in bulk when every one of them is plainly well formed: each
    field pulled out by one list comprehension, ids checked by one regex over their
    concatenation, times converted by numpy. Anything unusual (a bad id, a kind or status
    given by name, a missing end, a repeated span) returns False having added nothing, and
    the caller goes span by span, which skips and names what is wrong. Four times faster on
    a large file than the span-by-span path, and the same result."""
    if not spans or not all(type(s) is dict for s in spans):
        return False
    tids = [s.get("traceId") for s in spans]
    sids = [s.get("spanId") for s in spans]
    if not (
        all(type(t) is str and len(t) == 32 for t in tids)
        and all(type(t) is str and len(t) == 16 for t in sids)
        and _HEX_RUN.fullmatch("".join(tids))
        and _HEX_RUN.fullmatch("".join(sids))
        and _ZERO32 not in tids
        and _ZERO16 not in sids
    ):
        return False
    parents = [s.get("parentSpanId") or "" for s in spans]
    given = [p for p in parents if p]
    if given and not (
        all(type(p) is str and len(p) == 16 for p in given)
        and _HEX_RUN.fullmatch("".join(given))
        and _ZERO16 not in given
    ):
        return False
    names = [s.get("name", "") for s in spans]
    kinds = [s.get("kind") or 0 for s in spans]
    statuses = [s.get("status") for s in spans]
    codes = [st.get("code") if type(st) is dict else st for st in statuses]
    if not (
        all(type(x) is str for x in names)
        and all(type(k) is int and 0 <= k <= 5 for k in kinds)
        and all(c in _PLAIN_STATUS and (type(c) is not bool) for c in codes)
    ):
        return False
    starts_raw = [s.get("startTimeUnixNano") for s in spans]
    ends_raw = [s.get("endTimeUnixNano") for s in spans]
    if None in starts_raw or None in ends_raw:
        return False
    starts, ends = _ns_column(starts_raw), _ns_column(ends_raw)
    if starts is None or ends is None:
        return False
    if not ((starts > 0).all() and (ends >= starts).all()):
        return False
    remote: dict[int, Remote] = {}
    for i, k in enumerate(kinds):
        if k > 1:  # the few that cross a process: their attributes, a consumer's link
            s = spans[i]
            rem = remote[i] = Remote(_attrs(s.get("attributes")), library)
            if k == 5 and not parents[i]:
                rem.link_trace_id, rem.link_span_id = _first_link(s.get("links"))
    return proc.add_columns(
        _lowered(tids),
        _lowered(sids),
        _lowered(parents),
        names,
        kinds,
        starts.tolist(),
        ends.tolist(),
        [c in (2, "STATUS_CODE_ERROR") for c in codes],
        remote,
    )
