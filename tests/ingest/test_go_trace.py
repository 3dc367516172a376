"""Go execution traces: real Go programs trace themselves; the traces import, link and analyze."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from willowisp.analysis.engine import analyze
from willowisp.causality.graph import EdgeKind
from willowisp.causality.link import link
from willowisp.errors import TraceFormatError
from willowisp.ingest import go_helper, go_trace
from willowisp.ingest.go_decoder import AGENT_LOC_BASE, AGENT_RES_BASE, AGENT_SEQ_BASE, Decoder
from willowisp.ingest.load import build_trace
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K, Outcome, Reason
from willowisp.wtrace.payload import Record
from willowisp.wtrace.reader import Chunk, TraceFile

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs" / "go"
CACHE = ROOT / ".cache" / "go-programs"
GO = shutil.which("go") or "go"


def _go_version() -> str:
    done = subprocess.run([GO, "version"], capture_output=True, check=True, timeout=60)
    return done.stdout.decode()


def built(program: str) -> Path:
    """``programs/go/<program>`` built with this machine's Go, cached by content."""
    source = PROGRAMS / program / "main.go"
    digest = hashlib.sha256(source.read_bytes() + _go_version().encode()).hexdigest()[:16]
    out = CACHE / f"{program}-{digest}"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = CACHE / f".tmp-{program}-{digest}-{os.getpid()}"
        subprocess.run(
            [GO, "build", "-o", str(tmp), str(source)],
            check=True,
            timeout=300,
            env={**os.environ, "GO111MODULE": "off"},
        )
        os.replace(tmp, out)
    return out


def traced(program: str, tmp_path: Path, name: str = "trace.out") -> Path:
    """Run the program, which writes its own execution trace to the path it is given."""
    out = tmp_path / name
    subprocess.run([str(built(program)), str(out)], check=True, timeout=120)
    assert out.stat().st_size > 16
    return out


def line_of(program: str, marker: str) -> int:
    """The line of the program's source holding ``marker`` (once)."""
    lines = (PROGRAMS / program / "main.go").read_text().splitlines()
    hits = [i for i, text in enumerate(lines, 1) if marker in text]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


@pytest.fixture(scope="session")
def helper() -> str:
    """The helper exactly as a user gets it: found or built into ~/.cache/willowisp/bin."""
    return go_helper.find_helper()


def imported(path: Path) -> tuple[Trace, list[str]]:
    stored, data = go_trace.prepare(path.read_bytes(), str(path))
    files, notes = go_trace.decode(stored, data, str(path))
    return build_trace(files, [], notes), notes


def unit_named(trace: Trace, prefix: str) -> int:
    hits = [u.index for u in trace.units if u.name.startswith(prefix + " #")]
    assert len(hits) == 1, (prefix, [u.name for u in trace.units])
    return hits[0]


def events_of(trace: Trace, u: int, kind: int) -> np.ndarray:
    ev = trace.events
    return np.flatnonzero((ev.unit == u) & (ev.kind == kind))


def where(trace: Trace, i: int) -> str:
    loc = int(trace.events.loc[i])
    return trace.locations[loc].where() if loc >= 0 else ""


# -- sniffing ---------------------------------------------------------------------------


def test_sniff_by_content() -> None:
    """A Go trace header is claimed; JSON, .wtrace and prose about Go are not."""
    assert go_trace.sniff(b"go 1.26 trace\x00\x00\x00\x01\x02")
    assert go_trace.sniff(b"go 1.19 trace\x00\x00\x00")
    assert not go_trace.sniff(b'{"resourceSpans": []}')
    assert not go_trace.sniff(b"go 1.26 traces are nice\n")
    assert not go_trace.sniff(b"WTRACE\x00\x01")


# -- a real trace: creation, blocking, who woke whom ---------------------------------


