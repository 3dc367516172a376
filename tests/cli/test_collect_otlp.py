"""`willowisp collect --otlp-http / --otlp-grpc` with real OpenTelemetry SDKs (Python and
JavaScript) exporting to it: every span arrives with its parents and links; bad requests
get the documented answers; SIGTERM loses nothing that was acknowledged."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from willowisp.collect.otlp_store import BadRequest, check_json, check_proto
from willowisp.hostsim import faketime_library
from willowisp.wtrace.reader import read_file

PROGRAMS = Path(__file__).parent.parent / "ingest" / "programs"
PY_APP = PROGRAMS / "otel_export_app.py"
JS_DIR = PROGRAMS / "otel_js"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MIB = 1024 * 1024


class OtlpCollector:
    """`willowisp collect --otlp-http 0 --otlp-grpc 0`; addresses read from its lines."""

    def __init__(self, out: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "willowisp", "collect", "--otlp-http", "0",
             "--otlp-grpc", "0", "--out", str(out), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        lines = [self.proc.stdout.readline(), self.proc.stdout.readline()]
        http_m = re.search(r"OTLP/HTTP on (http://(\S+)/v1/traces), writing into", lines[0])
        grpc_m = re.search(r"OTLP/gRPC on (\S+), writing into", lines[1])
        assert http_m and grpc_m, (lines, self.proc.stderr.read() if self.proc.stderr else "")
        self.url, self.http_address = http_m.group(1), http_m.group(2)
        self.grpc_address = grpc_m.group(1)
        host, port = self.http_address.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, err

    def peak_rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def post(self, body: bytes, headers: dict[str, str], path: str = "/v1/traces"):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[OtlpCollector]:
    c = OtlpCollector(tmp_path / "collected")
    try:
        yield c
    finally:
        c.stop()


# --- what the collector stored ----------------------------------------------------------


def stored_streams(folder: Path) -> list[tuple[str, bytes]]:
    """(format, bytes) of every embedded stream in the folder's segments, pieces joined."""
    out = []
    for path in sorted(folder.glob("*.wtrace")):
        tf = read_file(path)
        assert tf.problems == [] and not tf.truncated, path
        pending: dict[int, list[bytes]] = {}
        for chunk in tf.chunks:
            for r in chunk.records:
                if r.rtype != 7:
                    continue
                pending.setdefault(r.id, []).append(r.get("data"))
                if not r.get("more"):
                    out.append((str(r.get("format")), b"".join(pending.pop(r.id))))
        assert pending == {}, f"{path}: unfinished streams {list(pending)}"
    return out


def stored_spans(folder: Path) -> list[dict[str, Any]]:
    """The spans of every stored request, decoded independently of willowisp (protobuf by
    the opentelemetry-proto classes, JSON by hand), in the apps' summary shape."""
    spans = []
    for fmt, data in stored_streams(folder):
        if fmt == "otlp-proto":
            request = ExportTraceServiceRequest.FromString(data)
            for rs in request.resource_spans:
                service = next(
                    (a.value.string_value for a in rs.resource.attributes
                     if a.key == "service.name"),
                    "",
                )  # fmt: skip
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        spans.append({
                            "name": s.name, "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(), "parent": s.parent_span_id.hex(),
                            "links": [link.span_id.hex() for link in s.links],
                            "service": service,
                        })  # fmt: skip
        else:
            assert fmt == "otlp-json", fmt
            for rs in json.loads(data)["resourceSpans"]:
                attrs = {a["key"]: a["value"] for a in rs["resource"].get("attributes", [])}
                for ss in rs["scopeSpans"]:
                    for s in ss["spans"]:
                        spans.append({
                            "name": s["name"], "trace_id": s["traceId"], "span_id": s["spanId"],
                            "parent": s.get("parentSpanId", ""),
                            "links": [link["spanId"] for link in s.get("links", [])],
                            "service": attrs.get("service.name", {}).get("stringValue", ""),
                        })  # fmt: skip
    return spans


