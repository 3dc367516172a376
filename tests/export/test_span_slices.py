"""Imported spans are exported as slices: on their service's ``spans`` track (OTLP, Jaeger,
Zipkin) or on their original thread (Chrome), nested by parent, with their real durations.

Each test imports a small hand-written file of the foreign format through the real CLI in
a subprocess (``willowisp export FILE --to ...``) and reads the output back: the Perfetto
protobuf with the ``perfetto`` package's generated classes, the Chrome JSON directly.
Before the fix every span was a thread track of its own holding two instants.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace, TrackEvent

T0 = 1_700_000_000_000_000_000  # ns since the epoch
MS = 1_000_000
TRACE_A, TRACE_B = "a" * 32, "b" * 32


def wisp_export(src: Path, to: str, out: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "export", str(src), "--to", to, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


# --- reading the outputs back -----------------------------------------------------------


@dataclass
class Slice:
    name: str
    track: str  # the track's name (thread name, "spans", "... (overlap n)")
    track_id: int
    start: int
    end: int
    parent: str  # the innermost enclosing span's name on the same track, "" at the top
    category: str


def perfetto_slices(path: Path) -> tuple[list[Slice], dict[int, Any], Counter[str]]:
    """Every slice of a Perfetto trace, the track descriptors, and the flow-id balance."""
    t = Trace()
    t.ParseFromString(path.read_bytes())
    tracks: dict[int, Any] = {}
    open_: dict[int, list[tuple[str, int, str]]] = {}
    out: list[Slice] = []
    flows: Counter[str] = Counter()
    for p in t.packet:
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            tracks[d.uuid] = d
        if not p.HasField("track_event"):
            continue
        e = p.track_event
        flows.update(f"out {f}" for f in e.flow_ids)
        flows.update(f"in {f}" for f in e.terminating_flow_ids)
        stack = open_.setdefault(e.track_uuid, [])
        if e.type == TrackEvent.TYPE_SLICE_BEGIN:
            stack.append((e.name, p.timestamp, e.categories[0]))
        elif e.type == TrackEvent.TYPE_SLICE_END:
            name, start, cat = stack.pop()
            d = tracks[e.track_uuid]
            label = d.thread.thread_name if d.HasField("thread") else d.name
            parent = next((n for n, _, c in reversed(stack) if c == "span"), "")
            out.append(Slice(name, label, e.track_uuid, start, p.timestamp, parent, cat))
    assert all(not s for s in open_.values()), "a slice never ended"
    return out, tracks, flows


def chrome_slices(path: Path) -> tuple[list[Slice], dict[tuple[int, int], str]]:
    """Every ``X`` span slice of a Chrome JSON export, with its parent by time nesting on
    its (pid, tid), which is how Perfetto and chrome://tracing nest them."""
    doc = json.loads(path.read_text())
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in doc["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X" and e.get("cat") == "span"]
    out = []
    by_tid: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for e in xs:
        by_tid.setdefault((e["pid"], e["tid"]), []).append(e)
    for key, evs in by_tid.items():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack: list[dict[str, Any]] = []
        for e in evs:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"] and e["dur"] > 0:
                stack.pop()
            if stack:
                top = stack[-1]
                assert e["ts"] + e["dur"] <= top["ts"] + top["dur"] + 1e-9, "X events overlap"
            start, end = round(e["ts"] * 1000), round((e["ts"] + e["dur"]) * 1000)
            parent = stack[-1]["name"] if stack else ""
            out.append(Slice(e["name"], names[key], key[1], start, end, parent, "span"))
            stack.append(e)
    return out, names


def one(slices: list[Slice], name: str) -> Slice:
    [s] = [s for s in slices if s.name == name]
    return s


# --- OTLP -------------------------------------------------------------------------------


def _span(
    trace: str, sid: str, parent: str, name: str, kind: int, start_ms: int, end_ms: int
) -> dict[str, Any]:
    return {
        "traceId": trace,
        "spanId": sid * 16,
        "parentSpanId": parent * 16 if parent else "",
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(T0 + start_ms * MS),
        "endTimeUnixNano": str(T0 + end_ms * MS),
        "attributes": (
            [{"key": "http.request.method", "value": {"stringValue": "GET"}}]
            + [{"key": "url.path", "value": {"stringValue": "/price"}}]
            if kind in (2, 3)
            else []
        ),
    }


