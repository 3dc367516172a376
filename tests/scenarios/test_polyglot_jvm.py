"""Issue 7's "done means": a Python orchestrator calls a Java service that calls a Rust
service that calls back into Python, all recorded by one ``willowisp run`` command and the
three agents, then analyzed by ``willowisp analyze --format json``.

The programs are programs/polyglot_jvm/ (orchestrator.py says how each mode is sequenced)
and agents/rust/testprogs/src/bin/scenario_svc.rs: ``ok`` makes one request through
Python -> Java (HttpServer, HttpClient) -> Rust (tower layer, tokio Mutex, reqwest) ->
Python (threading.Lock); ``deadlock`` builds a wait-for cycle through a Python lock, a
Java monitor and a tokio mutex and three HTTP calls.

Each run starts in a session of its own; whatever is left of it when the test ends is
killed by that process group's id.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from polyglot_kit import analyze, run_orchestrator

from willowisp.ingest.load import load

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs" / "polyglot_jvm"
RUST = ROOT / "agents" / "rust"
JAR = ROOT / "agents" / "java" / "target" / "willowisp-agent.jar"
BUILD = ROOT / ".cache" / "polyglot-jvm-scenario"
JAVAC = shutil.which("javac")
CARGO = shutil.which("cargo")


@pytest.fixture(scope="module")
def services() -> tuple[Path, Path]:
    """(the compiled Java classes folder, the Rust service binary)."""
    assert JAVAC is not None and CARGO is not None, "a JDK and cargo are needed"
    assert JAR.exists(), "build agents/java first (mvn package): willowisp run needs its jar"
    BUILD.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [JAVAC, "-g", "-d", str(BUILD), str(PROGRAMS / "JavaSvc.java")], check=True, timeout=300
    )
    built = subprocess.run(
        [CARGO, "build", "--release", "--workspace"],
        cwd=RUST,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    return BUILD, RUST / "target" / "release" / "scenario_svc"


def run_scenario(mode: str, services: tuple[Path, Path], out: Path) -> str:
    """``willowisp run --out OUT -- python orchestrator.py MODE ...``: its stdout. Every
    process of the run is gone afterwards."""
    classes, rust = services
    orchestrator = [
        sys.executable,
        str(PROGRAMS / "orchestrator.py"),
        mode,
        str(classes),
        str(rust),
    ]
    return run_orchestrator(orchestrator, out, drop=("JAVA_TOOL_OPTIONS",))


def test_one_request_through_python_java_rust_python_is_one_linked_operation(
    services: tuple[Path, Path], tmp_path: Path
) -> None:
    """ok: the answer comes back through the three processes; the three HTTP hops (python
    -> java, java -> rust, rust -> python) are each linked by traceparent, and every hop's
    rpc resource on both sides carries the one trace id the orchestrator began."""
    out = tmp_path / "run"
    assert run_scenario("ok", services, out).strip() == "java:rust:python:leaf"
    report = analyze(out)

    assert {(p["service"], p["runtime"]) for p in report["processes"]} == {
        ("orchestrator", "python"),
        ("javasvc", "java"),
        ("rustsvc", "rust"),
    }
    http = {
        (h["from"]["runtime"], h["to"]["runtime"]): h
        for h in report["hops"]
        if h["protocol"] == "http"
    }
    assert set(http) == {("python", "java"), ("java", "rust"), ("rust", "python")}, http
    for hop in http.values():
        assert hop["count"] == hop["linked"] == 1, hop
        assert hop["provenance"] == {"traceparent": 1}, hop
    assert set(http[("python", "java")]["libraries"]) == {"urllib", "com.sun.net.httpserver"}
    assert set(http[("java", "rust")]["libraries"]) == {"java.net.http", "tower"}
    assert set(http[("rust", "python")]["libraries"]) == {"reqwest", "http.server"}
    edges = report["trace"]["happens_before_edges"]
    assert edges["request"] == 3 and edges["reply"] == 3, edges

    trace = load([out])
    rpcs = [r for r in trace.resources if r.kind == "rpc"]
    assert len(rpcs) == 6, rpcs
    assert len({r.trace_id for r in rpcs}) == 1, [(r.name, r.trace_id) for r in rpcs]
    assert len({r.proc for r in rpcs}) == 3
    [path] = report["critical_paths"]["paths"]
    assert path["trace_id"] == rpcs[0].trace_id
    assert all(f["severity"] == "info" for f in report["findings"]), report["findings"]


def test_ok_run_spawns_linked_and_one_clock_domain(
    services: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert run_scenario("ok", services, out).strip() == "java:rust:python:leaf"
    report = analyze(out)
    spawns = [h for h in report["hops"] if h["protocol"] == "process"]
    assert {h["to"]["service"] for h in spawns} == {"javasvc", "rustsvc"}, spawns
    assert all(h["count"] == h["linked"] for h in spawns), spawns
    assert len({p["clock_domain"] for p in report["processes"]}) == 1, report["processes"]


@pytest.fixture(scope="module")
def deadlocked(
    services: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """The deadlock mode, run once: its run folder and analyze's report."""
    out = tmp_path_factory.mktemp("deadlock") / "run"
    assert run_scenario("deadlock", services, out).strip() == "deadlocked"
    return out, analyze(out)