def key(span: dict[str, Any]) -> tuple[Any, ...]:
    return (span["service"], span["name"], span["trace_id"], span["span_id"],
            span["parent"], tuple(span["links"]))  # fmt: skip


def assert_same_spans(created: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """Every span the app created is stored once, with its parent and links; the shape is
    the one the apps make (a call from shop to pay, a span linked to two calls)."""
    stored = stored_spans(folder)
    assert sorted(map(key, stored)) == sorted(map(key, created))
    by_id = {s["span_id"]: s for s in stored}
    servers = [s for s in stored if s["name"] == "POST /charge"]
    clients = [s for s in stored if s["name"] == "POST"]
    [root] = [s for s in stored if s["name"] == "checkout"]
    [settle] = [s for s in stored if s["name"] == "settle"]
    assert len(clients) == 3 and root["parent"] == ""
    assert all(c["parent"] == root["span_id"] for c in clients)
    assert sorted(by_id[s["parent"]]["name"] for s in servers) == ["POST"] * len(servers)
    assert {s["service"] for s in servers} <= {"pay"}
    assert len(settle["links"]) == 2 and {by_id[i]["name"] for i in settle["links"]} == {"POST"}
    return stored


# --- real SDK apps ----------------------------------------------------------------------


def start_server_app(via: str, endpoint: str, env: dict[str, str] | None = None):
    proc = subprocess.Popen(
        [sys.executable, str(PY_APP), "server", "--via", via, "--endpoint", endpoint],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("port "), (line, proc.stderr.read() if proc.stderr else "")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/charge"


def finish_server_app(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, err = proc.communicate("", timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def run_python_pair(
    collector: OtlpCollector, via: str, server_env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    endpoint = collector.url if via == "http" else collector.grpc_address
    server, url = start_server_app(via, endpoint, server_env)
    try:
        r = subprocess.run(
            [sys.executable, str(PY_APP), "client", "--via", via, "--endpoint", endpoint,
             "--server", url],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        created: list[dict[str, Any]] = json.loads(r.stdout.splitlines()[-1])
    finally:
        created_server = finish_server_app(server)
    return created + created_server


@pytest.mark.parametrize("via", ["http", "grpc"])
def test_python_sdk_spans_arrive(collector: OtlpCollector, via: str):
    """A client and a server app, each with the OpenTelemetry Python SDK and its OTLP
    exporter (protobuf over HTTP, or gRPC): every span either made is stored once, with
    parent/child across the two processes and links intact; `analyze` links the calls."""
    created = run_python_pair(collector, via)
    assert len(created) == 8
    code, err = collector.stop()
    assert code == 0
    assert_same_spans(created, collector.out)
    assert re.search(
        r"stopped; \d+ OTLP requests? \(8 spans, 0 rejected, \d+ bytes, 0 refused\)", err
    )
    analyzed(collector.out, spans=8)


def js_app_ready() -> Path:
    """The JS app's dependencies, installed once from its package-lock.json."""
    if not (JS_DIR / "node_modules" / "@opentelemetry" / "sdk-trace").is_dir():
        npm = shutil.which("npm")
        assert npm, "npm is needed for the OpenTelemetry JS app"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True,
                       capture_output=True, timeout=600)  # fmt: skip
    return JS_DIR / "app.mjs"


@pytest.mark.parametrize("via", ["http", "proto", "grpc"])
def test_js_sdk_spans_arrive(collector: OtlpCollector, via: str):
    """The OpenTelemetry JS SDK (npm packages) exporting OTLP/HTTP JSON, OTLP/HTTP protobuf
    or OTLP/gRPC: every span is stored once, as it was sent, parents and links intact."""
    app = js_app_ready()
    endpoint = collector.url if via != "grpc" else f"http://{collector.grpc_address}"
    r = subprocess.run(
        ["node", str(app), "client", "--via", via, "--endpoint", endpoint],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout.splitlines()[-1])
    assert len(created) == 8
    assert collector.stop()[0] == 0
    assert_same_spans(created, collector.out)
    formats = {fmt for fmt, _ in stored_streams(collector.out)}
    assert formats == {"otlp-json" if via == "http" else "otlp-proto"}
    analyzed(collector.out, spans=8)


def test_shifted_server_clock(collector: OtlpCollector):
    """The server app runs under libfaketime 2 s ahead: its spans arrive shifted (a server
    span starts ~2 s after the client span that called it), and once the run can be
    analyzed the server's clock domain gets an offset interval containing -2 s."""
    lib = faketime_library()
    assert lib, "libfaketime is installed on this machine"
    env = {**os.environ, "LD_PRELOAD": lib, "FAKETIME": "+2s", "FAKETIME_DONT_RESET": "1"}
    created = run_python_pair(collector, "http", server_env=env)
    assert collector.stop()[0] == 0
    stored = assert_same_spans(created, collector.out)
    times = {s["span_id"]: s for s in created}
    for server in (s for s in created if s["name"] == "POST /charge"):
        client = times[server["parent"]]
        assert 1.5e9 < server["start"] - client["start"] < 2.5e9
    assert len(stored) == 8
    doc = analyzed(collector.out, spans=8)
    pay = {p["clock_domain"] for p in doc["processes"] if p["service"] == "pay"}
    [clock] = [c for c in doc["clocks"] if c["id"] in pay]
    low, high = clock["offset_min_ns"], clock["offset_max_ns"]
    assert (low is None or low <= -1.9e9) and (high is None or high >= -2.1e9), clock
    assert abs(clock["offset_ns"] + 2e9) < 0.3e9, clock


def analyzed(folder: Path, spans: int) -> dict[str, Any]:
    """`willowisp analyze DIR --format json` of a collected run: every span is a unit, and
    the three calls from shop to pay are linked hops."""
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(folder), "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    assert doc["trace"]["units"] == spans and doc["trace"]["unreadable_files"] == []
    assert sorted(p["service"] for p in doc["processes"]) == ["pay", "shop"]
    [hop] = [h for h in doc["hops"] if h["from"]["service"] == "shop"]
    assert hop["to"]["service"] == "pay" and hop["linked"] == 3
    return doc


# --- the answers to bad and rejected requests ---------------------------------------------


def request(*spans: dict[str, Any]) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "t"
    ss = rs.scope_spans.add()
    for s in spans:
        ss.spans.add(name="s", **s)
    return req


GOOD = {"trace_id": b"\x01" * 16, "span_id": b"\x02" * 8, "start_time_unix_nano": 1,
        "end_time_unix_nano": 2}  # fmt: skip
BAD = [
    {**GOOD, "trace_id": b"\x01" * 15},  # short trace id
    {**GOOD, "span_id": bytes(8)},  # all-zero span id
    {**GOOD, "start_time_unix_nano": 5, "end_time_unix_nano": 4},  # ends before it starts
]
PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def test_partial_success_counts_rejected_spans(collector: OtlpCollector):
    """Spans with a bad id or ending before they start are counted in partial_success
    (protobuf, JSON and gRPC) and in collect's totals; the requests are stored whole, and
    the importer skips the same spans when the run is analyzed."""
    body = request(GOOD, *BAD, {**GOOD, "span_id": b"\x03" * 8}).SerializeToString()
    status, headers, answer = collector.post(body, PROTO)
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(answer)
    assert response.partial_success.rejected_spans == 3
    assert "3 of 5 spans rejected" in response.partial_success.error_message
    doc = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [
        {"traceId": "01" * 16, "spanId": "02" * 8, "startTimeUnixNano": "1",
         "endTimeUnixNano": "2"},
        {"traceId": "00" * 16, "spanId": "02" * 8},
        {"traceId": "01" * 16, "spanId": "zz" * 8},
    ]}]}]}  # fmt: skip
    status, headers, answer = collector.post(json.dumps(doc).encode(), JSON)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(answer)["partialSuccess"]["rejectedSpans"] == "2"
    status, _, answer = collector.post(json.dumps({"resourceSpans": []}).encode(), JSON)
    assert (status, json.loads(answer)) == (200, {})
    with grpc.insecure_channel(collector.grpc_address) as channel:
        export = channel.unary_unary(EXPORT)
        answer = export(request(*BAD).SerializeToString(), timeout=30)
    assert ExportTraceServiceResponse.FromString(answer).partial_success.rejected_spans == 3
    code, err = collector.stop()
    assert code == 0
    assert "4 OTLP requests (11 spans, 8 rejected," in err
    assert len(stored_streams(collector.out)) == 4
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(collector.out), "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    notes = json.loads(r.stdout)["trace"]["notes"]
    skipped = [re.search(r"(\d+) of (\d+) spans skipped", n) for n in notes]
    # the two protobuf requests' notes differ only in their counts: one note with the totals
    assert sorted((int(m[1]), int(m[2])) for m in skipped if m) == [(2, 3), (6, 8)]


