"""`willowisp export --to perfetto`: a Perfetto protobuf trace (TrackEvent), read back with
Perfetto's own generated protobuf classes (the `perfetto` package), never with our writer.

Checked on a real cross-process HTTP deadlock (`willowisp demo`: two services, two processes),
on a real run whose thread name is hostile and whose lock holds do not nest, and on every
golden trace: a thread track per unit under its process track, properly nested slices, one
flow per cross-unit happens-before edge from the cause's event to the effect's, findings as
instants with their explanation, the same bytes for the same input.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import (
    DebugAnnotation,
    Trace,
    TracePacket,
    TrackEvent,
)
from tests.golden.test_golden import CASES, build_run

from willowisp.analysis.engine import Analysis, analyze_paths
from willowisp.analysis.naming import track_label
from willowisp.analysis.stuck import runtime_units_of
from willowisp.causality.link import link
from willowisp.causality.waits import holds, waits
from willowisp.cli.main import main
from willowisp.export.chrome import chrome_trace, cut
from willowisp.export.perfetto import _annotation, _flow_order, perfetto_trace

GOLDEN = Path(__file__).parents[1] / "golden"
FROM_TRACE = {"where", "summary", "explanation", "units", "resources"}  # annotations
HOSTILE = "<script>alert(1)</script>\x00after-nul"
# A thread with a hostile name takes two locks hand over hand: first, second, release
# first, release second. The two holds overlap without nesting.
HOSTILE_PROGRAM = f"""\
import threading

first = threading.Lock()
second = threading.Lock()


def hand_over_hand():
    first.acquire()
    second.acquire()
    first.release()
    second.release()