def _resource(service: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    attrs = [{"key": "service.name", "value": {"stringValue": service}}]
    return {
        "resource": {"attributes": attrs},
        "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
    }


def otlp_file(path: Path) -> Path:
    """Two services. frontend: a request GET /checkout (0-100 ms) with children validate
    (10-30) and a client call GET /price (40-90), and a concurrent second request
    GET /other (20-60) of another trace; backend: the server side GET /price (45-85) with
    a child db.lookup (50-80)."""
    frontend = [
        _span(TRACE_A, "1", "", "GET /checkout", 2, 0, 100),
        _span(TRACE_A, "2", "1", "validate", 1, 10, 30),
        _span(TRACE_A, "3", "1", "GET /price", 3, 40, 90),
        _span(TRACE_B, "9", "", "GET /other", 2, 20, 60),
    ]
    backend = [
        _span(TRACE_A, "4", "3", "GET /price", 2, 45, 85),
        _span(TRACE_A, "5", "4", "db.lookup", 1, 50, 80),
    ]
    doc = {"resourceSpans": [_resource("frontend", frontend), _resource("backend", backend)]}
    path.write_text(json.dumps(doc))
    return path


def test_otlp_spans_are_slices_on_their_service_track(tmp_path: Path) -> None:
    src = otlp_file(tmp_path / "spans.json")
    wisp_export(src, "perfetto", tmp_path / "out.pftrace")
    slices, tracks, flows = perfetto_slices(tmp_path / "out.pftrace")
    spans = [s for s in slices if s.category == "span"]
    assert sorted(s.name for s in spans) == sorted(
        ["GET /checkout", "validate", "GET /price", "GET /other", "GET /price", "db.lookup"]
    )
    # No track per span: the only thread-less tracks are the services' span tracks.
    assert not [d for d in tracks.values() if d.HasField("thread")]
    procs = {d.uuid: d.process.process_name for d in tracks.values() if d.HasField("process")}
    span_tracks = {d.uuid: d for d in tracks.values() if d.name == "spans"}
    assert sorted(procs[d.parent_uuid].split(" ")[0] for d in span_tracks.values()) == [
        "backend",
        "frontend",
    ]
    # Durations as recorded, parents around their children on one track.
    checkout, validate = one(spans, "GET /checkout"), one(spans, "validate")
    assert checkout.end - checkout.start == 100 * MS
    assert (validate.start - checkout.start, validate.end - validate.start) == (10 * MS, 20 * MS)
    assert validate.track_id == checkout.track_id and validate.parent == "GET /checkout"
    client = next(s for s in spans if s.name == "GET /price" and s.parent == "GET /checkout")
    assert client.track_id == checkout.track_id and client.end - client.start == 50 * MS
    db = one(spans, "db.lookup")
    assert db.parent == "GET /price" and db.end - db.start == 30 * MS
    server = next(s for s in spans if s.name == "GET /price" and s.parent == "")
    assert server.track_id == db.track_id != checkout.track_id
    # The other trace's request overlaps the first one but is not its child: it is a root
    # on an overlap track of frontend's spans, not nested under GET /checkout.
    other = one(spans, "GET /other")
    assert other.parent == "" and other.track_id != checkout.track_id
    assert tracks[other.track_id].parent_uuid == checkout.track_id
    assert other.end - other.start == 40 * MS
    # The client's wait for its reply nests in the client span; every wait of a span nests
    # in that span, none is left to an overlap track.
    [wait] = [s for s in slices if s.name == "rpc GET /price"]
    assert wait.track_id == client.track_id and wait.parent == "GET /price"
    waits = [s for s in slices if s.category == "wait"]
    assert all(w.parent and tracks[w.track_id].name == "spans" for w in waits)
    # Flows: every id once out and once in, the hop among them.
    ids = {k.split(" ")[1] for k in flows}
    assert ids and all(flows[f"out {i}"] == flows[f"in {i}"] == 1 for i in ids)


def test_otlp_spans_in_chrome_json(tmp_path: Path) -> None:
    src = otlp_file(tmp_path / "spans.json")
    wisp_export(src, "chrome", tmp_path / "out.json")
    spans, threads = chrome_slices(tmp_path / "out.json")
    assert len(spans) == 6
    assert not [n for n in threads.values() if n.startswith("span ")]
    assert sorted(threads.values()) == ["spans", "spans", "spans (overlap 1)"]
    checkout, validate = one(spans, "GET /checkout"), one(spans, "validate")
    assert checkout.end - checkout.start == 100 * MS
    assert validate.parent == "GET /checkout" and validate.end - validate.start == 20 * MS
    db = one(spans, "db.lookup")
    assert db.parent == "GET /price" and db.end - db.start == 30 * MS
    other = one(spans, "GET /other")
    assert other.parent == "" and other.track == "spans (overlap 1)"


# --- Chrome -----------------------------------------------------------------------------


def chrome_file(path: Path) -> Path:
    """Two threads of one process. Main: outer (0-100 µs) holding inner (10-50, with an
    instant at 20 inside it) and a B/E slice sync (60-90); an async request (30-150) that
    outlives outer. Worker: work (20-40), bound to inner by a flow v2."""
    ev: list[dict[str, Any]] = [
        {"ph": "M", "pid": 7, "name": "process_name", "args": {"name": "browser"}},
        {"ph": "M", "pid": 7, "tid": 1, "name": "thread_name", "args": {"name": "Main"}},
        {"ph": "M", "pid": 7, "tid": 2, "name": "thread_name", "args": {"name": "Worker"}},
        {"ph": "X", "pid": 7, "tid": 1, "ts": 0, "dur": 100, "name": "outer", "cat": "c"},
        {
            "ph": "X",
            "pid": 7,
            "tid": 1,
            "ts": 10,
            "dur": 40,
            "name": "inner",
            "cat": "c",
            "bind_id": "0x5",
            "flow_out": True,
        },
        {"ph": "i", "pid": 7, "tid": 1, "ts": 20, "s": "t", "name": "mark", "cat": "c"},
        {"ph": "B", "pid": 7, "tid": 1, "ts": 60, "name": "sync", "cat": "c"},
        {"ph": "E", "pid": 7, "tid": 1, "ts": 90},
        {"ph": "b", "pid": 7, "tid": 1, "ts": 30, "name": "request", "cat": "net", "id": "0x1"},
        {"ph": "e", "pid": 7, "tid": 1, "ts": 150, "name": "request", "cat": "net", "id": "0x1"},
        {
            "ph": "X",
            "pid": 7,
            "tid": 2,
            "ts": 20,
            "dur": 20,
            "name": "work",
            "cat": "c",
            "bind_id": "0x5",
            "flow_in": True,
        },
    ]
    path.write_text(json.dumps({"traceEvents": ev}))
    return path


def test_chrome_slices_stay_on_their_threads(tmp_path: Path) -> None:
    src = chrome_file(tmp_path / "trace.json")
    wisp_export(src, "perfetto", tmp_path / "out.pftrace")
    slices, tracks, flows = perfetto_slices(tmp_path / "out.pftrace")
    threads = sorted(d.thread.thread_name for d in tracks.values() if d.HasField("thread"))
    assert threads == ["thread Main", "thread Worker"]
    by = {s.name: s for s in slices}
    assert set(by) == {"outer", "inner", "mark", "sync", "request", "work"}
    us = 1000
    assert [(by[n].end - by[n].start) // us for n in ("outer", "inner", "sync", "work")] == [
        100,
        40,
        30,
        20,
    ]
    assert by["mark"].end == by["mark"].start  # an instant: a zero-length slice
    assert (by["outer"].track, by["outer"].parent) == ("thread Main", "")
    assert (by["inner"].track, by["inner"].parent) == ("thread Main", "outer")
    assert (by["mark"].track, by["mark"].parent) == ("thread Main", "inner")
    assert (by["sync"].track, by["sync"].parent) == ("thread Main", "outer")
    assert (by["work"].track, by["work"].parent) == ("thread Worker", "")
    # The async slice outlives outer: it cannot nest in it, so it goes on Main's overlap
    # track, whole.
    assert by["request"].track == "thread Main (overlap 1)"
    assert by["request"].end - by["request"].start == 120 * us
    # The flow from inner to work is there, every flow id once out and once in.
    ids = {k.split(" ")[1] for k in flows}
    assert ids and all(flows[f"out {i}"] == flows[f"in {i}"] == 1 for i in ids)


def test_chrome_slices_in_chrome_json(tmp_path: Path) -> None:
    src = chrome_file(tmp_path / "trace.json")
    wisp_export(src, "chrome", tmp_path / "out.json")
    spans, threads = chrome_slices(tmp_path / "out.json")
    assert sorted(threads.values()) == ["thread Main", "thread Main (overlap 1)", "thread Worker"]
    by = {s.name: s for s in spans}
    assert (by["inner"].track, by["inner"].parent) == ("thread Main", "outer")
    assert (by["sync"].parent, by["sync"].end - by["sync"].start) == ("outer", 30_000)
    assert (by["work"].track, by["work"].end - by["work"].start) == ("thread Worker", 20_000)
    assert by["request"].track == "thread Main (overlap 1)"
    doc = json.loads((tmp_path / "out.json").read_text())
    outs = Counter(e["bind_id"] for e in doc["traceEvents"] if e.get("flow_out"))
    ins = Counter(e["bind_id"] for e in doc["traceEvents"] if e.get("flow_in"))
    assert outs and outs == ins and set(outs.values()) == {1}
