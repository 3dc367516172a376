"""Chrome trace-event JSON import: sniffing, slices, async, instants, flows, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from willowisp.causality.graph import EdgeKind
from willowisp.causality.link import link
from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.ingest import chrome
from willowisp.ingest.load import build_trace
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K


def doc(events: list[Any], **top: Any) -> bytes:
    return json.dumps({"traceEvents": events, **top}).encode()


def imported(data: bytes) -> tuple[Trace, list[str]]:
    files, notes = chrome.decode("chrome", data, "t.json")
    return build_trace(files, [], notes), notes


def unit_named(trace: Trace, name: str) -> int:
    found = [u.index for u in trace.units if u.name == name]
    assert len(found) == 1, (name, found)
    return found[0]


def parent_name(trace: Trace, u: int) -> str | None:
    p = trace.units[u].parent
    return None if p < 0 else trace.units[p].name


def unit_span(trace: Trace, u: int) -> tuple[int, int]:
    """(start, end) raw times of a unit, from its unit.start and unit.end."""
    ev = trace.events
    mine = ev.unit == u
    start = ev.raw[mine & (ev.kind == K.UNIT_START)]
    end = ev.raw[mine & (ev.kind == K.UNIT_END)]
    return int(start[0]), int(end[0])


def message_edges(trace: Trace) -> set[tuple[str, str]]:
    """(sending unit, receiving unit) names of the graph's MESSAGE edges."""
    g = link(trace).graph
    ev = trace.events
    rows = np.flatnonzero(g.kind == EdgeKind.MESSAGE)
    return {
        (trace.units[ev.unit[g.src[r]]].name, trace.units[ev.unit[g.dst[r]]].name) for r in rows
    }


# -- sniffing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b'{"traceEvents": [{"ph": "X"}]}',
        b'\xef\xbb\xbf  {"displayTimeUnit": "ns", "traceEvents": [',
        b'[{"name": "a", "ph": "B", "ts": 1, "pid": 1, "tid": 1},',
        b'[\n  {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "x"}}',
    ],
)
def test_sniff_accepts_both_chrome_layouts(head: bytes) -> None:
    """Objects with traceEvents and arrays of ph events are Chrome JSON, even unterminated."""
    assert chrome.sniff(head)


@pytest.mark.parametrize(
    "head",
    [
        b'{"resourceSpans": [{"resource": {}}]}',
        b'{"data": [{"traceID": "ab", "spans": []}]}',
        b'[{"traceId": "5b8efff798038103", "id": "d269b633813fc60c", "name": "get"}]',
        b"go 1.22 trace\x00\x00\x00",
        b"FLR\x00\x00\x02",
        b'{"recording": {"events": []}}',
        b'{"traceEvents": 3}',
        b'{"otherData": {"traceEvents": []}, "x": 1}',
        b'{"note": "\\"traceEvents\\": ["}',
        b"",
        b"[]",
        b"not json at all",
    ],
)
def test_sniff_rejects_other_formats(head: bytes) -> None:
    """OTLP, Jaeger, Zipkin, Go, JFR and nested or escaped look-alikes are not claimed."""
    assert not chrome.sniff(head)


def test_registry_picks_chrome_for_an_export() -> None:
    """The importer registry sniffs our module's format by content."""
    from willowisp.ingest import formats

    assert formats.sniff(doc([{"ph": "i", "ts": 1, "pid": 1, "tid": 1, "name": "x"}])) == "chrome"


# -- the mapping ----------------------------------------------------------------------------