t = threading.Thread(target=hand_over_hand, name={HOSTILE!r})
t.start()
t.join()
print("done")
"""


def wisp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def export(run: Path, out: Path) -> Trace:
    """`willowisp export RUN --to perfetto -o OUT` in a subprocess, parsed."""
    r = wisp("export", str(run), "--to", "perfetto", "-o", str(out))
    assert r.returncode == 0, r.stderr
    return parse(out.read_bytes())


def parse(data: bytes) -> Trace:
    t = Trace()
    t.ParseFromString(data)
    return t


def annotations(e: TrackEvent) -> dict[str, object]:
    out: dict[str, object] = {}
    for d in e.debug_annotations:
        which = d.WhichOneof("value")
        out[d.name] = (
            [x.string_value for x in d.array_values] if which is None else getattr(d, which)
        )
    return out


def check(t: Trace, a: Analysis) -> dict[str, list[TracePacket]]:
    """The invariants every export keeps; returns the events by track uuid."""
    trace = a.trace
    packets = list(t.packet)
    assert packets
    assert {p.trusted_packet_sequence_id for p in packets} == {1}
    assert packets[0].sequence_flags == TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    stamps = [p.timestamp for p in packets]
    assert stamps == sorted(stamps)
    descriptors = [p.track_descriptor for p in packets if p.HasField("track_descriptor")]
    events = [p for p in packets if p.HasField("track_event")]
    assert packets[: len(descriptors)] == [p for p in packets if p.HasField("track_descriptor")]
    # A process track per process, a thread track per unit under it.
    n_proc = len(trace.processes)
    procs = [d for d in descriptors if d.HasField("process")]
    assert [d.process.pid for d in procs] == list(range(1, n_proc + 1))
    assert [d.process.process_name for d in procs] == [cut(p.track_name()) for p in trace.processes]
    proc_uuid = {d.process.pid: d.uuid for d in procs}
    threads = [d for d in descriptors if d.HasField("thread")]
    assert len(threads) == len(trace.units)
    tids = [d.thread.tid for d in threads]
    assert len(set(tids)) == len(tids) and not set(tids) & set(proc_uuid)
    assert all(0 < tid < 2**31 for tid in tids)
    own = runtime_units_of(trace)
    for d, u in zip(threads, trace.units, strict=True):
        assert d.thread.thread_name == cut(track_label(trace, u.index, u.index in own))
        assert d.thread.pid == u.proc + 1
        assert d.parent_uuid == proc_uuid[u.proc + 1]
    uuids = [d.uuid for d in descriptors]
    assert len(set(uuids)) == len(uuids)
    # Slices nest on every track; one per wait and per lock hold.
    by_track: dict[int, list[TracePacket]] = {}
    for p in events:
        assert p.track_event.track_uuid in uuids
        by_track.setdefault(p.track_event.track_uuid, []).append(p)
    for track_events in by_track.values():
        depth = 0
        for p in track_events:
            depth += {TrackEvent.TYPE_SLICE_BEGIN: 1, TrackEvent.TYPE_SLICE_END: -1}.get(
                p.track_event.type, 0
            )
            assert depth >= 0
        assert depth == 0
    begins = Counter(
        p.track_event.categories[0]
        for p in events
        if p.track_event.type == TrackEvent.TYPE_SLICE_BEGIN
    )
    assert begins["wait"] == len(waits(trace))
    assert begins["hold"] == len(holds(trace))
    # One flow per cross-unit happens-before edge, from the cause's event to the effect's.
    g = link(trace).graph
    assert len(g) == len(a.causality.graph)
    cause: dict[int, int] = {}
    effect: dict[int, int] = {}
    for n, p in enumerate(packets):
        for f in p.track_event.flow_ids:
            assert f not in cause
            cause[f] = n
        for f in p.track_event.terminating_flow_ids:
            assert f not in effect
            effect[f] = n
    assert sorted(cause) == sorted(effect) == list(range(1, len(g) + 1))
    unit = trace.events.unit
    for k, (s, d) in enumerate(zip(g.src.tolist(), g.dst.tolist(), strict=True)):
        src, dst = packets[cause[k + 1]], packets[effect[k + 1]]
        assert cause[k + 1] < effect[k + 1]
        assert annotations(src.track_event)["event"] == trace.event_id(s)
        assert annotations(dst.track_event)["event"] == trace.event_id(d)
        assert unit[s] != unit[d]
        if unit[s] >= 0 and unit[d] >= 0:
            assert src.track_event.track_uuid != dst.track_event.track_uuid
    # Findings: instants on the findings track, with summary and explanation lines.
    found = [p.track_event for p in events if "finding" in p.track_event.categories]
    assert sorted(e.name for e in found) == sorted(f.kind for f in a.findings)
    by_id = {annotations(e)["id"]: e for e in found}
    assert len(by_id) == len(found)
    for f in a.findings:
        e = by_id[f.id]
        assert e.type == TrackEvent.TYPE_INSTANT and e.name == f.kind
        args = annotations(e)
        assert args["summary"] == cut(f.summary)
        assert args.get("explanation", []) == [cut(x) for x in f.explanation]
        assert args["severity"] == f.severity
    if found:
        [findings_track] = [d for d in descriptors if d.name == "findings"]
        assert {e.track_uuid for e in found} == {findings_track.uuid}
        assert not findings_track.parent_uuid
    return by_track


def test_cross_process_deadlock(tmp_path: Path) -> None:
    """The demo's shop (five processes in five runtimes, a deadlock through three of them
    over HTTP): every service's units on its process tracks, the flows between them, the
    deadlock as an instant with its explanation."""
    run = tmp_path / "demo"
    r = wisp("demo", "--out", str(run), "--format", "json")
    assert r.returncode == 0, r.stderr
    t = export(run, tmp_path / "out.pftrace")
    a = analyze_paths([run])
    by_track = check(t, a)
    tracks = [p.track_descriptor for p in t.packet]
    threads = [d.thread.thread_name for d in tracks if d.thread.tid]
    # the Go agent's own goroutines and tokio's internals say whose they are; no kind twice
    agents = [n for n in threads if "willowisp/agents/go/wisp." in n]
    assert agents and all(n.endswith(" [runtime]") for n in agents), agents
    assert not [n for n in threads if n.startswith("task task ")], threads
    names = {
        d.process.process_name for d in [p.track_descriptor for p in t.packet] if d.process.pid
    }
    assert {n.split(" (")[0] for n in names} == {"shop", "inventory", "pricing", "ledger", "risk"}
    [dl] = [
        p.track_event
        for p in t.packet
        if p.track_event.name == "deadlock" and "finding" in p.track_event.categories
    ]
    args = annotations(dl)
    assert args["severity"] == "error"
    story = "\n".join(args["explanation"])  # type: ignore[arg-type]
    assert "cart_lock" in story and "shop" in story and "inventory" in story
    # Flows cross the processes: requests and replies between the services' units.
    proc_of = {d.uuid: d.thread.pid for d in (p.track_descriptor for p in t.packet) if d.thread.tid}
    crossing = 0
    starts = {f: p.track_event.track_uuid for p in t.packet for f in p.track_event.flow_ids}
    for p in t.packet:
        for f in p.track_event.terminating_flow_ids:
            crossing += proc_of.get(starts[f]) != proc_of.get(p.track_event.track_uuid)
    assert crossing >= 2
    # The same edges as the Chrome export draws.
    chrome = chrome_trace(a)["traceEvents"]
    assert len(cause_ids(t)) == sum(1 for e in chrome if e.get("flow_out"))
    # The waits of the cycle are slices: the lock and both HTTP calls.
    waits_named = {
        p.track_event.name
        for ps in by_track.values()
        for p in ps
        if "wait" in p.track_event.categories
    }
    assert "lock cart_lock" in waits_named
    assert sum(1 for n in waits_named if n.startswith("rpc ")) >= 2


def cause_ids(t: Trace) -> list[int]:
    return [f for p in t.packet for f in p.track_event.flow_ids]


def test_hostile_names_and_overlapping_holds(tmp_path: Path) -> None:
    """Markup and a NUL in a thread name come through as data; hand-over-hand holds that
    do not nest get a child track of the thread, so every track's slices nest."""
    program = tmp_path / "hostile.py"
    program.write_text(HOSTILE_PROGRAM)
    run = tmp_path / "run"
    r = wisp("run", "--out", str(run), "--", sys.executable, str(program))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "done"
    t = export(run, tmp_path / "out.pftrace")
    by_track = check(t, analyze_paths([run]))
    descriptors = [p.track_descriptor for p in t.packet if p.HasField("track_descriptor")]
    [worker] = [d for d in descriptors if d.thread.thread_name == f"thread {HOSTILE}"]
    [lane] = [d for d in descriptors if d.parent_uuid == worker.uuid]
    assert lane.name == f"thread {HOSTILE} (overlap 1)"
    holds_on = {
        track: [p.track_event.name for p in by_track[track] if p.track_event.name]
        for track in (worker.uuid, lane.uuid)
    }
    assert "hold lock first" in holds_on[worker.uuid]
    assert "hold lock second" in holds_on[lane.uuid]


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, tmp_path: Path) -> None:
    """Every golden situation exports with the invariants, and the same bytes twice."""
    run = build_run(GOLDEN / case, tmp_path / "run")
    a = analyze_paths([run])
    data = perfetto_trace(a)
    check(parse(data), a)
    assert perfetto_trace(analyze_paths([run])) == data


