"""Jaeger UI JSON and Zipkin v2 JSON import: shapes, hops across services, sniffing, bad input."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from willowisp.analysis.engine import analyze
from willowisp.causality.link import link
from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.ingest import chrome, formats, jaeger, otlp_json, zipkin
from willowisp.ingest.load import build_trace, load
from willowisp.ingest.trace import Trace

DATA = Path(__file__).parent / "data"
JAEGER = DATA / "jaeger_ui_export.json"
ZIPKIN_SHARED = DATA / "zipkin_b3_shared.json"
ZIPKIN_TRACES = DATA / "zipkin_v2_traces.json"


def jaeger_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(JAEGER.read_text())
    return doc


def decode_trace(mod: Any, raw: bytes, path: str = "x.json") -> tuple[Trace, list[str]]:
    files, notes = mod.decode(mod.NAME, raw, path)
    return build_trace(files, [], notes), notes


def hops(trace: Trace) -> list[tuple[str, str, str, int]]:
    """(from service, to service, protocol, linked) per hop group of the analysis."""
    doc = analyze(trace).document()
    return sorted(
        (h["from"]["service"] or "", h["to"]["service"], h["protocol"], h["linked"])
        for h in doc["hops"]
    )


def units(trace: Trace) -> dict[tuple[str, str], Any]:
    """Units by (service, span name)."""
    return {(trace.processes[u.proc].service, u.name): u for u in trace.units}


# -- Jaeger -----------------------------------------------------------------------------


def test_jaeger_ui_export_links_client_server_and_follows_from() -> None:
    """A Jaeger UI export of three services: the client span in frontend links to its
    CHILD_OF server span in customer (an RPC hop), FOLLOWS_FROM links a consumer to its
    producer (a message hop), and a 64-bit trace id is padded to 32 hex digits."""
    trace, notes = decode_trace(jaeger, JAEGER.read_bytes(), str(JAEGER))
    assert hops(trace) == [
        ("", "frontend", "http", 0),  # the root server span: its caller is not in the file
        ("frontend", "billing", "kafka", 1),
        ("frontend", "customer", "http", 1),
    ]
    causality = link(trace)
    assert int((causality.hops.reason == 0).sum()) >= 2
    procs = {p.service: p for p in trace.processes}
    assert procs["frontend"].host == "host-a"  # from the process's hostname tag
    assert procs["customer"].pid == 4242 and procs["customer"].runtime == "go"
    rpc = [r for r in trace.resources if r.kind == "rpc"]
    assert {r.trace_id for r in rpc} == {"0000000000000000a1b2c3d4e5f60718"}
    by = units(trace)
    # CHILD_OF in the same process: created by the parent's unit
    assert by[("customer", "SQL SELECT")].parent == by[("customer", "HTTP GET /customer")].index
    assert by[("frontend", "HTTP GET /customer")].parent == by[("frontend", "GET /dispatch")].index
    [note] = notes
    assert "1 warning" in note and "clock skew adjustment disabled" in note


def test_jaeger_mapping_keeps_fields() -> None:
    """Tags, logs, references, status, scope and process tags map to OTLP fields."""
    out = jaeger.Converted("Jaeger")
    for t in jaeger._traces(jaeger_doc(), "x")[0]:
        jaeger._convert_trace(t, out)
    doc = jaeger.traces_data(jaeger._split_shared(out))
    spans = {
        s["spanId"]: (rs, ss, s)
        for rs in doc["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    }
    rs, ss, root = spans["0000000000000001"]
    assert root["kind"] == 2 and ss["scope"]["name"] == "frontend-http"
    res = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
    assert res["service.name"] == {"stringValue": "frontend"}
    assert res["host.name"] == {"stringValue": "host-a"}
    assert res["service.instance.id"] == {"stringValue": "4f9d3c1b2a7e6f50"}
    attrs = {a["key"]: a["value"] for a in root["attributes"]}
    assert attrs["http.status_code"] == {"intValue": "200"}
    assert attrs["sampler.param"] == {"boolValue": True}
    assert "span.kind" not in attrs and "otel.scope.name" not in attrs
    assert root["startTimeUnixNano"] == 1_700_000_000_000_000_000
    assert root["endTimeUnixNano"] == root["startTimeUnixNano"] + 90_000_000
    _, _, client = spans["0000000000000002"]
    assert client["parentSpanId"] == "0000000000000001" and client["kind"] == 3
    [event] = client["events"]
    assert event["name"] == "GetConn" and event["timeUnixNano"] == 1_700_000_000_010_500_000
    assert event["attributes"] == [{"key": "retry", "value": {"intValue": "0"}}]
    assert {a["key"]: a["value"] for a in client["attributes"]}["net.peer.port"] == {
        "intValue": "8081"
    }
    _, _, server = spans["0000000000000003"]
    assert server["status"] == {"code": 2, "message": "database timeout"}
    _, _, sql = spans["0000000000000004"]
    sql_attrs = {a["key"]: a["value"] for a in sql["attributes"]}
    assert sql_attrs["db.query.id"] == {"bytesValue": "AAEC"}
    assert sql_attrs["db.rows"] == {"doubleValue": 1.5}
    assert [e["name"] for e in sql["events"]] == ["Waiting for lock", "log"]
    _, _, consumer = spans["0000000000000006"]
    assert "parentSpanId" not in consumer
    assert consumer["links"] == [
        {
            "traceId": "0000000000000000a1b2c3d4e5f60718",
            "spanId": "0000000000000005",
            "attributes": [
                {"key": "opentracing.ref_type", "value": {"stringValue": "follows_from"}}
            ],
        }
    ]


@pytest.mark.parametrize("shape", ["single", "array", "data-object"])
def test_jaeger_single_trace_and_array_shapes(shape: str) -> None:
    """A bare trace object, a JSON array of traces and ``{"data": {trace}}`` import alike."""
    t = jaeger_doc()["data"][0]
    doc = {"single": t, "array": [t], "data-object": {"data": t}}[shape]
    raw = json.dumps(doc).encode()
    assert formats.sniff(raw) == "jaeger"
    trace, _ = decode_trace(jaeger, raw)
    assert ("frontend", "customer", "http", 1) in hops(trace)
    assert len(trace.units) == 6


def test_jaeger_extra_child_of_and_parent_span_id() -> None:
    """A second CHILD_OF becomes a link; the deprecated parentSpanID is the parent when
    there are no references; short ids are left-padded."""
    t = jaeger_doc()["data"][0]
    sql = t["spans"][3]
    sql["references"].append({"refType": "CHILD_OF", "traceID": "1", "spanID": "abc"})
    del t["spans"][2]["references"]
    t["spans"][2]["parentSpanID"] = "2"
    out = jaeger.Converted("Jaeger")
    jaeger._convert_trace(t, out)
    by = {s.span["spanId"]: s.span for s in out.spans}
    assert by["0000000000000003"]["parentSpanId"] == "0000000000000002"
    [extra] = by["0000000000000004"]["links"]
    assert extra["traceId"] == "0" * 31 + "1" and extra["spanId"] == "0" * 13 + "abc"
    assert extra["attributes"][0]["value"] == {"stringValue": "child_of"}


def test_jaeger_zipkin_style_shared_span_ids_link() -> None:
    """Spans reported by Zipkin clients into Jaeger: the server half repeats the client's
    span id. It gets its own id, the client's as parent, and the hop links."""
    t = jaeger_doc()["data"][0]
    server = t["spans"][2]
    server["spanID"] = "0000000000000002"
    server["references"] = [{"refType": "CHILD_OF", "spanID": "0000000000000001"}]
    t["spans"][3]["references"][0]["spanID"] = "0000000000000002"  # the SQL span
    trace, notes = decode_trace(jaeger, json.dumps(t).encode())
    assert ("frontend", "customer", "http", 1) in hops(trace)
    by = units(trace)
    assert by[("customer", "SQL SELECT")].parent == by[("customer", "HTTP GET /customer")].index
    assert not any("skipped" in n for n in notes)