EVERY_PHASE: list[dict[str, Any]] = [
    {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "browser", "runtime": "cpp"}},
    {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "renderer"}},
    {"ph": "M", "name": "process_sort_index", "pid": 1, "args": {"sort_index": 2}},
    {"ph": "M", "name": "thread_name", "pid": 1, "tid": 10, "args": {"name": "Main"}},
    {"ph": "M", "name": "thread_name", "pid": 1, "tid": 11, "args": {"name": "IO"}},
    {"ph": "M", "name": "thread_name", "pid": 2, "tid": 20, "args": {"name": "RendererMain"}},
    {"ph": "M", "name": "thread_sort_index", "pid": 2, "tid": 20, "args": {"sort_index": 1}},
    {"ph": "E", "pid": 2, "tid": 21, "ts": 50},  # no B: skipped and counted
    {"ph": "B", "name": "task", "pid": 1, "tid": 10, "ts": 100},
    {"ph": "X", "name": "inner", "pid": 1, "tid": 10, "ts": 110, "dur": 20},
    # flow v1: s in inner (pid 1) -> t in handle (pid 2) -> f (next slice: reply)
    {"ph": "s", "name": "ipc", "cat": "mojo", "id": "0x1F", "pid": 1, "tid": 10, "ts": 115},
    {"ph": "b", "name": "load", "cat": "net", "id": 7, "pid": 1, "tid": 10, "ts": 120},
    {"ph": "b", "name": "load-inner", "cat": "net", "id": 7, "pid": 1, "tid": 10, "ts": 121},
    {"ph": "n", "name": "progress", "cat": "net", "id": 7, "pid": 1, "tid": 10, "ts": 125},
    {"ph": "e", "name": "load-inner", "cat": "net", "id": 7, "pid": 1, "tid": 11, "ts": 126},
    {"ph": "i", "name": "mark", "s": "g", "pid": 1, "tid": 10, "ts": 130},
    {"ph": "C", "name": "counter", "pid": 1, "ts": 130, "args": {"v": 1}},
    {"ph": "i", "name": "finding", "s": "g", "pid": 0, "tid": 0, "ts": 135},  # no such pid
    {"ph": "X", "name": "handle", "pid": 2, "tid": 20, "ts": 140, "dur": 50},
    {"ph": "I", "name": "tick", "pid": 2, "tid": 20, "ts": 145},
    {"ph": "i", "name": "procwide", "s": "p", "pid": 2, "tid": 20, "ts": 146},
    {"ph": "t", "name": "ipc", "cat": "mojo", "id": "0x1f", "pid": 2, "tid": 20, "ts": 150},
    {"ph": "s", "name": "cb", "cat": "x", "id": 5, "pid": 2, "tid": 20, "ts": 160},
    {"ph": "E", "pid": 1, "tid": 10, "ts": 200},
    {"ph": "f", "name": "ipc", "cat": "mojo", "id": "0x1f", "pid": 1, "tid": 11, "ts": 210},
    {"ph": "X", "name": "reply", "pid": 1, "tid": 11, "ts": 230, "dur": 5},
    {"ph": "X", "name": "late", "pid": 1, "tid": 10, "ts": 245, "dur": 15},
    # flow v1 with "bp": "e": the enclosing slice (late), not the next one (after)
    {"ph": "f", "name": "cb", "cat": "x", "id": 5, "bp": "e", "pid": 1, "tid": 10, "ts": 250},
    {"ph": "X", "name": "after", "pid": 1, "tid": 10, "ts": 270, "dur": 5},
    # flow v2
    {"ph": "X", "name": "post", "pid": 2, "tid": 20, "ts": 300, "dur": 5, "bind_id": "0xAB"}
    | {"flow_out": True},
    {"ph": "X", "name": "recv", "pid": 1, "tid": 11, "ts": 310, "dur": 5, "bind_id": "0xab"}
    | {"flow_in": True},
    {"ph": "e", "name": "load", "cat": "net", "id": 7, "pid": 1, "tid": 11, "ts": 400},
    {"ph": "B", "name": "never", "pid": 2, "tid": 20, "ts": 450},
]


