"""The Rust agent (agents/rust, crate ``willowisp``) end to end: real tokio programs from
the workspace's ``testprogs`` crate, built once with ``cargo build --release`` into
agents/rust/target, run with the ``WILLOWISP_*`` variables (directly or under
``willowisp run``) and analyzed by ``willowisp analyze``; and the crate's own tests
(``cargo test``: every conformance vector byte for byte, deflate chunks)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from wispkit import (
    CAN_MOUNT,
    CORPUS_TOKEN,
    AbsentCollector,
    check_control_corpus,
    check_loss_reported,
    clean_env,
    collected_events,
    run_on_full_disk,
    start_collector,
    start_run,
    stop_collector,
)

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / "agents" / "rust"
CARGO = shutil.which("cargo")

pytestmark = pytest.mark.skipif(CARGO is None, reason="cargo is not installed")


def wisp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env if env is not None else clean_env(),
    )


def analyze(out: Path) -> dict[str, Any]:
    done = wisp("analyze", str(out), "--format", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def findings(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["kind"] == kind]


def mutex_places(program: str) -> list[str]:
    """`file:line` of each `Mutex::new(` in a test program's source: where its locks are."""
    source = (WORKSPACE / "testprogs" / "src" / "bin" / program).read_text().splitlines()
    places = [f"{program}:{n}" for n, line in enumerate(source, 1) if "Mutex::new(" in line]
    assert len(places) == 2
    return places