def test_handoff_imports_blocks_and_who_woke_whom(tmp_path: Path, helper: str) -> None:
    """A mutex handed from main to a parked goroutine and a channel ping-pong import with
    their creators, wait reasons, places, and waker -> wakee happens-before edges."""
    trace, notes = imported(traced("handoff", tmp_path))
    assert not [n for n in notes if "skipped" in n], notes
    proc = trace.processes[0]
    assert (proc.runtime, dict(proc.attrs)["imported"], dict(proc.attrs)["complete"]) == (
        "go",
        "go",
        1,
    )
    main = unit_named(trace, "main.main")
    locker = unit_named(trace, "main.locker")
    pinger = unit_named(trace, "main.pinger")
    ponger = unit_named(trace, "main.ponger")
    assert {trace.units[u].kind for u in (main, locker, pinger, ponger)} == {"goroutine"}
    for child in (locker, pinger, ponger):
        assert trace.units[child].parent == main
        create = events_of(trace, main, K.UNIT_CREATE)
        assert int(trace.units[child].number) in trace.events.arg[create].tolist()
    assert trace.locations[trace.units[locker].loc].where() == (
        f"main.go:{line_of('handoff', 'go locker(&mu, done)')}"
    )

    # The locker parks on the mutex main holds; main's unlock wakes it.
    ev = trace.events
    blocks = events_of(trace, locker, K.UNIT_BLOCK)
    first = int(blocks[0])
    res = trace.resources[int(ev.res[first])]
    assert (res.kind, res.name, int(ev.arg[first])) == ("lock", "sync.Mutex", Reason.ACQUIRE)
    assert where(trace, first) == f"main.go:{line_of('handoff', 'mu.Lock() // blocks')}"
    wake = int(events_of(trace, locker, K.UNIT_WAKE)[0])
    assert (int(ev.res[wake]), int(ev.arg[wake])) == (int(ev.res[first]), Outcome.OK)
    notify = np.flatnonzero((ev.kind == K.SYNC_NOTIFY) & (ev.res == ev.res[first]))
    assert [int(ev.unit[i]) for i in notify] == [main]
    assert where(trace, int(notify[0])) == f"main.go:{line_of('handoff', 'mu.Unlock() // hands')}"

    graph = link(trace).graph
    edges = {
        (int(ev.unit[s]), int(ev.unit[d]))
        for s, d, k in zip(graph.src, graph.dst, graph.kind, strict=True)
        if k == EdgeKind.NOTIFY
    }
    assert (main, locker) in edges  # the unlock happened before the locker went on
    assert (pinger, ponger) in edges and (ponger, pinger) in edges  # the ping-pong

    # The ponger waits to receive at its range loop, and is woken by the pinger's send.
    recv = [int(i) for i in events_of(trace, ponger, K.UNIT_BLOCK)]
    kinds = {(trace.resources[int(ev.res[i])].kind, int(ev.arg[i])) for i in recv}
    assert kinds == {("channel", Reason.GET)}
    assert {where(trace, i) for i in recv} == {
        f"main.go:{line_of('handoff', 'for v := range ping')}"
    }
    # Every goroutine's life is whole: start before anything, an end for those that ended.
    assert len(events_of(trace, locker, K.UNIT_END)) == 1
    assert len(events_of(trace, locker, K.UNIT_START)) == 1
    assert not [f for f in analyze(trace).findings if f.kind in ("deadlock", "leak")]


def test_mutex_waits_are_acquisitions_with_unknown_holds(tmp_path: Path, helper: str) -> None:
    """Goroutines queued on a sync.Mutex each got it after waiting: contended waits with
    their lengths, holds unknown, none "gave up" (the trace has no acquisitions)."""
    trace, _ = imported(traced("mutexqueue", tmp_path))
    place = f"main.go:{line_of('mutexqueue', 'acct.mu.Lock() // waits')}"
    doc = analyze(trace).document()
    [entry] = [
        c
        for c in doc["contention"]
        if c["resource"] == {"kind": "lock", "name": "sync.Mutex", "where": place}
    ]
    assert entry["gave_up"] == 0 and entry["still_waiting"] == 0
    waits = entry["contended"]
    assert waits >= 4 and entry["acquired_unseen"] == waits == entry["acquisitions"]
    assert (entry["hold_ns"], entry["held_at_end"], entry["convoys"]) == (None, 0, 0)
    assert entry["waiters"] == entry["holders"] == 4
    # each worker holds it 2 ms, so the three behind the first wait at least 2, 4 and 6 ms
    assert entry["wait_ns"]["total"] >= 12_000_000
    assert 0 < entry["wait_ns"]["p50"] <= entry["wait_ns"]["p99"] <= entry["wait_ns"]["max"]
    [finding] = [f for f in doc["findings"] if f["id"] == entry["finding"]]
    assert "gave up" not in finding["summary"] + " ".join(finding["explanation"])
    assert "holds unknown" in finding["summary"]


