"""OTLP JSON import: sniffing, mapping spans to units and hops, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from willowisp.cli.main import main
from willowisp.errors import TraceFormatError
from willowisp.ingest.load import load
from willowisp.ingest.otlp_json import parse_otlp

T = "5B8EFFF798038103D269B633813FC60C"  # upper case: hex ids are case-insensitive
B = 1_700_000_000_000_000_000
SKEW = 250_000_000  # the server's clock reads 250 ms behind the client's


def kv(k: str, v: str | int) -> dict[str, Any]:
    value = {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}
    return {"key": k, "value": value}


def resource(service: str, host: str, pid: int, lang: str, spans: list[Any]) -> dict[str, Any]:
    attrs = [kv("service.name", service), kv("host.name", host), kv("process.pid", pid)]
    attrs.append(kv("telemetry.sdk.language", lang))
    return {
        "resource": {"attributes": attrs},
        "scopeSpans": [{"scope": {"name": "lib"}, "spans": spans}],
    }


def span(
    sid: str, parent: str, name: str, kind: int, start: int, end: int, **kw: Any
) -> dict[str, Any]:
    s = {"traceId": T, "spanId": sid, "name": name, "kind": kind}
    s |= {"startTimeUnixNano": str(start), "endTimeUnixNano": end}  # int64: string or number
    if parent:
        s["parentSpanId"] = parent
    s.update(kw)
    return s


def client() -> dict[str, Any]:
    return resource(
        "shop",
        "host-a",
        101,
        "python",
        [
            span(
                "1111111111111111",
                "",
                "GET /checkout",
                2,
                B,
                B + 100_000_000,
                attributes=[kv("http.method", "GET"), kv("http.target", "/checkout")],
            ),
            span(
                "2222222222222222",
                "1111111111111111",
                "POST",
                3,
                B + 10_000_000,
                B + 90_000_000,
                attributes=[
                    kv("http.request.method", "POST"),
                    kv("url.full", "http://pay/pay?q=1"),
                ],
            ),
        ],
    )


def server(extra: list[Any] | None = None) -> dict[str, Any]:
    s = B - SKEW
    spans = [
        span(
            "3333333333333333",
            "2222222222222222",
            "POST /pay",
            2,
            s + 20_000_000,
            s + 80_000_000,
            status={"code": 2},
            attributes=[kv("http.request.method", "POST"), kv("url.path", "/pay")],
        ),
    ]
    return resource("pay", "host-b", 202, "go", spans + (extra or []))


def analyze(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["analyze", str(path), "--format", "json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def check_two_services(doc: dict[str, Any]) -> None:
    procs = {p["service"]: p for p in doc["processes"]}
    assert sorted(procs) == ["pay", "shop"]
    assert procs["shop"]["runtime"] == "python" and procs["pay"]["runtime"] == "go"
    assert procs["pay"]["host"] == "host-b" and procs["pay"]["pid"] == 202
    assert procs["shop"]["clock_domain"] != procs["pay"]["clock_domain"]
    # the root server span (no caller in the file) is a hop of its own, unlinked
    [hop] = [h for h in doc["hops"] if h["to"]["service"] == "pay"]
    assert (hop["from"]["service"], hop["to"]["service"]) == ("shop", "pay")
    assert hop["linked"] == 1 and hop["provenance"] == {"traceparent": 1}
    assert hop["protocol"] == "http"
    clocks = {c["id"]: c for c in doc["clocks"]}
    ref = clocks[procs["shop"]["clock_domain"]]
    pay = clocks[procs["pay"]["clock_domain"]]
    assert ref["reference"] and ref["offset_ns"] == 0
    # pay reads 250 ms behind shop: +250 ms puts it on shop's line (shop is -250 ms from pay).
    # Only the request bounds it: a server span's end is not when its reply left (the server
    # may end its span after the client has the answer), so the reply edge orders but does
    # not bound the clock, and the interval is honestly open above.
    assert pay["offset_min_ns"] <= SKEW and pay["offset_max_ns"] is None
    assert SKEW - pay["offset_min_ns"] <= 20_000_000  # the request's transit time, at most


def test_client_server_with_skew(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spans.json"  # sniffed by content; the extension proves nothing
    path.write_text(json.dumps({"resourceSpans": [client(), server()]}, indent=1))
    doc = analyze(path, capsys)
    check_two_services(doc)
    assert doc["trace"]["notes"] == []
    trace = load([path])
    kinds = {u.kind for u in trace.units}
    assert kinds == {"span"}
    by_name = {u.name: u for u in trace.units}
    # the client span is created by its parent span's unit (same process)
    assert by_name["POST"].parent == by_name["GET /checkout"].index
    assert by_name["POST /pay"].parent < 0
    res = {r.kind: r for r in trace.resources}
    assert res["rpc"].trace_id == T.lower()


def test_json_lines_and_bad_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = [
        span("zz33333333333333", "", "bad hex", 1, B, B + 1),
        span("33333333", "", "too short", 1, B, B + 1),
        span("0000000000000000", "", "zero id", 1, B, B + 1),
        span(
            "4444444444444444",
            "",
            "base64 trace id",
            1,
            B,
            B + 1,
            traceId="W47/95gDgQPSabYzgT/GDA==",
        ),
        span("5555555555555555", "", "ends before start", 1, B, B - 1),
    ]
    path = tmp_path / "spans.jsonl"
    lines = [
        json.dumps({"resourceSpans": [client()]}),
        "",
        json.dumps({"resourceSpans": [server(bad)]}),
    ]
    path.write_text("\n".join(lines) + "\n")
    doc = analyze(path, capsys)
    check_two_services(doc)
    [note] = doc["trace"]["notes"]
    assert "5 of 8 spans skipped" in note and str(path) in note


def test_same_resource_in_two_lines_is_one_process(tmp_path: Path) -> None:
    one, two = client(), client()
    one["scopeSpans"][0]["spans"] = one["scopeSpans"][0]["spans"][:1]
    two["scopeSpans"][0]["spans"] = two["scopeSpans"][0]["spans"][1:]
    path = tmp_path / "x.jsonl"
    path.write_text(
        json.dumps({"resourceSpans": [one]}) + "\n" + json.dumps({"resourceSpans": [two]})
    )
    trace = load([path])
    assert len(trace.processes) == 1 and len(trace.units) == 2


@pytest.mark.parametrize(
    "content", [b"\x00\x01garbage\xff", b'{"foo": 1}', b"{not json", b'{"resourceSpans": 3}']
)
def test_garbage_is_one_line_and_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "garbage.json"
    path.write_bytes(content)
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]


def test_size_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import willowisp.ingest.formats as mod

    monkeypatch.setattr(mod, "MAX_INPUT_BYTES", 100)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"resourceSpans": [client()]}))
    [bad] = load([path]).unreadable
    assert "bound" in bad.message


def _mutate(obj: Any, draw: Any) -> Any:
    """Replace one node of a JSON tree with arbitrary JSON."""
    if isinstance(obj, dict) and obj and draw(st.booleans()):
        k = draw(st.sampled_from(sorted(obj)))
        return {**obj, k: _mutate(obj[k], draw)}
    if isinstance(obj, list) and obj and draw(st.booleans()):
        i = draw(st.integers(0, len(obj) - 1))
        return [*obj[:i], _mutate(obj[i], draw), *obj[i + 1 :]]
    return draw(_json)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_only_format_errors(data: st.DataObject) -> None:
    doc = _mutate({"resourceSpans": [client(), server()]}, data.draw)
    raw = json.dumps(doc).encode()
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(raw)))
        raw = raw[:cut] + data.draw(st.binary(max_size=8)) + raw[cut:]
    try:
        files, _notes = parse_otlp(raw, "fuzz.json")
    except TraceFormatError:
        return
    for tf in files:
        assert tf.events > 0


def test_a_real_opentelemetry_sdk_app_imports_linked(tmp_path: Path) -> None:
    """Spans of the real OpenTelemetry Python SDK (two services, a real HTTP call on
    127.0.0.1, the SDK's own propagator and OTLP encoder) import as span units whose three
    client/server pairs link through the propagated context; the clock interval of the
    server's domain is honest (its true offset, 0 on this one machine, lies inside)."""
    import subprocess
    import sys

    out = tmp_path / "otel.json"
    program = Path(__file__).parent / "programs" / "otel_sdk_app.py"
    r = subprocess.run(
        [sys.executable, str(program), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "8"  # warmup, checkout, 3 client calls, 3 server spans
    trace = load([out])
    assert not trace.unreadable
    assert sorted(p.service for p in trace.processes) == ["pay", "shop"]
    assert sum(1 for u in trace.units if u.kind == "span") == 8
    from willowisp.analysis.engine import analyze

    doc = analyze(trace).document()
    (hop,) = [h for h in doc["hops"] if h["protocol"] == "http"]
    assert (hop["count"], hop["linked"]) == (3, 3)
    pay = next(c for c in doc["clocks"] if not c["reference"])
    lo, hi = pay["offset_min_ns"], pay["offset_max_ns"]
    assert (lo is None or lo <= 0) and (hi is None or hi >= 0)


def test_one_service_in_two_files_is_one_process_with_its_parents(tmp_path: Path) -> None:
    """A batch exporter sends children before their parents, in separate requests: the
    spans of one resource from several inputs are one process, and a child finds its
    parent in another file (created by it, not an orphan root)."""
    shop = client()
    parent, child = shop["scopeSpans"][0]["spans"]
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"resourceSpans": [{**shop, "scopeSpans": [{"spans": [child]}]}]}))
    second.write_text(
        json.dumps({"resourceSpans": [{**shop, "scopeSpans": [{"spans": [parent]}]}]})
    )
    trace = load([first, second])
    assert not trace.unreadable and not [n for n in trace.notes if "sequence" in n]
    assert len(trace.processes) == 1
    units = {u.name: u for u in trace.units}
    assert len(units) == 2
    assert units["POST"].parent == units["GET /checkout"].index
    # and the same through willowisp import: two embedded streams, one process
    out = tmp_path / "both.wtrace"
    assert main(["import", str(first), str(second), "-o", str(out)]) == 0
    again = load([out])
    assert len(again.processes) == 1 and len(again.units) == 2
    assert {u.name: u.parent for u in again.units}["POST"] >= 0