@pytest.fixture(scope="module")
def bins() -> Path:
    """The workspace built once (release) into agents/rust/target."""
    done = subprocess.run(
        [str(CARGO), "build", "--release", "--workspace"],
        cwd=WORKSPACE,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return WORKSPACE / "target" / "release"


def start_boundary_svc(bins: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """The boundary_svc test program, started; it prints its port and serves until its
    stdin closes."""
    proc = subprocess.Popen(
        [str(bins / "boundary_svc")],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return str(r.read().decode())


def test_cargo_tests_encode_every_conformance_vector(bins: Path) -> None:
    done = subprocess.run(
        [str(CARGO), "test", "--release", "-p", "willowisp"],
        cwd=WORKSPACE,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every_vector_encodes_byte_for_byte ... ok" in done.stdout


def test_two_tasks_deadlocked_on_tokio_mutexes(bins: Path, tmp_path: Path) -> None:
    """The program hangs for good; the trace (flushed every 50 ms) shows the cycle while
    it is still running, and the test kills it once the analysis reports it."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [str(bins / "deadlock")],
        env={**clean_env(), "WILLOWISP_OUT": str(out), "WILLOWISP_SERVICE": "bank"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:
            found = findings(analyze(out), "deadlock")
        assert proc.poll() is None, "the deadlocked program must still be hanging"
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert len(found) == 1, found
    f = found[0]
    assert sorted(u["name"] for u in f["units"]) == ["audit", "transfer"]
    assert all(u["runtime"] == "rust" and u["kind"] == "task" for u in f["units"])
    places = mutex_places("deadlock.rs")
    names = sorted(r["name"] for r in f["resources"])
    assert names == sorted(f"tokio::sync::Mutex {p}" for p in places)
    assert sorted(r["where"] for r in f["resources"]) == sorted(places)
    assert {r["kind"] for r in f["resources"]} == {"lock"}
    assert any("cycle" in line for line in f["explanation"])


@pytest.mark.parametrize("mode", ["lost", "lost-late"])
def test_lost_waker_is_a_leak(bins: Path, tmp_path: Path, mode: str) -> None:
    """A future that returns Pending and drops its waker: at the clean stop (the guard
    dropped inside the runtime, or after it) the task is reported as a leak."""
    out = tmp_path / "run"
    done = wisp("run", "--out", str(out), "--", str(bins / "waker"), mode)
    assert done.returncode == 0, done.stderr
    assert "done" in done.stdout
    report = analyze(out)
    assert report["trace"]["runtimes"] == ["rust"]
    leaks = findings(report, "leak")
    assert len(leaks) == 1, report["findings"]
    assert [u["name"] for u in leaks[0]["units"]] == ["lost-waker"]
    assert leaks[0]["resources"][0]["name"] == "waker of lost-waker"
    assert not findings(report, "deadlock")


@pytest.mark.parametrize("mode", ["idle", "many"])
def test_idle_or_finished_tasks_are_not_leaks(bins: Path, tmp_path: Path, mode: str) -> None:
    """idle: tasks waiting on a timer, a socket and a channel at the clean stop; many:
    tasks that finish while no block_on runs, between two block_on calls."""
    out = tmp_path / "run"
    done = wisp("run", "--out", str(out), "--", str(bins / "waker"), mode)
    assert done.returncode == 0, done.stderr
    report = analyze(out)
    units = {u for f in report["findings"] for u in f.get("units", [])}
    assert not findings(report, "leak"), report["findings"]
    assert not findings(report, "deadlock"), report["findings"]
    assert report["trace"]["units"] >= 6, units


def test_the_thread_calling_block_on_is_the_programs(bins: Path, tmp_path: Path) -> None:
    """The runtime's worker threads are its own units (not judged, dimmed); the main thread,
    which polls block_on's future, is the program's even though it carries a task."""
    from willowisp.wtrace.reader import read_file

    out = tmp_path / "run"
    done = wisp("run", "--out", str(out), "--", str(bins / "waker"), "idle")
    assert done.returncode == 0, done.stderr
    threads: list[tuple[str, int]] = []
    own: set[int] = set()
    for f in sorted(out.glob("*.wtrace")):
        for c in read_file(f).chunks:
            for r in c.records:
                if r.rtype == 2 and r.get("kind") == "thread":
                    threads.append((str(r.get("name")), r.id))
                elif r.rtype == 1 and r.get("runtime_units"):
                    own = {int(x) for x in str(r.get("runtime_units")).split(",")}
    (main,) = [n for name, n in threads if name == "main"]
    workers = [n for name, n in threads if name.startswith("tokio-")]  # tokio-rt-worker
    assert workers, threads
    assert main not in own, (threads, own)
    assert all(n in own for n in workers), (threads, own)


SERVER = """
import http.server, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from python"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.handle_request()
server.server_close()
"""


def test_http_call_into_python_service_is_linked(bins: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    server = start_run(out, sys.executable, str(script), env=clean_env())
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = wisp(
            "run",
            "--out",
            str(out),
            "--",
            str(bins / "httpclient"),
            f"http://127.0.0.1:{port}/items/7?secret=1",
        )
        assert client.returncode == 0, client.stderr
        assert "status 200" in client.stdout
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    report = analyze(out)
    assert sorted(report["trace"]["runtimes"]) == ["python", "rust"]
    edges = report["trace"]["happens_before_edges"]
    assert edges["request"] == 1 and edges["reply"] == 1, edges
    assert report["trace"]["happens_before_provenance"]["wire-header"] >= 2
    # the client resource as the Python agent would write it
    files = sorted(out.glob("httpclient-*.wtrace"))
    assert files
    from willowisp.wtrace.reader import read_file

    rpc = [
        dict(r.attrs)
        for c in read_file(files[0]).chunks
        for r in c.records
        if r.rtype == 3 and dict(r.attrs).get("kind") == "rpc"
    ]
    assert len(rpc) == 1
    attrs = rpc[0]
    assert attrs["protocol"] == "http" and attrs["library"] == "reqwest"
    assert attrs["method"] == "GET" and attrs["target"] == "/items/7?secret="
    assert attrs["peer"] == f"127.0.0.1:{port}"
    assert len(str(attrs["trace_id"])) == 32 and len(str(attrs["span_id"])) == 16


CLIENT = """
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1]).read().decode())
"""


def test_python_call_into_rust_tower_server_is_linked(bins: Path, tmp_path: Path) -> None:
    """The other direction: the server side (WispLayer on hyper) extracts the context the
    Python client put on the wire."""
    out = tmp_path / "run"
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    server = start_run(out, str(bins / "server"), env=clean_env())
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = wisp(
            "run",
            "--out",
            str(out),
            "--",
            sys.executable,
            str(script),
            f"http://127.0.0.1:{port}/orders/9?id=4",
        )
        assert client.returncode == 0, client.stderr
        assert "hello from rust" in client.stdout
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    report = analyze(out)
    assert sorted(report["trace"]["runtimes"]) == ["python", "rust"]
    edges = report["trace"]["happens_before_edges"]
    assert edges["request"] == 1 and edges["reply"] == 1, edges
    from willowisp.wtrace.reader import read_file

    (segment,) = sorted(out.glob("server-*.wtrace"))
    rpc = [
        dict(r.attrs)
        for c in read_file(segment).chunks
        for r in c.records
        if r.rtype == 3 and dict(r.attrs).get("kind") == "rpc"
    ]
    assert len(rpc) == 1
    attrs = rpc[0]
    assert attrs["library"] == "tower" and attrs["protocol"] == "http" and attrs["method"] == "GET"
    assert attrs["target"] == "/orders/9?id=" and str(attrs["peer"]).startswith("127.0.0.1:")
    assert len(str(attrs["parent_span_id"])) == 16 and attrs["propagation"] == "w3c"
    assert json.loads(str(attrs["headers"]))["user-agent"].startswith("Python-urllib")


def test_std_mutex_wrappers_name_threads_in_a_deadlock(bins: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [str(bins / "threads")],
        env={**clean_env(), "WILLOWISP_OUT": str(out)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        found: list[dict[str, Any]] = []
        while not found and time.monotonic() < deadline:
            found = findings(analyze(out), "deadlock")
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert len(found) == 1, found
    f = found[0]
    assert sorted((u["name"], u["kind"]) for u in f["units"]) == [
        ("alpha", "thread"),
        ("beta", "thread"),
    ]
    assert sorted(r["where"] for r in f["resources"]) == sorted(mutex_places("threads.rs"))


def test_access_api_finds_a_race_and_respects_a_lock(bins: Path, tmp_path: Path) -> None:
    """willowisp::access: two threads writing cart:42 unordered are a race; two tasks
    writing stock:7 inside a tokio mutex are ordered by it (release -> acquire)."""
    out = tmp_path / "run"
    done = wisp("run", "--out", str(out), "--", str(bins / "race"))
    assert done.returncode == 0, done.stderr
    races = findings(analyze(out), "race")
    assert [[r["name"] for r in f["resources"]] for f in races] == [["cart:42"]]
    assert sorted(u["name"] for u in races[0]["units"]) == ["writer-a", "writer-b"]


def start_hanging(bins: Path, tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], Path]:
    """The deadlock program (it hangs) with its control channel in a short private folder."""
    runtime = Path(tempfile.mkdtemp(prefix="wr-", dir="/tmp"))
    proc = subprocess.Popen(
        [str(bins / "deadlock")],
        env={
            **clean_env(),
            "WILLOWISP_OUT": str(tmp_path / "run"),
            "WILLOWISP_RUNTIME_DIR": str(runtime),
            **env,
        },
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc, runtime


def stop_hanging(proc: subprocess.Popen[str], runtime: Path) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    shutil.rmtree(runtime, ignore_errors=True)


def test_control_channel_passes_the_protocol_corpus(bins: Path, tmp_path: Path) -> None:
    """Every control item of conformance/protocols, over the Unix socket and over TCP,
    and the channel still answers after each."""
    proc, runtime = start_hanging(
        bins, tmp_path, WILLOWISP_CONTROL="tcp", WILLOWISP_CONTROL_TOKEN=CORPUS_TOKEN
    )
    try:
        (desc_path,) = runtime.glob(f"{proc.pid}-*.json")
        check_control_corpus(desc_path, "rust")
    finally:
        stop_hanging(proc, runtime)


def test_willowisp_ctl_reaches_a_rust_process(bins: Path, tmp_path: Path) -> None:
    proc, runtime = start_hanging(bins, tmp_path)
    try:
        env = {**clean_env(), "WILLOWISP_RUNTIME_DIR": str(runtime)}
        done = wisp("ctl", str(proc.pid), "status", "--format", "json", env=env)
        assert done.returncode == 0, done.stderr
        assert '"runtime": "rust"' in done.stdout and str(proc.pid) in done.stdout
        spec = "entry=http:POST /pay;runtimes=rust"
        done = wisp("ctl", str(proc.pid), "enable", spec, env=env)
        assert done.returncode == 0, done.stderr
        done = wisp("ctl", str(proc.pid), "status", "--format", "json", env=env)
        assert "http:POST /pay" in done.stdout
    finally:
        stop_hanging(proc, runtime)


def test_native_stream_to_a_collector(bins: Path, tmp_path: Path) -> None:
    collected, out = tmp_path / "collected", tmp_path / "out"
    collector, address = start_collector(collected)
    try:
        env = {**clean_env(), "WILLOWISP_OUT": str(out), "WILLOWISP_COLLECTOR": address}
        done = subprocess.run(
            [str(bins / "waker"), "lost"], env=env, check=False, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    finally:
        stop_collector(collector)
    assert not out.exists()  # everything went to the collector
    report = analyze(collected)
    assert [f["kind"] for f in report["findings"]] == ["leak"]


def test_stream_falls_back_to_files(bins: Path, tmp_path: Path) -> None:
    """A collector that is not there, and one that stops while the program runs and comes
    back: the segment file gets the process record, a fault saying why (none for the
    collector's orderly bye: nothing is lost), and every unacknowledged chunk; the agent
    reconnects; the folders together hold the whole story."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    out = tmp_path / "out1"
    env = {**clean_env(), "WILLOWISP_OUT": str(out), "WILLOWISP_COLLECTOR": dead}
    done = subprocess.run(
        [str(bins / "waker"), "lost"], env=env, check=False, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    report = analyze(out)
    assert sorted(f["kind"] for f in report["findings"]) == ["agent-fault", "leak"]
    (fault,) = findings(report, "agent-fault")
    assert "cannot reach collector" in json.dumps(fault)

    # a collector that stops, then comes back on the same port: the agent falls back to
    # its file, then reconnects (a new segment starting with the process record)
    collected, again, out = tmp_path / "collected", tmp_path / "again", tmp_path / "out2"
    collector, address = start_collector(collected)
    proc, runtime = start_hanging(
        bins, tmp_path, WILLOWISP_COLLECTOR=address, WILLOWISP_OUT=str(out)
    )
    try:
        stop_collector(collector)  # it says bye; the agent's next flush falls back
        deadline = time.monotonic() + 60
        while not list(out.glob("*.wtrace")) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a deadline, not hoping
        collector, _ = start_collector(again, int(address.rsplit(":", 1)[1]))
        try:
            while not list(again.glob("*.wtrace")) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop_collector(collector)
        report = analyze_all(collected, out, again)
    finally:
        stop_hanging(proc, runtime)
    assert len(list(again.glob("*.wtrace"))) == 1  # the agent came back
    assert report["trace"]["agent_faults"] == 0, findings(report, "agent-fault")
    found = findings(report, "deadlock")
    assert len(found) == 1
    assert sorted(u["name"] for u in found[0]["units"]) == ["audit", "transfer"]


def test_stream_reconnects_without_end(bins: Path, tmp_path: Path) -> None:
    """A collector absent for longer than the old five retries (WILLOWISP_STREAM_RETRY_S=0.2
    caps every delay): the agent keeps trying (a 7th attempt, which the old schedule never
    made), and when the real collector comes up on that port this process's chunks reach
    it; the fallback file holds the rest, and the two folders together the whole story."""
    collected, out = tmp_path / "collected", tmp_path / "out"
    absent = AbsentCollector()
    collector = None
    proc, runtime = start_hanging(
        bins,
        tmp_path,
        WILLOWISP_COLLECTOR=absent.address,
        WILLOWISP_STREAM_RETRY_S="0.2",
        WILLOWISP_OUT=str(out),
    )
    try:
        assert absent.wait_attempts(7, timeout=8) >= 7  # 1 initial + 5 retries, and more
        absent.close()
        collector, _ = start_collector(collected, absent.port)
        deadline = time.monotonic() + 10
        while collected_events(collected) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a deadline, not hoping
    finally:
        absent.close()
        stop_hanging(proc, runtime)
        if collector is not None:
            stop_collector(collector)
    assert collected_events(collected) > 0  # the collector got this process's chunks
    assert len(list(out.glob("*.wtrace"))) == 1  # and the fallback file has the start
    report = analyze_all(collected, out)
    assert report["trace"]["processes"] == 1
    (fault,) = findings(report, "agent-fault")
    assert "collector" in json.dumps(fault)
    (deadlock,) = findings(report, "deadlock")  # recorded before the collector came
    assert sorted(u["name"] for u in deadlock["units"]) == ["audit", "transfer"]


def analyze_all(*folders: Path) -> dict[str, Any]:
    done = wisp("analyze", *map(str, folders), "--format", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


GARBAGE = [
    {
        "WILLOWISP_MODE": "sideways",
        "WILLOWISP_TRACE_RATIO": "lots",
        "WILLOWISP_CLOCK_OFFSET_NS": "1e99",
    },
    {
        "WILLOWISP_TRACE_RATIO": "-3",
        "TRACEPARENT": "00-zz-yy-01",
        "WILLOWISP_SERVICE": "a/b c\u00e9",
    },
    {"WILLOWISP_DISABLED": "1"},
]


@pytest.mark.parametrize("extra", GARBAGE)
def test_garbage_variables_never_break_the_program(
    bins: Path, tmp_path: Path, extra: dict[str, str]
) -> None:
    out = tmp_path / "run"
    env = {**clean_env(), "WILLOWISP_OUT": str(out), **extra}
    done = subprocess.run(
        [str(bins / "garbage")], env=env, check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sum 28"
    if extra.get("WILLOWISP_DISABLED") == "1":
        assert not out.exists()
        return
    report = analyze(out)
    assert report["processes"][0]["agent"]["faults"] >= 1  # the bad values, recorded
    assert report["trace"]["dropped_events"] == 0
    edges = report["trace"]["happens_before_edges"]
    assert edges["queue"] == 8  # the mpsc wrapper: each put -> its get
    assert edges["notify"] >= 1  # the Notify wrapper, and wakes between tasks


def test_hops_mode_records_no_tasks_or_locks(bins: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**clean_env(), "WILLOWISP_OUT": str(out), "WILLOWISP_MODE": "hops"}
    done = subprocess.run(
        [str(bins / "garbage")], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "sum 28"
    from willowisp.wtrace.reader import read_file

    (segment,) = out.glob("*.wtrace")
    kinds = {
        str(dict(r.attrs).get("kind"))
        for c in read_file(segment).chunks
        for r in c.records
        if r.rtype in (2, 3)
    }
    assert "task" not in kinds and "lock" not in kinds and "queue" not in kinds, kinds


def test_unwritable_out_never_breaks_the_program(bins: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker / "run", Path("/proc/willowisp-cannot-write-here")):
        env = {**clean_env(), "WILLOWISP_OUT": str(out)}
        done = subprocess.run(
            [str(bins / "garbage")],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "sum 28"
        assert "recording is off" in done.stderr


LOST_LINE = re.compile(
    r"willowisp: (\d+) events of garbage \(pid \d+\) could not be written to "
    r"\S+/garbage-\d+-[0-9a-f]{8}-1\.wtrace: No space left on device"
)


@pytest.mark.skipif(
    not CAN_MOUNT, reason="needs root with unshare and mount (the test command runs as root)"
)
def test_a_full_disk_never_breaks_the_program_and_the_loss_is_said(
    bins: Path, tmp_path: Path
) -> None:
    """The run folder on a real 160 KiB tmpfs (64 KiB of it the agent's reserve): 500 rounds
    of `garbage`, 1 ms apart, make ~350 KB of trace in ~25 chunks, so the first chunks fit
    and later ones are refused. The program prints and exits as without the agent; the
    file ends at a whole chunk and says the loss (drops per unit, a write fault), every
    unit an event names is defined, and one stderr line says how many events were lost."""
    argv = [str(bins / "garbage"), "500", "1"]
    alone = subprocess.run(
        argv, env=clean_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert alone.returncode == 0 and alone.stdout == "sum 14000\n", alone.stderr
    done, kept = run_on_full_disk(tmp_path, argv, "160k")
    assert done.returncode == alone.returncode, done.stderr
    assert done.stdout == alone.stdout
    assert "panicked" not in done.stderr and "backtrace" not in done.stderr.lower()
    assert "writing the trace failed" not in done.stderr
    said = [line for line in done.stderr.splitlines() if "could not be written" in line]
    assert len(said) == 1, done.stderr
    matched = LOST_LINE.fullmatch(said[0])
    assert matched, said[0]
    lost = int(matched[1])
    agent = check_loss_reported(kept, "garbage")
    # the file counts what was lost up to its last chunk; the line at exit, all of it
    assert 0 < int(str(agent["dropped"])) <= lost
    records, events = decoded(kept)
    faults = [r for (rtype, _), r in records.items() if rtype == 5]
    assert [f["where"] for f in faults].count("write") >= 1, faults
    assert all("No space left on device" in f["message"] for f in faults if f["where"] == "write")
    drops = [e for e in events if e[0] == 41]  # agent.drop: per unit, the stats' total
    assert len({e[1] for e in drops}) > 1
    assert sum(e[3] for e in drops) == records[(6, 0)]["dropped"] == agent["dropped"]
    units = {rid for rtype, rid in records if rtype == 2}
    assert {e[1] for e in events if e[1]} <= units  # refused chunks' definitions were kept
    assert not list(kept.glob(".willowisp-reserve-*"))


def test_no_out_records_nothing(bins: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(bins / "garbage")],
        check=False,
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "sum 28"
    assert list(tmp_path.iterdir()) == []


def segment_records(folder: Path, rtype: int) -> list[dict[str, Any]]:
    """Every record of one type in a run folder's segments, in file order."""
    from willowisp.wtrace.reader import read_file

    return [
        dict(r.attrs)
        for f in sorted(folder.glob("*.wtrace"))
        for c in read_file(f).chunks
        for r in c.records
        if r.rtype == rtype
    ]


def event_count(folder: Path, kind: int) -> int:
    from willowisp.wtrace.reader import read_file

    return sum(
        int((c.events.kind == kind).sum())
        for f in sorted(folder.glob("*.wtrace"))
        for c in read_file(f).chunks
        if c.events is not None
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stores_the_recording_and_still_kills(
    bins: Path, tmp_path: Path, signum: int
) -> None:
    """Killed by SIGTERM/SIGINT mid-work: every event recorded before the signal is in the
    trace (also those of the last 50 ms, which the flusher had not written yet), the
    process record names the signal, the control socket is gone, and the exit status
    is still death by that signal."""
    out = tmp_path / "run"
    runtime = Path(tempfile.mkdtemp(prefix="wr-", dir="/tmp"))
    proc = subprocess.Popen(
        [str(bins / "signals"), "ticks"],
        env={**clean_env(), "WILLOWISP_OUT": str(out), "WILLOWISP_RUNTIME_DIR": str(runtime)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "tick 30":
                break
        assert list(runtime.glob(f"{proc.pid}-*.json")), "the control channel was up"
        proc.send_signal(signum)
        ticks = [int(x.split()[1]) for x in ["tick 30", *proc.stdout.read().splitlines()]]
        assert proc.wait(timeout=30) == -signum
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert list(runtime.glob(f"{proc.pid}-*.json")) == []
    shutil.rmtree(runtime, ignore_errors=True)
    # data.access: every tick printed before the signal was sent is stored (also those of
    # the last 50 ms); a tick recorded after the signal arrived, while the agent wrote the
    # last chunk, may be printed before the process dies, and need not be
    stored = event_count(out, 17)
    assert 30 <= stored <= max(ticks)
    last = segment_records(out, 1)[-1]
    assert last["exit_signal"] == signum and "complete" not in last


def test_a_program_handling_sigterm_itself_keeps_its_handler(bins: Path, tmp_path: Path) -> None:
    """tokio's signal handler (installed after init, chaining to the agent's) gets the
    signal; the program shuts down gracefully and the agent's clean stop runs as usual."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [str(bins / "signals"), "own"],
        env={**clean_env(), "WILLOWISP_OUT": str(out)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.read().strip() == "graceful"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    last = segment_records(out, 1)[-1]
    assert last["complete"] == 1 and "exit_signal" not in last


CHECKOUT = "entry=http:GET /checkout;runtimes=rust,python"


def test_hops_mode_records_boundaries_at_full_fidelity(bins: Path, tmp_path: Path) -> None:
    """hops mode, trace ratio 0, one boundary: only the work inside its instances is
    recorded — the handler's worker task and its lock and channel, the call it makes
    (carrying the boundary in tracestate) and the instance that call opens (propagated)
    — nothing of a request outside it; `ctl disable` stops new instances; the stats
    record gives the boundary's counts and cost."""
    from willowisp.model.boundary import parse_boundary

    out = tmp_path / "run"
    runtime = Path(tempfile.mkdtemp(prefix="wr-", dir="/tmp"))
    env = {
        **clean_env(),
        "WILLOWISP_OUT": str(out),
        "WILLOWISP_MODE": "hops",
        "WILLOWISP_TRACE_RATIO": "0",
        "WILLOWISP_BOUNDARIES": f"{CHECKOUT}|entry=bad",
        "WILLOWISP_RUNTIME_DIR": str(runtime),
    }
    proc, port = start_boundary_svc(bins, env)
    try:
        assert proc.stdin is not None

        assert http_get(port, "/other") == "other 8"
        assert http_get(port, "/checkout") == "checkout 8 inner 8"
        ctl_env = {**clean_env(), "WILLOWISP_RUNTIME_DIR": str(runtime)}
        done = wisp("ctl", str(proc.pid), "disable", "http:GET /checkout", env=ctl_env)
        assert done.returncode == 0, done.stderr
        assert http_get(port, "/checkout") == "checkout 8 inner 8"  # switched off: not recorded
        done = wisp("ctl", str(proc.pid), "status", "--format", "json", env=ctl_env)
        assert done.returncode == 0, done.stderr
        status = done.stdout
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(runtime, ignore_errors=True)
    assert '"enabled": false' in status and '"entries": 1' in status, status
    units = [u["name"] for u in segment_records(out, 2)]
    assert units.count("checkout-worker") == 1 and units.count("inner-worker") == 1, units
    assert "other-worker" not in units
    resources = segment_records(out, 3)
    kinds = {str(r["kind"]) for r in resources}
    assert {"lock", "queue", "rpc"} <= kinds, kinds
    rpc = [r for r in resources if r["kind"] == "rpc"]
    assert sorted((r["library"], r["target"]) for r in rpc) == [
        ("reqwest", "/inner"),
        ("tower", "/checkout"),
        ("tower", "/inner"),
    ]
    servers = [r for r in rpc if r["library"] == "tower"]
    assert all(r["boundary"] == "http:GET /checkout" for r in servers)
    assert all(r["caller_sampled"] == 0 and r["sampled"] == 0 for r in servers)
    (inner,) = [r for r in servers if r["target"] == "/inner"]
    member = f"wisp=b-{parse_boundary(CHECKOUT).id}"  # the id every runtime computes
    assert json.loads(str(inner["headers"]))["tracestate"] == member
    faults = [f["where"] for f in segment_records(out, 5)]
    assert "boundaries" in faults  # the bad SPEC: a fault, never an error in the program
    report = analyze(out)
    (process,) = report["processes"]
    cost = process["agent"]["by_boundary"]["http:GET /checkout"]
    assert cost["entries"] == 1 and cost["propagated"] == 1 and cost["active"] == 0, cost
    assert cost["events"] > 0 and cost["cost_ns"] >= cost["events"]
    assert report["trace"]["happens_before_edges"]["queue"] == 2  # the two workers' sends


def test_boundary_enabled_by_ctl_sees_the_tasks_of_a_hops_process(
    bins: Path, tmp_path: Path
) -> None:
    """A `hops` process started without any boundary (the tokio subscriber is installed
    anyway, idle): a boundary switched on later by `willowisp ctl enable` records the
    tokio tasks, locks and channels of its instances — and nothing of the requests made
    before the switch or outside it."""
    out = tmp_path / "run"
    runtime = Path(tempfile.mkdtemp(prefix="wr-", dir="/tmp"))
    env = {
        **clean_env(),
        "WILLOWISP_OUT": str(out),
        "WILLOWISP_MODE": "hops",
        "WILLOWISP_TRACE_RATIO": "0",
        "WILLOWISP_RUNTIME_DIR": str(runtime),
    }
    proc, port = start_boundary_svc(bins, env)
    try:
        assert proc.stdin is not None

        assert http_get(port, "/checkout") == "checkout 8 inner 8"  # no boundary yet: not recorded
        ctl_env = {**clean_env(), "WILLOWISP_RUNTIME_DIR": str(runtime)}
        done = wisp("ctl", str(proc.pid), "status", "--format", "json", env=ctl_env)
        assert done.returncode == 0 and '"gate": true' in done.stdout.replace("'", '"'), (
            done.stdout + done.stderr
        )
        done = wisp("ctl", str(proc.pid), "enable", CHECKOUT, env=ctl_env)
        assert done.returncode == 0, done.stderr
        assert http_get(port, "/checkout") == "checkout 8 inner 8"
        assert http_get(port, "/other") == "other 8"  # outside the boundary
        done = wisp("ctl", str(proc.pid), "disable", "http:GET /checkout", env=ctl_env)
        assert done.returncode == 0, done.stderr
        # switched off again: not recorded
        assert http_get(port, "/checkout") == "checkout 8 inner 8"
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(runtime, ignore_errors=True)
    units = segment_records(out, 2)
    names = [u["name"] for u in units if u["kind"] == "task"]
    # one instance of each worker (the request after the switch) and the two connection
    # tasks that served the boundary's requests; nothing of /other or the first /checkout
    assert names.count("checkout-worker") == 1 and names.count("inner-worker") == 1, names
    assert names.count("connection") == 2, names
    assert "other-worker" not in names
    resources = segment_records(out, 3)
    locks = [r for r in resources if r["kind"] == "lock"]
    assert locks and all("tokio::sync::Mutex" in str(r["name"]) for r in locks), locks
    rpc = [r for r in resources if r["kind"] == "rpc"]
    servers = [r for r in rpc if r["library"] == "tower" and r.get("boundary")]
    assert sorted(r["target"] for r in servers) == ["/checkout", "/inner"]
    report = analyze(out)
    assert report["trace"]["happens_before_edges"]["queue"] == 2  # the two workers' sends
    cost = report["processes"][0]["agent"]["by_boundary"]["http:GET /checkout"]
    assert cost["source"] == "ctl" and cost["entries"] == 1 and cost["propagated"] == 1, cost
    assert cost["events"] > 0
    # the tasks seen have right waker counts: no lost waker judged at the clean stop
    assert not [f for f in report["findings"] if f["severity"] != "info"], report["findings"]


ORDERS = "entry=amqp:orders.*;runtimes=rust,python"


def test_message_consumer_opens_boundary_instances(bins: Path, tmp_path: Path) -> None:
    """hops mode, trace ratio 0: a message whose destination matches a boundary's entry,
    or whose tracestate carries the boundary (with a valid traceparent), opens an instance
    on the consuming task until its next message: the handler's worker task, lock and
    channel are recorded, its own sends carry `wisp=b-<id>`; other messages leave nothing."""
    from willowisp.model.boundary import parse_boundary

    member = f"wisp=b-{parse_boundary(ORDERS).id}"
    unsampled = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-00"
    out = tmp_path / "run"
    env = {
        **clean_env(),
        "WILLOWISP_OUT": str(out),
        "WILLOWISP_MODE": "hops",
        "WILLOWISP_TRACE_RATIO": "0",
        "WILLOWISP_BOUNDARIES": ORDERS,
    }
    proc = subprocess.Popen(
        [str(bins / "consumer")], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    answers = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        for line in (
            f"orders.new {unsampled} -",  # the entry matches
            f"audit {unsampled} -",  # nothing
            f"billing {unsampled} {member}",  # carried by the caller
            f"refunds - {member}",  # no traceparent: tracestate is not read
        ):
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            answers.append(proc.stdout.readline().strip())
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert answers == [
        f"orders.new 8 {member},vendor=1",
        "audit 8 -",
        f"billing 8 {member},vendor=1",
        "refunds 8 -",
    ]
    names = [u["name"] for u in segment_records(out, 2) if u["kind"] == "task"]
    assert names.count("worker-orders.new") == 1 and names.count("worker-billing") == 1, names
    assert "worker-audit" not in names and "worker-refunds" not in names, names
    resources = segment_records(out, 3)
    assert any(r["kind"] == "lock" for r in resources)
    messages = [r for r in resources if r["kind"] == "message"]
    received = {str(r["destination"]): r for r in messages if "parent_span_id" in r}
    assert set(received) == {"orders.new", "billing", "refunds"}, received
    for dest in ("orders.new", "billing"):
        r = received[dest]
        assert r["boundary"] == "amqp:orders.*" and r["caller_sampled"] == 0, r
        assert r["sampled"] == 1 and r["parent_span_id"] == "cd" * 8, r
    assert "boundary" not in received["refunds"]
    sent = [r for r in messages if r["destination"] == "next"]
    assert len(sent) == 2  # the two handlers inside an instance; unsampled elsewhere
    report = analyze(out)
    cost = report["processes"][0]["agent"]["by_boundary"]["amqp:orders.*"]
    assert cost["entries"] == 1 and cost["propagated"] == 1 and cost["active"] == 0, cost
    assert report["trace"]["happens_before_edges"]["queue"] == 2  # the two workers' sends


def test_full_mode_counts_boundaries_and_records_everything(bins: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**clean_env(), "WILLOWISP_OUT": str(out), "WILLOWISP_BOUNDARIES": CHECKOUT}
    proc, port = start_boundary_svc(bins, env)
    try:
        assert proc.stdin is not None
        for path in ("/other", "/checkout"):
            assert http_get(port, path)
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    units = [u["name"] for u in segment_records(out, 2)]
    assert {"checkout-worker", "inner-worker", "other-worker"} <= set(units)
    report = analyze(out)
    agent = report["processes"][0]["agent"]
    cost = agent["by_boundary"]["http:GET /checkout"]
    assert cost["entries"] == 1 and cost["propagated"] == 1
    assert 0 < cost["events"] < agent["events"]


def decoded(folder: Path) -> tuple[dict[tuple[int, int], dict[str, Any]], list[tuple[int, ...]]]:
    """Records by (type, id) and events as (kind, unit, res, arg, loc) of a run folder."""
    return decoded_files(sorted(folder.glob("*.wtrace")))


def decoded_file(f: Path) -> tuple[dict[tuple[int, int], dict[str, Any]], list[tuple[int, ...]]]:
    """The same for one segment (one process's own numbering)."""
    return decoded_files([f])


def decoded_files(
    files: list[Path],
) -> tuple[dict[tuple[int, int], dict[str, Any]], list[tuple[int, ...]]]:
    from willowisp.wtrace.reader import read_file

    records: dict[tuple[int, int], dict[str, Any]] = {}
    events: list[tuple[int, ...]] = []
    for f in files:
        for c in read_file(f).chunks:
            for r in c.records:
                records.setdefault((r.rtype, r.id), {}).update(dict(r.attrs))
            if c.events is not None:
                ev = c.events
                events.extend(
                    zip(
                        ev.kind.tolist(),
                        ev.unit.tolist(),
                        ev.res.tolist(),
                        ev.arg.tolist(),
                        ev.loc.tolist(),
                        strict=True,
                    )
                )
    return records, events


def test_watch_broadcast_and_tokio_lock_call_sites(bins: Path, tmp_path: Path) -> None:
    """watch: every send a notify, the receiver's changed() a wake after it; broadcast:
    each of two receivers' gets paired with a put (8 queue edges for 4 messages); tokio's
    own lock events carry the line of `lock_here()` / `write_here()` / `read_here()`."""
    out = tmp_path / "run"
    done = subprocess.run(
        [str(bins / "channels")],
        env={**clean_env(), "WILLOWISP_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    records, events = decoded(out)
    units = {i: r["name"] for (t, i), r in records.items() if t == 2}
    res = {str(r["name"]).split(" ")[0]: i for (t, i), r in records.items() if t == 3}
    watch = res["tokio::sync::watch"]
    notifies = [units[u] for k, u, r, _, _ in events if k == 14 and r == watch]
    wakes = [units[u] for k, u, r, a, _ in events if k == 5 and r == watch and a == 0]
    assert notifies == ["producer"] * 3 and wakes and set(wakes) == {"watcher"}
    report = analyze(out)
    assert report["trace"]["happens_before_edges"]["queue"] == 8
    assert not [f for f in report["findings"] if f["severity"] != "info"], report["findings"]
    source = (WORKSPACE / "testprogs" / "src" / "bin" / "channels.rs").read_text().splitlines()
    here = {n for n, line in enumerate(source, 1) if "_here()" in line}
    for name in ("tokio::sync::Mutex", "tokio::sync::RwLock"):
        acquired = [loc for k, _, r, _, loc in events if k == 10 and r == res[name]]
        assert acquired, name
        lines = {records[(4, loc)]["line"] for loc in acquired if loc}
        assert len(acquired) == sum(1 for loc in acquired if loc) and lines <= here, lines
    blocks = [loc for k, _, r, _, loc in events if k == 4 and r == res["tokio::sync::Mutex"]]
    assert all(records[(4, loc)]["line"] in here for loc in blocks)


def test_a_watch_value_read_after_every_send_still_follows_them(bins: Path, tmp_path: Path) -> None:
    """A watcher that starts after the producer sent its last value never waits in
    `changed()`; what it reads with `borrow_and_update` was sent, so the read is a wake
    linked to the latest send (without it the two tasks are unordered: the old agent made
    test_watch_broadcast_and_tokio_lock_call_sites fail whenever the producer won)."""
    out = tmp_path / "run"
    done = subprocess.run(
        [str(bins / "channels"), "late-watcher"],
        env={**clean_env(), "WILLOWISP_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    records, events = decoded(out)
    units = {i: r["name"] for (t, i), r in records.items() if t == 2}
    watch = next(i for (t, i), r in records.items() if t == 3 and "watch" in str(r["name"]))
    wakes = [units[u] for k, u, r, a, _ in events if k == 5 and r == watch and a == 0]
    blocks = [units[u] for k, u, r, _, _ in events if k == 4 and r == watch]
    assert wakes == ["watcher"] and blocks == []
    assert analyze(out)["trace"]["happens_before_edges"]["notify"] == 1


def grpc_client(bins: Path, out: Path, port: int) -> None:
    done = wisp("run", "--out", str(out), "--", str(bins / "grpc"), "client", str(port))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["serving", "1", "missing", "5"], done.stdout


def grpc_resources(out: Path, library: str) -> list[dict[str, Any]]:
    return [r for r in segment_records(out, 3) if r.get("library") == library]


def start_grpc_server(bins: Path, out: Path) -> subprocess.Popen[str]:
    """The tonic Health server under `willowisp run`; it prints its port, ends at stdin's end."""
    return subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--"]
        + [str(bins / "grpc"), "server"],
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_grpc_between_tonic_client_and_tonic_server(bins: Path, tmp_path: Path) -> None:
    """tonic's prebuilt Health service behind WispLayer, called through WispGrpcClient:
    both calls linked by the traceparent in the gRPC metadata, each side's rpc.response /
    rpc.reply with the gRPC status (0, then NOT_FOUND 5)."""
    out = tmp_path / "run"
    server = start_grpc_server(bins, out)
    try:
        assert server.stdout is not None and server.stdin is not None
        grpc_client(bins, out, int(server.stdout.readline()))
        server.stdin.close()
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    report = analyze(out)
    edges = report["trace"]["happens_before_edges"]
    assert edges["request"] == 2 and edges["reply"] == 2, edges
    (hop,) = report["hops"]
    assert hop["protocol"] == "grpc" and hop["linked"] == 2
    assert not [f for f in report["findings"] if f["severity"] != "info"], report["findings"]
    method = "/grpc.health.v1.Health/Check"
    for r in grpc_resources(out, "tonic"):
        assert r["protocol"] == "grpc" and r["method"] == method == r["target"]
    _, events = decoded(out)
    status = {
        k: sorted(a for kk, _, _, a, _ in events if kk == k)
        for k in (22, 23)  # reply, response
    }
    assert status == {22: [0, 5], 23: [0, 5]}, status


def test_grpc_statuses_in_trailers(bins: Path, tmp_path: Path) -> None:
    """Statuses that travel in the trailers, on both sides (WispGrpcClient, WispLayer): a
    server stream failing after its first message (13), a unary error after the headers
    (9), a stream the client drops after its first message (1, CANCELLED: tonic-health's
    own Watch, which never ends) and a unary success (0, tonic's own answer)."""
    out = tmp_path / "run"
    server = start_grpc_server(bins, out)
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        done = wisp("run", "--out", str(out), "--", str(bins / "grpc"), "trailers", str(port))
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["watch", "1", "13", "late", "9", "live", "1"] + [
            "serving",
            "1",
        ], done.stdout
        server.stdin.close()
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    status: dict[int, list[tuple[str, int]]] = {22: [], 23: []}  # reply, response
    for segment in out.glob("*.wtrace"):  # one per process: resource numbers are its own
        records, events = decoded_file(segment)
        for k, _, res, arg, _ in events:
            if k in status:
                status[k].append((str(records[(3, res)]["target"]).rsplit("/", 1)[-1], arg))
    status = {k: sorted(v) for k, v in status.items()}
    want = [("Check", 0), ("Check", 9), ("Watch", 1), ("Watch", 13)]
    assert status == {22: want, 23: want}, status
    report = analyze(out)
    assert report["trace"]["happens_before_edges"]["request"] == 4


GRPC_SERVER = """
import sys, grpc
from concurrent import futures

def check(request, context):
    if request:  # HealthCheckRequest{service: "missing"}
        context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
    return b"\\x08\\x01"  # HealthCheckResponse{status: SERVING}

ident = lambda b: b
handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
    "Check": grpc.unary_unary_rpc_method_handler(
        check, request_deserializer=ident, response_serializer=ident)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop(None)
"""


def test_grpc_from_tonic_into_a_python_grpcio_server(bins: Path, tmp_path: Path) -> None:
    """Across runtimes: the Rust client's metadata carries the context into grpcio's
    server hooks of the Python agent, and both sides agree on the statuses."""
    out = tmp_path / "run"
    script = tmp_path / "grpc_server.py"
    script.write_text(GRPC_SERVER)
    server = start_run(out, sys.executable, str(script), env=clean_env(), stdin=True)
    try:
        assert server.stdout is not None and server.stdin is not None
        grpc_client(bins, out, int(server.stdout.readline()))
        server.stdin.close()
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    report = analyze(out)
    assert sorted(report["trace"]["runtimes"]) == ["python", "rust"]
    edges = report["trace"]["happens_before_edges"]
    assert edges["request"] == 2 and edges["reply"] == 2, edges
    (hop,) = report["hops"]
    assert hop["from"]["runtime"] == "rust" and hop["to"]["runtime"] == "python"
    assert hop["linked"] == 2 and hop["provenance"] == {"traceparent": 2}


GRPC_CLIENT = """
import sys, grpc
ident = lambda b: b
with grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}") as channel:
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=ident, response_deserializer=ident)
    print("serving", check(b"", timeout=30)[1])
    try:
        check(b"\\x0a\\x07missing", timeout=30)
    except grpc.RpcError as err:
        print("missing", err.code().value[0])
"""


def test_grpc_from_python_grpcio_into_a_tonic_server(bins: Path, tmp_path: Path) -> None:
    """The other direction: grpcio's client metadata (the Python agent's hook) read by
    WispLayer in front of tonic; the server's replies carry the gRPC statuses."""
    out = tmp_path / "run"
    script = tmp_path / "grpc_client.py"
    script.write_text(GRPC_CLIENT)
    server = start_grpc_server(bins, out)
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        done = wisp("run", "--out", str(out), "--", sys.executable, str(script), str(port))
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["serving", "1", "missing", "5"], done.stdout
        server.stdin.close()
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
    report = analyze(out)
    assert sorted(report["trace"]["runtimes"]) == ["python", "rust"]
    edges = report["trace"]["happens_before_edges"]
    assert edges["request"] == 2 and edges["reply"] == 2, edges
    (hop,) = report["hops"]
    assert hop["from"]["runtime"] == "python" and hop["to"]["runtime"] == "rust"
    replies = sorted(a for k, _, _, a, _ in decoded(out)[1] if k == 22)
    assert replies == [0, 5]


def sink_of(pid: int, runtime: Path) -> dict[str, Any]:
    """The running program's `sink` from `willowisp ctl PID status --format json`."""
    env = {**clean_env(), "WILLOWISP_RUNTIME_DIR": str(runtime)}
    done = wisp("ctl", str(pid), "status", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    (proc,) = json.loads(done.stdout)["processes"]
    return dict(proc["result"]["sink"])


def test_ctl_status_sink_is_the_segment_file(bins: Path, tmp_path: Path) -> None:
    """Without a collector `ctl status` says the chunks go to the segment file, by path."""
    proc, runtime = start_hanging(bins, tmp_path)
    try:
        sink = sink_of(proc.pid, runtime)
    finally:
        stop_hanging(proc, runtime)
    (segment,) = (tmp_path / "run").glob("*.wtrace")
    assert sink == {"kind": "file", "path": str(segment)}


def test_ctl_status_sink_follows_the_stream(bins: Path, tmp_path: Path) -> None:
    """With a collector that is not there, `ctl status` says: streaming to it, on the
    fallback file for now, with the failed retries; once the collector comes up on that
    port, streaming, with the file the collector writes and no retries; once it stops
    again, on a new fallback file with the retries counted from there."""
    collected, out = tmp_path / "collected", tmp_path / "out"
    absent = AbsentCollector()
    collector = None
    proc, runtime = start_hanging(
        bins,
        tmp_path,
        WILLOWISP_COLLECTOR=absent.address,
        WILLOWISP_STREAM_RETRY_S="0.2",
        WILLOWISP_OUT=str(out),
    )

    def sink_until(done: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        sink = sink_of(proc.pid, runtime)
        while not done(sink) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the agent's own answer with a deadline
            sink = sink_of(proc.pid, runtime)
        return sink

    try:
        assert absent.wait_attempts(7, timeout=8) >= 7  # the start and 6 failed retries
        waiting = sink_of(proc.pid, runtime)
        absent.close()
        collector, _ = start_collector(collected, absent.port)
        streaming = sink_until(lambda s: s["state"] == "streaming")
        stop_collector(collector)  # it says bye: the next chunk falls back
        collector = None
        fallen = sink_until(lambda s: s["state"] == "file" and s["retries"] >= 1)
    finally:
        absent.close()
        stop_hanging(proc, runtime)
        if collector is not None:
            stop_collector(collector)
    first, second = sorted(out.glob("*.wtrace"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    assert (waiting["kind"], waiting["state"], waiting["collector"]) == (
        "stream",
        "file",
        absent.address,
    )
    assert waiting["file"] == str(first) and waiting["retries"] >= 5, waiting
    assert waiting["unacked"] == 0 and waiting["collector_file"] == ""
    assert (streaming["kind"], streaming["state"], streaming["file"]) == ("stream", "streaming", "")
    assert streaming["retries"] == 0 and streaming["collector"] == absent.address
    (collected_file,) = collected.glob("*.wtrace")
    assert Path(streaming["collector_file"]).name == collected_file.name, streaming
    assert (fallen["kind"], fallen["file"]) == ("stream", str(second)), fallen
    assert fallen["collector_file"] == streaming["collector_file"]


def agent_kinds(folder: Path) -> dict[int, int]:
    """How many events of each kind the folder's segments hold (complete chunks only: a
    file being written may end inside one)."""
    from willowisp.errors import TraceFormatError
    from willowisp.wtrace.payload import rows_of
    from willowisp.wtrace.reader import read_file

    counts: dict[int, int] = {}
    for path in folder.glob("*.wtrace"):
        try:
            chunks = read_file(path).chunks
        except (OSError, TraceFormatError):
            continue
        for c in chunks:
            for k, *_ in rows_of(c.events) if c.events is not None else ():
                counts[k] = counts.get(k, 0) + 1
    return counts


def test_an_idle_program_writes_a_chunk_a_second(bins: Path, tmp_path: Path) -> None:
    """A process that records nothing writes no chunk at the flusher's 50 ms ticks, only
    the clock anchor's chunk each second (as the Python, Go and Java agents do): an idle
    service's file stays small. The consumer waits on its stdin, idle by design."""
    from willowisp.model.spec import K

    out = tmp_path / "run"
    env = {**clean_env(), "WILLOWISP_OUT": str(out), "WILLOWISP_SERVICE": "idle"}
    proc = subprocess.Popen(
        [str(bins / "consumer")], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        # three anchors: two seconds of the agent's own clock, idle
        while agent_kinds(out).get(K.CLOCK_ANCHOR, 0) < 3:
            assert time.monotonic() < deadline, "no three clock anchors within 30 s"
            time.sleep(0.05)  # polling the file with a deadline
        assert proc.stdin is not None
        proc.stdin.close()  # the end of its input ends it
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    kinds = agent_kinds(out)
    anchors, flushes = kinds.get(K.CLOCK_ANCHOR, 0), kinds.get(K.AGENT_FLUSH, 0)
    # one chunk per anchor, the start's few with the runtime's first events, and the last
    assert 3 <= anchors <= 4, kinds
    assert flushes <= anchors + 4, f"{flushes} agent.flush events in ~2 s idle: {kinds}"
