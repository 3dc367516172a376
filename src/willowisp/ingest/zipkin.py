"""Importing Zipkin v2 JSON (``POST /api/v2/spans`` bodies, ``GET /api/v2/trace/{id}``,
``GET /api/v2/traces`` answers).

Like :mod:`willowisp.ingest.jaeger`, the spans are converted at the edge into OTLP JSON
``TracesData`` and handed to :func:`willowisp.ingest.otlp_json.from_traces_data`, so a
CLIENT span and its SERVER child in another service link as an RPC hop and a PRODUCER and
its CONSUMER as a message hop, by (trace id, span id) alone. The mapping
(docs/import.md has it for users):

* **shapes**: a JSON array of spans, or an array of arrays of spans (one per trace).
* **ids**: ``traceId`` (16 or 32 hex digits; 64-bit ids are left-padded to 32), ``id``,
  ``parentId`` (16 hex digits; shorter ones are left-padded).
* **times**: ``timestamp`` and ``duration`` are µs; they become exact ns. A span without
  ``timestamp`` cannot be placed and is skipped; one without ``duration`` lasts 0 ns.
* **kind**: ``CLIENT``/``SERVER``/``PRODUCER``/``CONSUMER``; absent is INTERNAL.
* **localEndpoint** is the resource: ``serviceName`` is ``service.name`` and ``ipv4`` (else
  ``ipv6``) is ``host.name``, so one service on one host is one process; its ``port`` is
  the span's ``network.local.port``.
* **remoteEndpoint** becomes ``peer.service``, ``network.peer.address`` and
  ``network.peer.port``, and for CLIENT and PRODUCER spans also ``server.address`` /
  ``server.port`` when the tags have none (the peer the hop table shows).
* **tags** are string attributes (numbers in them stay strings, as Zipkin wrote them);
  ``otel.status_code`` and the ``error`` tag (its value is the message) give the status;
  ``otel.scope.*`` / ``otel.library.*`` give the scope. **annotations** become events named
  by their value. ``debug`` and ``shared`` are kept as ``zipkin.debug`` / ``zipkin.shared``.
* **B3 shared spans** (``shared: true``): the server half of an RPC that kept the client's
  span id. It gets a synthetic id (:func:`willowisp.ingest.jaeger.shared_id`), the
  client's id as its parent (kept as ``zipkin.shared_span_id`` too), and the spans of the
  server's service whose parent was the shared id become its children; the hop then links
  like any client/server pair, even when the client half is in another file.

A span that cannot be mapped is skipped and counted in one note; a file with no usable span
is one :class:`TraceFormatError`. Zipkin v1 JSON (``binaryAnnotations``, annotations with
endpoints) is not this format: it is not claimed, and ``--from zipkin`` on it is one error
saying so rather than a wrong import.
"""

from __future__ import annotations

import re
from typing import Any

from willowisp.errors import TraceFormatError
from willowisp.ingest.jaeger import (
    CLIENT,
    CONSUMER,
    INTERNAL,
    PRODUCER,
    SERVER,
    Converted,
    OutSpan,
    Skip,
    check_size,
    finish,
    has_key,
    head_text,
    hex_id,
    kv,
    load_json,
    micros,
    short_repr,
)
from willowisp.wtrace.reader import TraceFile

NAME = "zipkin"

_KINDS = {"CLIENT": CLIENT, "SERVER": SERVER, "PRODUCER": PRODUCER, "CONSUMER": CONSUMER}
_MAX_NS = (1 << 63) - 1
_SCOPE_KEYS = ("otel.scope.name", "otel.scope.version", "otel.library.name", "otel.library.version")
_CONSUMED = frozenset(("otel.status_code", "otel.status_description", *_SCOPE_KEYS))


# -- the importer interface -------------------------------------------------------------


def sniff(head: bytes) -> bool:
    """Is this Zipkin v2 JSON? An array (or array of arrays) of objects in which the keys
    ``traceId`` and ``id`` appear, with no Jaeger ``traceID``, OTLP ``spanId`` /
    ``resourceSpans``, Chrome ``ph`` or Zipkin v1 ``binaryAnnotations``. Decided on the
    first 64 KiB."""
    text = head_text(head)
    if text is None or not re.match(r"\[\s*(\[\s*)?\{", text):
        return False
    if not (has_key(text, "traceId") and has_key(text, "id")):
        return False
    others = ("traceID", "spanId", "resourceSpans", "ph", "binaryAnnotations")
    return not any(has_key(text, k) for k in others)


def prepare(data: bytes, path: str) -> tuple[str, bytes]:
    """Zipkin JSON is stored as it is: later decoding needs no tool."""
    check_size(data, "Zipkin JSON")
    return NAME, data