def test_every_phase_maps_to_units_nesting_and_edges() -> None:
    """B/E, X, i/I, b/e/n, s/t/f, flow v2 and M become the documented units and edges."""
    trace, notes = imported(doc(EVERY_PHASE))
    procs = {p.service: p for p in trace.processes}
    assert set(procs) == {"browser", "renderer"}  # a global instant makes no process
    assert trace.units[unit_named(trace, "finding")].proc == procs["browser"].index
    assert (procs["browser"].pid, procs["browser"].runtime) == (1, "cpp")
    assert (procs["renderer"].pid, procs["renderer"].runtime) == (2, "")
    threads = {u.name: u for u in trace.units if u.kind == "thread"}
    assert set(threads) == {"Main", "IO", "RendererMain"}
    assert {trace.processes[threads[n].proc].service for n in ("Main", "IO")} == {"browser"}
    expected_parent = {
        "task": "Main",
        "inner": "task",
        "load": "inner",  # an async slice is created by the slice its b is in
        "load-inner": "load",
        "progress": "load-inner",
        "mark": None,  # global instant: a root
        "finding": None,
        "tick": "handle",
        "procwide": None,
        "handle": "RendererMain",
        "reply": "IO",
        "late": "Main",
        "after": "Main",
        "post": "RendererMain",
        "recv": "IO",
        "never": "RendererMain",
    }
    spans = {u.name for u in trace.units if u.kind == "span"}
    assert spans == set(expected_parent)
    for name, parent in expected_parent.items():
        assert parent_name(trace, unit_named(trace, name)) == parent, name
    assert unit_span(trace, unit_named(trace, "task")) == (100_000, 200_000)
    assert unit_span(trace, unit_named(trace, "inner")) == (110_000, 130_000)
    assert unit_span(trace, unit_named(trace, "load")) == (120_000, 400_000)
    assert unit_span(trace, unit_named(trace, "mark")) == (130_000, 130_000)
    assert unit_span(trace, unit_named(trace, "never")) == (450_000, 450_000)  # the last time
    assert message_edges(trace) == {
        ("inner", "handle"),  # s -> t across pids, each bound to its enclosing slice
        ("handle", "reply"),  # t -> f: f binds to the next slice on its thread
        ("handle", "late"),  # bp e: the enclosing slice
        ("post", "recv"),  # flow v2
    }
    c = link(trace)
    assert len(c.clocks.domains) == 1  # one file, one clock
    spawn = int(np.count_nonzero(c.graph.kind == EdgeKind.SPAWN))
    assert spawn == sum(1 for p in expected_parent.values() if p)  # one per created span
    assert sorted(notes) == sorted(
        [
            "t.json: ignored 1 event of phases with no concurrency meaning (C: 1)",
            "t.json: ignored 1 event that matched no other end (E: 1)",
            "t.json: 1 slice never ended; closed at the trace's last time and marked unclosed",
        ]
    )


def test_unclosed_slice_is_marked_on_its_unit_record() -> None:
    """A B with no E ends at the trace's last time and its unit record says unclosed=1."""
    files, _ = chrome.decode(
        "chrome",
        doc(
            [
                {"ph": "B", "name": "open", "pid": 1, "tid": 1, "ts": 5},
                {"ph": "X", "name": "done", "pid": 1, "tid": 2, "ts": 6, "dur": 10},
            ]
        ),
        "t.json",
    )
    records = {r.get("name"): r for r in files[0].chunks[0].records if r.rtype == 2}
    assert records["open"].get("unclosed") == 1
    assert records["done"].get("unclosed") is None
    trace = build_trace(files, [])
    assert unit_span(trace, unit_named(trace, "open")) == (5_000, 16_000)


def test_times_are_exact_nanoseconds() -> None:
    """µs with decimals become ns exactly, half to even; big epoch values keep every digit."""
    data = (
        b'{"traceEvents": ['
        b'{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 1.0005, "dur": 0.0015},'
        b'{"ph": "X", "name": "b", "pid": 1, "tid": 1, "ts": 1700000000123456.789, "dur": 1e-3},'
        b'{"ph": "i", "name": "c", "pid": 1, "tid": 1, "ts": 2.0015}'
        b"]}"
    )
    trace, _ = imported(data)
    assert unit_span(trace, unit_named(trace, "a")) == (1_000, 1_002)
    b = unit_span(trace, unit_named(trace, "b"))
    assert b == (1_700_000_000_123_456_789, 1_700_000_000_123_456_790)
    assert unit_span(trace, unit_named(trace, "c"))[0] == 2_002


def test_array_format_without_closing_bracket() -> None:
    """The JSON Array Format may end with a comma and no ']': every event is read, no note."""
    data = b'[{"ph": "B", "name": "x", "pid": 3, "tid": 4, "ts": 1},\n'
    data += b'{"ph": "E", "pid": 3, "tid": 4, "ts": 2},\n'
    trace, notes = imported(data)
    assert notes == []
    assert unit_span(trace, unit_named(trace, "x")) == (1_000, 2_000)


