"""JFR import: real JVMs record with a custom .jfc; the recordings import, link and analyze."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from willowisp.analysis.engine import analyze
from willowisp.causality.graph import EdgeKind
from willowisp.causality.link import link
from willowisp.errors import TraceFormatError
from willowisp.ingest import jfr
from willowisp.ingest.load import build_trace
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K, Outcome, Reason

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs" / "java"
CACHE = ROOT / ".cache" / "jfr-programs"
JDK17_BIN = Path(shutil.which("javac") or "/usr/bin/javac").resolve().parent
TEMURIN25_BIN = Path("/usr/lib/jvm/temurin-25-jdk-amd64/bin")

# Everything this importer reads, with no threshold, and thread dumps at every chunk's
# start and end (the end one is taken when the JVM exits and dumps the recording).
_EVENT_SETTINGS = {
    "jdk.JavaMonitorEnter": {"stackTrace": "true", "threshold": "0 ms"},
    "jdk.JavaMonitorWait": {"stackTrace": "true", "threshold": "0 ms"},
    "jdk.ThreadPark": {"stackTrace": "true", "threshold": "0 ms"},
    "jdk.ThreadSleep": {"stackTrace": "true", "threshold": "0 ms"},
    "jdk.ThreadStart": {"stackTrace": "true"},
    "jdk.ThreadEnd": {},
    "jdk.VirtualThreadStart": {"stackTrace": "true"},
    "jdk.VirtualThreadEnd": {},
    "jdk.VirtualThreadPinned": {"stackTrace": "true", "threshold": "0 ms"},
    "jdk.JVMInformation": {"period": "beginChunk"},
    "jdk.ThreadDump": {"period": "everyChunk"},
}


def write_jfc(path: Path) -> Path:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    lines.append('<configuration version="2.0" label="willowisp tests">')
    for name, values in _EVENT_SETTINGS.items():
        body = '<setting name="enabled">true</setting>'
        body += "".join(f'<setting name="{k}">{v}</setting>' for k, v in values.items())
        lines.append(f'  <event name="{name}">{body}</event>')
    lines.append("</configuration>")
    path.write_text("\n".join(lines) + "\n")
    return path


def compiled(jdk_bin: Path, program: str) -> Path:
    """The class folder of ``program`` compiled by ``jdk_bin``'s javac, cached by content."""
    source = PROGRAMS / f"{program}.java"
    digest = hashlib.sha256(source.read_bytes() + str(jdk_bin).encode()).hexdigest()[:16]
    out = CACHE / f"{program}-{digest}"
    if not (out / f"{program}.class").exists():
        tmp = CACHE / f".tmp-{program}-{digest}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        subprocess.run(
            [str(jdk_bin / "javac"), "-d", str(tmp), str(source)], check=True, timeout=120
        )
        try:
            tmp.rename(out)
        except OSError:  # another run got there first
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def record(tmp_path: Path, program: str, jdk_bin: Path = JDK17_BIN) -> Path:
    """Run ``program`` under JFR until it prints its ready line and exits; the recording."""
    classes = compiled(jdk_bin, program)
    rec = tmp_path / f"{program}.jfr"
    jfc = write_jfc(tmp_path / "wisp.jfc")
    cmd = [str(jdk_bin / "java"), f"-XX:StartFlightRecording:filename={rec},settings={jfc}"]
    cmd += ["-Xlog:jfr+startup=warning", "-cp", str(classes), program]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, proc.kill)  # a hung program ends the read below
    watchdog.start()
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # the ready line: the program did what it is for
            lines.append(line)
            if line.strip() == "ready":
                break
        assert lines and lines[-1].strip() == "ready", f"{program} said {lines}"
        assert proc.wait(timeout=60) == 0  # the exit is what dumps the recording
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert rec.stat().st_size > 0
    return rec


def imported(rec: Path, env_java_home: Path | None = None) -> tuple[Trace, list[str], bytes]:
    data = rec.read_bytes()
    assert jfr.sniff(data[:65536])
    old = os.environ.get("JAVA_HOME")
    if env_java_home is not None:
        os.environ["JAVA_HOME"] = str(env_java_home)
    try:
        fmt, stored = jfr.prepare(data, str(rec))
    finally:
        if env_java_home is not None:
            if old is None:
                del os.environ["JAVA_HOME"]
            else:
                os.environ["JAVA_HOME"] = old
    assert fmt == "jfr-json" and jfr.sniff(stored[:65536])
    files, notes = jfr.decode(fmt, stored, str(rec))
    return build_trace(files, [], notes), notes, stored