def decode(stored_format: str, data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    """Zipkin v2 JSON → one TraceFile per service and host, and notes (skipped spans).

    Raises TraceFormatError when nothing usable is there, TraceLimitError when the bytes or
    the span count are over the bounds.
    """
    if stored_format != NAME:
        raise TraceFormatError(f"stored format {stored_format!r} is not {NAME!r}")
    check_size(data, "Zipkin JSON")
    doc = load_json(data, "Zipkin JSON")
    if not isinstance(doc, list):
        raise TraceFormatError(
            f"not Zipkin v2 JSON: the file holds a {type(doc).__name__}, not an array of spans"
        )
    _refuse_v1(doc)
    out = Converted("Zipkin")
    for item in doc:
        for raw in item if isinstance(item, list) else [item]:
            out.count()
            try:
                out.spans.append(_span(raw))
            except Skip as exc:
                out.skip(exc)
    return finish(out, path, len(data), NAME, [])


def _refuse_v1(doc: list[Any]) -> None:
    """Raise TraceFormatError on Zipkin v1 JSON, which ``--from zipkin`` would otherwise
    mis-read: v1 says who did what and the span's kind only in ``annotations`` (``cs``,
    ``sr``, ... each with an ``endpoint``) and ``binaryAnnotations``, so a v2 reading
    loses the service, the kind and the tags. A span is v1 when it has
    ``binaryAnnotations``, or annotations with an ``endpoint`` and no ``localEndpoint``."""
    for item in doc:
        for raw in item if isinstance(item, list) else [item]:
            if isinstance(raw, dict) and _is_v1(raw):
                raise TraceFormatError(
                    "Zipkin v1 JSON is not supported (spans with annotations/"
                    "binaryAnnotations endpoints and no localEndpoint or kind): convert it "
                    "to Zipkin v2 (Zipkin's GET /api/v2/trace/{id} answers in v2)"
                )


def _is_v1(raw: dict[str, Any]) -> bool:
    if "binaryAnnotations" in raw:
        return True
    if "localEndpoint" in raw or "kind" in raw:
        return False
    notes = raw.get("annotations")
    return isinstance(notes, list) and any(isinstance(a, dict) and "endpoint" in a for a in notes)


# -- spans ------------------------------------------------------------------------------


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _port(v: Any) -> int:
    ok = isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536
    return v if ok else 0


def _resource(endpoint: Any) -> tuple[tuple[tuple[str, Any], ...], str]:
    e = endpoint if isinstance(endpoint, dict) else {}
    service = _str(e.get("serviceName")) or "unknown_service"
    attrs: dict[str, Any] = {"service.name": service}
    host = _str(e.get("ipv4")) or _str(e.get("ipv6"))
    if host:
        attrs["host.name"] = host
    return tuple(sorted(attrs.items())), service


def _tags(v: Any) -> dict[str, Any]:
    """Zipkin tags (string to string; other scalars tolerated), bad entries dropped."""
    if not isinstance(v, dict):
        return {}
    return {k: x for k, x in v.items() if isinstance(x, str | bool | int | float)}


def _status(tags: dict[str, Any]) -> dict[str, Any]:
    code = tags.get("otel.status_code")
    c = {"OK": 1, "ERROR": 2}.get(code.upper(), 0) if isinstance(code, str) else 0
    status: dict[str, Any] = {"code": c}
    if "error" in tags:  # Zipkin: the error tag's presence means failure, its value says why
        status["code"] = 2
        if message := _str(tags["error"]) or _str(tags.get("otel.status_description")):
            status["message"] = message
    return status


def _endpoint_attrs(raw: dict[str, Any], kind: int, tags: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if port := _port(_dict(raw.get("localEndpoint")).get("port")):
        out["network.local.port"] = port
    remote = _dict(raw.get("remoteEndpoint"))
    if service := _str(remote.get("serviceName")):
        out["peer.service"] = service
    address = _str(remote.get("ipv4")) or _str(remote.get("ipv6"))
    port = _port(remote.get("port"))
    if address:
        out["network.peer.address"] = address
    if port:
        out["network.peer.port"] = port
    has_server = {"server.address", "net.peer.name"} & tags.keys()
    if kind in (CLIENT, PRODUCER) and not has_server and (host := service or address):
        out["server.address"] = host
        if port:
            out["server.port"] = port
    return out


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _events(annotations: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for a in annotations if isinstance(annotations, list) else []:
        if not isinstance(a, dict) or not isinstance(a.get("value"), str):
            continue
        try:
            t = micros(a.get("timestamp"), "annotation timestamp")
        except Skip:
            continue
        events.append({"timeUnixNano": t, "name": a["value"], "attributes": []})
    return events


def _span(raw: Any) -> OutSpan:
    if not isinstance(raw, dict):
        raise Skip(f"a span that is a {type(raw).__name__}, not an object")
    trace_id = hex_id(raw.get("traceId"), 32, "traceId")
    span_id = hex_id(raw.get("id"), 16, "id")
    parent = hex_id(raw.get("parentId"), 16, "parentId", optional=True)
    name = raw.get("name") or ""
    if not isinstance(name, str):
        raise Skip(f"name {short_repr(name)} is not a string")
    k = raw.get("kind")
    if k is not None and not (isinstance(k, str) and k.upper() in _KINDS):
        raise Skip(f"kind {short_repr(k)} is not CLIENT, SERVER, PRODUCER or CONSUMER")
    kind = _KINDS[k.upper()] if isinstance(k, str) else INTERNAL
    if "timestamp" not in raw:
        raise Skip(f"span {span_id} has no timestamp")
    start = micros(raw["timestamp"], "timestamp")
    end = start + micros(raw.get("duration") or 0, "duration", zero=True)
    if end > _MAX_NS:
        raise Skip(f"span {span_id} ends past the 64-bit time range")
    tags = _tags(raw.get("tags"))
    attrs = {k: v for k, v in tags.items() if k not in _CONSUMED}
    attrs |= _endpoint_attrs(raw, kind, tags)
    shared = raw.get("shared") is True and kind == SERVER
    if raw.get("debug") is True:
        attrs["zipkin.debug"] = True
    if shared:
        attrs["zipkin.shared"] = True
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        "attributes": [a for key, v in attrs.items() if (a := kv(key, v))],
        "events": _events(raw.get("annotations")),
        "links": [],
        "status": _status(tags),
    }
    if parent:
        span["parentSpanId"] = parent
    resource, service = _resource(raw.get("localEndpoint"))
    scope = (
        _str(tags.get("otel.scope.name")) or _str(tags.get("otel.library.name")),
        _str(tags.get("otel.scope.version")) or _str(tags.get("otel.library.version")),
    )
    return OutSpan(resource, scope, span, service, shared=shared)
