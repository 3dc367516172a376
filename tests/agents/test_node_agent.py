"""The Node agent (agents/node) end to end: real Node and Python processes on loopback,
recorded by their agents into one run folder and analyzed by ``willowisp analyze``."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from wispkit import (
    CAN_MOUNT,
    CORPUS_TOKEN,
    AbsentCollector,
    analyze_json,
    check_control_corpus,
    check_loss_reported,
    clean_env,
    collected_events,
    run_on_full_disk,
    start_collector,
    stop_collector,
)

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agents" / "node"
REGISTER = AGENT / "register.js"
PROGRAMS = Path(__file__).resolve().parent / "programs" / "node"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.fixture(scope="module", autouse=True)
def _dev_dependencies() -> None:
    """The agent's dev dependency (async-mutex, for the deadlock program), installed with
    npm from the lockfile when it is not there yet."""
    if not (AGENT / "node_modules" / "async-mutex").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install agents/node's dev dependencies"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=AGENT, check=True, timeout=300)


def node_env(out: Path, **extra: str) -> dict[str, str]:
    """The environment ``willowisp run`` gives a Node program (set here by hand until it
    sets NODE_OPTIONS itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    env["NODE_OPTIONS"] = f"--require {REGISTER}"
    env["WILLOWISP_OUT"] = str(out)
    env["NODE_PATH"] = str(AGENT / "node_modules")
    env.update(extra)
    return env


def wisp_run(out: Path, *cmd: str) -> subprocess.Popen[str]:
    """A Python program started by ``willowisp run`` (so recorded by the Python agent)."""
    return subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--", sys.executable, *cmd],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROGRAMS,
    )


