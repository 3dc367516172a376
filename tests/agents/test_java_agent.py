"""The Java agent (agents/java) end to end: real JVMs started with ``-javaagent`` through
``JAVA_TOOL_OPTIONS`` (as ``willowisp run`` will), real Python services on loopback, and
``willowisp analyze`` on the run folder -- while a JVM is still hung and after ``kill -9``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from willowisp.runtimes import stable_jar
from wispkit import (
    CAN_MOUNT,
    CORPUS_TOKEN,
    AbsentCollector,
    check_control_corpus,
    check_loss_reported,
    run_on_full_disk,
    start_collector,
    start_run,
    stop_collector,
)

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agents" / "java"
JAR = AGENT / "target" / "willowisp-agent.jar"
PROGRAMS = Path(__file__).resolve().parent / "programs" / "java"
JAVA = shutil.which("java")
JAVAC = shutil.which("javac")
MVN = shutil.which("mvn")
JDK25 = Path("/usr/lib/jvm/temurin-25-jdk-amd64/bin/java")
DEADLINE_S = 30.0  # the longest a test waits for a trace to show what it must


def _stale(jar: Path) -> bool:
    if not jar.exists():
        return True
    built = jar.stat().st_mtime
    sources = [AGENT / "pom.xml", *(AGENT / "src" / "main").rglob("*.java")]
    return any(p.stat().st_mtime > built for p in sources)


def _mvn(*goals: str) -> subprocess.CompletedProcess[str]:
    """Maven offline first (the cache is warm after the first build), else online."""
    assert MVN is not None, "mvn is needed to build agents/java"
    for offline in (["-o"], []):
        done = subprocess.run(
            [MVN, "-q", *offline, *goals],
            cwd=AGENT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode == 0:
            break
    return done


@pytest.fixture(scope="module")
def agent_jar() -> Path:
    """The shaded agent jar, built by Maven when missing or older than its sources: a snapshot
    of it, as ``willowisp run`` hands JVMs (Maven rewrites target/ in place, and a JVM whose
    jar is rewritten under it dies), so a rebuild during the tests breaks none of them."""
    assert JAVA is not None and JAVAC is not None, "a JDK is needed for the Java agent tests"
    if _stale(JAR):
        done = _mvn("package", "-DskipTests")
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return stable_jar(JAR)


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test programs, compiled once."""
    out = tmp_path_factory.mktemp("java-classes")
    assert JAVAC is not None
    sources = sorted(str(p) for p in PROGRAMS.glob("*.java"))
    subprocess.run([JAVAC, "-g", "-d", str(out), *sources], check=True, timeout=300)
    return out