def test_flow_v2_in_before_out_still_pairs() -> None:
    """A flow_in earlier than its flow_out (rounded or skewed times) still makes the edge."""
    trace, notes = imported(
        doc(
            [
                {"ph": "X", "name": "dst", "pid": 1, "tid": 1, "ts": 10, "dur": 0}
                | {"bind_id": 9, "flow_in": True},
                {"ph": "X", "name": "src", "pid": 2, "tid": 1, "ts": 11, "dur": 0}
                | {"bind_id": 9, "flow_out": True},
            ]
        )
    )
    assert message_edges(trace) == {("src", "dst")}
    assert notes == []


def test_reused_flow_ids_stay_distinct_edges() -> None:
    """Two flows with one id, one after the other, are two edges, never an ambiguous pair."""
    events = []
    for k, (a, b) in enumerate([("a1", "b1"), ("a2", "b2")]):
        t = 100 * k
        events += [
            {"ph": "X", "name": a, "pid": 1, "tid": 1, "ts": t, "dur": 5}
            | {"bind_id": "0x1", "flow_out": True},
            {"ph": "X", "name": b, "pid": 2, "tid": 1, "ts": t + 10, "dur": 5}
            | {"bind_id": "0x1", "flow_in": True},
        ]
    trace, _ = imported(doc(events))
    assert message_edges(trace) == {("a1", "b1"), ("a2", "b2")}


# -- round trip through a real recorded run -------------------------------------------------

HANDOFF = textwrap.dedent(
    """
    import threading
    lock = threading.Lock()
    ready = threading.Event()
    def worker():
        ready.set()
        with lock:
            pass
    lock.acquire()
    t = threading.Thread(target=worker, name="handoff-worker")
    t.start()
    ready.wait()
    lock.release()
    t.join()
    """
)


def test_export_of_a_recorded_run_imports_back(tmp_path: Path) -> None:
    """`willowisp export --to chrome` of a real run: units, labels and every flow survive."""
    prog = tmp_path / "handoff.py"
    prog.write_text(HANDOFF)
    run, out = tmp_path / "run", tmp_path / "out.json"
    wisp = [sys.executable, "-m", "willowisp"]
    subprocess.run(
        [*wisp, "run", "--out", str(run), "--", sys.executable, str(prog)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*wisp, "export", str(run), "--to", "chrome", "-o", str(out)],
        check=True,
        capture_output=True,
    )
    original = build_trace(*_read_run(run))
    exported = json.loads(out.read_text())
    trace, _ = imported(out.read_bytes())
    # processes and their labels
    assert [(p.service, p.pid, p.host) for p in trace.processes] == [
        (p.service, p.pid, p.host) for p in original.processes
    ]
    # every unit of the run is a unit again, with its kind and name
    want = {(u.kind, u.name) for u in original.units}
    assert {("thread", "MainThread"), ("thread", "handoff-worker")} <= want
    got = {(u.kind, u.name) for u in trace.units if u.parent < 0}
    assert want <= got
    # every flow of the export is a MESSAGE edge between the two tracks it joins
    tracks = {}  # (pid, tid) -> thread name, from the export's metadata
    for e in exported["traceEvents"]:
        if e["ph"] == "M" and e["name"] == "thread_name":
            tracks[e["pid"], e["tid"]] = e["args"]["name"].split(" ", 1)[1]
    flows: dict[str, dict[str, str]] = {}
    for e in exported["traceEvents"]:
        if "bind_id" in e:
            side = "out" if e.get("flow_out") else "in"
            flows.setdefault(e["bind_id"], {})[side] = tracks[e["pid"], e["tid"]]
    assert len(flows) >= 3  # spawn, notify, lock and join edges of the handoff
    edges = _edges_by_thread(trace)
    for bind, ends in flows.items():
        assert (ends["out"], ends["in"]) in edges[bind], bind


def _read_run(run: Path) -> tuple[list[Any], list[Any]]:
    from willowisp.ingest.files import discover, read_all

    files, _ = discover([run])
    parsed, bad = read_all(files)
    return parsed, bad