# -- the channel deadlock --------------------------------------------------------------


def analyze_cli(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(path), *extra],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_channel_deadlock_found_by_analyze(tmp_path: Path, helper: str) -> None:
    """`analyze trace.out` finds the every-goroutine-asleep deadlock, naming both goroutines
    and main with their channel waits at the right lines; the id is the same in every run."""
    ids = []
    for run in ("one", "two"):
        done = analyze_cli(traced("chandeadlock", tmp_path, f"{run}.out"), "--format", "json")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        found = [f for f in doc["findings"] if f["kind"] == "deadlock"]
        assert len(found) == 1, doc["findings"]
        f = found[0]
        ids.append(f["id"])
        assert f["severity"] == "error"
        names = sorted(u["name"].split(" #")[0] for u in f["units"])
        assert names == ["main.left", "main.main", "main.right"]
        assert {u["kind"] for u in f["units"]} == {"goroutine"}
        assert {u["runtime"] for u in f["units"]} == {"go"}
        expected = {
            ("channel", "chan receive", f"main.go:{line_of('chandeadlock', m)}")
            for m in ("// left waits here", "// right waits here", "// main waits here")
        }
        assert {(r["kind"], r["name"], r["where"]) for r in f["resources"]} == expected
        story = "\n".join(f["explanation"])
        for marker, name in (("left", "main.left"), ("right", "main.right")):
            line = line_of("chandeadlock", f"// {marker} waits here")
            assert f"{name} #" in story and f"main.go:{line}" in story
        assert "every goroutine asleep" in story
        assert not [x for x in doc["findings"] if x["kind"] == "leak"]
    assert ids[0] == ids[1]


def test_stuck_needs_proof_of_completeness(tmp_path: Path, helper: str) -> None:
    """The same hang is not judged without the completeness claim, nor when a unit that was
    still running (the one that stopped the trace) is counted as able to wake the others; a
    single goroutine asleep is a leak."""
    path = traced("chandeadlock", tmp_path)
    stored, data = go_trace.prepare(path.read_bytes(), str(path))
    (tf,), _ = go_trace.decode(stored, data, str(path))

    def with_process(**change: Any) -> Trace:
        chunk = tf.chunks[0]
        recs = [
            Record(r.rtype, r.id, tuple((k, change.get(k, v)) for k, v in r.attrs))
            if r.rtype == 1
            else r
            for r in chunk.records
        ]
        new = TraceFile(tf.path, tf.major, tf.minor, [Chunk(0, 0, recs, chunk.events)])
        return build_trace([new], [])

    def stuck(trace: Trace) -> list[str]:
        return [f.kind for f in analyze(trace).findings if f.kind in ("deadlock", "leak")]

    assert stuck(with_process()) == ["deadlock"]
    assert stuck(with_process(complete=0)) == []
    # The time.AfterFunc goroutine ran trace.Stop: set aside as the stopper. Counted as a
    # live goroutine instead, it could wake the others, so nothing is reported.
    units = str(dict(tf.chunks[0].records[0].attrs)["runtime_units"]).split(",")
    (stopper,) = [
        str(r.id)
        for r in tf.chunks[0].records
        if r.rtype == 2 and str(dict(r.attrs)["name"]).startswith("main.main.func1 #")
    ]
    assert stopper in units
    assert stuck(with_process(runtime_units=",".join(u for u in units if u != stopper))) == []
    # Only main left asleep (the other two set aside): one goroutine is a leak, not a cycle.
    others = [
        str(r.id)
        for r in tf.chunks[0].records
        if r.rtype == 2 and str(dict(r.attrs)["name"]).startswith(("main.left #", "main.right #"))
    ]
    assert stuck(with_process(runtime_units=",".join([*units, *others]))) == ["leak"]


# -- bad input -------------------------------------------------------------------------


