"""`willowisp import` / `export` as a new user meets them: output paths, file modes,
unanswered requests, runtimes and bad-input messages (each found by a QA pass).

Inputs are the golden `http_callback` run (two Python services whose POST /reserve and
POST /confirm are never answered: a deadlock across processes) and small hand-written
span files.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from tests.golden.test_golden import build_run

from willowisp.cli.main import main

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
DATA = Path(__file__).resolve().parents[1] / "ingest" / "data"
T = "5b8efff798038103d269b633813fc60c"
B = 1_700_000_000_000_000_000
NO_REPLY = "no reply: still waiting when the trace ended"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """The http_callback golden case as a run folder."""
    return build_run(GOLDEN / "http_callback", tmp_path / "run")


def wisp(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m willowisp ARGS` in a subprocess (under ``umask`` when given: set by the
    shell that execs it, not by a preexec hook in this threaded process)."""
    cmd = [sys.executable, "-m", "willowisp", *args]
    if umask is not None:
        cmd = ["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def analyze_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["analyze", str(path), "--format", "json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def hop_spans(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s
        for rs in doc["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
        if s["kind"] in (2, 3)
    ]


def attrs(span: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


# -- 1. an output folder that does not exist ------------------------------------------------


@pytest.mark.parametrize("command", ["import", "export"])
def test_missing_output_folder_is_one_line_and_exit_2(
    run: Path, tmp_path: Path, command: str
) -> None:
    """-o into a folder that does not exist: exit 2, one line naming OUT and the missing
    folder, no traceback, no temporary file named."""
    span_file = DATA / "zipkin_v2_traces.json"
    out = tmp_path / "nowhere" / "x.out"
    if command == "import":
        r = wisp("import", str(span_file), "-o", str(out))
    else:
        r = wisp("export", str(run), "--to", "chrome", "-o", str(out))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [
        f"willowisp {command}: {out}: cannot write it: folder {out.parent} does not exist"
    ]
    assert "Traceback" not in r.stderr and ".tmp" not in r.stderr


def test_unwritable_output_folder_is_one_line(tmp_path: Path) -> None:
    """-o into a file used as a folder: exit 2, one line, nothing written."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = wisp("import", str(DATA / "zipkin_v2_traces.json"), "-o", str(blocker / "x.wtrace"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"willowisp import: {blocker / 'x.wtrace'}: cannot write it: {blocker} is not a folder"
    ]


# -- 2. requests never answered -------------------------------------------------------------


def test_unanswered_requests_are_long_error_spans(run: Path, tmp_path: Path) -> None:
    """OTLP export: a request with no reply ends where the trace ends, with status ERROR,
    a message and willowisp.unanswered; answered ones keep their own end and no status."""
    out = tmp_path / "spans.json"
    assert main(["export", str(run), "--to", "otlp-json", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    every_end = max(
        int(s["endTimeUnixNano"])
        for rs in doc["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    )
    spans = hop_spans(doc)
    answered = [s for s in spans if s["name"] == "GET /health"]
    unanswered = [s for s in spans if s["name"] != "GET /health"]
    assert len(answered) == 4 and len(unanswered) == 4
    for s in answered:
        assert "status" not in s and "willowisp.unanswered" not in attrs(s)
        assert int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]) >= 100_000
    for s in unanswered:
        assert int(s["endTimeUnixNano"]) == every_end
        assert int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]) > 900_000_000
        assert s["status"]["code"] == 2
        assert s["status"]["message"].startswith("no reply")
        assert attrs(s)["willowisp.unanswered"] is True
    clients = [s for s in unanswered if s["kind"] == 3]
    assert {s["status"]["message"] for s in clients} == {NO_REPLY}


def test_reimported_export_has_no_zero_latency_for_unanswered_requests(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Export, import, analyze: the hop whose only request was never answered has no
    latency (not "p50 0"), like the recording itself, and no seam says 0 for a reply."""
    spans, back = tmp_path / "spans.json", tmp_path / "back.wtrace"
    assert main(["export", str(run), "--to", "otlp-json", "-o", str(spans)]) == 0
    assert main(["import", str(spans), "-o", str(back)]) == 0
    original = {
        (h["from"]["service"], h["to"]["service"]): h for h in analyze_json(run, capsys)["hops"]
    }
    again = {
        (h["from"]["service"], h["to"]["service"]): h for h in analyze_json(back, capsys)["hops"]
    }
    confirm = again["stock", "orders"]
    assert confirm["count"] == 1 and confirm["linked"] == 1
    assert confirm["latency_ns"] is None and original["stock", "orders"]["latency_ns"] is None
    assert (confirm.get("seams") or {}).get("reply_ns") is None
    reserve = again["orders", "stock"]
    assert reserve["latency_ns"] == original["orders", "stock"]["latency_ns"]
    capsys.readouterr()
    assert main(["analyze", str(back)]) == 0
    text = capsys.readouterr().out
    assert "p50 0 " not in text and not re.search(r"-\d{4,} ns", text)


@pytest.mark.parametrize("to", ["chrome", "perfetto"])
def test_open_slices_reach_the_end_of_the_trace(run: Path, tmp_path: Path, to: str) -> None:
    """Chrome and Perfetto: waits and holds still open at the end last until the last
    event of the recording (its final flush), never zero length."""
    out = tmp_path / f"x.{to}"
    assert main(["export", str(run), "--to", to, "-o", str(out)]) == 0
    if to == "chrome":
        events = json.loads(out.read_text())["traceEvents"]
        still = [e for e in events if e["ph"] == "X" and e["args"].get("still")]
        ends = {round(e["ts"] + e["dur"], 1) for e in still}
        # the lock wait of orders' handler begins at the last event a unit did
        assert len(still) == 4 and all(e["dur"] > 900_000 for e in still), still
    else:
        from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace, TrackEvent

        t = Trace()
        t.ParseFromString(out.read_bytes())
        begins: dict[int, list[int]] = {}
        spans: list[tuple[int, int]] = []
        for p in t.packet:
            if not p.HasField("track_event"):
                continue
            e = p.track_event
            if e.type == TrackEvent.TYPE_SLICE_BEGIN and any(
                a.name == "still" for a in e.debug_annotations
            ):
                begins.setdefault(e.track_uuid, []).append(p.timestamp)
            elif e.type == TrackEvent.TYPE_SLICE_END and begins.get(e.track_uuid):
                spans.append((begins[e.track_uuid].pop(), p.timestamp))
        ends = {end for _, end in spans}
        assert len(spans) == 4 and all(end - start > 900_000_000 for start, end in spans)
    assert len(ends) == 1  # one end for all: the trace's


# -- 3. negative seams ----------------------------------------------------------------------


def otlp_resource(service: str, pid: int, lang: str, spans: list[Any]) -> dict[str, Any]:
    attrs = [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "process.pid", "value": {"intValue": str(pid)}},
    ]
    if lang:
        attrs.append({"key": "telemetry.sdk.language", "value": {"stringValue": lang}})
    return {"resource": {"attributes": attrs}, "scopeSpans": [{"spans": spans}]}


def otlp_span(sid: str, parent: str, kind: int, start: int, end: int) -> dict[str, Any]:
    s: dict[str, Any] = {
        "traceId": T,
        "spanId": sid,
        "name": "GET /price",
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": [
            {"key": "http.request.method", "value": {"stringValue": "GET"}},
            {"key": "url.path", "value": {"stringValue": "/price"}},
        ],
    }
    if parent:
        s["parentSpanId"] = parent
    return s


def test_negative_seams_are_formatted_like_positive_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server span that ends 400 µs after its client got the reply (spans end when the
    server's code says so) gives a negative reply seam: printed "-400.0 µs", not raw ns."""
    doc = {
        "resourceSpans": [
            otlp_resource("shop", 1, "python", [otlp_span("1" * 16, "", 3, B, B + 1_000_000)]),
            otlp_resource(
                "price",
                2,
                "go",
                [otlp_span("2" * 16, "1" * 16, 2, B + 100_000, B + 1_400_000)],
            ),
        ]
    }
    path = tmp_path / "spans.json"
    path.write_text(json.dumps(doc))
    reply = analyze_json(path, capsys)["hops"][0]["seams"]["reply_ns"]
    assert reply["p50"] < -1000  # the case the formatting is about
    assert main(["analyze", str(path)]) == 0
    text = capsys.readouterr().out
    seams = next(line for line in text.splitlines() if "seams" in line)
    assert re.search(r"reply -\d+\.\d (µs|ms)", seams), seams
    assert not re.search(r"-\d{4,} ns", text)


def test_report_seam_formatter_signs_every_unit() -> None:
    """The text report's seam durations keep their sign at every scale."""
    from willowisp.report.text_report import _dur

    assert _dur(-763419) == "-763.4 µs"
    assert _dur(-5) == "-5 ns"
    assert _dur(-2_500_000) == "-2.5 ms"
    assert _dur(549_494) == "549.5 µs"


# -- 4. file modes ---------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_get_the_umask_mode(run: Path, tmp_path: Path, umask: int, mode: int) -> None:
    """Every export format and import write OUT with the mode the umask gives (exports are
    made to be shared), through a temporary file and a rename."""
    made = []
    for to in ("chrome", "perfetto", "otlp-json"):
        out = tmp_path / f"x.{to}"
        r = wisp("export", str(run), "--to", to, "-o", str(out), umask=umask)
        assert r.returncode == 0, r.stderr
        made.append(out)
    out = tmp_path / "x.wtrace"
    r = wisp("import", str(DATA / "zipkin_v2_traces.json"), "-o", str(out), umask=umask)
    assert r.returncode == 0, r.stderr
    made.append(out)
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


# -- 5. runtimes -----------------------------------------------------------------------------


def test_chrome_round_trip_keeps_the_runtime(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export --to chrome, then import: the processes keep their runtime."""
    out, back = tmp_path / "x.json", tmp_path / "back.wtrace"
    assert main(["export", str(run), "--to", "chrome", "-o", str(out)]) == 0
    assert main(["import", str(out), "-o", str(back)]) == 0
    doc = analyze_json(back, capsys)
    assert doc["trace"]["runtimes"] == ["python"]
    assert {p["service"]: p["runtime"] for p in doc["processes"]} == {
        "orders": "python",
        "stock": "python",
    }


def test_jaeger_client_version_gives_the_runtime(capsys: pytest.CaptureFixture[str]) -> None:
    """A Jaeger process with only a jaeger.version tag (Go-2.30.0) has runtime go."""
    raw = json.loads((DATA / "jaeger_ui_export.json").read_text())
    tags = {
        p["serviceName"]: {t["key"] for t in p.get("tags", [])}
        for trace in raw["data"]
        for p in trace["processes"].values()
    }
    only_version = [s for s, keys in tags.items() if keys >= {"jaeger.version"}]
    only_version = [s for s in only_version if "telemetry.sdk.language" not in tags[s]]
    assert only_version
    doc = analyze_json(DATA / "jaeger_ui_export.json", capsys)
    runtimes = {p["service"]: p["runtime"] for p in doc["processes"]}
    assert {runtimes[s] for s in only_version} == {"go"}


def test_hop_lines_print_no_empty_runtime(capsys: pytest.CaptureFixture[str]) -> None:
    """Zipkin spans carry no runtime: the hop line names the services without "()"."""
    capsys.readouterr()
    assert main(["analyze", str(DATA / "zipkin_v2_traces.json")]) == 0
    text = capsys.readouterr().out
    hops = [line for line in text.splitlines() if " → " in line]
    assert hops and not any("()" in line for line in hops), hops


# -- 6. bad input -----------------------------------------------------------------------------


def proto_with_bad_spans() -> bytes:
    msg = TracesData()
    spans = msg.resource_spans.add().scope_spans.add()
    for k in range(3):
        s = spans.spans.add()
        s.trace_id = b"\x01\x02\x03"
        s.span_id = bytes([k + 1]) * 8
        s.name = "x"
        s.start_time_unix_nano = B
        s.end_time_unix_nano = B + 1
    return msg.SerializeToString()


BAD_INPUTS = {
    "otlp.json": (
        json.dumps(
            {
                "resourceSpans": [
                    otlp_resource(
                        "shop",
                        1,
                        "python",
                        [
                            {"traceId": "zz", "spanId": "1" * 16, "startTimeUnixNano": "1"},
                            {"traceId": T, "startTimeUnixNano": "1"},
                        ],
                    )
                ]
            }
        ).encode(),
        "no usable OTLP JSON span: 2 of 2 OTLP JSON spans skipped as malformed "
        "(first: traceId 'zz' is not 32 hex digits)",
    ),
    "otlp.pb": (
        proto_with_bad_spans(),
        "no usable OTLP protobuf span: 3 of 3 OTLP protobuf spans skipped as malformed "
        "(first: trace_id of 3 bytes)",
    ),
    "zipkin.json": (
        b'[{"traceId": "0102030405060708", "id": "zz", "name": "get",'
        b' "timestamp": 1700000000000000, "duration": 10}]',
        "no usable Zipkin span: 1 of 1 Zipkin span skipped as malformed "
        "(first: id 'zz' is not hex of at most 16 digits)",
    ),
    "chrome.json": (
        b'{"traceEvents": [{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": "x"}]}',
        "no usable Chrome trace event: 1 of 1 event skipped as malformed "
        "(first: event 0: ts 'x' is not a number)",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_all_bad_records_say_how_many_and_why(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file whose every span or event is malformed: one line with the count and the first
    reason, from import and from analyze alike; nothing written."""
    data, why = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / "x.wtrace"
    capsys.readouterr()
    assert main(["import", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"willowisp import: {path}: {why}",
        "willowisp import: nothing imported; no file written",
    ]
    assert not out.exists()
    assert main(["analyze", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"willowisp analyze: {path}: {why}"]


def test_wrong_from_names_the_file_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--from chrome on a Zipkin file: the line names the file once."""
    path = tmp_path / "zipkin.json"
    path.write_bytes((DATA / "zipkin_v2_traces.json").read_bytes())
    capsys.readouterr()
    assert main(["import", "--from", "chrome", str(path), "-o", str(tmp_path / "x.wtrace")]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"willowisp import: {path}: no usable Chrome trace event")
    assert first.count("zipkin.json") == 1


def test_unanswered_attribute_imports_as_a_wait_with_no_reply(tmp_path: Path) -> None:
    """A CLIENT span marked willowisp.unanswered (a Zipkin-style "true" string too) is a
    send then a block still open at the end: no rpc.response, no unit.end; a PRODUCER
    span so marked is left as it is."""
    from willowisp.causality.waits import waits
    from willowisp.ingest.load import load
    from willowisp.model.spec import K

    def marked(sid: str, kind: int, value: dict[str, Any]) -> dict[str, Any]:
        s = otlp_span(sid, "", kind, B, B + 5_000_000)
        s["attributes"].append({"key": "willowisp.unanswered", "value": value})
        return s

    spans = [
        marked("1" * 16, 3, {"boolValue": True}),
        marked("2" * 16, 3, {"stringValue": "true"}),
        marked("3" * 16, 4, {"boolValue": True}),
        otlp_span("4" * 16, "", 3, B, B + 5_000_000),
    ]
    path = tmp_path / "spans.json"
    path.write_text(json.dumps({"resourceSpans": [otlp_resource("shop", 1, "", spans)]}))
    trace = load([str(path)])
    ev = trace.events
    kinds = ev.kind.tolist()
    assert kinds.count(K.RPC_RESPONSE) == 1  # the one not marked
    assert kinds.count(K.UNIT_END) == 2  # the unmarked client and the producer
    w = waits(trace)
    # the two unanswered waits stay open; the answered client's wait ended at its response
    assert len(w.block) == 3 and (w.end < 0).sum() == 2


def test_html_hop_sides_print_no_empty_runtime() -> None:
    """The HTML report's hop table names a side without a runtime as just its service."""
    from willowisp.report.html_sections import _side

    assert _side({"service": "shop", "runtime": ""}) == "shop"
    assert _side({"service": "shop", "runtime": "go"}) == "shop (go)"