def port_of(proc: subprocess.Popen[str]) -> int:
    """The port a program announces with its first line, ``PORT <n>``."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PORT "), f"expected 'PORT <n>', got {line!r}"
    return int(line.split()[1])


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


def test_http_hop_python_node_python_is_linked_end_to_end(tmp_path: Path) -> None:
    """A Python client calls a Node relay that calls a Python leaf: both hops are linked by
    traceparent, one trace id runs through all three processes, and the trace holds units
    of both runtimes."""
    out = tmp_path / "run"
    leaf = wisp_run(out, "hop_leaf.py")
    relay = subprocess.Popen(
        [NODE, str(PROGRAMS / "hop_relay.js"), str(port_of(leaf))],
        stdout=subprocess.PIPE,
        text=True,
        env=node_env(out, WILLOWISP_SERVICE="relay"),
    )
    client = wisp_run(out, "hop_client.py", str(port_of(relay)))
    assert client.wait(timeout=60) == 0
    assert relay.wait(timeout=60) == 0
    assert leaf.wait(timeout=60) == 0
    for p in (leaf, relay, client):
        assert p.stdout is not None
        p.stdout.close()

    doc = analyze(out)
    assert doc["trace"]["processes"] == 3
    assert set(doc["trace"]["runtimes"]) == {"python", "nodejs"}
    assert doc["trace"]["agent_faults"] == 0
    pairs = {(h["from"]["runtime"], h["to"]["runtime"]): h for h in doc["hops"]}
    for pair in (("python", "nodejs"), ("nodejs", "python")):
        hop = pairs[pair]
        assert hop["protocol"] == "http"
        assert hop["count"] == 1
        assert hop["linked"] == 1
        assert hop["provenance"] == {"traceparent": 1}
    # Node's side is named after its core module, never like Python's http.server
    assert pairs[("python", "nodejs")]["libraries"] == ["urllib", "node:http"]
    assert pairs[("nodejs", "python")]["libraries"] == ["node:http", "http.server"]
    node = next(p for p in doc["processes"] if p["runtime"] == "nodejs")
    assert node["service"] == "relay"
    assert node["agent"]["events"] > 0
    # the three processes share one clock (same boot, same time namespace)
    assert len({p["clock_domain"] for p in doc["processes"]}) == 1


def test_a_handler_s_timer_wait_is_not_running_on_the_critical_path(tmp_path: Path) -> None:
    """A request handler that waits 30 ms on a timer (an awaited setTimeout promise, and a
    setTimeout callback) before it answers: on each request's critical path that wait is
    `io` (suspended, unit.yield to unit.run), and the request's flow runs well under the
    30 ms. The flow is born inside its connection's read, which is no flow's step; its
    first yield used to come only after the timer fired, so the wait counted as running."""
    out = tmp_path / "run"
    server = subprocess.Popen(
        [NODE, str(PROGRAMS / "timer_handler.js")],
        stdout=subprocess.PIPE,
        text=True,
        env=node_env(out, WILLOWISP_SERVICE="srv"),
    )
    client = wisp_run(out, "timer_client.py", str(port_of(server)))
    try:
        assert client.wait(timeout=60) == 0
        assert server.wait(timeout=60) == 0
    finally:
        for p in (server, client):
            if p.poll() is None:
                p.kill()
                p.wait()
            assert p.stdout is not None
            p.stdout.close()
    doc = analyze(out)
    assert doc["trace"]["agent_faults"] == 0
    flows = {"GET /await", "GET /callback"}
    seen = set()
    for path in doc["critical_paths"]["paths"]:
        mine = [s for s in path["segments"] if s["unit"]["name"] in flows]
        if not mine:
            continue
        seen |= {s["unit"]["name"] for s in mine}
        story = [(s["kind"], s["duration_ns"], s["unit"]["name"]) for s in mine]
        running = sum(s["duration_ns"] for s in mine if s["kind"] == "running")
        waited = sum(s["duration_ns"] for s in mine if s["kind"] == "io")
        assert waited >= 25_000_000, story  # the 30 ms timer (clipped to the window)
        assert running < 15_000_000, story  # was 30.4 ms: the wait counted as work
    assert seen == flows, doc["critical_paths"]


def test_async_mutex_deadlock_between_two_flows_is_found(tmp_path: Path) -> None:
    """Two requests' async flows each hold one async-mutex Mutex and wait for the other's:
    analyze reports a deadlock naming both locks and both flows."""
    out = tmp_path / "run"
    done = subprocess.run(
        [NODE, str(PROGRAMS / "mutex_deadlock.js")],
        env=node_env(out, WILLOWISP_SERVICE="bank"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "both flows blocked" in done.stdout
    doc = analyze(out)
    deadlocks = [f for f in doc["findings"] if f["kind"] == "deadlock"]
    assert len(deadlocks) == 1, [f["kind"] for f in doc["findings"]]
    found = deadlocks[0]
    assert sorted(r["name"] for r in found["resources"]) == ["accounts", "ledger"]
    assert {u["kind"] for u in found["units"]} == {"async-flow"}
    assert {u["runtime"] for u in found["units"]} == {"nodejs"}
    assert all("mutex_deadlock.js" in r["where"] for r in found["resources"])


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WILLOWISP_TRACE_RATIO", "lots"),
        ("WILLOWISP_MODE", "everything"),
        ("WILLOWISP_CLOCK_OFFSET_NS", "12ms"),
        ("WILLOWISP_BOUNDARIES", "entry=nonsense"),
        ("WILLOWISP_OUT", "/proc/willowisp-cannot-write-here"),
    ],
)
def test_a_bad_setting_never_breaks_the_program(tmp_path: Path, variable: str, value: str) -> None:
    """A garbage WILLOWISP_* value or an unwritable WILLOWISP_OUT: the program runs and
    exits 0 with its own output, and the agent says why in exactly one stderr line."""
    env = node_env(tmp_path / "run", **{variable: value})
    done = subprocess.run(
        [NODE, "-e", "setTimeout(() => console.log('still here', 6 * 7), 1)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout == "still here 42\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("willowisp: agent not started")
    assert (
        variable.removeprefix("WILLOWISP_") in lines[0] or "willowisp-cannot-write-here" in lines[0]
    )


def wisp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env if env is not None else clean_env(),
    )


def start_service(out: Path, **extra: str) -> tuple[subprocess.Popen[str], Path, int]:
    """The idle HTTP service (it runs until killed) with its control channel in a short
    private folder; returns it, that folder and its HTTP port (announced once the agent's
    descriptor is in place)."""
    runtime = Path(tempfile.mkdtemp(prefix="wn-", dir="/tmp"))
    proc = subprocess.Popen(
        [NODE, str(PROGRAMS / "idle_server.js")],
        env=node_env(out, WILLOWISP_RUNTIME_DIR=str(runtime), WILLOWISP_SERVICE="idle", **extra),
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, runtime, port_of(proc)


def stop_service(proc: subprocess.Popen[str], runtime: Path | None = None) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    if runtime is not None:
        shutil.rmtree(runtime, ignore_errors=True)


def get(port: int, path: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while part := s.recv(65536):
            data += part
    return data.decode()


def test_control_channel_passes_the_protocol_corpus(tmp_path: Path) -> None:
    """Every control item of conformance/protocols, over the Unix socket and over TCP, and
    the channel still answers after each; the program keeps serving throughout."""
    proc, runtime, port = start_service(
        tmp_path / "run", WILLOWISP_CONTROL="tcp", WILLOWISP_CONTROL_TOKEN=CORPUS_TOKEN
    )
    try:
        (desc_path,) = runtime.glob(f"{proc.pid}-*.json")
        desc = check_control_corpus(desc_path, "nodejs")
        assert desc["run"] == os.path.realpath(tmp_path / "run")
        assert "GET /work 3\n" in get(port, "/work")
        assert proc.poll() is None
    finally:
        stop_service(proc, runtime)


def ctl_json(pid: int, *args: str, env: dict[str, str]) -> dict[str, Any]:
    done = wisp("ctl", str(pid), *args, "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_willowisp_ctl_reaches_a_node_process(tmp_path: Path) -> None:
    """`willowisp ctl PID status` and `enable SPEC` reach a Node process in hops mode: the
    boundary switched on at run time makes the next matching request's promises units (the
    async hook is installed then, not before), and `disable` stops that and removes the
    hook; SIGTERM removes the socket and the descriptor."""
    out = tmp_path / "run"
    proc, runtime, port = start_service(out, WILLOWISP_MODE="hops")
    try:
        env = {**clean_env(), "WILLOWISP_RUNTIME_DIR": str(runtime)}
        status = ctl_json(proc.pid, "status", env=env)["processes"][0]["result"]
        assert status["runtime"] == "nodejs" and status["pid"] == proc.pid
        assert status["mode"] == "hops" and status["boundaries"] == []
        assert status["async_hooks"] is False  # hops mode without a boundary: no async hook
        get(port, "/work")  # before: no boundary, no promise units
        done = wisp("ctl", str(proc.pid), "enable", "entry=http:GET /work;runtimes=nodejs", env=env)
        assert done.returncode == 0, done.stderr
        get(port, "/work")
        status = ctl_json(proc.pid, "status", env=env)["processes"][0]["result"]
        (b,) = status["boundaries"]
        assert (b["name"], b["enabled"], b["source"], b["entries"]) == (
            "http:GET /work",
            True,
            "ctl",
            1,
        )
        assert status["async_hooks"] is True
        done = wisp("ctl", str(out), "disable", "http:GET /work", env=env)  # by run folder
        assert done.returncode == 0, done.stderr
        get(port, "/work")
        status = ctl_json(proc.pid, "status", env=env)["processes"][0]["result"]
        assert status["boundaries"][0]["enabled"] is False
        assert status["boundaries"][0]["entries"] == 1
        # disabled with no instance open: the hook is gone again
        assert status["async_hooks"] is False
        proc.terminate()
        assert proc.wait(timeout=30) == -15
        assert list(runtime.iterdir()) == []
    finally:
        stop_service(proc, runtime)
    assert analyze(out)["trace"]["agent_faults"] == 0
    # three requests; only the one inside the boundary made async-resource units
    q = wisp(
        "query",
        str(out),
        "SELECT kind, count(*) AS n FROM units GROUP BY kind ORDER BY kind",
        "--format",
        "json",
    )
    assert q.returncode == 0, q.stderr
    kinds = dict(json.loads(q.stdout)["rows"])
    assert kinds["async-flow"] == 3, kinds
    assert kinds.get("async-resource", 0) >= 3, kinds


def sink_of(pid: int, runtime: Path) -> dict[str, Any]:
    """The program's `sink` from `willowisp ctl PID status --format json`."""
    env = {**clean_env(), "WILLOWISP_RUNTIME_DIR": str(runtime)}
    return dict(ctl_json(pid, "status", env=env)["processes"][0]["result"]["sink"])