def _edges_by_thread(trace: Trace) -> dict[str, set[tuple[str, str]]]:
    """Flow id -> (sending thread, receiving thread) of the MESSAGE edges with that id."""

    def thread_of(u: int) -> str:
        while trace.units[u].parent >= 0:
            u = trace.units[u].parent
        return trace.units[u].name

    g = link(trace).graph
    ev = trace.events
    out: dict[str, set[tuple[str, str]]] = {}
    for r in np.flatnonzero(g.kind == EdgeKind.MESSAGE).tolist():
        s, d = int(g.src[r]), int(g.dst[r])
        res = trace.resources[int(ev.res[s])]
        flow_id = str(dict(res.attrs)["message_id"]).split("@")[0].split("#")[0]
        out.setdefault(flow_id, set()).add((thread_of(int(ev.unit[s])), thread_of(int(ev.unit[d]))))
    return out


# -- hostile and bad input ------------------------------------------------------------------


def test_hostile_strings_survive_as_data() -> None:
    """Markup, NUL, control characters and huge strings are names, not code or errors."""
    script = "<script>alert('x')</script>"
    nul = "a\x00b\x1b[31mred\u202e"
    huge = "h" * (chrome.MAX_STR + 10)
    trace, notes = imported(
        doc(
            [
                {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": script}},
                {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": nul}},
                {"ph": "X", "name": script, "cat": nul, "pid": 1, "tid": 1, "ts": 1, "dur": 1},
                {"ph": "X", "name": huge, "pid": 1, "tid": 1, "ts": 3, "dur": 1},
                {"ph": "X", "name": nul, "pid": 1, "tid": 1, "ts": 5, "dur": 1}
                | {"bind_id": huge[:200], "flow_out": True},
                {"ph": "X", "name": "in", "pid": 1, "tid": 2, "ts": 6, "dur": 1}
                | {"bind_id": huge[:200], "flow_in": True},
            ]
        )
    )
    assert notes == []
    assert trace.processes[0].service == script
    names = [u.name for u in trace.units]
    assert nul in names
    assert script in names
    cut = huge[: chrome.MAX_STR - 1] + "…"
    assert cut in names
    assert message_edges(trace) == {(nul, "in")}


def test_malformed_events_are_skipped_with_one_note() -> None:
    """Wrong types in fields skip that event only; one note counts them and names the first."""
    good: Any = {"ph": "X", "name": "ok", "pid": 1, "tid": 1, "ts": 1, "dur": 1}
    bad: list[Any] = [
        {"ph": "X", "name": "no-dur", "pid": 1, "tid": 1, "ts": 1},
        {"ph": "B", "name": 7, "pid": 1, "tid": 1, "ts": 1},
        {"ph": "B", "name": "x", "pid": [1], "tid": 1, "ts": 1},
        {"ph": "B", "name": "x", "pid": 1, "tid": 1, "ts": "soon"},
        {"ph": "B", "name": "x", "pid": 1, "tid": 1, "ts": -1},
        {"ph": "i", "name": "x", "pid": 1, "tid": 1, "ts": 1, "s": "q"},
        {"ph": "b", "name": "x", "pid": 1, "tid": 1, "ts": 1},
        {"ph": 4},
        "not an event",
        None,
    ]
    trace, notes = imported(doc([good, *bad]))
    assert [u.name for u in trace.units if u.kind == "span"] == ["ok"]
    assert len(notes) == 1
    assert notes[0].startswith("t.json: 10 of 11 events skipped as malformed (first: event 1: ")
    assert "dur" in notes[0]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "the file is empty"),
        (b"[", "no complete event"),
        (b"\xff\xfe{", "not UTF-8"),
        (b'{"traceEvents": []}', "no usable"),
        (
            b'{"traceEvents": [{"ph": 1}, 7]}',
            "no usable Chrome trace event: 2 of 2 events skipped as malformed (first: event 0",
        ),
        (b'{"traceEvents": [{"ph": "C", "pid": 1, "ts": 1}]}', "only phases with no concurr"),
        (b'{"resourceSpans": []}', "traceEvents"),
        (b'"just a string"', "found str"),
        (b'{"traceEvents": [{"ph": "B", "ts', "no complete event"),
    ],
)
def test_nothing_usable_is_one_format_error(data: bytes, says: str) -> None:
    """A file with no usable event raises one TraceFormatError that says why, without the
    file's name: the caller puts it in front (it was printed twice)."""
    with pytest.raises(TraceFormatError, match=None) as info:
        chrome.decode("chrome", data, "bad.json")
    assert says in str(info.value)
    assert "bad.json" not in str(info.value)