def test_retried_requests_make_one_note(collector: OtlpCollector):
    """An export retried five times is stored five times; analyze drops the four repeats
    and says so in one note with the total, not one note per request."""
    body = request(GOOD).SerializeToString()
    for _ in range(5):
        assert collector.post(body, PROTO)[0] == 200
    assert collector.stop()[0] == 0
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(collector.out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    notes = [line for line in (r.stdout + r.stderr).splitlines() if "duplicate span" in line]
    [segment] = collector.out.glob("*.wtrace")
    assert notes == [
        f"note: {segment}: 4 duplicate spans dropped (same ids and content as a span "
        "already read: a retried export)"
    ]


def test_validate_counts_a_segment_of_repeats(tmp_path: Path):
    """Two collectors store the same export into one folder: validate reads two files,
    though every span of the second is a repeat of the first's."""
    body = request(GOOD).SerializeToString()
    for _ in range(2):
        c = OtlpCollector(tmp_path / "collected")
        try:
            assert c.post(body, PROTO)[0] == 200
        finally:
            assert c.stop()[0] == 0
    assert len(list((tmp_path / "collected").glob("*.wtrace"))) == 2
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "validate", "--ci-mode", str(tmp_path / "collected")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert " trace(s) in 2 file(s): 0 problem(s)" in r.stderr


def status_of(answer: bytes, proto: bool) -> tuple[int, str]:
    if proto:
        st = status_pb2.Status.FromString(answer)
        return st.code, st.message
    doc = json.loads(answer)
    return doc["code"], doc["message"]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "words"),
    [
        ("/v1/traces", b"\xff\xff\xff", PROTO, 400, "not an OTLP ExportTraceServiceRequest"),
        ("/v1/traces", b"{not json", JSON, 400, "not JSON"),
        ("/v1/traces", b"[1, 2]", JSON, 400, "must be a JSON object"),
        ("/v1/traces", b"", {"Content-Type": "text/plain"}, 415, "use application/x-protobuf"),
        ("/v1/traces", b"", {**PROTO, "Content-Encoding": "br"}, 415, "use gzip or none"),
        ("/v1/traces", b"\x1f\x8b garbage", {**JSON, "Content-Encoding": "gzip"}, 400,
         "gzip body"),
        ("/v1/metrics", b"", PROTO, 404, "OTLP traces go to /v1/traces"),
        ("/v1/traces", b"", {**PROTO, "Host": "evil.example:4318"}, 403, "is not this host"),
        ("/v1/traces", b"", {**JSON, "Origin": "http://evil.example"}, 403, "not allowed"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_status(
    collector: OtlpCollector, path: str, body: bytes, headers: dict[str, str], status: int,
    words: str,
):  # fmt: skip
    """Each bad request gets its HTTP status and a google.rpc.Status body in the request's
    encoding (JSON when the type is not one of OTLP's); the collector keeps serving."""
    got, _, answer = collector.post(body, headers, path)
    assert got == status
    proto = headers.get("Content-Type") == PROTO["Content-Type"]
    code, message = status_of(answer, proto)
    assert words in message and code != 0
    assert collector.post(request(GOOD).SerializeToString(), PROTO)[0] == 200
    assert len(stored_streams(collector.out)) == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512) | st.text(max_size=200).map(str.encode))