def test_cli_is_deterministic_and_atomic(tmp_path: Path) -> None:
    """The CLI writes the same bytes for the same input, and leaves no temporary file."""
    run = build_run(GOLDEN / "http_callback", tmp_path / "run")
    one, two = tmp_path / "one.pftrace", tmp_path / "two.pftrace"
    assert main(["export", str(run), "--to", "perfetto", "-o", str(one)]) == 0
    assert main(["export", str(run), "--to", "perfetto", "-o", str(two)]) == 0
    assert one.read_bytes() == two.read_bytes() == perfetto_trace(analyze_paths([run]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.pftrace", "run", "two.pftrace"]


def test_empty_and_unreadable_inputs_exit_2_with_one_line(tmp_path: Path) -> None:
    """An empty folder or a file that is not a trace: exit 2, one line naming it, one saying
    nothing was exported; no output file."""
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk.wtrace"
    junk.write_bytes(b"not a trace\x00\xff" * 10)
    for path in (empty, junk):
        out = tmp_path / f"{path.name}.pftrace"
        r = wisp("export", str(path), "--to", "perfetto", "-o", str(out))
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 2 and str(path) in lines[0], r.stderr
        assert lines[1].startswith("willowisp export: nothing to export"), r.stderr
        assert "Traceback" not in r.stderr
        assert not out.exists()


def test_bad_input_is_named_and_the_rest_exported(tmp_path: Path) -> None:
    """With one good run and one bad file, the good one is still exported (exit 2)."""
    run = build_run(GOLDEN / "http_callback", tmp_path / "run")
    bad = tmp_path / "bad.wtrace"
    bad.write_bytes(b"not a trace")
    out = tmp_path / "out.pftrace"
    r = wisp("export", str(run), str(bad), "--to", "perfetto", "-o", str(out))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "bad.wtrace" in r.stderr
    t = parse(out.read_bytes())
    check(t, analyze_paths([run]))
    assert any(p.track_event.name == "deadlock" for p in t.packet)


def test_strings_are_cut(tmp_path: Path) -> None:
    """With a bound of 12 characters, no name or text from the trace is longer."""
    run = build_run(GOLDEN / "http_callback", tmp_path / "run")
    t = parse(perfetto_trace(analyze_paths([run]), max_str=12))
    texts: list[str] = []
    for p in t.packet:
        d, e = p.track_descriptor, p.track_event
        texts += [d.name, d.process.process_name, d.thread.thread_name]
        if "finding" not in e.categories:  # a finding's name is its kind, not trace text
            texts.append(e.name)
        for x in e.debug_annotations:
            if x.name in FROM_TRACE:
                texts += [x.string_value, *(v.string_value for v in x.array_values)]
    assert max(len(x) for x in texts) == 12
    assert any(x.endswith("…") for x in texts)


def test_effects_are_never_drawn_before_their_causes() -> None:
    """An effect the alignment left before its cause is moved to the cause's time, along a
    chain of edges too, and ranks below its causes at equal times; times in order stay."""
    times = np.array([100, 50, 40, 300, 10], dtype=np.int64)
    src = np.array([0, 1, 3], dtype=np.int64)
    dst = np.array([1, 2, 4], dtype=np.int64)
    moved, rank = _flow_order(times, src, dst)
    assert moved.tolist() == [100, 100, 100, 300, 300]
    assert rank.tolist() == [0, 1, 2, 0, 1]
    assert times.tolist() == [100, 50, 40, 300, 10]
    ordered = np.array([1, 2, 3], dtype=np.int64)
    assert _flow_order(ordered, src[:1], dst[:1])[0].tolist() == [1, 2, 3]


@given(
    name=st.text(max_size=40),
    value=st.one_of(
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.text(max_size=200),
        st.lists(st.text(max_size=20), min_size=1, max_size=5),
    ),
)
def test_annotation_encoding_parses_back(name: str, value: object) -> None:
    """The hand-written wire encoding reads back with protobuf: any text (a lone surrogate
    as '?'), int64 extremes, booleans, string arrays."""
    d = DebugAnnotation()
    d.ParseFromString(_annotation(name, value))  # type: ignore[arg-type]

    def clean(s: str) -> str:
        return s.encode("utf-8", "replace").decode("utf-8")

    assert d.name == clean(name)
    if isinstance(value, bool):
        assert d.bool_value is value
    elif isinstance(value, int):
        assert d.int_value == value
    elif isinstance(value, str):
        assert d.string_value == clean(value)
    else:
        assert [x.string_value for x in d.array_values] == [clean(v) for v in value]
