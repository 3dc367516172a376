"""Imported spans keep what the recording meant: waits, ids, formats and repeats (QA round 9)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from willowisp.cli.main import main
from willowisp.ingest import jaeger, zipkin
from willowisp.ingest.load import load
from willowisp.ingest.otlp_json import parse_otlp
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K, Reason

DATA = Path(__file__).parent / "data"
T = "4bf92f3577b34da6a3ce929d0e0e4736"
B = 1_700_000_000_000_000_000
MS = 1_000_000
CLIENT, SERVER, PRODUCER, INTERNAL = 3, 2, 4, 1


def fixture(tmp_path: Path, name: str) -> Path:
    """A copy of a data file, so the analysis cache beside it is the test's own."""
    return Path(shutil.copy(DATA / name, tmp_path / name))


def kv(k: str, v: str | int) -> dict[str, Any]:
    value = {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}
    return {"key": k, "value": value}


def span(sid: str, parent: str, name: str, kind: int, start: int, end: int, **kw: Any) -> Any:
    s = {"traceId": T, "spanId": sid, "name": name, "kind": kind}
    s |= {"startTimeUnixNano": str(start), "endTimeUnixNano": str(end)}
    if parent:
        s["parentSpanId"] = parent
    return s | kw


def otlp(*by_service: tuple[str, list[Any]]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [kv("service.name", svc)]},
                "scopeSpans": [{"scope": {"name": "lib"}, "spans": spans}],
            }
            for svc, spans in by_service
        ]
    }


def story(trace: Trace, unit_name: str) -> list[tuple[str, str, int]]:
    """The unit's events as (kind, resource kind, arg), in order, without its start/end."""
    [u] = [u.index for u in trace.units if u.name == unit_name]
    ev = trace.events
    out = []
    for i in (ev.unit == u).nonzero()[0].tolist():
        kind = K(int(ev.kind[i])).name.lower()
        if kind in ("unit_start", "unit_end", "unit_create"):
            continue
        r = int(ev.res[i])
        out.append((kind, trace.resources[r].kind if r >= 0 else "", int(ev.arg[i])))
    return out


def load_doc(tmp_path: Path, doc: Any, name: str = "spans.json") -> Trace:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return load([path])


# -- 1. a client span waits for its reply ----------------------------------------------


def test_answered_client_span_waits_on_its_rpc_until_the_response(tmp_path: Path) -> None:
    """A CLIENT span: msg.send, unit.block (rpc) on the same resource, rpc.response."""
    doc = otlp(
        ("shop", [span("1111111111111111", "", "GET /a", CLIENT, B, B + 10 * MS)]),
        (
            "pay",
            [span("2222222222222222", "1111111111111111", "serve /a", SERVER, B + MS, B + 9 * MS)],
        ),
    )
    trace = load_doc(tmp_path, doc)
    assert story(trace, "GET /a") == [
        ("msg_send", "rpc", 0),
        ("unit_block", "rpc", int(Reason.RPC)),
        ("rpc_response", "rpc", 0),
    ]


def test_unanswered_client_without_server_and_producer(tmp_path: Path) -> None:
    """A client with no server in the file still waits (answered: ended by its response;
    unanswered: still waiting); a PRODUCER sends and does not wait."""
    spans = [
        span("1111111111111111", "", "GET /gone", CLIENT, B, B + 5 * MS),
        span(
            "3333333333333333",
            "",
            "GET /hang",
            CLIENT,
            B,
            B + 5 * MS,
            attributes=[{"key": "willowisp.unanswered", "value": {"boolValue": True}}],
        ),
        span("4444444444444444", "", "send orders", PRODUCER, B, B + MS),
    ]
    trace = load_doc(tmp_path, otlp(("shop", spans)))
    rpc = int(Reason.RPC)
    assert story(trace, "GET /gone") == [
        ("msg_send", "rpc", 0),
        ("unit_block", "rpc", rpc),
        ("rpc_response", "rpc", 0),
    ]
    assert story(trace, "GET /hang") == [("msg_send", "rpc", 0), ("unit_block", "rpc", rpc)]
    assert story(trace, "send orders") == [("msg_send", "message", 0)]