def query(out: Path, sql: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "query", str(out), "--format", "json", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    table = json.loads(done.stdout)
    names = [c["name"] for c in table["columns"]]
    return [dict(zip(names, row, strict=True)) for row in table["rows"]]


def test_deadlock_recording_holds_the_three_stuck_lock_waits(
    deadlocked: tuple[Path, dict[str, Any]],
) -> None:
    """deadlock: T1 holds orders_lock and calls Java /a, which waits for the monitor
    inventory held by Java /b, which calls Rust /c, which waits for the tokio mutex shelf
    held by Rust /d, which calls the orchestrator's own /e, which waits for orders_lock.
    Each process's recording ends with its lock wait open, and Java's and Python's calls
    last until the services end."""
    out, report = deadlocked
    assert sorted(report["trace"]["runtimes"]) == ["java", "python", "rust"]
    sql = (
        "SELECT w.resource_kind, w.resource_name, w.outcome, p.runtime FROM waits w "
        "JOIN processes p ON p.id = split_part(w.unit, ':', 1) "
        "WHERE w.resource_kind IN ('lock', 'monitor')"
    )
    stuck = {(w["runtime"], w["resource_kind"], w["outcome"]) for w in query(out, sql)}
    assert stuck == {
        ("python", "lock", "still waiting"),
        ("java", "monitor", "still waiting"),
        ("rust", "lock", "still waiting"),
    }, stuck
    names = {w["resource_name"] for w in query(out, sql)}
    assert "orders_lock" in names
    assert any(n.startswith("tokio::sync::Mutex scenario_svc.rs:") for n in names), names
    calls = query(out, "SELECT resource_name, duration_ns FROM waits WHERE resource_kind = 'rpc'")
    long_calls = {c["resource_name"] for c in calls if (c["duration_ns"] or 10**10) > 10**9}
    assert {"GET /a", "GET /b", "GET /c", "GET /d"} <= long_calls, calls


def test_cycle_through_java_monitor_tokio_mutex_and_python_lock_is_one_deadlock(
    deadlocked: tuple[Path, dict[str, Any]],
) -> None:
    """analyze reports one deadlock through units of the three runtimes, naming the three
    locks with their source places and the three HTTP calls."""
    _, report = deadlocked
    deadlocks = [f for f in report["findings"] if f["kind"] == "deadlock"]
    assert len(deadlocks) == 1, [(f["kind"], f["summary"]) for f in report["findings"]]
    [found] = deadlocks
    assert found["severity"] == "error"
    assert {u["runtime"] for u in found["units"]} == {"java", "python", "rust"}, found["units"]
    assert ("thread", "T1") in {(u["kind"], u["name"]) for u in found["units"]}
    locks = {
        r["name"]: r.get("where") for r in found["resources"] if r["kind"] in ("lock", "monitor")
    }
    assert len(locks) == 3, found["resources"]
    assert all(locks.values()), locks
    assert locks["orders_lock"].startswith("orchestrator.py:")
    assert any("JavaSvc" in str(w) for w in locks.values()), locks
    assert any("scenario_svc.rs" in str(w) for w in locks.values()), locks
    calls = sorted(r["name"] for r in found["resources"] if r["kind"] == "rpc")
    assert calls == ["GET /a", "GET /c", "GET /e"]