def unit_named(trace: Trace, name: str) -> int:
    hits = [u.index for u in trace.units if u.name == name]
    assert len(hits) == 1, f"{name}: {[u.name for u in trace.units]}"
    return int(hits[0])


def events_of(trace: Trace, unit: int, kind: int) -> np.ndarray:
    ev = trace.events
    return np.flatnonzero((ev.unit == unit) & (ev.kind == kind))


@pytest.fixture(scope="module")
def handoff_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("handoff"), "Handoff")


@pytest.fixture(scope="module")
def handoff(handoff_recording: Path) -> tuple[Trace, list[str], bytes]:
    return imported(handoff_recording)


def test_exporter_agrees_with_jfr_print(
    handoff_recording: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter (built afresh into an empty cache) and `jfr print --json` decode to the
    same events."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cmd = [str(JDK17_BIN / "jfr"), "print", "--json", "--stack-depth", "64"]
    cmd += ["--events", ",".join(jfr.EVENTS), str(handoff_recording)]
    printed = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    _, exported = jfr.prepare(handoff_recording.read_bytes(), str(handoff_recording))
    assert len(exported) * 2 < len(printed)  # the point of the exporter (dumps are text)
    assert list((tmp_path / "cache" / "willowisp" / "jfr-export").glob("*/WispJfrExport.class"))

    def shape(stored: bytes) -> list[tuple[Any, ...]]:
        files, notes = jfr.decode("jfr-json", stored, "x")
        assert notes == []
        t = build_trace(files, [], [])
        ev = t.events
        return [
            (
                int(ev.kind[i]),
                t.units[int(ev.unit[i])].name if ev.unit[i] >= 0 else "",
                int(ev.time[i]),
                t.resources[int(ev.res[i])].name if ev.res[i] >= 0 else "",
                t.locations[int(ev.loc[i])].where() if ev.loc[i] >= 0 else "",
            )
            for i in range(len(ev.kind))
        ]

    assert shape(printed) == shape(exported)


def test_without_javac_jfr_print_is_used(
    handoff_recording: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JDK whose bin has jfr but no javac: prepare falls back to `jfr print --json`."""
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "jfr").symlink_to((JDK17_BIN / "jfr").resolve())
    monkeypatch.setenv("JAVA_HOME", str(home))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    _, stored = jfr.prepare(handoff_recording.read_bytes(), str(handoff_recording))
    assert stored.startswith(b'{\n  "recording"')  # jfr print's own layout
    files, notes = jfr.decode("jfr-json", stored, str(handoff_recording))
    trace = build_trace(files, [], notes)
    assert len(events_of(trace, unit_named(trace, "handoff-taker"), K.LOCK_ACQUIRED)) == 1


def test_handoff_names_threads_and_monitor(handoff: tuple[Trace, list[str], bytes]) -> None:
    """A contended synchronized block imports as a block then acquire on a named monitor."""
    trace, notes, _ = handoff
    assert notes == []
    p = trace.processes[0]
    assert (p.runtime, p.service) == ("java", "Handoff") and p.pid > 0
    taker = unit_named(trace, "handoff-taker")
    unit_named(trace, "handoff-holder")
    assert trace.units[taker].kind == "thread"
    acquired = events_of(trace, taker, K.LOCK_ACQUIRED)
    assert len(acquired) == 1
    res = trace.resources[int(trace.events.res[acquired[0]])]
    assert res.kind == "monitor" and res.name.startswith("java.lang.Object@0x")
    blocks = events_of(trace, taker, K.UNIT_BLOCK)
    assert [int(trace.events.arg[b]) for b in blocks] == [Reason.ACQUIRE]
    loc = trace.locations[int(trace.events.loc[acquired[0]])]
    assert (loc.where(), loc.func) == ("Handoff.java:21", "Handoff.take")


def test_handoff_release_happens_before_acquire(handoff: tuple[Trace, list[str], bytes]) -> None:
    """The previous owner's release -> the taker's acquire is a happens-before edge."""
    trace, _, _ = handoff
    holder, taker = unit_named(trace, "handoff-holder"), unit_named(trace, "handoff-taker")
    g = link(trace).graph
    acquire = int(events_of(trace, taker, K.LOCK_ACQUIRED)[0])
    rows = g.incoming(acquire)
    lock_rows = [r for r in rows if g.kind[r] == EdgeKind.LOCK]
    assert len(lock_rows) == 1
    src = int(g.src[lock_rows[0]])
    assert int(trace.events.unit[src]) == holder
    assert int(trace.events.kind[src]) == K.LOCK_RELEASE
    assert trace.events.res[src] == trace.events.res[acquire]


def test_handoff_wait_notify_names_notifier(handoff: tuple[Trace, list[str], bytes]) -> None:
    """Object.wait woken by notify: a notify -> wake edge from the notifying thread."""
    trace, _, _ = handoff
    waiter, notifier = unit_named(trace, "cond-waiter"), unit_named(trace, "cond-notifier")
    wakes = events_of(trace, waiter, K.UNIT_WAKE)
    assert len(wakes) == 1 and int(trace.events.arg[wakes[0]]) == Outcome.OK
    block = events_of(trace, waiter, K.UNIT_BLOCK)
    assert [int(trace.events.arg[b]) for b in block] == [Reason.WAIT]
    g = link(trace).graph
    rows = [r for r in g.incoming(int(wakes[0])) if g.kind[r] == EdgeKind.NOTIFY]
    assert len(rows) == 1 and int(trace.events.unit[g.src[rows[0]]]) == notifier
    # and the threads were created by the thread that started them
    assert trace.units[waiter].parent == unit_named(trace, "main")


@pytest.fixture(scope="module")
def deadlock_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("deadlock"), "Deadlock")


def test_deadlock_found_from_the_thread_dump(deadlock_recording: Path) -> None:
    """Two threads stuck on each other's monitor: a deadlock finding naming both of each."""
    trace, notes, stored = imported(deadlock_recording)
    assert notes == []
    assert b"Found one Java-level deadlock" in stored
    found = [f for f in analyze(trace).findings if f.kind == "deadlock"]
    assert len(found) == 1
    f = found[0]
    assert {u.name for u in f.units} == {"worker-a", "worker-b"}
    names = sorted(r.name for r in f.resources)
    assert [n.split("@")[0] for n in names] == ["Deadlock$Left", "Deadlock$Right"]
    assert all(r.kind == "monitor" and "@0x" in r.name for r in f.resources)
    text = "\n".join(f.explanation)
    for who in ("worker-a", "worker-b", *names, "Deadlock.java:29"):
        assert who in text
    assert "still stuck" in text
    # the dump's own report is kept beside it, as corroboration
    doc = json.loads(stored)
    dumps = [e for e in doc["recording"]["events"] if e["type"] == "jdk.ThreadDump"]
    assert "worker-a" in dumps[-1]["values"]["result"]


def test_cli_imports_and_analyzes_a_recording(deadlock_recording: Path, tmp_path: Path) -> None:
    """`willowisp import` embeds the recording; `analyze` on it (and on the .jfr) finds the
    deadlock and `--fail-on deadlock` exits 1."""
    out = tmp_path / "dl.wtrace"
    wisp = [sys.executable, "-m", "willowisp"]
    done = subprocess.run(
        [*wisp, "import", str(deadlock_recording), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for target in (out, deadlock_recording):
        done = subprocess.run(
            [*wisp, "analyze", str(target), "--format", "json", "--fail-on", "deadlock"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        doc = json.loads(done.stdout)
        assert [p["runtime"] for p in doc["processes"]] == ["java"]
        kinds = [f["kind"] for f in doc["findings"]]
        assert kinds.count("deadlock") == 1


def test_virtual_threads_on_jdk25(tmp_path: Path) -> None:
    """Temurin 25 virtual threads import as virtual-thread units, pinning and all."""
    trace, notes, _ = imported(record(tmp_path, "Virtual", TEMURIN25_BIN), TEMURIN25_BIN.parent)
    assert notes == []
    kinds = {u.name: u.kind for u in trace.units}
    for i in range(4):
        assert kinds[f"vworker-{i}"] == "virtual-thread"
    assert kinds["main"] == "thread" and kinds["vpinned"] == "virtual-thread"
    pinned = unit_named(trace, "vpinned")
    ev = trace.events
    for u in (pinned, unit_named(trace, "vworker-0")):
        assert len(events_of(trace, u, K.UNIT_START)) == 1
        assert len(events_of(trace, u, K.UNIT_END)) == 1
    sleeps = events_of(trace, pinned, K.UNIT_BLOCK)
    assert Reason.SLEEP in [int(ev.arg[b]) for b in sleeps]
    runs = events_of(trace, pinned, K.UNIT_RUN)
    assert len(runs) >= 1  # the pinned stretch, on its carrier
    carrier = trace.unit_index(ev.proc[runs[:1]], ev.arg[runs[:1]])[0]
    assert trace.units[int(carrier)].name.startswith("ForkJoinPool-")
    p = trace.processes[0]
    assert p.runtime == "java" and p.service == "Virtual"


@pytest.mark.parametrize("jdk_bin", [JDK17_BIN, TEMURIN25_BIN], ids=["jdk17", "jdk25"])
def test_thread_starts_never_cut_the_parents_waits(tmp_path: Path, jdk_bin: Path) -> None:
    """A parent that starts a thread and at once sleeps or joins keeps whole waits: its
    unit.create comes before the wait, never inside it (JFR stamps the child's time)."""
    trace, _, _ = imported(record(tmp_path, "Starter", jdk_bin), jdk_bin.parent)
    ev = trace.events
    main = unit_named(trace, "main")
    mine = np.flatnonzero(ev.unit == main)
    kinds = ev.kind[mine].tolist()
    # main's sleeps and its join of the lingerer (JDK 25 adds monitor entries of its own)
    names = [trace.resources[int(ev.res[i])].name if ev.res[i] >= 0 else "" for i in mine]
    blocks = [
        i
        for i, k in enumerate(kinds)
        if k == K.UNIT_BLOCK and names[i].startswith(("Thread.sleep", "java.lang.Thread@"))
    ]
    assert len(blocks) >= 11 and names[blocks[10]].startswith("java.lang.Thread@")
    # each ends with its own wake: nothing of main's sits inside one
    assert [kinds[i + 1] for i in blocks] == [K.UNIT_WAKE] * len(blocks)
    waits = [(int(ev.time[mine[i]]), int(ev.time[mine[i + 1]])) for i in blocks]
    assert all(end - start >= 20_000_000 for start, end in waits[:10])
    # the join of the lingerer ended after the lingerer's own 50 ms sleep did
    lingerer = unit_named(trace, "lingerer")
    its_wake = int(ev.time[events_of(trace, lingerer, K.UNIT_WAKE)[-1]])
    assert waits[10][1] >= its_wake
    # every child is created by main, in main's order, no later than it started
    creates = mine[[i for i, k in enumerate(kinds) if k == K.UNIT_CREATE]]
    for name in [f"child-{i}" for i in range(10)] + ["lingerer"]:
        child = unit_named(trace, name)
        [c] = [int(c) for c in creates if ev.arg[c] == trace.units[child].number]
        assert ev.time[c] <= ev.time[events_of(trace, child, K.UNIT_START)[0]]


def test_a_childs_start_inside_the_parents_wait_goes_before_it() -> None:
    """A ThreadStart stamped inside the parent's sleep or join (the child's own time) puts
    the parent's unit.create at the wait's start, and so does the child's monitor entry
    for the parent's release; outside a wait the create keeps its time."""
    main, c1, c2, c3 = (_thread(1, "main"), _thread(21, "c1"), _thread(22, "c2"), _thread(23, "c3"))
    base = "2025-01-01T00:00:0"
    stack = {"frames": [{"method": {"name": "main", "type": {"name": "App"}}, "lineNumber": 9}]}

    def start(child: dict[str, Any], at: str) -> dict[str, Any]:
        return _event(
            "jdk.ThreadStart",
            startTime=at,
            thread=child,
            parentThread=main,
            eventThread=child,
            stackTrace=stack,
        )

    events = [
        _event("jdk.ThreadStart", startTime=base + "0Z", thread=main, eventThread=main),
        _event("jdk.ThreadSleep", startTime=base + "1.001Z", duration="PT0.1S", eventThread=main),
        start(c1, base + "1.001008Z"),  # 8 µs into main's 100 ms sleep
        _event(  # c1 enters the monitor main held in Thread.start
            "jdk.JavaMonitorEnter",
            startTime=base + "1.001009Z",
            duration="PT0.000002S",
            eventThread=c1,
            monitorClass={"name": "java/lang/Thread"},
            previousOwner=main,
            address=8192,
        ),
        _event(
            "jdk.JavaMonitorWait",
            startTime=base + "2Z",
            duration="PT0.327S",
            eventThread=main,
            monitorClass={"name": "java/lang/Thread"},
            address=4096,
            notifier=None,
            timedOut=False,
        ),
        start(c2, base + "2.000014Z"),  # inside main's join
        start(c3, base + "3.5Z"),  # main is not waiting
    ]
    doc = {"recording": {"events": events}}
    files, notes = jfr.decode("jfr-json", json.dumps(doc).encode(), "starts.json")
    trace = build_trace(files, [], notes)
    ev = trace.events
    u = unit_named(trace, "main")
    mine = np.flatnonzero(ev.unit == u)
    got = [(K(int(ev.kind[i])).name, int(ev.time[i]) % 10**10) for i in mine]
    assert got == [
        ("UNIT_START", 0),
        ("UNIT_CREATE", 1_001_000_000),
        ("LOCK_RELEASE", 1_001_000_000),
        ("UNIT_BLOCK", 1_001_000_000),
        ("UNIT_WAKE", 1_101_000_000),
        ("UNIT_CREATE", 2_000_000_000),
        ("UNIT_BLOCK", 2_000_000_000),
        ("UNIT_WAKE", 2_327_000_000),
        ("UNIT_CREATE", 3_500_000_000),
    ]
    children = [trace.units[unit_named(trace, n)].number for n in ("c1", "c2", "c3")]
    assert [int(ev.arg[i]) for i in mine if ev.kind[i] == K.UNIT_CREATE] == children
    # the children still start at JFR's time for them
    c1_start = events_of(trace, unit_named(trace, "c1"), K.UNIT_START)
    assert int(ev.time[c1_start[0]]) % 10**10 == 1_001_008_000


# -- bad input --------------------------------------------------------------------------


def _event(etype: str, **values: Any) -> dict[str, Any]:
    return {"type": etype, "values": values}


def _thread(tid: int, name: str) -> dict[str, Any]:
    return {"osName": name, "osThreadId": 1000 + tid, "javaName": name, "javaThreadId": tid}


def test_sniff_tells_jfr_from_other_formats() -> None:
    """FLR binaries and jfr JSON are sniffed; OTLP, Chrome and garbage are not."""
    assert jfr.sniff(b"FLR\x00\x00\x02\x00\x01")
    assert jfr.sniff(b'{\n  "recording": {\n    "events": [{')
    assert not jfr.sniff(b'{"resourceSpans": []}')
    assert not jfr.sniff(b'{"traceEvents": []}')
    assert not jfr.sniff(b"\x00\x01garbage")


def test_times_and_durations_convert_exactly() -> None:
    """ISO-8601 times with offsets and java.time.Duration strings become exact ns."""
    assert jfr.wall_ns("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert jfr.wall_ns("2024-05-01T12:00:00.123456789+02:00") == (1714557600 * 10**9 + 123456789)
    assert jfr.duration_ns("PT0.015S") == 15_000_000
    assert jfr.duration_ns("PT0.000001542S") == 1542
    assert jfr.duration_ns("PT1H2M3.5S") == (3723 * 10**9 + 500_000_000)
    assert jfr.duration_ns("PT-0.5S") == -500_000_000
    assert jfr.duration_ns("PT0S") == 0


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage\x00\xff", b'{"recording": {"events": [{"type": "jdk.Thre', b"[1, 2]"],
    ids=["empty", "garbage", "truncated", "not-jfr"],
)
def test_bad_json_is_one_clear_error(data: bytes) -> None:
    """Garbage or truncated JSON raises one TraceFormatError naming the problem (not the
    file: the caller names it, once)."""
    with pytest.raises(TraceFormatError, match="JFR") as info:
        jfr.decode("jfr-json", data, "bad.json")
    assert "bad.json" not in str(info.value)


def test_garbage_binary_names_the_problem(tmp_path: Path) -> None:
    """A file that starts like a recording but is not one: jfr's complaint, one line."""
    with pytest.raises(TraceFormatError, match="the JDK could not read the recording"):
        jfr.prepare(b"FLR\x00" + b"\x00" * 64, str(tmp_path / "x.jfr"))


def test_some_bad_events_are_skipped_and_counted() -> None:
    """Malformed events are skipped with a note; the good ones import."""
    a, b = _thread(21, "alpha"), _thread(22, "beta")
    t = "2025-01-01T00:00:00.000000100Z"
    good = [
        _event("jdk.ThreadStart", startTime=t, thread=a, parentThread=None),
        _event(
            "jdk.JavaMonitorEnter",
            startTime=t,
            duration="PT0.001S",
            eventThread=b,
            monitorClass={"name": "com/x/Box"},
            previousOwner=a,
            address=4096,
        ),
    ]
    bad = [
        _event("jdk.ThreadSleep", startTime="yesterday", duration="PT1S", eventThread=a),
        _event("jdk.JavaMonitorEnter", startTime=t, duration="1ms", eventThread=a),
        _event("jdk.ThreadPark", startTime=t, duration="PT1S", eventThread={"javaName": "x"}),
        {"type": "jdk.ThreadEnd", "values": None},
    ]
    other = [_event("jdk.CPULoad", startTime=t, machineTotal=0.5)]  # not ours: not counted
    doc = {"recording": {"events": good + bad + other}}
    files, notes = jfr.decode("jfr-json", json.dumps(doc).encode(), "some.json")
    assert len(notes) == 2 and notes[0].startswith("some.json: 4 of 6 JFR events skipped")
    # and none of them a thread dump: what that hides is said
    assert notes[1].startswith("some.json: no jdk.ThreadDump events: threads stuck for good")
    assert "first: jdk.ThreadSleep: startTime 'yesterday'" in notes[0]
    trace = build_trace(files, [], notes)
    beta = unit_named(trace, "beta")
    acquired = events_of(trace, beta, K.LOCK_ACQUIRED)
    assert len(acquired) == 1 and trace.events.time[acquired[0]] == 1735689600_001_000_100
    assert trace.resources[int(trace.events.res[acquired[0]])].name == "com.x.Box@0x1000"


def test_all_bad_events_is_an_error() -> None:
    """A recording whose every event is malformed is one error with the first problem."""
    doc = {"recording": {"events": [_event("jdk.ThreadEnd", startTime=3)]}}
    with pytest.raises(TraceFormatError, match="every one of 1 JFR events is malformed"):
        jfr.decode("jfr-json", json.dumps(doc).encode(), "all-bad.json")


def test_missing_jfr_tool_names_the_fix(tmp_path: Path) -> None:
    """With no JDK on JAVA_HOME or PATH, a binary recording gives the one-line fix."""
    empty = tmp_path / "empty"
    empty.mkdir()
    script = (
        "from willowisp.ingest import jfr\n"
        "from willowisp.errors import TraceFormatError\n"
        "try:\n"
        "    jfr.prepare(b'FLR\\x00' + bytes(60), 'rec.jfr')\n"
        "except TraceFormatError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "JAVA_HOME": str(empty), "PATH": str(empty)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "jfr tool" in lines[0] and "JAVA_HOME" in lines[0] and "rec.jfr" not in lines[0]


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
_FIELDS = st.sampled_from(
    [
        "startTime",
        "duration",
        "eventThread",
        "thread",
        "parentThread",
        "address",
        "monitorClass",
        "previousOwner",
        "notifier",
        "timedOut",
        "result",
        "carrierThread",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes_raise_only_the_format_error(data: bytes) -> None:
    """Arbitrary bytes decode or raise TraceFormatError, nothing else."""
    try:
        jfr.decode("jfr-json", data, "fuzz.json")
    except TraceFormatError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(jfr.EVENTS)),
            st.dictionaries(
                _FIELDS,
                _JSONISH
                | st.just("PT0.001S")
                | st.just("2025-01-01T00:00:00Z")
                | st.just(_thread(3, "t")),
                max_size=8,
            ),
        ),
        max_size=12,
    )
)
def test_fuzz_events_import_or_raise_the_format_error(events: list[tuple[str, Any]]) -> None:
    """Events of our types with arbitrary values: skipped with a note or imported."""
    doc = {"recording": {"events": [{"type": t, "values": v} for t, v in events]}}
    try:
        files, _ = jfr.decode("jfr-json", json.dumps(doc).encode(), "fuzz.json")
    except TraceFormatError:
        return
    build_trace(files, [], [])


_DUMP = """2025-01-01 00:00:05
Full thread dump OpenJDK 64-Bit Server VM (21.0.2+13-LTS mixed mode, sharing):

"alpha" #21 [4001] prio=5 os_prio=0 tid=0x01 nid=4001 waiting for monitor entry  [0x02]
   java.lang.Thread.State: BLOCKED (on object monitor)
\tat com.shop.Ledger.move(Ledger.java:40)
\t- waiting to lock <0x00000000cafe0002> (a com.shop.Account)
\t- locked <0x00000000cafe0001> (a com.shop.Account)
\tat java.lang.Thread.run(java.base@21.0.2/Thread.java:1583)

"beta" #22 [4002] prio=5 os_prio=0 tid=0x03 nid=4002 waiting for monitor entry  [0x04]
   java.lang.Thread.State: BLOCKED (on object monitor)
\tat com.shop.Ledger.move(Ledger.java:41)
\t- waiting to lock <0x00000000cafe0001> (a com.shop.Account)
\t- locked <0x00000000cafe0002> (a com.shop.Account)

"idle" #23 [4003] prio=5 os_prio=0 tid=0x05 nid=4003 in Object.wait()  [0x06]
   java.lang.Thread.State: WAITING (on object monitor)
\tat java.lang.Object.wait0(java.base@21.0.2/Native Method)
\t- waiting on <0x00000000cafe0003> (a java.lang.Object)
\tat com.shop.Idle.run(Idle.java:9)
\t- locked <0x00000000cafe0003> (a java.lang.Object)

Found one Java-level deadlock:
=============================
"alpha":
  waiting to lock monitor 0x00007f0000000020 (object 0x00000000cafe0002, a com.shop.Account),
  which is held by "beta"

"beta":
  waiting to lock monitor 0x00007f0000000010 (object 0x00000000cafe0001, a com.shop.Account),
  which is held by "alpha"
"""


def test_dump_holds_join_the_monitors_jfr_saw() -> None:
    """A hold that began at a contended entry JFR recorded stays open into the dump's
    deadlock; the dump's object addresses join JFR's monitor addresses."""
    alpha, main = _thread(21, "alpha"), _thread(1, "main")
    account = {"name": "com/shop/Account"}
    enter = _event(
        "jdk.JavaMonitorEnter",
        startTime="2025-01-01T00:00:01Z",
        duration="PT0.5S",
        eventThread=alpha,
        monitorClass=account,
        previousOwner=main,
        address=0x7F0000000010,
    )
    dump = _event("jdk.ThreadDump", startTime="2025-01-01T00:00:05Z", result=_DUMP)
    early = _event("jdk.ThreadDump", startTime="2025-01-01T00:00:00Z", result="no threads")
    doc = {"recording": {"events": [early, enter, dump]}}
    files, notes = jfr.decode("jfr-json", json.dumps(doc).encode(), "dl.json")
    assert notes == []
    trace = build_trace(files, [], notes)
    a, b = unit_named(trace, "alpha"), unit_named(trace, "beta")
    ev = trace.events
    acquired = events_of(trace, a, K.LOCK_ACQUIRED)
    assert [int(ev.time[i]) for i in acquired] == [1735689601_500_000_000]  # JFR's, not the dump's
    assert len(events_of(trace, a, K.LOCK_RELEASE)) == 0  # still held at the end
    assert [trace.resources[int(ev.res[i])].name for i in acquired] == [
        "com.shop.Account@0xcafe0001"
    ]
    assert len(events_of(trace, b, K.LOCK_ACQUIRED)) == 1
    assert all(u.name != "idle" for u in trace.units)  # waiting on its own monitor: no hold
    found = [f for f in analyze(trace).findings if f.kind == "deadlock"]
    assert len(found) == 1
    text = "\n".join(found[0].explanation)
    for part in ("alpha", "beta", "Account@0xcafe0001", "Account@0xcafe0002", "Ledger.java:40"):
        assert part in text


# -- recordings cut short, and settings that leave events out ----------------------------


def _wisp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_a_cut_recording_is_one_line_not_a_java_exception(
    handoff_recording: Path, tmp_path: Path
) -> None:
    """A recording cut inside its only chunk (a copy of a file the JVM was still writing) is
    one line saying it ends early, with no Java exception text; import exits 2."""
    data = handoff_recording.read_bytes()
    cut = tmp_path / "cut.jfr"
    cut.write_bytes(data[: len(data) // 2])
    done = _wisp("import", str(cut), "-o", str(tmp_path / "out.wtrace"))
    assert done.returncode == 2
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"willowisp import: {cut}: a JFR recording that ends early")
    assert "no complete chunk" in first
    assert "Exception" not in done.stderr and "Traceback" not in done.stderr


def test_a_cut_recording_keeps_its_complete_chunks(
    handoff_recording: Path, handoff: tuple[Trace, list[str], bytes]
) -> None:
    """A recording whose last chunk is cut (two chunks, the second half there) imports the
    complete chunk's events and notes that the rest was lost."""
    data = handoff_recording.read_bytes()
    assert jfr.complete_chunks(data) == len(data)
    both = data + data[: len(data) // 2]
    fmt, stored = jfr.prepare(both, "two.jfr")
    files, notes = jfr.decode(fmt, stored, "two.jfr")
    cut = [n for n in notes if "ends early" in n]
    assert cut == [
        f"two.jfr: {jfr.ENDS_EARLY}: read its complete chunks, the first {len(data)} of "
        f"{len(both)} bytes; the events after them are lost"
    ]
    trace = build_trace(files, [], notes)
    whole = handoff[0]
    assert len(trace.events.kind) == len(whole.events.kind)
    assert {u.name for u in trace.units} == {u.name for u in whole.units}


def record_with_settings(tmp_path: Path, program: str, jdk_bin: Path, settings: str) -> Path:
    """Run ``program`` under one of the JDK's own settings (``default``, ``profile``)."""
    rec = tmp_path / f"{program}-{settings}.jfr"
    cmd = [str(jdk_bin / "java"), f"-XX:StartFlightRecording:filename={rec},settings={settings}"]
    cmd += ["-Xlog:jfr+startup=warning", "-cp", str(compiled(jdk_bin, program)), program]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.splitlines()[-1:] == ["ready"], done.stderr
    return rec


def test_profile_settings_note_that_virtual_threads_were_not_recorded(tmp_path: Path) -> None:
    """A JDK 25 recording made with `profile` (VirtualThreadStart/End disabled) of a program
    that ran virtual threads says they were not recorded and names the settings file."""
    rec = record_with_settings(tmp_path, "Virtual", TEMURIN25_BIN, "profile")
    trace, notes, _ = imported(rec, TEMURIN25_BIN.parent)
    said = [n for n in notes if "virtual threads" in n]
    assert len(said) == 1, notes
    assert said[0].startswith(f"{rec}: virtual threads were not recorded: ")
    assert "jdk.VirtualThreadStart" in said[0] and "wisp.jfc" in said[0]
    assert all(u.name != "vworker-0" or u.kind != "virtual-thread" for u in trace.units)


def test_settings_that_record_virtual_threads_need_no_note(tmp_path: Path) -> None:
    """With the wisp.jfc settings the note about virtual threads is not given."""
    trace, notes, _ = imported(record(tmp_path, "Virtual", TEMURIN25_BIN), TEMURIN25_BIN.parent)
    assert not [n for n in notes if "virtual threads" in n]
    assert any(u.kind == "virtual-thread" for u in trace.units)