def test_jaeger_bad_spans_skipped_with_one_note() -> None:
    """Spans with bad ids, times or types are skipped; the rest import; one note counts."""
    t = jaeger_doc()["data"][0]
    good = len(t["spans"])
    bad = copy.deepcopy(t["spans"][0])
    t["spans"] += [
        {**bad, "spanID": "zz"},
        {**bad, "spanID": "00000000000000aa", "startTime": "soon"},
        {**bad, "spanID": "00000000000000ab", "traceID": 7},
        {**bad, "spanID": "00000000000000ac", "operationName": ["x"]},
        "not a span",
        {**bad, "operationName": "other"},  # a repeated id with different content
    ]
    trace, notes = decode_trace(jaeger, json.dumps({"data": [t, 3]}).encode(), "bad.json")
    assert len(trace.units) == good
    skipped = [n for n in notes if "Jaeger span" in n]
    assert len(skipped) == 1 and "6 of 12 Jaeger spans skipped" in skipped[0]
    assert "spanID 'zz'" in skipped[0] and skipped[0].startswith("bad.json: ")
    assert any("1 of 2 Jaeger traces skipped" in n for n in notes)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not Jaeger JSON"),
        (b'{"data": []}', "no usable Jaeger span"),
        (b'{"data": 5}', "data is a int"),
        (b'{"result": {"resourceSpans": []}}', "OTLP JSON"),
        (b'{"data": [{"traceID": "1", "spans": [{"spanID": "x"}]}]}', "no usable Jaeger span"),
        (b"[1, 2]", "no usable Jaeger trace .first: a trace that is a int"),
        (
            b'{"data":null,"total":0,"errors":[{"code":404,"msg":"trace not found"}]}',
            "no usable Jaeger trace .the Jaeger query reported 1 error .first: trace not found",
        ),
    ],
)
def test_jaeger_garbage_is_one_format_error(content: bytes, why: str) -> None:
    """Nothing usable: one TraceFormatError saying why."""
    with pytest.raises(TraceFormatError, match=why):
        jaeger.decode("jaeger", content, "g.json")