def test_ctl_status_sink_names_the_segment_file(tmp_path: Path) -> None:
    """Without a collector the sink is the process's segment file in the run folder, in the
    same two fields as every agent's."""
    out = tmp_path / "run"
    proc, runtime, port = start_service(out)
    try:
        assert "GET /work 3" in get(port, "/work")
        sink = sink_of(proc.pid, runtime)
        assert sorted(sink) == ["kind", "path"], sink
        assert sink["kind"] == "file"
        path = Path(sink["path"])
        assert path.parent == out and path.name.endswith("-1.wtrace"), sink
        assert f"-{proc.pid}-" in path.name and path.is_file()
    finally:
        stop_service(proc, runtime)


def test_ctl_status_sink_says_streaming_then_the_fallback_and_its_retries(
    tmp_path: Path,
) -> None:
    """Streaming to a real `willowisp collect --native`: state `streaming`, the collector's
    address and file, no fallback file, no retries. Once the collector stops (it says bye),
    state `file`, the fallback segment named, and the failed reconnects counted (tried
    every 0.2 s with WILLOWISP_STREAM_RETRY_S, when a chunk is written: a request a poll)."""
    out, collected = tmp_path / "run", tmp_path / "collected"
    collector, address = start_collector(collected)
    proc, runtime, port = start_service(
        out, WILLOWISP_COLLECTOR=address, WILLOWISP_STREAM_RETRY_S="0.2"
    )
    try:
        try:
            assert "GET /work 3" in get(port, "/work")
            deadline = time.monotonic() + 30
            sink = sink_of(proc.pid, runtime)
            while sink["state"] != "streaming":  # the hello answered a moment after start
                assert time.monotonic() < deadline, sink
                time.sleep(0.05)  # polling the agent's own answer with a deadline
                sink = sink_of(proc.pid, runtime)
            assert (sink["kind"], sink["collector"], sink["phase"]) == (
                "stream", address, "open",
            )  # fmt: skip
            assert (sink["file"], sink["retries"], sink["fallbacks"]) == ("", 0, 0), sink
            assert f"-{proc.pid}-" in sink["collector_file"], sink
            assert (collected / sink["collector_file"]).is_file(), sink
            assert isinstance(sink["unacked"], int) and sink["unacked"] >= 0, sink
        finally:
            stop_collector(collector)
        deadline = time.monotonic() + 30
        while sink["state"] != "file" or sink["retries"] == 0:
            assert time.monotonic() < deadline, f"still {sink} 30 s after the collector stopped"
            assert "GET /work 3" in get(port, "/work")  # a chunk to write, a reconnect to try
            time.sleep(0.1)  # polling the agent's own answer with a deadline
            sink = sink_of(proc.pid, runtime)
        assert (sink["kind"], sink["collector"], sink["unacked"]) == ("stream", address, 0)
        assert sink["phase"] == "file" and sink["fallbacks"] == 1, sink
        fallback = Path(sink["file"])
        assert fallback.parent == out and f"-{proc.pid}-" in fallback.name, sink
        assert fallback.is_file()
        # never capped: the count goes on past the old schedule's five
        while sink["retries"] <= 6:
            assert time.monotonic() < deadline, f"still {sink} 30 s after the collector stopped"
            assert "GET /work 3" in get(port, "/work")
            time.sleep(0.1)
            sink = sink_of(proc.pid, runtime)
    finally:
        stop_service(proc, runtime)


