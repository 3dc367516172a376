"""An analysis as OTLP JSON (``TracesData``), so Jaeger, Tempo or any OTLP backend shows it.

Two kinds of processes, two mappings (docs/export.md has them for users):

* **Imported from OTLP** (JSON or protobuf, directly or from an ``import``/``collect``
  ``.wtrace``): their spans are written back as they came — every field, attributes,
  events, links, status, trace state, flags, dropped counts, resource and scope — read
  again from the source rather than rebuilt from the model, which keeps only what the
  analyses need. Protobuf input is rendered by OTLP/JSON's rules (hex ids, int64 as
  strings, enums as integers). So OTLP JSON → ``.wtrace`` → OTLP JSON keeps every span.
* **Recorded** (and imported from other formats): each execution unit is one INTERNAL span
  in one trace per process (a thread, task or goroutine is not a request, so it gets its
  own trace id, derived from the process id), child of the unit that created it; its
  waits are span events (``wait lock state_lock``, with reason, outcome and duration);
  findings that name it are span events ``willowisp.finding``. Each hop side becomes a
  CLIENT/SERVER/PRODUCER/CONSUMER span with the trace id and span id that crossed the wire,
  so the backend joins the two sides the way it joins any two services; it links to its
  unit's span. A request that never got its reply (the client still waiting, the server
  still handling it when the trace ended) has no end event: its span ends where the trace
  ends, with status ERROR ``no reply: ...`` and ``willowisp.unanswered=true`` — never a
  zero-length span that a viewer would show as an instant success. Times are the
  analysis' adjusted times: clocks aligned, not raw.

Ids are derived from content (process id, unit number, event id), so exporting the same
run twice gives the same document.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np

from willowisp import __version__
from willowisp.analysis.engine import Analysis
from willowisp.analysis.naming import resource_name
from willowisp.causality.waits import wait_outcome, waits
from willowisp.errors import TraceFormatError
from willowisp.ingest import formats
from willowisp.ingest.files import discover, read_wtrace
from willowisp.model.spec import K, Reason
from willowisp.wtrace.reader import is_wtrace

OTLP_SOURCES = ("otlp-json", "otlp-proto")
INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5
MAX_STR = 4096


def otlp_json(a: Analysis, paths: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The TracesData document of an analysis of ``paths`` (the PATH arguments it was
    loaded from), and notes (sources that could not be read again)."""
    notes: list[str] = []
    resource_spans: list[dict[str, Any]] = []
    sources, _ = discover(paths)
    if not any(dict(p.attrs).get("imported") in OTLP_SOURCES for p in a.trace.processes):
        sources = []
    for path in sources:
        try:
            resource_spans += _original(path)
        except (OSError, TraceFormatError) as exc:
            notes.append(f"{path}: cannot read its spans again ({exc})")
    resource_spans += _recorded(a)
    return {"resourceSpans": resource_spans}, notes


# -- imported: the spans as they came --------------------------------------------------------


def _original(path: str) -> list[dict[str, Any]]:
    """The resourceSpans of an OTLP source: a foreign file, or a .wtrace's OTLP streams."""
    out: list[dict[str, Any]] = []
    if path.endswith(".wtrace") or is_wtrace(path):
        _, streams = read_wtrace(path)  # chunk by chunk: embedded pieces bounded as they come
        for _, fmt, data, complete in streams or []:
            if complete and fmt in OTLP_SOURCES:
                out += _resource_spans(fmt, data)
        return out
    p = formats.prepare(path)
    if p.stored in OTLP_SOURCES:
        out += _resource_spans(p.stored, p.data)
    return out