def test_jaeger_span_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """More spans than the bound: one TraceLimitError."""
    from willowisp.ingest import spans

    monkeypatch.setattr(spans, "MAX_SPANS", 3)
    with pytest.raises(TraceLimitError, match="more than 3 spans"):
        jaeger.decode("jaeger", JAEGER.read_bytes(), "big.json")


# -- Zipkin -----------------------------------------------------------------------------


def test_zipkin_b3_shared_server_span_links() -> None:
    """A B3 shared SERVER span (same id as its CLIENT) gets its own id, the client's as
    parent, and keeps its children: the frontend→backend hop links."""
    trace, notes = decode_trace(zipkin, ZIPKIN_SHARED.read_bytes())
    assert notes == []
    assert hops(trace) == [("", "frontend", "http", 0), ("frontend", "backend", "http", 1)]
    by = units(trace)
    assert by[("backend", "select")].parent == by[("backend", "get /api")].index
    assert by[("frontend", "get")].parent == by[("frontend", "get /api")].index
    procs = {p.service: p.host for p in trace.processes}
    assert procs == {"frontend": "192.168.99.1", "backend": "192.168.99.2"}
    [server] = [r for r in trace.resources if r.kind == "rpc" and r.parent_span_id]
    assert server.parent_span_id == "352bff9a74ca9ad2"
    assert server.trace_id == "00000000000000005af7183fb1d4cf5f"
    assert server.span_id == jaeger.shared_id(server.trace_id, "352bff9a74ca9ad2")


def test_zipkin_shared_half_alone_links_to_a_client_elsewhere(tmp_path: Path) -> None:
    """The shared server half in one file links to its client half in another file."""
    spans = json.loads(ZIPKIN_SHARED.read_text())
    client_file, server_file = tmp_path / "client.json", tmp_path / "server.json"
    client_file.write_text(json.dumps(spans[:2]))
    server_file.write_text(json.dumps(spans[2:]))
    trace = load([client_file, server_file])
    assert not trace.unreadable
    assert ("frontend", "backend", "http", 1) in hops(trace)