def test_parent_span_waits_for_its_children(tmp_path: Path) -> None:
    """Sequential children are one wait each, overlapping ones one wait for all of them,
    and a child that outlives its parent is not waited for."""
    spans = [
        span("1000000000000000", "", "handler", SERVER, B, B + 100 * MS),
        span("1000000000000001", "1000000000000000", "first", INTERNAL, B + MS, B + 10 * MS),
        span("1000000000000002", "1000000000000000", "a", INTERNAL, B + 20 * MS, B + 30 * MS),
        span("1000000000000003", "1000000000000000", "b", INTERNAL, B + 25 * MS, B + 40 * MS),
        span("1000000000000004", "1000000000000000", "late", INTERNAL, B + 90 * MS, B + 200 * MS),
    ]
    trace = load_doc(tmp_path, otlp(("shop", spans)))
    waits = [(k, r, a) for k, r, a in story(trace, "handler") if r == "future"]
    assert waits == [
        ("unit_block", "future", int(Reason.AWAIT)),
        ("unit_wake", "future", 0),
        ("unit_block", "future", int(Reason.AWAIT)),
        ("unit_wake", "future", 0),
    ]
    named = {u.number: u.name for u in trace.units}
    futures = [r for r in trace.resources if r.kind == "future"]
    listed = [[named[int(n)] for n in dict(r.attrs)["waits_for"].split(",")] for r in futures]
    assert listed == [["first"], ["a", "b"]]


def _analyze_text(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["analyze", str(path)]) == 0
    return capsys.readouterr().out


def test_otel_chain_critical_path_walks_into_the_slow_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real OTel SDK spans (client → frontend → backend, backend +30 ms, collected by
    ``willowisp collect``): the critical path enters the servers and blames the backend."""
    out = _analyze_text(fixture(tmp_path, "otel_chain_slow_backend.wtrace"), capsys)
    [line] = [x for x in out.splitlines() if x.startswith("critical path:")]
    assert line.endswith("client → frontend → backend")
    assert "running         35.2 ms  backend db.lookup" in out
    assert "running         44.2 ms  client GET /checkout" not in out


def test_otel_chain_diff_and_what_if_blame_the_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``diff`` puts the slower requests on the backend, not on the client's wait, and a
    delay on the backend hop reaches every operation that went through it."""
    fast = fixture(tmp_path, "otel_chain_fast.wtrace")
    slow_dir = tmp_path / "slow"
    slow_dir.mkdir()
    slow = Path(shutil.copy(DATA / "otel_chain_slow_backend.wtrace", slow_dir))
    main(["diff", str(fast), str(slow)])
    out = capsys.readouterr().out
    checkout = out[out.index("client → GET /checkout") :]
    assert "backend running" in checkout.splitlines()[1]
    assert "client running" not in out
    assert main(["replay", str(fast), "--delay", "hop:backend=30ms"]) == 0
    out = capsys.readouterr().out
    assert "operations (end-to-end, root to end): 9 of 11 changed" in out


# -- 2. 64-bit trace ids are shown by their digits ---------------------------------------

ZMISSING = [
    {
        "traceId": "463ac35c9f6413ad",
        "id": "a2fb4a1d1a96d312",
        "name": "get /api",
        "kind": "CLIENT",
        "timestamp": 1_700_000_000_000_000,
        "duration": 20_000,
        "localEndpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1"},
        "remoteEndpoint": {"serviceName": "backend", "ipv4": "10.0.0.2", "port": 8080},
        "tags": {"http.method": "GET", "http.path": "/api"},
    }
]


