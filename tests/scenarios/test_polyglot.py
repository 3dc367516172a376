"""Issue 6's "done means": a Python orchestrator calls a Go service that calls a Node service
that calls back into Python, all recorded by one ``willowisp run`` command and the three
agents, then analyzed by ``willowisp analyze --format json``.

The programs are in programs/polyglot/ (orchestrator.py says how each mode is sequenced):
``ok`` makes one request through Python -> Go (wisp.Mutex) -> Node (async-mutex) -> Python
(threading.Lock); ``deadlock`` builds a wait-for cycle through those three locks and three
HTTP calls, then ends the services with SIGTERM and itself with os._exit.

The orchestrator's services are its child processes; each run starts in a session of its
own, so whatever is left of it when the test ends is killed by that process group's id.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from polyglot_kit import analyze, run_orchestrator

from willowisp.ingest.load import load

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs" / "polyglot"
NODE_AGENT = ROOT / "agents" / "node"
BUILD = ROOT / ".cache" / "polyglot-scenario"
GO = shutil.which("go")


@pytest.fixture(scope="module")
def go_service() -> Path:
    """The Go service, built into the checkout's ignored .cache/ folder; and the Node agent's
    dev dependency async-mutex, which the Node service requires from there."""
    assert GO is not None, "go is needed for the polyglot scenario"
    if not (NODE_AGENT / "node_modules" / "async-mutex").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install agents/node's dev dependencies"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_AGENT, check=True, timeout=300
        )
    BUILD.mkdir(parents=True, exist_ok=True)
    target = BUILD / "gosvc"
    built = subprocess.run(
        [GO, "build", "-o", str(target), "./gosvc"],
        cwd=PROGRAMS,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return target


def run_scenario(mode: str, go_service: Path, out: Path) -> str:
    """``willowisp run --out OUT -- python orchestrator.py MODE``: its stdout. Every process
    of the run is gone afterwards."""
    orchestrator = [sys.executable, str(PROGRAMS / "orchestrator.py"), mode, str(go_service)]
    return run_orchestrator(orchestrator, out)


def place(name: str, text: str) -> str:
    """``file:LINE`` of the one line of programs/polyglot/``name`` that contains ``text``."""
    lines = (PROGRAMS / name).read_text().splitlines()
    [n] = [i for i, line in enumerate(lines, 1) if text in line]
    return f"{Path(name).name}:{n}"


def test_one_request_through_python_go_node_python_is_one_linked_operation(
    go_service: Path, tmp_path: Path
) -> None:
    """ok: the answer comes back through all four processes; the three HTTP hops (python
    -> go, go -> nodejs, nodejs -> python) are each linked by traceparent, the spawns of the
    services too, every hop's rpc resource on both sides carries the one trace id the
    orchestrator began, and all processes share one clock domain."""
    out = tmp_path / "run"
    assert run_scenario("ok", go_service, out).strip() == "go:node:python:leaf"
    report = analyze(out)

    services = {(p["service"], p["runtime"]) for p in report["processes"]}
    assert services == {
        ("orchestrator", "python"),
        ("backend", "python"),
        ("gosvc", "go"),
        ("nodesvc", "nodejs"),
    }
    assert len({p["clock_domain"] for p in report["processes"]}) == 1

    http = {
        (h["from"]["runtime"], h["to"]["runtime"]): h
        for h in report["hops"]
        if h["protocol"] == "http"
    }
    assert set(http) == {("python", "go"), ("go", "nodejs"), ("nodejs", "python")}, http
    for hop in http.values():
        assert hop["count"] == hop["linked"] == 1, hop
        assert hop["provenance"] == {"traceparent": 1}, hop
    assert "net/http" in http[("python", "go")]["libraries"]
    assert "net/http" in http[("go", "nodejs")]["libraries"]
    spawned = {h["to"]["service"] for h in report["hops"] if h["protocol"] == "process"}
    assert spawned == {"backend", "gosvc", "nodesvc"}
    assert all(h["count"] == h["linked"] for h in report["hops"]), report["hops"]
    edges = report["trace"]["happens_before_edges"]
    assert edges["request"] == 3 and edges["reply"] == 3, edges

    # one logical operation: the trace id the orchestrator's call began is on every rpc
    # resource, client and server side, in all four processes
    trace = load([out])
    rpcs = [r for r in trace.resources if r.kind == "rpc"]
    assert len(rpcs) == 6, rpcs
    assert len({r.trace_id for r in rpcs}) == 1, [(r.name, r.trace_id) for r in rpcs]
    assert len({r.proc for r in rpcs}) == 4
    [path] = report["critical_paths"]["paths"]
    assert path["trace_id"] == rpcs[0].trace_id
    assert all(f["severity"] == "info" for f in report["findings"]), report["findings"]


def test_cycle_through_go_mutex_node_async_mutex_and_python_lock_is_one_deadlock(
    go_service: Path, tmp_path: Path
) -> None:
    """deadlock: T1 holds orders_lock and calls Go /a, which waits for inventory
    (wisp.Mutex) held by Go /b, which calls Node /c, which waits for shelf (async-mutex) held
    by Node /d, which calls the orchestrator's own /e, which waits for orders_lock. analyze
    reports one deadlock through units of the three runtimes, naming the three locks where
    they were made (or, for async-mutex, first taken) and the three HTTP calls."""
    out = tmp_path / "run"
    assert run_scenario("deadlock", go_service, out).strip() == "deadlocked"
    report = analyze(out)
    assert sorted(report["trace"]["runtimes"]) == ["go", "nodejs", "python"]

    deadlocks = [f for f in report["findings"] if f["kind"] == "deadlock"]
    assert len(deadlocks) == 1, why_no_cycle(report, out)
    [found] = deadlocks
    assert found["severity"] == "error"
    by_runtime: dict[str, list[tuple[str, str]]] = {}
    for u in found["units"]:
        by_runtime.setdefault(u["runtime"], []).append((u["kind"], u["name"]))
    assert sorted(by_runtime) == ["go", "nodejs", "python"], found["units"]
    assert sorted(by_runtime["nodejs"]) == [("async-flow", "GET /c"), ("async-flow", "GET /d")]
    assert [k for k, _ in by_runtime["go"]] == ["goroutine", "goroutine"]
    assert ("thread", "T1") in by_runtime["python"] and len(by_runtime["python"]) == 2

    locks = {(r["name"], r["where"]) for r in found["resources"] if r["kind"] == "lock"}
    assert locks == {
        ("orders_lock", place("orchestrator.py", "orders_lock = threading.Lock()")),
        ("inventory", place("gosvc/main.go", 'wisp.NewMutex("inventory")')),
        ("shelf", place("nodesvc.js", "held across the call to /e")),
    }
    calls = sorted(r["name"] for r in found["resources"] if r["kind"] == "rpc")
    assert calls == ["GET /a", "GET /c", "GET /e"]

    text = "\n".join(found["explanation"])
    for line in (
        "T1 (pid",
        "acquired lock orders_lock",
        "acquired lock inventory",
        "acquired lock shelf",
        "waits for lock inventory at main.go:",
        "GET /c waits for lock shelf",
        "waits for lock orders_lock",
        "held by T1",
        "sent GET /a to gosvc",
        "sent GET /c to nodesvc",
        "sent GET /e to orchestrator",
    ):
        assert line in text, text


WAITS_SQL = (
    "SELECT unit, resource_kind, resource_name, outcome, duration_ns FROM waits "
    "WHERE resource_kind IN ('lock', 'rpc') ORDER BY start_ns"
)


def why_no_cycle(report: dict[str, Any], out: Path) -> str:
    """The findings, and the waits of the six units the cycle is built from, with how each
    ended: the wait that ended too early is the missing edge."""
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "query", str(out), "--format", "csv", WAITS_SQL],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    kinds = [(f["kind"], f["summary"]) for f in report["findings"]]
    return f"findings: {kinds}\nlock and rpc waits:\n{done.stdout}{done.stderr}"