def _resource_spans(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "otlp-json":
        from willowisp.ingest.otlp_json import _documents

        docs, _ = _documents(data)
        return [rs for d in docs for rs in d.get("resourceSpans", []) if isinstance(rs, dict)]
    found: list[dict[str, Any]] = proto_to_json(data).get("resourceSpans", [])
    return found


def proto_to_json(data: bytes) -> dict[str, Any]:
    """TracesData protobuf bytes as an OTLP/JSON object: protobuf's JSON mapping, then the
    OTLP rule that trace and span ids are hex, not base64."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

    msg = TracesData()
    msg.ParseFromString(data)
    doc: dict[str, Any] = MessageToDict(msg, use_integers_for_enums=True)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                _hex_ids(s)
                for link in s.get("links", []):
                    _hex_ids(link)
    return doc


def _hex_ids(obj: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if key in obj:
            obj[key] = base64.b64decode(obj[key]).hex()


# -- recorded: units and hop sides as spans ------------------------------------------------


def _id(digits: int, *parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:digits]


def _cut(s: str) -> str:
    return s if len(s) <= MAX_STR else s[: MAX_STR - 1] + "…"


def _kv(key: str, value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": _cut(str(value))}}


def _recorded(a: Analysis) -> list[dict[str, Any]]:
    trace = a.trace
    ev = trace.events
    adjusted = a.causality.clocks.adjusted
    n_units = len(trace.units)
    if not n_units:
        return []
    unit_ev = np.flatnonzero(ev.unit >= 0)
    first = np.full(n_units, -1, np.int64)
    last = np.full(n_units, -1, np.int64)
    if len(unit_ev):
        u = ev.unit[unit_ev]
        order = np.lexsort((adjusted[unit_ev], u))
        su, si = u[order], unit_ev[order]
        starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
        ends = np.r_[starts[1:] - 1, len(su) - 1]
        first[su[starts]] = si[starts]
        last[su[ends]] = si[ends]
    skip = {p.index for p in trace.processes if dict(p.attrs).get("imported") in OTLP_SOURCES}
    span_of = [_id(16, trace.processes[x.proc].id, "unit", x.number) for x in trace.units]
    trace_of = [_id(32, "willowisp-units", p.id) for p in trace.processes]
    spans: dict[int, list[dict[str, Any]]] = {}
    events_of: dict[int, list[dict[str, Any]]] = {}

    w = waits(trace)
    for b, e, r, reason in zip(
        w.block.tolist(), w.end.tolist(), w.res.tolist(), w.reason.tolist(), strict=True
    ):
        unit = int(ev.unit[b])
        try:
            why = Reason(reason).name.lower()
        except ValueError:
            why = f"reason {reason}"
        label = f"{trace.resources[r].kind} {resource_name(trace, r)}" if r >= 0 else why
        end_t = int(adjusted[e]) if e >= 0 else None
        attrs = [_kv("willowisp.reason", why), _kv("willowisp.outcome", wait_outcome(trace, e))]
        if end_t is not None:
            attrs.append(_kv("willowisp.duration_ns", end_t - int(adjusted[b])))
        else:
            attrs.append(_kv("willowisp.still_waiting", True))
        events_of.setdefault(unit, []).append(
            {
                "timeUnixNano": str(int(adjusted[b])),
                "name": _cut(f"wait {label}"),
                "attributes": attrs,
            }
        )
    unit_index: dict[tuple[str, int], int] = {
        (trace.processes[x.proc].id, x.number): x.index for x in trace.units
    }
    for f in a.findings:
        for ref in f.units:
            pid, _, num = ref.id.rpartition(":")
            hit = unit_index.get((pid, int(num))) if num.isdigit() else None
            if hit is None or first[hit] < 0:
                continue
            events_of.setdefault(hit, []).append(
                {
                    "timeUnixNano": str(int(adjusted[first[hit]])),
                    "name": "willowisp.finding",
                    "attributes": [
                        _kv("willowisp.finding.id", f.id),
                        _kv("willowisp.finding.kind", f.kind),
                        _kv("willowisp.finding.severity", f.severity),
                        _kv("willowisp.finding.summary", f.summary),
                        _kv("willowisp.finding.explanation", "\n".join(f.explanation)),
                    ],
                }
            )
    ends = np.flatnonzero(ev.kind == K.UNIT_END)
    failed = {int(ev.unit[i]) for i in ends.tolist() if ev.arg[i] != 0 and ev.unit[i] >= 0}
    for x in trace.units:
        if x.proc in skip or first[x.index] < 0:
            continue
        proc = trace.processes[x.proc]
        span: dict[str, Any] = {
            "traceId": trace_of[x.proc],
            "spanId": span_of[x.index],
            "name": _cut(f"{x.kind} {x.name}".strip()),
            "kind": INTERNAL,
            "startTimeUnixNano": str(int(adjusted[first[x.index]])),
            "endTimeUnixNano": str(int(adjusted[last[x.index]])),
            "attributes": [
                _kv("willowisp.unit.id", str(x.id(proc))),
                _kv("willowisp.unit.kind", x.kind),
                _kv("willowisp.unit.name", x.name),
            ],
        }
        if x.parent >= 0 and trace.units[x.parent].proc == x.proc:
            span["parentSpanId"] = span_of[x.parent]
        if x.index in events_of:
            span["events"] = sorted(events_of[x.index], key=lambda e: int(e["timeUnixNano"]))
        if x.index in failed:
            span["status"] = {"code": 2}
        spans.setdefault(x.proc, []).append(span)
    for span_proc, span in _hop_spans(a, first, span_of, trace_of, skip):
        spans.setdefault(span_proc, []).append(span)

    out = []
    for p in trace.processes:
        if p.index not in spans:
            continue
        resource = [
            _kv("service.name", p.service or "unknown_service"),
            _kv("service.instance.id", p.id),
            _kv("process.pid", p.pid),
        ]
        if p.host:
            resource.append(_kv("host.name", p.host))
        if p.runtime:
            resource.append(_kv("telemetry.sdk.language", p.runtime))
        out.append(
            {
                "resource": {"attributes": resource},
                "scopeSpans": [
                    {
                        "scope": {"name": "willowisp", "version": __version__},
                        "spans": spans[p.index],
                    }
                ],
            }
        )
    return out


_SIDE = {
    (int(K.MSG_SEND), "rpc"): CLIENT,
    (int(K.MSG_RECV), "rpc"): SERVER,
    (int(K.MSG_SEND), "message"): PRODUCER,
    (int(K.MSG_RECV), "message"): CONSUMER,
}
_END_OF = {CLIENT: int(K.RPC_RESPONSE), SERVER: int(K.RPC_REPLY)}
NO_INDEX = -1
STATUS_ERROR = 2
# A request that never got its reply (a client still waiting, a server still handling it
# when the trace ended) has no end of its own. Its span ends where the trace ends, so that
# a viewer draws it as long as it was known to be pending, not as an instant success, and
# says why: status ERROR with this message, and UNANSWERED=true, which the importer reads
# back (ingest/spans.py) as a request with no reply rather than a reply at the span's end.
UNANSWERED = "willowisp.unanswered"
NO_REPLY = {
    CLIENT: "no reply: still waiting when the trace ended",
    SERVER: "no reply sent: still handling the request when the trace ended",
}


def _hop_spans(
    a: Analysis, first: Any, span_of: list[str], trace_of: list[str], skip: set[int]
) -> list[tuple[int, dict[str, Any]]]:
    """One span per hop side (send or receive of an rpc or message resource)."""
    trace = a.trace
    ev = trace.events
    adjusted = a.causality.clocks.adjusted
    hop = np.flatnonzero(np.isin(ev.kind, (K.MSG_SEND, K.MSG_RECV, K.RPC_REPLY, K.RPC_RESPONSE)))
    ends: dict[tuple[int, int], int] = {}
    loose: dict[int, list[int]] = {}  # per unit, its replies that name no request
    for i in hop.tolist():
        k, r = int(ev.kind[i]), int(ev.res[i])
        if k in (K.RPC_REPLY, K.RPC_RESPONSE) and r >= 0:
            ends.setdefault((r, k), i)
        elif k == K.RPC_RESPONSE and ev.unit[i] >= 0:
            loose.setdefault(int(ev.unit[i]), []).append(i)
    t_end = int(adjusted.max()) if len(adjusted) else 0
    out: list[tuple[int, dict[str, Any]]] = []
    for i in hop.tolist():
        k, r, unit = int(ev.kind[i]), int(ev.res[i]), int(ev.unit[i])
        if r < 0 or unit < 0 or int(ev.proc[i]) in skip:
            continue
        res = trace.resources[r]
        side = _SIDE.get((k, res.kind))
        if side is None:
            continue
        proc = trace.processes[res.proc]
        trace_id = res.trace_id if len(res.trace_id) == 32 else trace_of[res.proc]
        span_id = res.span_id if len(res.span_id) == 16 else _id(16, proc.id, "hop", r, k)
        end_i = ends.get((r, _END_OF[side]), NO_INDEX) if side in _END_OF else i
        if end_i < 0 and side == CLIENT:
            end_i = _loose_reply(loose.get(unit, []), i, adjusted)
        attrs = [_kv("willowisp.unit.id", str(trace.units[unit].id(proc)))]
        if res.protocol == "http":
            path, _, query = res.target.partition("?")
            attrs += [_kv("http.request.method", res.method), _kv("url.path", path)]
            if query:
                attrs.append(_kv("url.query", query))  # names only: values were never kept
        elif res.kind == "message":
            attrs += [
                _kv("messaging.system", res.protocol),
                _kv("messaging.destination.name", dict(res.attrs).get("destination", res.target)),
            ]
            if mid := dict(res.attrs).get("message_id"):
                attrs.append(_kv("messaging.message.id", mid))
        elif res.protocol:
            attrs += [
                _kv("rpc.system", res.protocol),
                _kv("rpc.method", res.method),
                _kv("rpc.service", res.target),
            ]
        if res.peer:
            attrs.append(_kv("server.address", res.peer))
        start_t = int(adjusted[i])
        if end_i < 0:
            attrs.append(_kv(UNANSWERED, True))
        span: dict[str, Any] = {
            "traceId": trace_id,
            "spanId": span_id,
            "name": _cut(f"{res.method} {res.target}".strip() or res.name or res.kind),
            "kind": side,
            "startTimeUnixNano": str(start_t),
            "endTimeUnixNano": str(max(int(adjusted[end_i]) if end_i >= 0 else t_end, start_t)),
            "attributes": attrs,
            "links": [{"traceId": trace_of[res.proc], "spanId": span_of[unit]}],
        }
        if end_i < 0:
            span["status"] = {"code": STATUS_ERROR, "message": NO_REPLY[side]}
        if side in (SERVER, CONSUMER) and len(res.parent_span_id) == 16:
            span["parentSpanId"] = res.parent_span_id
        out.append((res.proc, span))
    return out


def _loose_reply(replies: list[int], send: int, adjusted: Any) -> int:
    """The first reply after ``send`` that names no request (an agent saw a reply on a
    multiplexed connection and could not tell which request it answers): the request's
    answer may be that one, so it is not "unanswered". NO_INDEX if there is none."""
    t = int(adjusted[send])
    later = [j for j in replies if int(adjusted[j]) >= t]
    return min(later, key=lambda j: int(adjusted[j]), default=NO_INDEX)