def test_zipkin_array_of_arrays_separate_spans() -> None:
    """The /api/v2/traces shape with separate client and server ids: RPC and message hops
    link; endpoints, annotations, tags and status map."""
    trace, notes = decode_trace(zipkin, ZIPKIN_TRACES.read_bytes())
    assert notes == []
    assert hops(trace) == [
        ("shop", "mailer", "rabbitmq", 1),
        ("shop", "pay", "http", 1),
    ]
    out = zipkin._span(json.loads(ZIPKIN_TRACES.read_text())[0][1])
    attrs = {a["key"]: a["value"] for a in out.span["attributes"]}
    assert attrs["peer.service"] == {"stringValue": "pay"}
    assert attrs["server.address"] == {"stringValue": "pay"}
    assert attrs["server.port"] == {"intValue": "8443"}
    assert out.span["status"] == {"code": 2, "message": "timeout"}
    assert "otel.status_code" not in attrs and attrs["error"] == {"stringValue": "timeout"}
    root = zipkin._span(json.loads(ZIPKIN_TRACES.read_text())[0][0])
    assert root.scope == ("shop.app", "1.2.0") and root.span["kind"] == 1
    server = zipkin._span(json.loads(ZIPKIN_TRACES.read_text())[0][2])
    assert server.span["events"] == [
        {"timeUnixNano": 1_700_000_000_030_000_000, "name": "charged", "attributes": []}
    ]
    assert dict(server.resource)["host.name"] == "fe80::1"


def test_zipkin_bad_spans_skipped_with_one_note() -> None:
    """Bad spans are skipped and counted in one note; the good ones import."""
    spans = json.loads(ZIPKIN_SHARED.read_text())
    ok = copy.deepcopy(spans[3])
    spans += [
        {**ok, "id": "e457b5a2e4d86bd2", "timestamp": None},
        {**ok, "id": "e457b5a2e4d86bd3", "kind": "SIDEWAYS"},
        {k: v for k, v in ok.items() if k != "timestamp"} | {"id": "e457b5a2e4d86bd4"},
        None,
    ]
    trace, notes = decode_trace(zipkin, json.dumps(spans).encode(), "z.json")
    assert len(trace.units) == 4
    [note] = notes
    assert note.startswith("z.json: 4 of 8 Zipkin spans skipped") and "timestamp" in note


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "not Zipkin JSON"),
        (b'{"traceId": "1", "id": "2"}', "not an array of spans"),
        (b"[]", "no usable Zipkin span"),
        (b'[{"traceId": "1", "id": "2"}]', "has no timestamp"),
    ],
)
def test_zipkin_garbage_is_one_format_error(content: bytes, why: str) -> None:
    """Nothing usable: one TraceFormatError saying why."""
    with pytest.raises(TraceFormatError, match=why):
        zipkin.decode("zipkin", content, "g.json")


# -- a real OpenTelemetry SDK exporting Zipkin JSON ------------------------------------


class _Capture(BaseHTTPRequestHandler):
    bodies: list[bytes]  # set per server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(body)  # type: ignore[attr-defined]
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def zipkin_collector() -> Iterator[tuple[str, list[bytes]]]:
    """A tiny Zipkin collector on 127.0.0.1: the POSTed span arrays, in order."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    bodies: list[bytes] = []
    server.bodies = bodies  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v2/spans", bodies
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


_APP = r"""
import sys, threading, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry import propagate, trace
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

def tracer(service):
    p = TracerProvider(resource=Resource.create({"service.name": service}))
    p.add_span_processor(SimpleSpanProcessor(ZipkinExporter(endpoint=sys.argv[1])))
    return p.get_tracer(service)

shop, pay = tracer("shop"), tracer("pay")

class Pay(BaseHTTPRequestHandler):
    def do_POST(self):
        ctx = propagate.extract({k.lower(): v for k, v in self.headers.items()})
        with pay.start_as_current_span("POST /charge", context=ctx, kind=trace.SpanKind.SERVER,
                                       attributes={"http.request.method": "POST",
                                                   "url.path": "/charge"}):
            with pay.start_as_current_span("ledger.write") as s:
                s.add_event("row written", {"rows": 1})
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Pay)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}/charge"
with shop.start_as_current_span("checkout"):
    for _ in range(3):
        with shop.start_as_current_span("POST", kind=trace.SpanKind.CLIENT,
                                        attributes={"http.request.method": "POST",
                                                    "url.full": url}):
            headers = {}
            propagate.inject(headers)
            urllib.request.urlopen(urllib.request.Request(url, data=b"x", headers=headers)).read()