def test_truncated_file_keeps_the_complete_events() -> None:
    """A file cut inside an event imports the events before the cut and says so."""
    full = doc(
        [{"ph": "X", "name": f"s{i}", "pid": 1, "tid": 1, "ts": i, "dur": 1} for i in range(5)]
    )
    cut = full[: full.index(b'"s3"')]
    trace, notes = imported(cut)
    assert sorted(u.name for u in trace.units if u.kind == "span") == ["s0", "s1", "s2"]
    assert len(notes) == 1
    assert "truncated" in notes[0]
    assert "3 complete events" in notes[0]


def test_event_count_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """More events than the bound is one TraceLimitError, in both parsing paths."""
    from willowisp.ingest import chrome_json

    monkeypatch.setattr(chrome_json, "MAX_EVENTS", 3)
    events = [{"ph": "i", "name": "x", "pid": 1, "tid": 1, "ts": i} for i in range(5)]
    with pytest.raises(TraceLimitError):
        chrome.decode("chrome", doc(events), "big.json")
    with pytest.raises(TraceLimitError):
        chrome.decode("chrome", doc(events)[:-3], "big.json")  # the salvage path


def test_wrong_stored_format_is_refused() -> None:
    with pytest.raises(TraceFormatError):
        chrome.decode("otlp-json", doc([]), "x.json")


# -- fuzzing --------------------------------------------------------------------------------

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_FIELDS = ["ph", "ts", "dur", "pid", "tid", "name", "cat", "id", "id2", "s", "bp", "args"]
_FIELDS += ["bind_id", "flow_in", "flow_out"]


@st.composite
def _events(draw: st.DrawFn) -> list[Any]:
    """Valid events of every phase, some with one field replaced by a random value."""
    out: list[Any] = []
    for _ in range(draw(st.integers(0, 12))):
        ph = draw(st.sampled_from(list("BEXiIbensftMCP")))
        ev: dict[str, Any] = {"ph": ph, "name": "n", "pid": draw(st.integers(1, 3))}
        ev |= {"tid": draw(st.integers(1, 3)), "ts": draw(st.integers(0, 50)), "cat": "c"}
        ev |= {"dur": draw(st.integers(0, 9)), "id": draw(st.integers(0, 2))}
        if ph == "M":
            ev |= {"name": "thread_name", "args": {"name": "t"}}
        if ph in "BX" and draw(st.booleans()):
            ev |= {
                "bind_id": draw(st.integers(0, 2)),
                draw(st.sampled_from(["flow_in", "flow_out"])): True,
            }
        if draw(st.integers(0, 3)) == 0:
            ev[draw(st.sampled_from(_FIELDS))] = draw(_VALUES)
        out.append(ev if draw(st.integers(0, 9)) else draw(_VALUES))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events(), st.integers(0, 4000), st.booleans())
def test_fuzz_events_import_or_one_clear_error(events: list[Any], cut: int, array: bool) -> None:
    """Random phases, wrong types and truncation: the good events import, the skipped ones
    are counted in at most one note, or there is one TraceFormatError; never a traceback."""
    data = json.dumps(events if array else {"traceEvents": events}).encode()
    if cut % 3 == 0:
        data = data[: cut % (len(data) + 1)]
    try:
        files, notes = chrome.decode("chrome", data, "f.json")
    except TraceFormatError as exc:
        assert not str(exc).startswith("f.json")  # the caller names the file
        return
    assert sum("skipped as malformed" in n for n in notes) <= 1
    trace = build_trace(files, [], notes)
    assert trace.unreadable == []
    link(trace)  # the imported trace goes through linking without error


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_raise_only_the_format_error(data: bytes) -> None:
    """Arbitrary bytes give files or a TraceFormatError, and sniffing never raises."""
    chrome.sniff(data)
    try:
        chrome.decode("chrome", data, "f.json")
    except TraceFormatError:
        pass