def test_garbage_and_truncated_traces_are_one_clear_error(tmp_path: Path, helper: str) -> None:
    """A file that starts like a Go trace but is garbage, or a real one cut in half: exit 2,
    one line naming the file, no traceback."""
    garbage = tmp_path / "garbage.out"
    garbage.write_bytes(b"go 1.26 trace\x00\x00\x00" + bytes(range(256)) * 4)
    real = traced("handoff", tmp_path).read_bytes()
    cut = tmp_path / "cut.out"
    cut.write_bytes(real[: len(real) // 2])
    for bad in (garbage, cut):
        done = analyze_cli(bad)
        assert done.returncode == 2, (bad, done.stdout, done.stderr)
        err = done.stderr.strip().splitlines()
        assert len(err) == 1 and str(bad) in err[0], done.stderr
        assert "Traceback" not in done.stderr
        assert "Go execution trace" in err[0]


def test_helper_refuses_non_traces_with_one_line(tmp_path: Path, helper: str) -> None:
    """The helper itself: exit 2 and one stderr line naming the file for non-traces."""
    f = tmp_path / "notes.txt"
    f.write_text("hello\n")
    done = subprocess.run([helper, str(f)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and str(f) in done.stderr
    with pytest.raises(TraceFormatError, match="not a Go execution trace"):
        go_trace.prepare(b"go 1.26 traceXXXX not really", str(f))


def test_missing_helper_says_how_to_get_it(tmp_path: Path) -> None:
    """No helper, no Go toolchain: one error line with the fix; a bad WILLOWISP_GOIMPORT is
    named."""
    code = (
        "from willowisp.ingest import go_helper\n"
        "from willowisp.errors import TraceFormatError\n"
        "try:\n    go_helper.find_helper()\nexcept TraceFormatError as e:\n    print(e)\n"
    )
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == go_helper.INSTALL_HINT, done.stderr
    env["WILLOWISP_GOIMPORT"] = str(tmp_path / "nope")
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "WILLOWISP_GOIMPORT=" in done.stdout and "not an executable" in done.stdout


def test_bad_stream_lines_are_skipped_and_counted(tmp_path: Path, helper: str) -> None:
    """Damaged lines in a stored stream are skipped with a note; the rest still import."""
    path = traced("handoff", tmp_path)
    stored, data = go_trace.prepare(path.read_bytes(), str(path))
    lines = data.split(b"\n")
    lines.insert(3, b"{not json")
    lines.insert(5, b'{"t":"block","time":-4,"g":1}')
    files, notes = go_trace.decode(stored, b"\n".join(lines), str(path))
    assert any("2 of " in n and "Go stream lines skipped" in n for n in notes), notes
    trace = build_trace(files, [])
    assert unit_named(trace, "main.locker") >= 0
    with pytest.raises(TraceFormatError, match="not a wisp-goimport event stream"):
        go_trace.decode(stored, b'{"t":"block"}\n', "x")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_decode_fuzz_raises_only_format_errors(blob: bytes) -> None:
    """Arbitrary stored bytes give processes or a TraceFormatError, nothing else."""
    for data in (blob, b'{"t":"header","format":1}\n' + blob):
        try:
            go_trace.decode("go-events", data, "fuzz")
        except TraceFormatError:
            pass


_FIELDS = ("time", "g", "by", "fn", "at", "start", "reason", "stack", "stk", "id", "locs", "func")
_FIELDS += ("file", "line", "phase", "trace", "wall", "sys", "state", "stopper", "complete")
_VALUES = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.integers(min_value=0, max_value=5),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(min_value=-2, max_value=6), max_size=4),
)
_LINES = st.lists(
    st.builds(
        lambda t, rest: {"t": t, **rest},
        st.sampled_from(["loc", "stack", "sync", "create", "exist", "run", "stop", "block"])
        | st.sampled_from(["unblock", "end", "gc", "stw", "task", "region", "log", "live"])
        | st.sampled_from(["summary", "header", "other"]),
        st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=6),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_LINES)
def test_decode_fuzz_stream_lines(lines: list[dict[str, Any]]) -> None:
    """Well-formed JSON lines with wrong types and values: skipped or imported, and what is
    imported loads; never another exception."""
    data = "\n".join(json.dumps(x) for x in [{"t": "header", "format": 1}, *lines])
    try:
        files, _ = go_trace.decode("go-events", data.encode(), "fuzz")
    except TraceFormatError:
        return
    build_trace(files, [])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_helper_fuzz_raises_only_format_errors(helper: str, blob: bytes) -> None:
    """Arbitrary bytes after a Go trace header: the helper refuses them cleanly."""
    try:
        go_trace.prepare(b"go 1.26 trace\x00\x00\x00" + blob, "fuzz")
    except TraceFormatError:
        pass


def test_go_helper_unit_tests() -> None:
    """agents/go's own tests pass (`go test ./...`): the helper traces itself in-process."""
    done = subprocess.run(
        [GO, "test", "./..."],
        check=False,
        cwd=ROOT / "agents" / "go",
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_agent_lock_events_take_the_place_of_their_log() -> None:
    """Agent mode: a "wisp" log's event (a lock's block / acquired / release) is placed where
    wisp-goimport says the program called into the agent (its "at"); an event that names its
    own location keeps it, and an "at" that names no known place gives none."""
    d = Decoder(
        "x",
        agent_process="0" * 32,
        unit_base=1,
        res_base=AGENT_RES_BASE,
        loc_base=AGENT_LOC_BASE,
        first_seq=AGENT_SEQ_BASE,
    )
    lines = [
        {"t": "header", "format": 1},
        {"t": "loc", "id": 1, "func": "main.transfer", "file": "/src/main.go", "line": 24},
        {"t": "exist", "time": 1, "g": 7, "fn": "main.transfer", "state": "running"},
        {"t": "log", "time": 2, "g": 7, "task": 0, "cat": "wisp", "msg": "4 3 1", "at": 1},
        {"t": "log", "time": 3, "g": 7, "task": 0, "cat": "wisp", "msg": "10 3 0", "at": 1},
        {"t": "log", "time": 4, "g": 7, "task": 0, "cat": "wisp", "msg": "11 3 0", "at": 9},
        {"t": "log", "time": 5, "g": 7, "task": 0, "cat": "wisp", "msg": "17 4 1 5", "at": 1},
        {"t": "summary", "complete": True},
    ]
    data = "\n".join(json.dumps(x) for x in lines).encode()
    go_trace._decode_events(data, "x", d)
    rows = np.array(d.rows).reshape(-1, 6)  # kind, unit, time, res, arg, loc
    placed = {int(r[0]): int(r[5]) for r in rows if int(r[0]) in (4, 10, 11, 17)}
    assert placed == {
        int(K.UNIT_BLOCK): AGENT_LOC_BASE + 1,
        int(K.LOCK_ACQUIRED): AGENT_LOC_BASE + 1,
        int(K.LOCK_RELEASE): 0,
        int(K.DATA_ACCESS): 5,
    }
    assert d.locs[1] == ("main.transfer", "/src/main.go", 24)


def test_runtime_goroutines_scheduling_is_counted_not_written(tmp_path: Path, helper: str) -> None:
    """The runtime's own goroutines (GC workers, the sweeper) are scheduled constantly and
    their run/yield events would swamp a short trace: they are left out and counted in the
    process record; the program's goroutines keep theirs, and every unit keeps its start."""
    trace, _ = imported(traced("gcchurn", tmp_path))
    (p,) = trace.processes
    attrs = dict(p.attrs)
    runtime_own = {int(x) for x in str(attrs["runtime_units"]).split(",") if x}
    # (runtime_units also names main, which ran trace.Stop: the program's, so kept)
    sys_units = [
        u.index for u in trace.units if u.number in runtime_own and not u.name.startswith("main.")
    ]
    assert any(trace.units[u].name.startswith("runtime.gcBgMarkWorker") for u in sys_units)
    assert int(attrs["go_runtime_sched_omitted"]) > 0
    ev = trace.events
    sched = np.isin(ev.kind, (K.UNIT_RUN, K.UNIT_YIELD))
    assert not np.isin(ev.unit[sched], sys_units).any()
    worker = unit_named(trace, "main.main.func1")
    assert len(events_of(trace, worker, K.UNIT_START)) == 1
    main = unit_named(trace, "main.main")
    assert len(events_of(trace, main, K.UNIT_RUN)) + len(events_of(trace, main, K.UNIT_YIELD))
