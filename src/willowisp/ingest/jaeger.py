"""Importing Jaeger UI JSON (``GET /api/traces/{id}``, the UI's "Download JSON", uploads).

A Jaeger file is converted at the edge into OTLP JSON ``TracesData`` (hex ids, integer
kinds, nanosecond times) and handed to :func:`willowisp.ingest.otlp_json.from_traces_data`,
so Jaeger spans become units and hops exactly as OTLP spans do: a CLIENT span and its
SERVER child in another process link through (trace id, span id), with no new rule here.
The mapping (docs/import.md has it for users):

* **shapes**: the API envelope ``{"data": [trace, ...], "total", "limit", "offset",
  "errors"}`` (``data`` may also be one trace), a single trace ``{"traceID", "spans",
  "processes", "warnings"}``, or a JSON array of traces. An api_v3 answer
  (``{"result": {"resourceSpans": ...}}``) is OTLP JSON and is not claimed here.
* **ids**: hex of any length up to 32 (trace) or 16 (span) digits, left-padded with zeros
  (Jaeger writes 64-bit trace ids as 16 digits, and old versions drop leading zeros).
* **times**: ``startTime`` and ``duration`` are µs; they become exact ns.
* **references**: the first ``CHILD_OF`` in the span's own trace is the parent (else the
  deprecated ``parentSpanID``); ``FOLLOWS_FROM`` and any further ``CHILD_OF`` become links
  with ``opentracing.ref_type`` = ``follows_from`` / ``child_of`` (the OpenTracing shim's
  convention), so a CONSUMER span that FOLLOWS_FROM its PRODUCER links as a message hop.
* **tags** become attributes by their ``type`` (``int64`` may be a string; ``binary`` is
  base64 and stays bytes). ``span.kind`` gives the kind (absent: INTERNAL);
  ``otel.status_code`` / ``otel.status_description`` and ``error=true`` give the status;
  ``otel.scope.name`` / ``version`` (or the older ``otel.library.*``) give the scope. Those
  consumed tags are not repeated as attributes; ``error`` is kept.
* **logs** become events named by their ``event`` field (else ``log``), the other fields
  their attributes.
* **processes** become resources: ``serviceName`` is ``service.name``, tags are attributes,
  ``hostname`` also fills ``host.name``, ``client-uuid`` ``service.instance.id`` and the
  Jaeger client's ``jaeger.version`` (``Go-2.30.0``) ``telemetry.sdk.language`` (the
  runtime) when those are absent. Spans of one process in several traces are one process.
* **warnings** (trace and span) and the envelope's ``errors`` become one note each.
* **B3 shared spans**: Zipkin-instrumented services report the server half of an RPC with
  the client's span id. When a SERVER span repeats the id of a CLIENT span of the same
  trace, the server half gets a synthetic id (:func:`shared_id`) and the client's id as its
  parent, and its children in the server's service are re-parented to it (what Jaeger's own
  span-id deduper does), so the hop links. Any other repeated id is skipped.

A span that cannot be mapped (bad id, no start time, wrong types) is skipped and counted in
one note; a file with no usable span is one :class:`TraceFormatError`. The whole file is
parsed at once (``json.loads``), bounded by ``MAX_BYTES`` and ``shared_spans.MAX_SPANS``.
The helpers marked "shared" are used by :mod:`willowisp.ingest.zipkin` too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.ingest import otlp_json
from willowisp.ingest import spans as shared_spans
from willowisp.wtrace.reader import TraceFile

NAME = "jaeger"
MAX_BYTES = 1024**3  # the parsed objects take several times this (the registry's bound too)

INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5
_KINDS = {"internal": INTERNAL, "server": SERVER, "client": CLIENT}
_KINDS |= {"producer": PRODUCER, "consumer": CONSUMER}
_MAX_NS = (1 << 63) - 1
_HEX = re.compile(r"[0-9a-fA-F]+")
_INT = re.compile(r"-?[0-9]{1,20}")
_LEAD = re.compile(rb"^(?:\xef\xbb\xbf)?\s*([\[{])")
_KEY = r'"{}"\s*:'
_CONSUMED = frozenset(
    {
        "span.kind",
        "otel.status_code",
        "otel.status_description",
        "otel.scope.name",
        "otel.scope.version",
        "otel.library.name",
        "otel.library.version",
    }
)


class Skip(Exception):
    """Shared: one span (or trace) cannot be mapped; it is skipped and counted."""


# -- the importer interface -------------------------------------------------------------


def sniff(head: bytes) -> bool:
    """Is this Jaeger UI JSON? An object or array in which the Jaeger-only keys
    ``traceID`` and ``spanID`` or ``operationName`` appear (case matters: Zipkin writes
    ``traceId``, OTLP ``spanId``), and no OTLP ``resourceSpans`` or Chrome ``traceEvents``;
    or an empty API answer ``{"data": [], ...}``. Decided on the first 64 KiB."""
    text = head_text(head)
    if text is None or has_key(text, "resourceSpans") or has_key(text, "traceEvents"):
        return False
    if re.match(r'\{\s*"data"\s*:\s*(\[\s*\]|null)\s*[,}]', text):
        return True
    return has_key(text, "traceID") and (has_key(text, "spanID") or has_key(text, "operationName"))


def prepare(data: bytes, path: str) -> tuple[str, bytes]:
    """Jaeger JSON is stored as it is: later decoding needs no tool."""
    check_size(data, "Jaeger JSON")
    return NAME, data


def decode(stored_format: str, data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    """Jaeger JSON → one TraceFile per process (service), and notes (skips, warnings).

    Raises TraceFormatError when nothing usable is there, TraceLimitError when the bytes or
    the span count are over the bounds.
    """
    if stored_format != NAME:
        raise TraceFormatError(f"stored format {stored_format!r} is not {NAME!r}")
    check_size(data, "Jaeger JSON")
    traces, notes = _traces(load_json(data, "Jaeger JSON"), path)
    out = Converted("Jaeger")
    bad_traces, first_bad = 0, ""
    for trace in traces:
        try:
            _convert_trace(trace, out)
        except Skip as exc:
            bad_traces += 1
            first_bad = first_bad or str(exc)
    if not out.total and (bad_traces or notes):  # nothing but bad traces or query errors
        why = f"first: {first_bad}" if bad_traces else notes[0].removeprefix(f"{path}: ")
        raise TraceFormatError(f"no usable Jaeger trace ({why})")
    if bad_traces:
        notes.append(
            f"{path}: {bad_traces} of {plural(len(traces), 'Jaeger trace')} skipped "
            f"(first: {first_bad}); the others were imported"
        )
    if out.warnings:
        notes.append(
            f"{path}: Jaeger reported {plural(len(out.warnings), 'warning')} "
            f"(first: {out.warnings[0]})"
        )
    return finish(out, path, len(data), NAME, notes)


# -- shared helpers (used by zipkin.py too) ---------------------------------------------


def head_text(head: bytes) -> str | None:
    """Shared: the head as text from its first ``{`` or ``[``, None if it starts otherwise."""
    m = _LEAD.match(head)
    if m is None:
        return None
    return head[m.start(1) :].decode("utf-8", errors="replace")  # the head may cut a char


def has_key(text: str, key: str) -> bool:
    """Shared: does ``"key":`` appear in the text (a cheap test for a JSON object key)?"""
    return re.search(_KEY.format(re.escape(key)), text) is not None


def check_size(data: bytes, what: str) -> None:
    """Shared: the byte bound of span JSON files (the OTLP JSON importer's)."""
    bound = MAX_BYTES
    if len(data) > bound:
        raise TraceLimitError(f"{len(data)} bytes is over the {bound}-byte bound for {what}")


def load_json(data: bytes, what: str) -> Any:
    """Shared: the parsed document, or one TraceFormatError saying why it is not JSON."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"not {what}: not UTF-8 text ({exc.reason})") from exc
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise TraceFormatError(f"not {what}: nested too deeply") from exc
    except ValueError as exc:
        raise TraceFormatError(f"not {what}: {short(str(exc))}") from exc


def hex_id(v: Any, digits: int, what: str, *, optional: bool = False) -> str:
    """Shared: a hex id of up to ``digits`` digits, left-padded, lower case. An absent or
    all-zero id is "" when ``optional``; anything else that is not hex is a Skip."""
    if v is None or v == "":
        if optional:
            return ""
        raise Skip(f"no {what}")
    if not isinstance(v, str) or len(v) > digits or not _HEX.fullmatch(v):
        raise Skip(f"{what} {short_repr(v)} is not hex of at most {digits} digits")
    if v.strip("0") == "":
        if optional:
            return ""
        raise Skip(f"{what} is all zeros")
    return v.lower().rjust(digits, "0")


def micros(v: Any, what: str, *, zero: bool = False) -> int:
    """Shared: a µs count (int, integral float or decimal string) as ns; positive unless
    ``zero`` allows 0."""
    if isinstance(v, bool):
        raise Skip(f"{what} is a boolean, not µs")
    if isinstance(v, str) and _INT.fullmatch(v):
        v = int(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int):
        raise Skip(f"{what} {short_repr(v)} is not a whole number of µs")
    if not (0 if zero else 1) <= v <= _MAX_NS // 1000:
        raise Skip(f"{what} {v} µs is out of range")
    return v * 1000


def shared_id(trace_id: str, span_id: str) -> str:
    """Shared: the synthetic span id given to the server half of a B3 shared span: the first
    16 hex digits of sha256("shared:<trace id>:<span id>"), stable across imports."""
    return hashlib.sha256(f"shared:{trace_id}:{span_id}".encode()).hexdigest()[:16]


def kv(key: str, value: Any) -> dict[str, Any] | None:
    """Shared: an OTLP KeyValue for a Python scalar (None: a value with no OTLP scalar)."""
    if type(value) is str:  # most tags: the fast path
        return {"key": key, "value": {"stringValue": value}}
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:
            return {"key": key, "value": {"stringValue": str(value)}}
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"key": key, "value": {"stringValue": str(value)}}
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, str):
        return {"key": key, "value": {"stringValue": value}}
    return None


def short(s: str) -> str:
    return s if len(s) <= 80 else s[:77] + "..."


def short_repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass(slots=True)
class OutSpan:
    """Shared: one converted span, with its resource and scope (as hashable keys)."""

    resource: tuple[tuple[str, Any], ...]
    scope: tuple[str, str]
    span: dict[str, Any]
    service: str
    shared: bool = False  # a server half that carries the client's span id (B3)


@dataclass(slots=True)
class Converted:
    """Shared: the spans converted so far, with the skip count and the first reason.

    Invariant: ``total`` counts every span seen, ``skipped`` those not in ``spans``.
    """

    what: str  # "Jaeger" or "Zipkin", for notes
    spans: list[OutSpan] = field(default_factory=list)
    total: int = 0
    skipped: int = 0
    duplicates: int = 0  # exact repeats dropped (the same span in two traces or exports)
    first: str = ""
    warnings: list[str] = field(default_factory=list)

    def count(self) -> None:
        self.total += 1
        if self.total > shared_spans.MAX_SPANS:
            raise TraceLimitError(
                f"more than {shared_spans.MAX_SPANS} spans (the bound for one input)"
            )

    def skip(self, exc: Skip) -> None:
        self.skipped += 1
        self.first = self.first or str(exc)


def finish(
    out: Converted, path: str, size: int, imported: str, notes: list[str]
) -> tuple[list[TraceFile], list[str]]:
    """Shared: split shared spans, drop repeated ids, build TracesData and import it."""
    spans = _split_shared(out)
    if out.duplicates:
        notes.append(
            f"{path}: {plural(out.duplicates, 'duplicate ' + out.what + ' span')} dropped "
            "(same ids and content as a span already read)"
        )
    if out.skipped:
        notes.append(
            f"{path}: {out.skipped} of {plural(out.total, out.what + ' span')} skipped as "
            f"malformed (first: {out.first}); the others were imported"
        )
    if not spans:
        what = f"{out.what} span"
        why = (
            f": {out.skipped} of {plural(out.total, what)} skipped as malformed "
            f"(first: {out.first})"
            if out.skipped
            else " (the file holds none)"
        )
        raise TraceFormatError(f"no usable {what}{why}")
    files, more = otlp_json.from_traces_data([traces_data(spans)], path, size, imported=imported)
    if not files and not shared_spans.collecting():
        raise TraceFormatError(f"no usable {out.what} span ({'; '.join(more) or 'none'})")
    return files, notes + more


def traces_data(spans: Iterable[OutSpan]) -> dict[str, Any]:
    """Shared: OutSpans grouped into one TracesData object (resource, then scope)."""
    by_res: dict[tuple[tuple[str, Any], ...], dict[tuple[str, str], list[Any]]] = {}
    for s in spans:
        by_res.setdefault(s.resource, {}).setdefault(s.scope, []).append(s.span)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [a for k, v in res if (a := kv(k, v))]},
                "scopeSpans": [
                    {"scope": {"name": name, "version": version}, "spans": group}
                    for (name, version), group in scopes.items()
                ],
            }
            for res, scopes in by_res.items()
        ]
    }


def _split_shared(out: Converted) -> list[OutSpan]:
    """Give the server half of each B3 shared span its own id (see the module docstring);
    a span id repeated otherwise is skipped and counted."""
    by_id: dict[tuple[str, str], list[OutSpan]] = {}
    for s in out.spans:
        by_id.setdefault((s.span["traceId"], s.span["spanId"]), []).append(s)
    moved: dict[tuple[str, str, str], str] = {}  # (trace, old id, service) -> new id
    for (trace_id, span_id), group in by_id.items():
        clients = [s for s in group if s.span["kind"] == CLIENT and not s.shared]
        for s in group:
            if s.span["kind"] != SERVER or not (s.shared or clients):
                continue
            new = shared_id(trace_id, span_id)
            s.span["attributes"].append(kv(f"{out.what.lower()}.shared_span_id", span_id))
            s.span["spanId"] = new
            s.span["parentSpanId"] = span_id
            if not any(c.service == s.service for c in clients):
                # its children are the shared id's children in its own service (with the
                # client in that service too, they cannot be told apart: they stay put)
                moved[(trace_id, span_id, s.service)] = new
    result: list[OutSpan] = []
    seen: dict[tuple[str, str], OutSpan] = {}
    for s in out.spans:
        key = (s.span["traceId"], s.span["spanId"])
        parent = s.span.get("parentSpanId", "")
        moved_to = moved.get((key[0], parent, s.service)) if parent else None
        if moved_to and moved_to != key[1]:
            s.span["parentSpanId"] = moved_to
        if (first := seen.get(key)) is not None:
            if first == s:  # a repeat of the same span, not a conflict: drop it quietly
                out.duplicates += 1
            else:
                out.skip(Skip(f"span {key[1]} appears twice, with different content"))
            continue
        seen[key] = s
        result.append(s)
    return result


# -- Jaeger shapes ----------------------------------------------------------------------


def _traces(doc: Any, path: str) -> tuple[list[Any], list[str]]:
    """The trace objects of a document, and a note for the envelope's errors."""
    notes: list[str] = []
    if isinstance(doc, list):
        return doc, notes
    if not isinstance(doc, dict):
        raise TraceFormatError(f"not Jaeger JSON: the file holds a {type(doc).__name__}")
    if "resourceSpans" in doc or isinstance(doc.get("result"), dict):
        raise TraceFormatError("not Jaeger UI JSON: this is OTLP JSON (import it as otlp-json)")
    if "traceID" in doc or "spans" in doc:
        return [doc], notes
    if "data" not in doc:
        raise TraceFormatError("not Jaeger JSON: an object with neither data nor traceID/spans")
    errors = doc.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0].get("msg") if isinstance(errors[0], dict) else errors[0]
        notes.append(
            f"{path}: the Jaeger query reported {plural(len(errors), 'error')} "
            f"(first: {short(str(first))})"
        )
    data = doc["data"]
    if isinstance(data, dict):
        return [data], notes
    if isinstance(data, list):
        return data, notes
    if data is None:
        return [], notes
    raise TraceFormatError(f"not Jaeger JSON: data is a {type(data).__name__}")


def _convert_trace(trace: Any, out: Converted) -> None:
    if not isinstance(trace, dict):
        raise Skip(f"a trace that is a {type(trace).__name__}, not an object")
    spans = trace.get("spans")
    if not isinstance(spans, list):
        raise Skip(f"trace {short_repr(trace.get('traceID'))} has no spans list")
    processes = trace.get("processes")
    processes = processes if isinstance(processes, dict) else {}
    resources = {pid: _resource(p) for pid, p in processes.items()}
    out.warnings.extend(short(str(w)) for w in _list(trace.get("warnings")))
    for raw in spans:
        out.count()
        try:
            out.spans.append(_span(raw, resources, out))
        except Skip as exc:
            out.skip(exc)


Resource = tuple[tuple[tuple[str, Any], ...], str]


def _resource(process: Any, pid: str = "") -> Resource:
    """A Jaeger process → (resource attributes, service name)."""
    p = process if isinstance(process, dict) else {}
    service = p.get("serviceName")
    service = service if isinstance(service, str) and service else "unknown_service"
    attrs: dict[str, Any] = {"service.name": service}
    if pid and not isinstance(process, dict):
        attrs["jaeger.process_id"] = pid
    for k, v in _tags(p.get("tags")).items():
        attrs.setdefault(k, v)
    if isinstance(h := attrs.get("hostname"), str):
        attrs.setdefault("host.name", h)
    if isinstance(u := attrs.get("client-uuid"), str):
        attrs.setdefault("service.instance.id", u)
    if (lang := _client_language(attrs.get("jaeger.version"))) is not None:
        attrs.setdefault("telemetry.sdk.language", lang)
    return tuple(sorted(attrs.items(), key=lambda kv_: kv_[0])), service


# Jaeger clients' ``jaeger.version`` tag (``Go-2.30.0``, ``Java-1.8.1``, ``Python-4.8.0``):
# its prefix, lowercased, as an OpenTelemetry ``telemetry.sdk.language`` value.
_CLIENT_LANGUAGES = {
    "go": "go",
    "golang": "go",
    "java": "java",
    "python": "python",
    "node": "nodejs",
    "nodejs": "nodejs",
    "cpp": "cpp",
    "c++": "cpp",
    "csharp": "dotnet",
    "c#": "dotnet",
    "dotnet": "dotnet",
    "ruby": "ruby",
    "php": "php",
    "rust": "rust",
}


def _client_language(version: Any) -> str | None:
    """The runtime a ``jaeger.version`` tag names, or None (absent, or not one we know)."""
    if not isinstance(version, str):
        return None
    return _CLIENT_LANGUAGES.get(version.partition("-")[0].strip().lower())


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _tags(v: Any) -> dict[str, Any]:
    """Jaeger KeyValues → a dict of scalars (bytes as {"bytes": b64}); bad tags dropped."""
    out: dict[str, Any] = {}
    for t in _list(v):
        if isinstance(t, dict) and isinstance(k := t.get("key"), str):
            val = _tag_value(t.get("type"), t.get("value"))
            if val is not None:
                out[k] = val
    return out


def _tag_value(typ: Any, v: Any) -> Any:
    typ = typ.lower() if isinstance(typ, str) else ""
    if typ == "binary":
        if isinstance(v, str):
            try:
                base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                return None
            return _Bytes(v)
        return None
    if typ == "bool" and isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if typ == "int64" and isinstance(v, str) and _INT.fullmatch(v):
        n = int(v)
        return n if -(1 << 63) <= n < 1 << 63 else None
    if typ == "float64" and isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    if typ == "string" and not isinstance(v, str):
        return None
    if isinstance(v, bool | int | float | str):
        return v
    return None


class _Bytes(str):
    """A base64 binary tag value: becomes an OTLP ``bytesValue``."""


def _attr(key: str, value: Any) -> dict[str, Any] | None:
    if isinstance(value, _Bytes):
        return {"key": key, "value": {"bytesValue": str(value)}}
    return kv(key, value)


def _kind(tags: dict[str, Any]) -> int:
    k = tags.get("span.kind")
    return _KINDS.get(k.lower(), INTERNAL) if isinstance(k, str) else INTERNAL


def _status(tags: dict[str, Any]) -> dict[str, Any]:
    code = tags.get("otel.status_code")
    c = 0
    if isinstance(code, str) and code.upper() in ("OK", "ERROR"):
        c = 1 if code.upper() == "OK" else 2
    err = tags.get("error")
    if err is True or (isinstance(err, str) and err.lower() == "true"):
        c = 2
    message = tags.get("otel.status_description")
    status: dict[str, Any] = {"code": c}
    if isinstance(message, str) and message:
        status["message"] = message
    return status


def _scope(tags: dict[str, Any]) -> tuple[str, str]:
    name = tags.get("otel.scope.name", tags.get("otel.library.name", ""))
    version = tags.get("otel.scope.version", tags.get("otel.library.version", ""))
    return (name if isinstance(name, str) else "", version if isinstance(version, str) else "")


def _references(raw: dict[str, Any], trace_id: str) -> tuple[str, list[dict[str, Any]]]:
    """The parent span id and the links, from ``references`` (and ``parentSpanID``)."""
    parent = ""
    links: list[dict[str, Any]] = []
    for ref in _list(raw.get("references")):
        if not isinstance(ref, dict):
            continue
        try:
            rt = hex_id(ref.get("traceID") or trace_id, 32, "reference traceID")
            rs = hex_id(ref.get("spanID"), 16, "reference spanID")
        except Skip:
            continue  # a bad reference is not worth the span
        ref_type = ref.get("refType")
        child_of = not (isinstance(ref_type, str) and ref_type.upper() == "FOLLOWS_FROM")
        if child_of and not parent and rt == trace_id:
            parent = rs
            continue
        attr = kv("opentracing.ref_type", "child_of" if child_of else "follows_from")
        links.append({"traceId": rt, "spanId": rs, "attributes": [attr]})
    if not parent:
        parent = hex_id(raw.get("parentSpanID"), 16, "parentSpanID", optional=True)
    return parent, links


def _events(logs: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for log in _list(logs):
        if not isinstance(log, dict):
            continue
        try:
            t = micros(log.get("timestamp"), "log timestamp")
        except Skip:
            continue
        fields = _tags(log.get("fields"))
        name = fields.pop("event", None)
        attrs = [a for k, v in fields.items() if (a := _attr(k, v))]
        events.append(
            {
                "timeUnixNano": t,
                "name": name if isinstance(name, str) else "log",
                "attributes": attrs,
            }
        )
    return events


def _span(raw: Any, resources: dict[str, Resource], out: Converted) -> OutSpan:
    if not isinstance(raw, dict):
        raise Skip(f"a span that is a {type(raw).__name__}, not an object")
    trace_id = hex_id(raw.get("traceID"), 32, "traceID")
    span_id = hex_id(raw.get("spanID"), 16, "spanID")
    name = raw.get("operationName", "")
    if not isinstance(name, str):
        raise Skip(f"operationName {short_repr(name)} is not a string")
    start = micros(raw.get("startTime"), "startTime")
    end = start + micros(raw.get("duration", 0), "duration", zero=True)
    if end > _MAX_NS:
        raise Skip(f"span {span_id} ends past the 64-bit time range")
    pid = raw.get("processID")
    if isinstance(pid, str) and pid in resources:
        resource, service = resources[pid]
    else:
        resource, service = _resource(raw.get("process"), pid if isinstance(pid, str) else "")
    tags = _tags(raw.get("tags"))
    parent, links = _references(raw, trace_id)
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": _kind(tags),
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        "attributes": [a for k, v in tags.items() if k not in _CONSUMED and (a := _attr(k, v))],
        "events": _events(raw.get("logs")),
        "links": links,
        "status": _status(tags),
    }
    if parent:
        span["parentSpanId"] = parent
    flags = raw.get("flags")
    if isinstance(flags, int) and not isinstance(flags, bool) and flags >= 0:
        span["flags"] = flags & 0xFF
    out.warnings.extend(f"span {span_id}: {short(str(w))}" for w in _list(raw.get("warnings")))
    return OutSpan(resource, _scope(tags), span, service)