def test_checking_arbitrary_bytes_raises_only_bad_request(data: bytes):
    """Whatever the body, checking it gives a verdict or BadRequest (a 400), nothing else."""
    for check in (check_proto, check_json):
        try:
            verdict = check(data)
        except BadRequest as exc:
            assert str(exc)
        else:
            assert 0 <= verdict.rejected <= verdict.spans


def test_wrong_method(collector: OtlpCollector):
    """GET is 405 with Allow: POST."""
    conn = http.client.HTTPConnection(collector.host, collector.port, timeout=30)
    conn.request("GET", "/v1/traces")
    r = conn.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "POST"
    conn.close()


def raw_exchange(c: OtlpCollector, head: str, body: bytes = b"") -> bytes:
    """Send a request head (and body) on a raw socket; everything the collector answers."""
    with socket.create_connection((c.host, c.port), timeout=60) as s:
        s.sendall(head.encode() + body)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_size_limits(collector: OtlpCollector):
    """A body declared over 64 MiB is 413 before it is read; a gzip bomb (small on the
    wire, over 64 MiB inflated) is 413 without the collector's memory following it; a
    64 MiB chunked body is refused the same way; the collector keeps serving."""
    head = (f"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            f"application/x-protobuf\r\nContent-Length: {64 * MIB + 1}\r\n\r\n")  # fmt: skip
    assert raw_exchange(collector, head).startswith(b"HTTP/1.1 413 ")
    bomb = gzip.compress(bytes(200 * MIB), compresslevel=9)
    assert len(bomb) < MIB
    status, _, answer = collector.post(bomb, {**PROTO, "Content-Encoding": "gzip"})
    assert status == 413 and "after gzip" in status_of(answer, True)[1]
    assert collector.peak_rss_mib() < 400
    chunked = (f"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
               f"application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               f"{64 * MIB + 1:x}\r\n")  # fmt: skip
    assert raw_exchange(collector, chunked).startswith(b"HTTP/1.1 413 ")
    small = gzip.compress(request(GOOD).SerializeToString())
    assert collector.post(small, {**PROTO, "Content-Encoding": "gzip"})[0] == 200
    [(fmt, data)] = stored_streams(collector.out)
    assert fmt == "otlp-proto" and data == request(GOOD).SerializeToString()  # inflated


def test_grpc_errors(collector: OtlpCollector):
    """gRPC: garbage is INVALID_ARGUMENT; a message over 64 MiB is RESOURCE_EXHAUSTED."""
    with grpc.insecure_channel(
        collector.grpc_address, options=[("grpc.max_send_message_length", -1)]
    ) as channel:
        export = channel.unary_unary(EXPORT)
        with pytest.raises(grpc.RpcError) as info:
            export(b"\xff\xff\xff", timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            export(bytes(64 * MIB + 16), timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert export(request(GOOD).SerializeToString(), timeout=30) == b""
    assert len(stored_streams(collector.out)) == 1


def test_overload_answers_503_with_retry_after(collector: OtlpCollector):
    """With 256 MiB of request bodies in flight (four clients announced 64 MiB each and
    were told to go on), the next request is 503 with Retry-After; memory stays bounded."""
    head = ("POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            f"application/x-protobuf\r\nExpect: 100-continue\r\nContent-Length: {64 * MIB}"
            "\r\n\r\n")  # fmt: skip
    holders = []
    try:
        for _ in range(4):
            s = socket.create_connection((collector.host, collector.port), timeout=30)
            holders.append(s)
            s.sendall(head.encode())
            assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")  # its bytes are reserved
        status, headers, answer = collector.post(request(GOOD).SerializeToString(), PROTO)
        assert status == 503 and headers["Retry-After"] == "1"
        assert "busy" in status_of(answer, True)[1]
    finally:
        for s in holders:
            s.close()
    assert collector.post(request(GOOD).SerializeToString(), PROTO)[0] == 200
    assert collector.peak_rss_mib() < 400


def test_token_required_when_set(tmp_path: Path):
    """With a token, requests without `Authorization: Bearer T` are 401 (HTTP) or
    UNAUTHENTICATED (gRPC) and nothing is stored; with it they are accepted."""
    c = OtlpCollector(tmp_path / "c", "--token", "s3cret")
    try:
        body = request(GOOD).SerializeToString()
        status, headers, _ = c.post(body, PROTO)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert c.post(body, {**PROTO, "Authorization": "Bearer wrong"})[0] == 401
        assert c.post(body, {**PROTO, "Authorization": "Bearer s3cret"})[0] == 200
        with grpc.insecure_channel(c.grpc_address) as channel:
            export = channel.unary_unary(EXPORT)
            with pytest.raises(grpc.RpcError) as info:
                export(body, timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            export(body, timeout=30, metadata=[("authorization", "Bearer s3cret")])
    finally:
        code, err = c.stop(signal.SIGINT)
    assert code == 0 and "2 OTLP requests (2 spans, 0 rejected," in err
    assert len(stored_streams(c.out)) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--otlp-http", "0", "--host", "0.0.0.0"], "is not loopback: give --token"),
        (["--otlp-grpc", "0", "--host", "0.0.0.0"], "is not loopback: give --token"),
        (["--otlp-http", "http"], "--otlp-http 'http' is not a port number"),
        (["--otlp-grpc", "99999"], "--otlp-grpc '99999' is not a port number"),
    ],
)
def test_bad_usage(tmp_path: Path, args: list[str], message: str):
    """A public address without a token, a bad port: exit 2 with one line."""
    env = {k: v for k, v in os.environ.items() if k != "WILLOWISP_TOKEN"}
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "collect", "--out", str(tmp_path / "c"), *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith("willowisp collect: ") and message in line


def test_port_taken_is_a_usage_error(collector: OtlpCollector, tmp_path: Path):
    """A port already in use: exit 2 naming it, and nothing left listening."""
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "collect", "--out", str(tmp_path / "d"),
         "--otlp-grpc", "0", "--otlp-http", str(collector.port)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{collector.port}" in r.stderr


# --- stopping -----------------------------------------------------------------------------

SENDER = """
import http.client, os, sys
import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
via, address = sys.argv[1], sys.argv[2]
host, port = address.rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port), timeout=30)
channel = grpc.insecure_channel(address)
export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
for i in range(1, 1_000_000):
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for j in range(50):
        ss.spans.add(trace_id=os.urandom(16), span_id=i.to_bytes(4, "big") + j.to_bytes(4, "big"),
                     name=f"r{i}", start_time_unix_nano=1, end_time_unix_nano=2)
    body = req.SerializeToString()
    if via == "grpc":
        try:
            export(body, timeout=30)
        except grpc.RpcError:
            break
    else:
        try:
            conn.request("POST", "/v1/traces", body=body,
                         headers={"Content-Type": "application/x-protobuf"})
            r = conn.getresponse()
            r.read()
        except (OSError, http.client.HTTPException):
            break
        if r.status != 200:
            print("status", r.status, flush=True)
            break
    print("acked", i, flush=True)
"""


@pytest.mark.parametrize("via", ["http", "grpc"])
def test_sigterm_while_sending_loses_nothing_acknowledged(collector: OtlpCollector, via: str):
    """SIGTERM while a client sends request after request (one keep-alive connection, or
    one gRPC channel): the collector exits 0 and every request it acknowledged is in its
    files, once."""
    address = collector.http_address if via == "http" else collector.grpc_address
    proc = subprocess.Popen(
        [sys.executable, "-c", SENDER, via, address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("acked"):
                acked.append(int(line.split()[1]))
            if len(acked) == 50:
                code, err = collector.stop(signal.SIGTERM)
                break
        for line in proc.stdout:
            if line.startswith("acked"):
                acked.append(int(line.split()[1]))
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    assert code == 0 and "OTLP request" in err
    names = [s["name"] for s in stored_spans(collector.out)]
    stored = {int(n[1:]) for n in names}
    assert set(acked) <= stored
    assert len(names) == 50 * len(stored)  # each request once
    assert acked == list(range(1, len(acked) + 1)) and len(acked) >= 50