def test_async_ids_scopes_and_legacy_phases() -> None:
    """Legacy S/T/F pair like b/n/e; plain ids and id2.local are per pid, id2.global is not."""
    trace, notes = imported(
        doc(
            [
                {"ph": "S", "name": "legacy", "cat": "a", "id": 1, "pid": 1, "tid": 1, "ts": 1},
                {"ph": "T", "name": "step", "cat": "a", "id": 1, "pid": 1, "tid": 1, "ts": 2},
                {"ph": "F", "name": "legacy", "cat": "a", "id": 1, "pid": 1, "tid": 1, "ts": 3},
                # the same plain id in another pid is another slice: this e closes nothing
                {"ph": "b", "name": "p1", "cat": "a", "id": 2, "pid": 1, "tid": 1, "ts": 4},
                {"ph": "e", "name": "p1", "cat": "a", "id": 2, "pid": 2, "tid": 1, "ts": 5},
                {"ph": "e", "name": "p1", "cat": "a", "id": 2, "pid": 1, "tid": 1, "ts": 6},
                # id2.global pairs across pids
                {"ph": "b", "name": "g", "cat": "a", "id2": {"global": "0xA"}, "pid": 1}
                | {"tid": 1, "ts": 7},
                {"ph": "e", "name": "g", "cat": "a", "id2": {"global": "0xa"}, "pid": 2}
                | {"tid": 1, "ts": 9},
            ]
        )
    )
    assert unit_span(trace, unit_named(trace, "legacy")) == (1_000, 3_000)
    assert parent_name(trace, unit_named(trace, "step")) == "legacy"
    assert unit_span(trace, unit_named(trace, "p1")) == (4_000, 6_000)
    assert unit_span(trace, unit_named(trace, "g")) == (7_000, 9_000)
    assert notes == ["t.json: ignored 1 event that matched no other end (e: 1)"]


def test_string_pids_and_tids_are_tracks_too() -> None:
    """Some producers name tracks with strings: each is its own process or thread."""
    trace, _ = imported(
        doc(
            [
                {"ph": "X", "name": "a", "pid": "GPU", "tid": "queue", "ts": 1, "dur": 1},
                {"ph": "X", "name": "b", "pid": "CPU", "tid": "queue", "ts": 1, "dur": 1},
            ]
        )
    )
    assert [p.pid for p in trace.processes] == [0, 0]
    assert len({p.id for p in trace.processes}) == 2
    assert sorted(u.name for u in trace.units if u.kind == "thread") == ["tid queue"] * 2


def test_two_files_with_the_same_flow_ids_link_separately() -> None:
    """Flow ids are per file: two files using id 1 each get their own edge, none ambiguous."""
    files, notes = [], []
    for tag in ("one", "two"):
        data = doc(
            [
                {"ph": "X", "name": f"{tag}-out", "pid": 1, "tid": 1, "ts": 1, "dur": 1}
                | {"bind_id": 1, "flow_out": True},
                {"ph": "X", "name": f"{tag}-in", "pid": 2, "tid": 1, "ts": 5, "dur": 1}
                | {"bind_id": 1, "flow_in": True},
            ]
        )
        more, n = chrome.decode("chrome", data, f"{tag}.json")
        files += more
        notes += n
    trace = build_trace(files, [], notes)
    assert message_edges(trace) == {("one-out", "one-in"), ("two-out", "two-in")}
    assert len(link(trace).clocks.domains) == 2  # one clock per file


def test_analyze_cli_reads_a_chrome_file(tmp_path: Path) -> None:
    """`willowisp analyze trace.json` sniffs the file and shows its process and units."""
    path = tmp_path / "trace.json"
    path.write_bytes(
        json.dumps(
            [
                {"ph": "M", "name": "process_name", "pid": 7, "args": {"name": "svc"}},
                {"ph": "X", "name": "a", "pid": 7, "tid": 1, "ts": 1, "dur": 5},
                {"ph": "B", "name": "b", "pid": 7, "tid": 2, "ts": 2},
                {"ph": "E", "pid": 7, "tid": 2, "ts": 9},
            ]
        ).encode()
    )
    out = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(path), "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout)
    assert result["trace"]["units"] == 4
    assert [(p["service"], p["pid"]) for p in result["processes"]] == [("svc", 7)]