def test_64_bit_trace_ids_are_shown_by_their_own_digits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate and analyze show 463ac35c9f6413ad, not the zeros that pad it to 128 bits."""
    path = tmp_path / "zmissing.json"
    path.write_text(json.dumps(ZMISSING))
    assert main(["validate", "--ci-mode", str(path)]) == 1
    assert "in 1 of 1 trace(s): 463ac35c9f6413ad" in capsys.readouterr().out
    assert "trace 463ac35c… 20.0 ms" in _analyze_text(path, capsys)


# -- 3. Zipkin v1 is refused -------------------------------------------------------------

ZIPKIN_V1 = [
    {
        "traceId": "5af7183fb1d4cf5f",
        "id": "6b221d5bc9e6496c",
        "name": "get /api",
        "timestamp": 1472470996199000,
        "duration": 207000,
        "annotations": [
            {"timestamp": 1472470996199000, "value": "cs", "endpoint": {"serviceName": "fe"}},
            {"timestamp": 1472470996406000, "value": "cr", "endpoint": {"serviceName": "fe"}},
        ],
        "binaryAnnotations": [{"key": "http.path", "value": "/api"}],
    }
]


@pytest.mark.parametrize("binary", [True, False])
def test_zipkin_v1_is_one_clear_error_not_a_wrong_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], binary: bool
) -> None:
    """``import --from zipkin`` of v1 JSON says it is v1 and writes nothing."""
    doc = [dict(ZIPKIN_V1[0])]
    if not binary:  # annotations with endpoints alone are v1 too
        del doc[0]["binaryAnnotations"]
    path, out = tmp_path / "v1.json", tmp_path / "v1.wtrace"
    path.write_text(json.dumps(doc))
    assert main(["import", "--from", "zipkin", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "Zipkin v1" in x)
    assert f"{path}: Zipkin v1 JSON is not supported" in line and "convert it" in line
    assert "Traceback" not in err and not out.exists()


# -- 4. Brave's http.path ----------------------------------------------------------------


def test_zipkin_http_path_is_the_target(tmp_path: Path) -> None:
    """Brave writes the path as ``http.path``: the hop is ``GET /api``."""
    trace = load_doc(tmp_path, ZMISSING)
    [rpc] = [r for r in trace.resources if r.kind == "rpc"]
    assert (rpc.method, rpc.target) == ("GET", "/api")


# -- 5. a retried export is not malformed ------------------------------------------------


def test_identical_repeated_otlp_spans_are_dropped_with_a_note() -> None:
    """The same span twice (a retried export) is one unit and a duplicate note; the same
    ids with other content stay a malformed span."""
    one = span("1111111111111111", "", "work", INTERNAL, B, B + MS)
    doc = json.dumps(otlp(("shop", [one]))).encode()
    files, notes = parse_otlp(doc + b"\n" + doc, "twice.jsonl")
    assert sum(len(f.chunks[0].records) for f in files) == 2  # the process and one unit
    assert notes == [
        "twice.jsonl: 1 duplicate span dropped (same ids and content as a span already "
        "read: a retried export)"
    ]
    other = json.dumps(otlp(("shop", [one | {"name": "else"}]))).encode()
    _, notes = parse_otlp(doc + b"\n" + other, "clash.jsonl")
    assert notes == [
        "clash.jsonl: 1 of 2 spans skipped as malformed (first: span 1111111111111111 "
        "appears twice, with different content); the others were imported"
    ]


def test_retried_collector_request_is_not_malformed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run where ``collect`` got one OTLP request twice: a duplicate note, no skip."""
    out = _analyze_text(fixture(tmp_path, "otel_retried_export.wtrace"), capsys)
    assert "1 duplicate span dropped" in out and "malformed" not in out


@pytest.mark.parametrize("mod", [zipkin, jaeger])
def test_identical_repeated_jaeger_and_zipkin_spans_are_dropped(mod: Any) -> None:
    """Jaeger and Zipkin: an exact repeat is a duplicate, a changed one a malformed span."""
    if mod is zipkin:
        doc: Any = [ZMISSING[0], ZMISSING[0]]
        changed: Any = [ZMISSING[0], ZMISSING[0] | {"name": "else"}]
        what = "Zipkin"
    else:
        doc = json.loads((DATA / "jaeger_ui_export.json").read_text())
        changed = json.loads((DATA / "jaeger_ui_export.json").read_text())
        spans = doc["data"][0]["spans"]
        spans.append(dict(spans[0]))
        changed["data"][0]["spans"].append(spans[0] | {"operationName": "else"})
        what = "Jaeger"
    _, notes = mod.decode(mod.NAME, json.dumps(doc).encode(), "d.json")
    dup = f"d.json: 1 duplicate {what} span dropped (same ids and content as a span already read)"
    assert dup in notes and not any("malformed" in n for n in notes)
    _, notes = mod.decode(mod.NAME, json.dumps(changed).encode(), "c.json")
    [bad] = [n for n in notes if "malformed" in n]
    assert "appears twice, with different content" in bad
    assert not any("duplicate" in n for n in notes)