server.shutdown()
print("done")
"""


def test_real_opentelemetry_zipkin_exporter_spans_import_linked(
    tmp_path: Path, zipkin_collector: tuple[str, list[bytes]]
) -> None:
    """The OpenTelemetry Python SDK's Zipkin JSON exporter (a real process making real
    HTTP calls) posts its spans to our collector; every span imports with its parent, and
    the three client/server pairs link."""
    url, bodies = zipkin_collector
    r = subprocess.run(
        [sys.executable, "-c", _APP, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr
    posted = [s for b in bodies for s in json.loads(b)]
    assert len(posted) == 10  # checkout, 3 clients, 3 servers, 3 ledger writes
    path = tmp_path / "zipkin.json"
    path.write_text(json.dumps(posted))
    assert formats.sniff(path.read_bytes()[: formats.HEAD_BYTES]) == "zipkin"
    trace = load([path])
    assert not trace.unreadable and trace.notes == []
    assert sorted(p.service for p in trace.processes) == ["pay", "shop"]
    assert len(trace.units) == 10
    assert hops(trace) == [("shop", "pay", "http", 3)]
    # parent/child intact: what the exporter posted, and the units made of it
    parent_name = {"checkout": "", "POST": "checkout", "POST /charge": "POST"}
    parent_name["ledger.write"] = "POST /charge"
    name_of = {s["id"]: s["name"] for s in posted}
    for s in posted:
        assert name_of.get(s.get("parentId", ""), "") == parent_name[s["name"]]
    by_index = {u.index: u for u in trace.units}
    for u in trace.units:
        if u.name in ("POST", "ledger.write"):  # parent in the same process: its creator
            assert by_index[u.parent].name == parent_name[u.name]
        else:  # a root, or a server span whose parent is in the other process
            assert u.parent < 0


# -- mixing with OTLP JSON --------------------------------------------------------------


def test_jaeger_client_links_to_otlp_json_server(tmp_path: Path) -> None:
    """A Jaeger export of the client side and an OTLP JSON export of the server side of
    the same hop (same trace id) link to each other."""
    t = jaeger_doc()["data"][0]
    t["spans"] = t["spans"][:2]  # the root and the client span, in frontend
    for s in t["spans"]:
        s["traceID"] = "4bf92f3577b34da6a3ce929d0e0e4736"
        for ref in s["references"]:
            ref["traceID"] = s["traceID"]
    otlp = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "customer"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "4BF92F3577B34DA6A3CE929D0E0E4736",
                                "spanId": "00f067aa0ba902b7",
                                "parentSpanId": "0000000000000002",
                                "name": "GET /customer",
                                "kind": 2,
                                "startTimeUnixNano": "1700000000015000000",
                                "endTimeUnixNano": "1700000000045000000",
                            }
                        ]
                    }
                ],
            }
        ]
    }
    a, b = tmp_path / "frontend.json", tmp_path / "customer.json"
    a.write_text(json.dumps(t))
    b.write_text(json.dumps(otlp))
    trace = load([a, b])
    assert not trace.unreadable
    assert ("frontend", "customer", "http", 1) in hops(trace)
    imported = {p.service: p for p in trace.processes}
    assert set(imported) == {"frontend", "customer"}


def test_cli_analyze_reads_both_formats(tmp_path: Path) -> None:
    """``willowisp analyze`` on a Jaeger and a Zipkin file, sniffed by content."""
    for path, linked in ((JAEGER, 2), (ZIPKIN_TRACES, 2)):
        copy_ = tmp_path / "spans.dat"  # the extension proves nothing
        copy_.write_bytes(path.read_bytes())
        r = subprocess.run(
            [sys.executable, "-m", "willowisp", "analyze", str(copy_), "--format", "json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert sum(h["linked"] for h in doc["hops"]) == linked


# -- sniffing ---------------------------------------------------------------------------


def _samples() -> dict[str, list[bytes]]:
    t = jaeger_doc()["data"][0]
    z = json.loads(ZIPKIN_TRACES.read_text())
    otlp = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "1", "spanId": "2"}]}]}]}
    return {
        "jaeger": [
            JAEGER.read_bytes(),
            json.dumps(t).encode(),
            json.dumps([t], indent=2).encode(),
            b'{"data":[],"total":0,"limit":0,"offset":0,"errors":null}',
        ],
        "zipkin": [
            ZIPKIN_SHARED.read_bytes(),
            ZIPKIN_TRACES.read_bytes(),
            json.dumps(z[1]).encode(),
        ],
        "otlp-json": [
            json.dumps(otlp).encode(),
            json.dumps({"result": otlp}, indent=2).encode(),
        ],
        "chrome": [
            b'[{"ph":"X","pid":1,"tid":1,"ts":1,"dur":2,"name":"a","id":"1","args":{"traceId":"1"}}]',
            b'{"traceEvents":[{"ph":"B","traceID":"1","spanID":"2","pid":1,"tid":1,"ts":0}]}',
        ],
    }


@pytest.mark.parametrize("name", ["jaeger", "zipkin", "otlp-json", "chrome"])
def test_sniff_claims_only_its_own(name: str) -> None:
    """Each sample is claimed by its own importer and by neither of ours otherwise."""
    for raw in _samples()[name]:
        head = raw[: formats.HEAD_BYTES]
        assert jaeger.sniff(head) == (name == "jaeger")
        assert zipkin.sniff(head) == (name == "zipkin")
        assert formats.sniff(head) == name
    assert not otlp_json.sniff(JAEGER.read_bytes()) and not chrome.sniff(JAEGER.read_bytes())


def test_sniff_decides_on_a_cut_head() -> None:
    """A large export is sniffed on its first 64 KiB, cut mid-span."""
    t = jaeger_doc()["data"][0]
    t["spans"] = t["spans"] * 300
    big = json.dumps({"data": [t]}).encode()
    assert len(big) > formats.HEAD_BYTES and jaeger.sniff(big[: formats.HEAD_BYTES])
    z = json.loads(ZIPKIN_TRACES.read_text())[0] * 300
    bigz = json.dumps(z).encode()
    assert len(bigz) > formats.HEAD_BYTES and zipkin.sniff(bigz[: formats.HEAD_BYTES])


# -- fuzzing ----------------------------------------------------------------------------


def _mutate(obj: Any, draw: Any) -> Any:
    """Replace one node of a JSON tree with arbitrary JSON, usually a deep one (a field
    of one span), so most examples have good spans beside a bad one."""
    if isinstance(obj, dict) and obj and draw(st.integers(0, 9)) < 8:
        deep = [k for k in sorted(obj) if isinstance(obj[k], dict | list) and obj[k]]
        pick = deep if deep and draw(st.integers(0, 3)) else sorted(obj)
        k = draw(st.sampled_from(pick))
        return {**obj, k: _mutate(obj[k], draw)}
    if isinstance(obj, list) and obj and draw(st.integers(0, 9)) < 8:
        i = draw(st.integers(0, len(obj) - 1))
        return [*obj[:i], _mutate(obj[i], draw), *obj[i + 1 :]]
    return draw(_json)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["client", "server", "CLIENT", "SERVER", "0", "ff", "1" * 33, "AAEC"]),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=10,
)


def _fuzz(mod: Any, doc: Any, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        doc = _mutate(doc, data.draw)
    raw = json.dumps(doc).encode()
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(raw)))
        raw = raw[:cut] + data.draw(st.binary(max_size=8)) + raw[cut:]
    mod.sniff(raw[: formats.HEAD_BYTES])  # never raises
    try:
        files, notes = mod.decode(mod.NAME, raw, "fuzz.json")
    except TraceFormatError:
        return
    assert files and all(tf.events > 0 for tf in files)
    assert all(isinstance(n, str) and n.startswith("fuzz.json: ") for n in notes)
    assert sum("skipped as malformed" in n for n in notes) <= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_jaeger_only_format_errors(data: st.DataObject) -> None:
    """Mutated, truncated Jaeger JSON: good spans import, else one TraceFormatError."""
    _fuzz(jaeger, jaeger_doc(), data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_zipkin_only_format_errors(data: st.DataObject) -> None:
    """Mutated, truncated Zipkin JSON: good spans import, else one TraceFormatError."""
    doc = json.loads(ZIPKIN_SHARED.read_text()) + json.loads(ZIPKIN_TRACES.read_text())
    _fuzz(zipkin, doc, data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes(raw: bytes) -> None:
    """Arbitrary bytes: sniffing never raises; decoding raises only TraceFormatError."""
    for mod in (jaeger, zipkin):
        mod.sniff(raw)
        try:
            mod.decode(mod.NAME, raw, "b")
        except TraceFormatError:
            pass