def run_deadlock(out: Path, **extra: str) -> None:
    done = subprocess.run(
        [NODE, str(PROGRAMS / "mutex_deadlock.js")],
        env=node_env(out, WILLOWISP_SERVICE="bank", **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def kinds_of(doc: dict[str, Any]) -> list[str]:
    return sorted(f["kind"] for f in doc["findings"])


def test_native_stream_to_a_collector(tmp_path: Path) -> None:
    """With WILLOWISP_COLLECTOR the whole recording goes to `willowisp collect --native`
    (nothing in the out folder), and the deadlock is found there."""
    collected, out = tmp_path / "collected", tmp_path / "out"
    collector, address = start_collector(collected)
    try:
        run_deadlock(out, WILLOWISP_COLLECTOR=address)
    finally:
        stop_collector(collector)
    assert not out.exists()
    doc = analyze(collected)
    assert kinds_of(doc) == ["deadlock"]
    assert doc["trace"]["agent_faults"] == 0


def test_a_program_ending_while_the_stream_connects_still_streams(tmp_path: Path) -> None:
    """process.exit() before the collector answered the hello: the agent finishes the
    hello at exit (write/read on the socket) and sends everything there; nothing falls
    back to the out folder, no fault. Three programs, each a new connection."""
    collected, out = tmp_path / "collected", tmp_path / "out"
    collector, address = start_collector(collected)
    try:
        for _ in range(3):
            done = subprocess.run(
                [NODE, str(PROGRAMS / "exit_soon.js")],
                env=node_env(out, WILLOWISP_SERVICE="short", WILLOWISP_COLLECTOR=address),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert (done.returncode, done.stdout, done.stderr) == (0, "holding\n", "")
    finally:
        stop_collector(collector)
    assert not out.exists()
    doc = analyze(collected)
    assert doc["trace"]["processes"] == 3
    assert doc["trace"]["agent_faults"] == 0
    assert doc["trace"]["dropped_events"] == 0


def analyze_all(*folders: Path) -> dict[str, Any]:
    done = wisp("analyze", *map(str, folders), "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_stream_falls_back_to_files(tmp_path: Path) -> None:
    """A collector that is not there, and one that stops while the program runs and comes
    back: the segment file gets the process record, a fault saying why, and every
    unacknowledged chunk; the agent reconnects; the folders together hold the whole story."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    out = tmp_path / "out1"
    run_deadlock(out, WILLOWISP_COLLECTOR=dead)
    doc = analyze(out)
    assert kinds_of(doc) == ["agent-fault", "deadlock"]
    (fault,) = [f for f in doc["findings"] if f["kind"] == "agent-fault"]
    assert "cannot reach collector" in json.dumps(fault)

    # a collector that stops, then comes back on the same port: the agent falls back to
    # its file, then reconnects (a new segment starting with the process record)
    collected, again, out = tmp_path / "collected", tmp_path / "again", tmp_path / "out2"
    collector, address = start_collector(collected)
    proc, runtime, port = start_service(out, WILLOWISP_COLLECTOR=address)
    try:
        assert "GET /work 3" in get(port, "/work")
        stop_collector(collector)  # it says bye; the agent falls back at once
        deadline = time.monotonic() + 60
        while not list(out.glob("*.wtrace")) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a deadline, not hoping
        assert "GET /work 3" in get(port, "/work")  # recorded into the file
        collector, _ = start_collector(again, int(address.rsplit(":", 1)[1]))
        try:
            while not list(again.glob("*.wtrace")) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "GET /work 3" in get(port, "/work")  # recorded to the collector again
            proc.terminate()  # the end: bye, the last chunks acknowledged
            assert proc.wait(timeout=30) == -15
        finally:
            stop_collector(collector)
    finally:
        stop_service(proc, runtime)
    assert len(list(again.glob("*.wtrace"))) == 1  # the agent came back
    doc = analyze_all(collected, out, again)
    assert doc["trace"]["processes"] == 1
    # the collector's bye is an orderly end: nothing lost, no fault
    assert doc["trace"]["agent_faults"] == 0
    assert [f for f in doc["findings"] if f["kind"] == "agent-fault"] == []
    q = wisp(
        "query",
        str(collected),
        str(out),
        str(again),
        "SELECT count(*) FROM units WHERE kind = 'async-flow'",
        "--format",
        "json",
    )
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout)["rows"] == [[3]]  # each request recorded exactly once


# Records without end: an async-mutex lock every 20 ms (killed by the test).
LOCK_LOOP = """
const { Mutex } = require('async-mutex');
const m = new Mutex();
(async () => {
  for (;;) {
    await m.runExclusive(async () => {});
    await new Promise((r) => setTimeout(r, 20));
  }
})();
"""


def test_stream_reconnects_without_end(tmp_path: Path) -> None:
    """A collector absent for longer than the old five retries (WILLOWISP_STREAM_RETRY_S=0.2
    caps every delay): the agent keeps trying (a 7th attempt, which the old schedule never
    made), and when the real collector comes up on that port its chunks reach it; the
    fallback file holds the rest."""
    collected, out = tmp_path / "collected", tmp_path / "out"
    absent = AbsentCollector()
    collector = None
    proc = subprocess.Popen(
        [NODE, "-e", LOCK_LOOP],
        env=node_env(
            out,
            WILLOWISP_SERVICE="locker",
            WILLOWISP_COLLECTOR=absent.address,
            WILLOWISP_STREAM_RETRY_S="0.2",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert absent.wait_attempts(7, timeout=8) >= 7  # 1 initial + 5 retries, and more
        absent.close()
        collector, _ = start_collector(collected, absent.port)
        deadline = time.monotonic() + 10
        while collected_events(collected) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a deadline, not hoping
        proc.terminate()  # the end: bye, the last chunks acknowledged
        assert proc.wait(timeout=30) == -15
    finally:
        absent.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if collector is not None:
            stop_collector(collector)
    assert proc.stderr is not None
    assert proc.stderr.read() == ""
    proc.stderr.close()
    assert collected_events(collected) > 0  # the collector got this process's chunks
    assert len(list(out.glob("*.wtrace"))) == 1  # and the fallback file has the rest
    doc = analyze_all(collected, out)
    assert doc["trace"]["processes"] == 1
    assert doc["trace"]["agent_faults"] == 1
    (fault,) = [f for f in doc["findings"] if f["kind"] == "agent-fault"]
    assert "cannot reach collector" in json.dumps(fault)


# A program that records a few hundred KB of trace in full mode: 1500 sequential requests
# to its own server over one keep-alive connection, then the sum of the answers.
REQUESTS = AGENT / "test" / "programs" / "requests.js"


@pytest.mark.skipif(not CAN_MOUNT, reason="needs root with unshare and mount (CI runs as root)")
@pytest.mark.parametrize("collector", ["", "127.0.0.1:9"], ids=["file", "stream-fallback"])
def test_a_full_disk_is_said_and_never_breaks_the_program(tmp_path: Path, collector: str) -> None:
    """On a 128 KiB file system (64 KiB of it the agent's reserve) the first chunks fit and
    later ones do not: the program prints and exits as without the agent, the file ends
    at a whole chunk, and the loss is in it (drops per unit, a write fault) and in one
    stderr line. The same when the chunks were meant for a collector that is not there
    (the native stream falls back to the file)."""
    assert NODE is not None
    program = REQUESTS
    alone = subprocess.run(
        [NODE, str(program)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert alone.returncode == 0 and alone.stdout == "total 13890\n", alone.stderr
    env = {"WILLOWISP_COLLECTOR": collector} if collector else {}
    done, kept = run_on_full_disk(tmp_path, [NODE, str(program)], "128k", timeout=120, **env)
    assert (done.returncode, done.stdout) == (alone.returncode, alone.stdout), done.stderr
    for trace_of_a_crash in ("Error:", "    at ", "node:internal"):
        assert trace_of_a_crash not in done.stderr, done.stderr
    said = [line for line in done.stderr.splitlines() if "could not be written" in line]
    assert len(said) == 1 and said[0].endswith(": No space left on device"), done.stderr
    assert " events of requests (pid " in said[0], said[0]
    lost = int(said[0].split("willowisp: ", 1)[1].split(" events", 1)[0])
    agent = check_loss_reported(kept, "requests")
    assert 0 < int(str(agent["dropped"])) <= lost, (agent, lost)
    doc = analyze_json(kept)
    (drop,) = [f for f in doc["findings"] if f["kind"] == "buffer-drop"]
    assert any("file system refused" in line for line in drop["explanation"]), drop
    # the drops name the request flows whose events were lost, not only the event loop
    assert any("GET /item/" in line for line in drop["explanation"]), drop
    if collector:
        faults = " ".join(
            " ".join(f["explanation"]) for f in doc["findings"] if f["kind"] == "agent-fault"
        )
        assert f"cannot reach collector {collector}" in faults, faults


@pytest.mark.parametrize("mode", ["full", "hops"])
def test_a_keep_alive_connection_s_timers_are_not_on_a_boundary_s_critical_path(
    tmp_path: Path, mode: str
) -> None:
    """Inside a boundary, the unreferenced timers Node arms while it serves a keep-alive
    connection (the socket's keep-alive timeout, the Date header cache's reset) are not
    units of the request: when they fire, a second or two after the responses, every
    operation's critical path still ends at its response. The handler's own timer is a
    unit, one per request."""
    assert NODE is not None
    out = tmp_path / "run"
    done = subprocess.run(
        [NODE, str(PROGRAMS / "keepalive_boundary.js")],
        env=node_env(
            out,
            WILLOWISP_MODE=mode,
            WILLOWISP_SERVICE="keepalive",
            WILLOWISP_BOUNDARIES="entry=http:GET /work;runtimes=nodejs",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    _, requests, _, closed_after_ms = done.stdout.split()
    assert int(closed_after_ms) >= 1000, done.stdout  # the keep-alive timeout fired
    doc = analyze(out)
    assert doc["trace"]["agent_faults"] == 0
    paths = doc["critical_paths"]["paths"]
    assert len(paths) == int(requests)
    slowest = max(p["duration_ns"] for p in paths)
    # each request takes a few ms; with the timers as units the slowest path was 2.0 s
    assert slowest < 500_000_000, [
        (s["kind"], s["duration_ns"], s["unit"]["name"]) for p in paths for s in p["segments"]
    ]
    q = wisp(
        "query",
        str(out),
        "SELECT name, count(*) AS n FROM units WHERE kind = 'async-resource' GROUP BY name",
        "--format",
        "json",
    )
    assert q.returncode == 0, q.stderr
    assert dict(json.loads(q.stdout)["rows"])["Timeout"] == int(requests)


def test_hops_mode_locates_a_hop_problem_at_the_line_that_sent_it(tmp_path: Path) -> None:
    """In `hops` mode a Node client's requests to a service with no agent are each a
    missing-span problem, and validate's SARIF and JUnit point at the program's line that
    sent them (the client's location is learned per call site, not captured per request)."""
    assert NODE is not None

    class Stock(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
            pass

    out = tmp_path / "run"
    program = PROGRAMS / "hops_client.js"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stock)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        done = subprocess.run(
            [NODE, str(program), str(server.server_address[1])],
            env=node_env(out, WILLOWISP_MODE="hops", WILLOWISP_SERVICE="shop"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    sarif, junit = tmp_path / "v.sarif", tmp_path / "v.xml"
    v = wisp("validate", "--ci-mode", str(out), "--sarif", str(sarif), "--junit", str(junit))
    assert v.returncode == 1, v.stderr
    send_line = next(
        i for i, line in enumerate(program.read_text().splitlines(), 1) if "http.get(" in line
    )
    results = json.loads(sarif.read_text())["runs"][0]["results"]
    assert len(results) == 3 and {r["ruleId"] for r in results} == {"missing-span"}, results
    for r in results:
        loc = r["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"].endswith("/hops_client.js"), loc
        assert loc["region"]["startLine"] == send_line, loc
    assert junit.read_text().count(f"sent at hops_client.js:{send_line}") == 3