def java_env(jar: Path, out: Path | str, **extra: str) -> dict[str, str]:
    """The environment ``willowisp run`` gives a JVM (set by hand here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    env.pop("TRACEPARENT", None)
    env["JAVA_TOOL_OPTIONS"] = f"-javaagent:{jar}"
    env["WILLOWISP_OUT"] = str(out)
    env.update(extra)
    return env


def start_java(
    jar: Path,
    classes: Path,
    out: Path | str,
    main: str,
    *args: str,
    java: str | None = None,
    stdin: bool = False,
    **env: str,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [java or JAVA or "java", "-cp", str(classes), main, *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=java_env(jar, out, **env),
    )


def analyze(out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(out), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def wait_for_finding(out: Path, kind: str, ok: Callable[[dict], bool]) -> dict:
    """Analyzes the folder until a finding of ``kind`` satisfying ``ok`` is there (the
    agent's flusher writes within 100 ms; this waits on that, bounded by DEADLINE_S)."""
    deadline = time.monotonic() + DEADLINE_S
    last: dict = {}
    while time.monotonic() < deadline:
        if any(out.glob("*.wtrace")):
            last = analyze(out)
            for f in last["findings"]:
                if f["kind"] == kind and ok(f):
                    return f
        time.sleep(0.2)
    kinds = [(f["kind"], f["summary"]) for f in last.get("findings", [])]
    raise AssertionError(f"no {kind} finding in {out} within {DEADLINE_S} s; found {kinds}")


def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def kill9(proc: subprocess.Popen[str]) -> None:
    """SIGKILL: no shutdown hook, no last flush; then close the pipes."""
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def fault_records(out: Path) -> list[dict]:
    """The agent's fault records in a run folder (for assertion messages)."""
    from willowisp.wtrace.reader import read_file

    return [
        dict(r.attrs)
        for f in sorted(out.glob("*.wtrace"))
        for c in read_file(f).chunks
        for r in c.records
        if r.rtype == 5
    ]


def _deadlock_check(threads: set[str], kind: str, lines: set[str]) -> Callable[[dict], bool]:
    def ok(f: dict) -> bool:
        names = {u["name"] for u in f["units"]}
        runtimes = {u["runtime"] for u in f["units"]}
        res = [r for r in f["resources"] if r["kind"] == kind]
        wheres = {r.get("where") or "" for r in res}
        text = "\n".join(f["explanation"])
        return (
            threads <= names
            and runtimes == {"java"}
            and len(res) == 2
            and all(any(line in w for w in wheres) or line in text for line in lines)
        )

    return ok


def test_synchronized_inversion_is_a_deadlock_while_running_and_after_kill9(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """Two threads deadlocked on two monitors: the deadlock (both threads, both monitors,
    their source lines) is in the run folder while the JVM hangs, and still after kill -9."""
    out = tmp_path / "run"
    proc = start_java(agent_jar, classes, out, "MonitorDeadlock")
    try:
        assert read_line(proc) == "deadlocking"
        check = _deadlock_check(
            {"transfer", "audit"},
            "monitor",
            {"MonitorDeadlock.java:24", "MonitorDeadlock.java:33"},
        )
        live = wait_for_finding(out, "deadlock", check)
        assert proc.poll() is None, "the JVM must still be running"
        assert all(r["name"].startswith("java.lang.Object@0x") for r in live["resources"])
    finally:
        kill9(proc)
    after = analyze(out)
    dead = [f for f in after["findings"] if f["kind"] == "deadlock" and check(f)]
    assert dead and dead[0]["id"] == live["id"]
    (proc_info,) = after["processes"]
    assert proc_info["runtime"] == "java" and proc_info["service"] == "MonitorDeadlock"


def test_reentrantlock_inversion_is_a_deadlock(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """Two threads deadlocked on two ReentrantLocks (the bytecode hooks): reported with both
    threads, both locks and the lines that took and wait for them, before and after kill -9."""
    out = tmp_path / "run"
    proc = start_java(agent_jar, classes, out, "LockDeadlock")
    try:
        assert read_line(proc) == "deadlocking"
        check = _deadlock_check(
            {"reserve", "cancel"},
            "rlock",
            {"LockDeadlock.java:22", "LockDeadlock.java:25", "LockDeadlock.java:33"},
        )
        live = wait_for_finding(out, "deadlock", check)
        assert proc.poll() is None
        # named after their static fields (the hooks saw them taken)
        assert sorted(r["name"] for r in live["resources"]) == ["orders", "stock"]
    finally:
        kill9(proc)
    assert any(f["id"] == live["id"] for f in analyze(out)["findings"])


def test_lock_order_inversion_without_hang_is_a_potential_deadlock(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """ReentrantLocks taken in both orders at different times (no hang): every acquisition
    is recorded, so the inversion is predicted."""
    out = tmp_path / "run"
    proc = start_java(agent_jar, classes, out, "LockOrder")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == "done"
    found = analyze(out)
    kinds = [f["kind"] for f in found["findings"]]
    assert "potential-deadlock" in kinds, kinds
    assert "deadlock" not in kinds
    # the locks are named after the static fields that hold them, not Class@0xHASH
    [predicted] = [f for f in found["findings"] if f["kind"] == "potential-deadlock"]
    assert sorted(r["name"] for r in predicted["resources"]) == ["cache", "index"]


def test_a_lock_storm_is_stored_uncompressed_and_every_acquisition_recorded(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """At default settings a chunk is deflated unless the event rate is over 100k events/s
    (WILLOWISP_JAVA_CODEC=auto): the quiet start and end of a program are deflated, its
    lock storm is stored as codec none, every acquisition of the storm is in the trace (or
    counted as dropped), and the analysis reads both kinds of chunk (the quiet inversion
    before the storm is still predicted)."""
    import numpy as np

    from willowisp.wtrace.reader import read_file

    n = 300_000
    out = tmp_path / "run"
    proc = start_java(agent_jar, classes, out, "LockStorm", str(n))
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == "done"
    files = sorted(out.glob("*.wtrace"))
    assert len(files) == 1, files
    data = files[0].read_bytes()
    trace = read_file(files[0])
    assert not trace.problems and not trace.truncated
    codecs = {0: 0, 1: 0}
    stormer = None
    taken = released = dropped = 0
    for chunk in trace.chunks:
        assert data[chunk.offset : chunk.offset + 4] == b"WCHK"
        codecs[data[chunk.offset + 4]] += 1
        for rec in chunk.records:
            if rec.rtype == 2 and rec.get("name") == "stormer":
                stormer = rec.id
        ev = chunk.events
        if ev is None or stormer is None:
            continue
        mine = ev.unit == stormer
        taken += int(np.sum(mine & (ev.kind == 10)))
        released += int(np.sum(mine & (ev.kind == 11)))
        dropped += int(np.sum(ev.arg[mine & (ev.kind == 41)]))
    assert stormer is not None
    assert codecs[0] >= 1 and codecs[1] >= 1, codecs
    assert taken + released + dropped == 2 * n, (taken, released, dropped)
    assert taken > 0 and released > 0
    kinds = [f["kind"] for f in analyze(out)["findings"]]
    assert "potential-deadlock" in kinds, kinds


def test_jfr_monitor_contention_and_notify_are_recorded(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """Contended synchronized (JFR's JavaMonitorEnter, sampled waits) and Object.wait /
    notifyAll: one monitor resource named by identity hash with its contention, release ->
    acquire and notify -> wake edges, and thread start edges, all durable at a normal exit."""
    out = tmp_path / "run"
    proc = start_java(agent_jar, classes, out, "MonitorHandoff")
    stdout, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stdout.strip()) == (0, "done"), stderr
    found = analyze(out)
    edges = found["trace"]["happens_before_edges"]
    assert edges["lock"] >= 2 and edges["notify"] >= 1 and edges["spawn"] >= 5, edges
    contention = [f for f in found["findings"] if f["kind"] == "lock-contention"]
    assert len(contention) == 1, [f["summary"] for f in found["findings"]]
    (res,) = contention[0]["resources"]
    assert res["kind"] == "monitor" and res["name"].startswith("java.lang.Object@0x")
    assert res["where"].startswith("MonitorHandoff.java:")
    assert found["trace"]["agent_faults"] == 0


def test_synchronized_inversion_is_predicted_in_instrumented_classes(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """Monitors taken in opposite orders without a hang: invisible to JFR and the sampler,
    predicted once WILLOWISP_JAVA_SYNC instruments the class's synchronized blocks and
    methods (full fidelity)."""
    kinds = {}
    for sync in ("", "MonitorOrder"):
        out = tmp_path / (sync or "default")
        proc = start_java(agent_jar, classes, out, "MonitorOrder", WILLOWISP_JAVA_SYNC=sync)
        stdout, stderr = proc.communicate(timeout=60)
        assert (proc.returncode, stdout.strip()) == (0, "done"), stderr
        found = analyze(out)
        kinds[sync] = [f for f in found["findings"] if f["kind"] == "potential-deadlock"]
        assert found["trace"]["agent_faults"] == 0, fault_records(out)
    assert kinds[""] == []
    (predicted,) = kinds["MonitorOrder"]
    assert {r["kind"] for r in predicted["resources"]} == {"monitor"}
    assert sorted(r["name"] for r in predicted["resources"]) == ["catalog", "pricing"]
    assert "MonitorOrder.java:23" in predicted["summary"]
    assert "MonitorOrder.java:30" in predicted["summary"]


def test_http_call_from_java_into_python_is_linked(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """Java's HttpClient (send and sendAsync) calls a Python http.server recorded by the
    Python agent: the agent injected traceparent and both hops link by it."""
    out = tmp_path / "run"
    server = start_run(out, sys.executable, str(PROGRAMS / "hop_server.py"), stdin=True)
    try:
        line = read_line(server)
        assert line.startswith("ready "), line
        port = int(line.split()[1])
        client = start_java(
            agent_jar,
            classes,
            out,
            "HttpCall",
            f"http://127.0.0.1:{port}/stock",
            WILLOWISP_SERVICE="checkout",
        )
        stdout, stderr = client.communicate(timeout=60)
        assert client.returncode == 0, stderr
        sent, _ = stdout.splitlines()
        assert sent.startswith("send 200 00-"), "the server saw a traceparent header"
    finally:
        server.communicate(timeout=60)  # closes its stdin: it stops and flushes
    found = analyze(out)
    hops = [h for h in found["hops"] if h["from"]["runtime"] == "java"]
    assert len(hops) == 1, found["hops"]
    (hop,) = hops
    assert hop["to"] == {"service": "hop_server", "runtime": "python"}
    assert hop["from"]["service"] == "checkout"
    assert hop["count"] == 2 and hop["linked"] == 2
    assert hop["provenance"] == {"traceparent": 2}
    assert "java.net.http" in hop["libraries"]


def test_http_call_from_python_into_java_server_is_linked(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """A Python client (urllib, Python agent) calls a com.sun.net.httpserver service in a
    JVM: the server hook extracts traceparent and the hop links by it."""
    out = tmp_path / "run"
    server = start_java(
        agent_jar, classes, out, "HttpServe", WILLOWISP_SERVICE="inventory", stdin=True
    )
    try:
        line = read_line(server)
        assert line.startswith("ready "), line
        port = int(line.split()[1])
        client = subprocess.run(
            [
                sys.executable,
                "-m",
                "willowisp",
                "run",
                "--out",
                str(out),
                "--",
                sys.executable,
                str(PROGRAMS / "hop_client.py"),
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.split()[-1] == "200"
    finally:
        server.communicate(timeout=60)  # closes its stdin: it stops and flushes
    hops = [h for h in analyze(out)["hops"] if h["to"]["runtime"] == "java"]
    assert len(hops) == 1
    assert hops[0]["to"]["service"] == "inventory"
    assert hops[0]["linked"] == hops[0]["count"] == 1
    assert hops[0]["provenance"] == {"traceparent": 1}


def test_deadlock_across_a_java_monitor_and_a_python_lock(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """Python holds ledger_lock and calls Java's /reserve, whose handler waits for the books
    monitor; Java's settle thread holds that monitor and calls Python's /credit, whose
    handler waits for ledger_lock. One deadlock spanning both runtimes, their locks and
    both hops, found while everything hangs."""
    out = tmp_path / "run"
    java = start_java(
        agent_jar, classes, out, "CrossDeadlock", stdin=True, WILLOWISP_SERVICE="books"
    )
    py = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "willowisp",
            "run",
            "--out",
            str(out),
            "--",
            sys.executable,
            str(PROGRAMS / "cross_deadlock.py"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        java_port = read_line(java).split()[1]
        assert read_line(java) == "holding"
        py_port = read_line(py).split()[1]
        assert py.stdin is not None and java.stdin is not None
        py.stdin.write(f"call {java_port}\n")
        py.stdin.flush()
        assert read_line(py) == "holding"
        java.stdin.write(f"go {py_port}\n")
        java.stdin.flush()

        def spans_both(f: dict) -> bool:
            kinds = {r["kind"] for r in f["resources"]}
            return {u["runtime"] for u in f["units"]} == {"java", "python"} and {
                "monitor",
                "lock",
            } <= kinds

        found = wait_for_finding(out, "deadlock", spans_both)
        names = {r["name"] for r in found["resources"]}
        assert "ledger_lock" in names
        assert any(n.startswith("java.lang.Object@0x") for n in names)
    finally:
        kill9(java)
        py.kill()
        py.communicate(timeout=30)


GARBAGE = {
    "WILLOWISP_MODE": "sideways",
    "WILLOWISP_TRACE_RATIO": "lots",
    "WILLOWISP_CLOCK_OFFSET_NS": "12abc",
    "WILLOWISP_FLUSH_MS": "-5",
    "WILLOWISP_JAVA_SAMPLE_MS": "\u00e9",
    "TRACEPARENT": "00-zz-yy-01",
}


def test_garbage_settings_never_break_the_program(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """Nonsense WILLOWISP_* values: the program's output and exit status are unchanged, and
    the agent records with defaults, counting each bad setting as a fault."""
    out = tmp_path / "run"
    proc = start_java(agent_jar, classes, out, "LockOrder", **GARBAGE)
    stdout, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stdout.strip()) == (0, "done"), stderr
    found = analyze(out)
    assert found["trace"]["agent_faults"] == 5  # the five bad WILLOWISP_* values
    assert found["processes"][0]["runtime"] == "java"


@pytest.mark.parametrize(
    "where",
    ["file", "unwritable"],
)
def test_unusable_out_never_breaks_the_program(
    agent_jar: Path, classes: Path, tmp_path: Path, where: str
) -> None:
    """WILLOWISP_OUT is a regular file, or a folder the process may not write: the program
    runs exactly as without the agent."""
    if where == "file":
        target = tmp_path / "not-a-dir"
        target.write_text("x")
        out: Path = target / "run"
    else:
        out = Path("/proc/willowisp-cannot-write-here")
    proc = start_java(agent_jar, classes, out, "HttpServe", "--once", stdin=True)
    stdout, stderr = proc.communicate(input="", timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.splitlines()[-1] == "bye"
    assert "Exception" not in stderr


def test_disabled_and_excluded_jvms_stay_quiet(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """WILLOWISP_DISABLED=1, or a main class outside WILLOWISP_JAVA_INCLUDE: no files."""
    for extra in ({"WILLOWISP_DISABLED": "1"}, {"WILLOWISP_JAVA_INCLUDE": "com.example.Shop"}):
        out = tmp_path / next(iter(extra))
        proc = start_java(agent_jar, classes, out, "LockOrder", **extra)
        stdout, _ = proc.communicate(timeout=60)
        assert (proc.returncode, stdout.strip()) == (0, "done")
        assert not out.exists()
    out = tmp_path / "included"
    proc = start_java(agent_jar, classes, out, "LockOrder", WILLOWISP_JAVA_INCLUDE="Lock")
    proc.communicate(timeout=60)
    assert len(list(out.glob("LockOrder-*-1.wtrace"))) == 1


@pytest.mark.skipif(not JDK25.exists(), reason="no JDK 21+ installed at " + str(JDK25))
def test_virtual_threads_deadlock_on_reentrantlocks(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """Two virtual threads (JDK 21+) deadlocked on ReentrantLocks: reported as a deadlock
    between units of kind virtual-thread while the JVM hangs."""
    out = tmp_path / "run"
    vclasses = tmp_path / "classes25"
    subprocess.run(
        [
            str(JDK25.parent / "javac"),
            "-d",
            str(vclasses),
            str(PROGRAMS / "virtual" / "VirtualDeadlock.java"),
        ],
        check=True,
        timeout=300,
    )
    proc = start_java(agent_jar, vclasses, out, "VirtualDeadlock", java=str(JDK25))
    try:
        assert read_line(proc) == "deadlocking"
        found = wait_for_finding(
            out, "deadlock", lambda f: {u["kind"] for u in f["units"]} == {"virtual-thread"}
        )
        assert {u["name"] for u in found["units"]} == {"pick", "pack"}
    finally:
        kill9(proc)


def test_junit_suite_passes() -> None:
    """The agent's own JUnit tests (conformance vectors byte for byte, the encoder) pass."""
    done = _mvn("test")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    reports = list((AGENT / "target" / "surefire-reports").glob("TEST-*.xml"))
    assert reports


def test_willowisp_run_enables_the_agent_through_java_tool_options(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """`willowisp run -- java ...` finds the built jar and sets JAVA_TOOL_OPTIONS itself: the
    JVM's threads and the monitor they queue on are in the run."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "JAVA_TOOL_OPTIONS"}
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--"]
        + [JAVA or "java", "-cp", str(classes), "MonitorHandoff"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # the JVM says what it picked up: the built jar, or (so that a rebuild cannot rewrite a
    # jar a JVM is reading) a snapshot of it with the same bytes
    picked = [
        line.split("-javaagent:", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("Picked up JAVA_TOOL_OPTIONS:") and "-javaagent:" in line
    ]
    assert len(picked) == 1, done.stderr
    assert Path(picked[0]).read_bytes() == agent_jar.read_bytes(), picked
    doc = analyze(out)
    assert doc["trace"]["runtimes"] == ["java"]
    assert doc["trace"]["units"] >= 5


# --- the control channel and boundaries ---------------------------------------------------


def wisp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def private_dir(tmp_path: Path) -> Path:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    return runtime


def test_control_channel_passes_the_protocol_corpus(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """Every control item of conformance/protocols, over the Unix socket and over TCP, and
    the channel still answers after each; socket and descriptor are private and are removed
    when the JVM exits."""
    runtime = private_dir(tmp_path)
    proc = start_java(
        agent_jar,
        classes,
        tmp_path / "run",
        "HttpServe",
        stdin=True,
        WILLOWISP_CONTROL="tcp",
        WILLOWISP_CONTROL_TOKEN=CORPUS_TOKEN,
        WILLOWISP_RUNTIME_DIR=str(runtime),
    )
    try:
        assert read_line(proc).startswith("ready ")
        (desc_path,) = runtime.glob(f"{proc.pid}-*.json")
        desc = check_control_corpus(desc_path, "java")
        assert desc["run"] == str((tmp_path / "run").resolve())
    finally:
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and stdout.split()[-1] == "bye", stderr
    assert list(runtime.iterdir()) == []  # socket and descriptor removed at exit


def shop_request(port: int, method: str, path: str) -> str:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=b"" if method == "POST" else None
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def shop_rounds(port: int, *paths: str) -> list[str]:
    """Each path with ?order=ab, then with ?order=ba: an inversion per handler, no hang."""
    answers = []
    for order in ("order=ab", "order=ba&call=1"):
        for path in paths:
            method = "POST" if path == "/checkout" else "GET"
            answers.append(shop_request(port, method, f"{path}?{order}"))
    return answers


def _lines_of(method: str) -> set[str]:
    """``BoundaryShop.java:N`` for every line of one of its methods."""
    source = (PROGRAMS / "BoundaryShop.java").read_text().splitlines()
    start = next(i for i, line in enumerate(source) if f"static String {method}(" in line)
    end = next(i for i in range(start + 1, len(source)) if source[i] == "  }")
    return {f"BoundaryShop.java:{n + 1}" for n in range(start, end + 1)}


CHECKOUT_LINES = _lines_of("checkout")


def inversions(out: Path) -> tuple[list[dict], dict]:
    doc = analyze(out)
    return [f for f in doc["findings"] if f["kind"] == "potential-deadlock"], doc


def test_boundaries_record_full_fidelity_only_inside(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """hops mode with a boundary on POST /checkout: the checkout handler's ReentrantLock and
    synchronized inversions are predicted (lock hooks and monitor hooks of application
    classes, gated on the instance), browse's identical ones are not recorded; a call made
    inside carries tracestate wisp=b-<id>, which opens a propagated instance; by_boundary
    counts both."""
    out = tmp_path / "run"
    spec = "entry=http:POST /checkout;runtimes=java"
    proc = start_java(
        agent_jar,
        classes,
        out,
        "BoundaryShop",
        stdin=True,
        WILLOWISP_MODE="hops",
        WILLOWISP_BOUNDARIES=spec,
        WILLOWISP_RUNTIME_DIR=str(private_dir(tmp_path)),
    )
    try:
        port = int(read_line(proc).split()[1])
        answers = shop_rounds(port, "/checkout", "/browse")
    finally:
        _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    boundary_id = hashlib.sha256(b"http:POST /checkout").hexdigest()[:8]
    assert answers == ["paid", "looked", f"wisp=b-{boundary_id}", "looked"]
    found, doc = inversions(out)
    assert sorted({r["kind"] for f in found for r in f["resources"]}) == ["monitor", "rlock"]
    assert len(found) == 2
    for f in found:
        assert any(line in f["summary"] for line in CHECKOUT_LINES), f["summary"]
    assert doc["trace"]["agent_faults"] == 0
    (process,) = doc["processes"]
    cost = process["agent"]["by_boundary"]["http:POST /checkout"]
    assert (cost["entries"], cost["propagated"], cost["active"]) == (2, 1, 0)
    assert cost["events"] > 0 and cost["cost_ns"] > 0 and cost["source"] == "config"


def test_a_deadlock_inside_a_boundary_is_reported_in_hops_mode(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """hops mode, a boundary on POST /refund: two refund requests deadlock on two monitors;
    inside the instances the monitor hooks record the holds and the sampler the stuck
    waits, so the cycle is reported while the JVM hangs."""
    out = tmp_path / "run"
    proc = start_java(
        agent_jar,
        classes,
        out,
        "BoundaryShop",
        stdin=True,
        WILLOWISP_MODE="hops",
        WILLOWISP_BOUNDARIES="entry=http:POST /refund",
        WILLOWISP_RUNTIME_DIR=str(private_dir(tmp_path)),
    )
    hung = []
    try:
        port = int(read_line(proc).split()[1])
        for side in ("a", "b"):  # never answered: sent on raw sockets, closed at the end
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            head = f"POST /refund?side={side} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            s.sendall(head.encode())
            hung.append(s)
        refund = _lines_of("refund")

        def cycle(f: dict) -> bool:
            wheres = {r.get("where") or "" for r in f["resources"]}
            return {r["kind"] for r in f["resources"]} == {"monitor"} and all(
                w in refund for w in wheres
            )

        found = wait_for_finding(out, "deadlock", cycle)
        assert proc.poll() is None
        assert len(found["units"]) == 2
    finally:
        for s in hung:
            s.close()
        kill9(proc)


def wquery(out: Path, sql: str) -> list[tuple]:
    """``willowisp query OUT SQL``, its rows."""
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "query", str(out), sql, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [tuple(r) for r in json.loads(done.stdout)["rows"]]


def test_boundaries_follow_work_handed_to_executors(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """hops mode, a boundary on POST /order: the HttpServer handler hands its work to a
    single-thread pool (ExecutorService.submit; CompletableFuture.supplyAsync on a pool) and
    the pool thread runs it inside the instance: its ReentrantLock and monitor holds are
    recorded (an inversion between the two pools' threads is predicted), each hand-off is a
    queue edge from the handler to the pool thread, and by_boundary counts the pool
    thread's events. /peek hands the same work on other locks to the same pools from outside
    any instance: nothing of it is recorded."""
    out = tmp_path / "run"
    proc = start_java(
        agent_jar,
        classes,
        out,
        "JavaPoolShop",
        stdin=True,
        WILLOWISP_MODE="hops",
        WILLOWISP_BOUNDARIES="entry=http:POST /order;runtimes=java",
        WILLOWISP_RUNTIME_DIR=str(private_dir(tmp_path)),
    )
    try:
        port = int(read_line(proc).split()[1])
        answers = [
            shop_request(port, "POST", "/order?order=ab"),
            shop_request(port, "GET", "/peek?order=ab"),
            shop_request(port, "POST", "/order?order=ba&async=1"),
            shop_request(port, "GET", "/peek?order=ba"),
        ]
    finally:
        _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    packer, shipper = (a.split(" on ")[1] for a in answers[:3:2])
    assert answers == [
        f"ordered on {packer}",
        f"peeked on {packer}",
        f"ordered on {shipper}",
        f"peeked on {shipper}",
    ]
    source = (PROGRAMS / "JavaPoolShop.java").read_text().splitlines()
    work = _lines_in(source, "static String work(")
    # the pool threads' holds: the work's two ReentrantLocks and two monitors, per order
    held = wquery(
        out,
        "SELECT u.name, r.kind, e.line FROM events e JOIN units u ON u.id = e.unit "
        "JOIN resources r ON r.id = e.resource WHERE e.kind = 'lock.acquired' "
        f"AND u.name IN ('{packer}', '{shipper}') ORDER BY e.time_ns",
    )
    assert [(n, k) for n, k, _ in held] == [
        *[(packer, "rlock")] * 2,
        *[(packer, "monitor")] * 2,
        *[(shipper, "rlock")] * 2,
        *[(shipper, "monitor")] * 2,
    ], held
    assert all(line in work for _, _, line in held), (held, work)
    # nothing the pool threads did for /peek (outside any instance) is there
    assert wquery(
        out,
        "SELECT count(*) FROM events e JOIN units u ON u.id = e.unit "
        f"WHERE u.name IN ('{packer}', '{shipper}') AND e.kind LIKE 'lock.%'",
    ) == [(16,)]
    # each hand-off: queue.put on the handler's thread -> queue.get on the pool thread
    edges = wquery(
        out,
        "SELECT s.kind, d.kind, du.name, su.name <> du.name FROM edges g "
        "JOIN events s ON s.id = g.src JOIN events d ON d.id = g.dst "
        "JOIN units su ON su.id = s.unit JOIN units du ON du.id = d.unit "
        "WHERE g.kind = 'queue' ORDER BY s.time_ns",
    )
    assert edges == [
        ("queue.put", "queue.get", packer, True),
        ("queue.put", "queue.get", shipper, True),
    ], edges
    doc = analyze_all(out)
    found = [f for f in doc["findings"] if f["kind"] == "potential-deadlock"]
    assert sorted(r["kind"] for f in found for r in f["resources"]) == [
        "monitor",
        "monitor",
        "rlock",
        "rlock",
    ], found
    assert {u["name"] for f in found for u in f["units"]} == {packer, shipper}, found
    assert doc["trace"]["agent_faults"] == 0
    (process,) = doc["processes"]
    cost = process["agent"]["by_boundary"]["http:POST /order"]
    assert (cost["entries"], cost["active"]) == (2, 0)
    # the handler threads' own events plus the pool threads' 16 holds and 2 queue.get
    assert cost["events"] >= 18, cost


def _lines_in(source: list[str], head: str) -> set[int]:
    """The line numbers of the method whose declaration contains ``head``."""
    start = next(i for i, line in enumerate(source) if head in line)
    end = next(i for i in range(start + 1, len(source)) if source[i] == "  }")
    return set(range(start + 1, end + 2))


def analyze_all(out: Path) -> dict:
    """``analyze --no-suppress``: findings outside boundary instances too (the analyzer's
    instances do not follow executor hand-offs yet, so the pool threads' are outside)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "willowisp",
            "analyze",
            str(out),
            "--format",
            "json",
            "--no-suppress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_willowisp_ctl_reaches_a_jvm_and_switches_a_boundary(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """`willowisp ctl PID status` and `enable SPEC` reach a running hops-mode JVM: before
    the enable the checkout inversion is not recorded, after it (the lock and monitor hooks
    installed then) it is; `disable` switches it off again."""
    out = tmp_path / "run"
    runtime = private_dir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    env["WILLOWISP_RUNTIME_DIR"] = str(runtime)
    proc = start_java(
        agent_jar,
        classes,
        out,
        "BoundaryShop",
        stdin=True,
        WILLOWISP_MODE="hops",
        WILLOWISP_RUNTIME_DIR=str(runtime),
    )
    try:
        port = int(read_line(proc).split()[1])
        shop_rounds(port, "/checkout")
        done = wisp("ctl", str(proc.pid), "status", "--format", "json", env=env)
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)["processes"][0]["result"]
        assert (status["runtime"], status["mode"], status["boundaries"]) == ("java", "hops", [])
        done = wisp("ctl", str(proc.pid), "enable", "entry=http:POST /checkout", env=env)
        assert done.returncode == 0, done.stderr
        shop_rounds(port, "/checkout", "/browse")
        done = wisp("ctl", str(out), "disable", "http:POST /checkout", env=env)
        assert done.returncode == 0, done.stderr
        done = wisp("ctl", str(proc.pid), "status", "--format", "json", env=env)
        (b,) = json.loads(done.stdout)["processes"][0]["result"]["boundaries"]
        assert (b["name"], b["enabled"], b["source"], b["entries"]) == (
            "http:POST /checkout",
            False,
            "ctl",
            2,
        )
    finally:
        _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    found, doc = inversions(out)
    assert len(found) == 2, [f["summary"] for f in found]
    for f in found:
        assert any(line in f["summary"] for line in CHECKOUT_LINES), f["summary"]
    assert doc["trace"]["agent_faults"] == 0


# --- the native stream ----------------------------------------------------------------------


def test_native_stream_to_a_collector(agent_jar: Path, classes: Path, tmp_path: Path) -> None:
    """WILLOWISP_COLLECTOR: every chunk goes to `willowisp collect --native` (acknowledged
    before the JVM exits), nothing to the out folder."""
    collected, out = tmp_path / "collected", tmp_path / "out"
    collector, address = start_collector(collected)
    try:
        proc = start_java(agent_jar, classes, out, "LockOrder", WILLOWISP_COLLECTOR=address)
        stdout, stderr = proc.communicate(timeout=60)
        assert (proc.returncode, stdout.strip()) == (0, "done"), stderr
    finally:
        stop_collector(collector)
    assert not out.exists()
    found = analyze(collected)
    assert [f["kind"] for f in found["findings"]] == ["potential-deadlock"]
    assert found["trace"]["agent_faults"] == 0


def test_stream_falls_back_to_files(agent_jar: Path, classes: Path, tmp_path: Path) -> None:
    """A collector that is not there, and one that stops while the JVM runs and comes back:
    the segment file gets the process record, a fault saying why and every unacknowledged
    chunk; the agent reconnects; the folders together hold the whole story."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    out = tmp_path / "out1"
    proc = start_java(agent_jar, classes, out, "LockOrder", WILLOWISP_COLLECTOR=dead)
    stdout, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stdout.strip()) == (0, "done"), stderr
    found = analyze(out)
    assert sorted(f["kind"] for f in found["findings"]) == ["agent-fault", "potential-deadlock"]
    (fault,) = [f for f in found["findings"] if f["kind"] == "agent-fault"]
    assert "cannot reach collector" in json.dumps(fault)

    collected, again, out = tmp_path / "collected", tmp_path / "again", tmp_path / "out2"
    collector, address = start_collector(collected)
    proc = start_java(agent_jar, classes, out, "MonitorDeadlock", WILLOWISP_COLLECTOR=address)
    try:
        assert read_line(proc) == "deadlocking"
        stop_collector(collector)  # it says bye; the agent's next flush falls back
        deadline = time.monotonic() + DEADLINE_S
        while not list(out.glob("*.wtrace")) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a deadline, not hoping
        collector, _ = start_collector(again, int(address.rsplit(":", 1)[1]))
        try:
            while not list(again.glob("*.wtrace")) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop_collector(collector)
    finally:
        kill9(proc)
    assert len(list(again.glob("*.wtrace"))) == 1  # the agent came back
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(collected), str(out), str(again)]
        + ["--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    doc = json.loads(done.stdout)
    deadlocks = [f for f in doc["findings"] if f["kind"] == "deadlock"]
    assert len(deadlocks) == 1
    assert {u["name"] for u in deadlocks[0]["units"]} == {"transfer", "audit"}
    # the collector's bye is an orderly fallback that lost nothing: no fault
    assert [f for f in doc["findings"] if f["kind"] == "agent-fault"] == []


TICKER = """
import java.util.concurrent.locks.ReentrantLock;

public class Ticker {
  public static void main(String[] args) throws Exception {
    ReentrantLock lock = new ReentrantLock();
    System.out.println("ticking");
    while (true) {
      lock.lock();
      lock.unlock();
      Thread.sleep(10);
    }
  }
}
"""


def test_stream_reconnects_past_five_attempts(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """Reconnects never stop: with WILLOWISP_STREAM_RETRY_S=0.2 a JVM that records all the
    time tries an absent collector a 7th time (the old schedule stopped after 1 + 5), and
    when the collector comes up on that port its chunks reach it; the fallback file and the
    collector's file together hold every event (no sequence number missing)."""
    from willowisp.wtrace.reader import read_file

    src = tmp_path / "src"
    src.mkdir()
    (src / "Ticker.java").write_text(TICKER)
    assert JAVAC is not None
    subprocess.run([JAVAC, "-d", str(src), str(src / "Ticker.java")], check=True, timeout=120)
    out, collected = tmp_path / "out", tmp_path / "collected"
    absent = AbsentCollector()
    collector = None
    proc = start_java(
        agent_jar,
        src,
        out,
        "Ticker",
        WILLOWISP_COLLECTOR=absent.address,
        WILLOWISP_STREAM_RETRY_S="0.2",
    )
    try:
        assert read_line(proc) == "ticking"
        assert absent.wait_attempts(7, timeout=10) >= 7, f"only {absent.attempts} attempts"
        absent.close()
        collector, _ = start_collector(collected, absent.port)
        mine = f"*-{proc.pid}-*.wtrace"
        deadline = time.monotonic() + 10
        while not any(read_file(f).chunks for f in collected.glob(mine)):
            assert time.monotonic() < deadline, "the agent did not come back to the collector"
            time.sleep(0.05)  # polling a condition with a deadline
        proc.terminate()  # SIGTERM: the agent's last flush and bye
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            kill9(proc)
        absent.close()
        if collector is not None:
            stop_collector(collector)
    fallback, streamed = sorted(out.glob(mine)), sorted(collected.glob(mine))
    assert fallback and streamed, (fallback, streamed)
    assert any(f.get("where") == "stream" for f in fault_records(out)), fault_records(out)
    spans = sorted(
        (c.events.first_seq, c.events.first_seq + len(c.events))
        for f in fallback + streamed
        for c in read_file(f).chunks
        if c.events is not None and len(c.events)
    )
    assert any(c.events is not None for f in streamed for c in read_file(f).chunks)
    end = spans[0][1]
    for first, last in spans[1:]:
        assert first <= end, f"events {end}..{first} are in neither folder"
        end = max(end, last)


def test_jfr_events_of_the_last_second_survive_a_normal_exit(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """A JVM that exits right after a monitor wait: JFR has not flushed that wait to the
    stream yet; the agent collects it before any shutdown hook runs (JFR's closes the
    recording), so the wait and its wake are in the trace, and the JVM prints nothing."""
    out = tmp_path / "run"
    proc = start_java(agent_jar, classes, out, "WaitThenExit")
    stdout, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stdout.strip()) == (0, "done"), stderr
    assert "[jfr]" not in stderr and "Exception" not in stderr, stderr
    done = wisp(
        "query",
        str(out),
        "select kind, arg from events where resource_kind = 'monitor' order by time_ns, seq",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    rows = [tuple(r) for r in json.loads(done.stdout)["rows"]]
    # (JFR may also report a contended enter of one of its own monitors by main)
    waits = [r for r in rows if r == ("unit.block", 5) or r[0] == "unit.wake"]
    assert waits == [("unit.block", 5), ("unit.wake", 1)], rows


@pytest.mark.skipif(not CAN_MOUNT, reason="needs root with unshare and mount (CI runs as root)")
def test_a_full_disk_is_counted_and_said(agent_jar: Path, classes: Path, tmp_path: Path) -> None:
    """`willowisp run` of a lock storm with its run folder on a 160 KiB tmpfs (64 KiB of it
    the agent's reserve): the quiet start fits, the storm's chunks do not. The program
    prints and exits as without the agent; the agent cuts every refused chunk off again
    (the file ends at a whole chunk), writes the news of the loss into the room the
    reserve left (drops per unit, one write fault), removes the reserve and says the loss
    in exactly one stderr line."""
    from willowisp.wtrace.reader import read_file

    argv = [JAVA or "java", "-cp", str(classes), "LockStorm", "200000"]
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert (plain.returncode, plain.stdout) == (0, "done\n"), plain.stderr
    done, kept = run_on_full_disk(tmp_path, argv, "160k")
    assert (done.returncode, done.stdout) == (plain.returncode, plain.stdout), done.stderr
    assert "Exception" not in done.stderr and "\tat " not in done.stderr, done.stderr
    said = [line for line in done.stderr.splitlines() if "could not be written" in line]
    assert len(said) == 1 and "No space left on device" in said[0], done.stderr
    assert said[0].startswith("willowisp: ") and " events of LockStorm (pid " in said[0], said
    lost = int(said[0].split("willowisp: ", 1)[1].split(" events", 1)[0])
    assert lost > 0
    check_loss_reported(kept, "LockStorm")  # (its drops also count the rings' overflow)
    (segment,) = sorted(kept.glob("*.wtrace"))
    trace = read_file(segment)
    assert not trace.problems and not trace.truncated, trace.problems
    writes = [
        r for c in trace.chunks for r in c.records if r.rtype == 5 and r.get("where") == "write"
    ]
    assert len(writes) == 1 and writes[0].get("message") == "No space left on device", writes
    # every unit an event names is defined in the file (refused chunks' definitions kept)
    units = {r.id for c in trace.chunks for r in c.records if r.rtype == 2}
    names = {r.get("name") for c in trace.chunks for r in c.records if r.rtype == 2}
    assert {"main", "writer", "reader", "stormer"} <= names, names
    named = set()
    for c in trace.chunks:
        if c.events is not None:
            named |= {int(u) for u in c.events.unit}
    assert named - {0} <= units, named - units
