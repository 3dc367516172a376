"""The Go agent (agents/go/wisp) end to end: real Go programs linked with the agent, built
with ``go build`` and run under ``willowisp run``, analyzed by ``willowisp analyze``; and
the agent's own Go tests (``go test``: conformance vectors byte for byte, the encoder, the
lock wrapper, propagation)."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from willowisp.errors import TraceFormatError
from willowisp.ingest import go_trace
from willowisp.ingest.go_decoder import AGENT_STORED
from wispkit import (
    CAN_MOUNT,
    CORPUS_TOKEN,
    AbsentCollector,
    check_control_corpus,
    check_loss_reported,
    clean_env,
    run_on_full_disk,
    start_collector,
    stop_collector,
)

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agents" / "go"
PROGRAMS = Path(__file__).resolve().parent / "programs" / "go"
BUILD = ROOT / ".cache" / "go-agent-tests"
GO = shutil.which("go")

pytestmark = pytest.mark.skipif(GO is None, reason="go is not installed")


def wisp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def programs() -> dict[str, Path]:
    """The test programs, built once into the checkout's ignored .cache/ folder."""
    BUILD.mkdir(parents=True, exist_ok=True)
    built = {}
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    names = (
        "deadlock",
        "chandeadlock",
        "leak",
        "httpclient",
        "counter",
        "sigterm",
        "hang",
        "server",
        "boundary",
        "bodyelsewhere",
    )
    for name in names:
        target = BUILD / name
        done = subprocess.run(
            [str(GO), "build", "-o", str(target), f"./{name}"],
            cwd=PROGRAMS,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        built[name] = target
    return built


def run_and_analyze(out: Path, *cmd: str) -> tuple[str, dict[str, Any]]:
    done = wisp("run", "--out", str(out), "--", *cmd, env=clean_env())
    assert done.returncode == 0, done.stderr
    analyzed = wisp("analyze", str(out), "--format", "json")
    assert analyzed.returncode == 0, analyzed.stderr
    report = json.loads(analyzed.stdout)
    assert report["trace"]["unreadable_files"] == []
    return done.stdout, report


def findings(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["kind"] == kind]


@pytest.mark.parametrize("module", [".", "wispgrpc"])
def test_go_unit_tests_pass(module: str) -> None:
    """The agent's Go tests pass: conformance vectors byte for byte, encoder, locks, HTTP,
    data and message APIs; and the gRPC interceptors' sub-module over a real connection."""
    done = subprocess.run(
        [str(GO), "test", "./..."],
        cwd=AGENT / module,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mutex_inversion_is_a_deadlock_naming_goroutines_and_locks(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """Two goroutines taking two wisp.Mutex in opposite orders: a deadlock naming both
    goroutines and both locks with the places they were created."""
    stdout, report = run_and_analyze(tmp_path / "run", str(programs["deadlock"]))
    assert "deadlocked" in stdout
    cycles = [
        f for f in findings(report, "deadlock") if {r["kind"] for r in f["resources"]} == {"lock"}
    ]
    assert cycles, report["findings"]
    f = cycles[0]
    names = sorted(u["name"].split(" #")[0] for u in f["units"])
    assert names == ["main.audit", "main.transfer"]
    assert all(u["runtime"] == "go" and u["kind"] == "goroutine" for u in f["units"])
    where = {r["name"]: r["where"] for r in f["resources"]}
    assert where == {"accounts": "main.go:19", "ledger": "main.go:20"}
    # Each acquisition and each wait names the program's line that called Lock (read from
    # the stack the tracer records with the agent's log), not the agent's own code.
    source = (PROGRAMS / "deadlock" / "main.go").read_text().splitlines()

    def line(text: str) -> str:
        (n,) = [i for i, s in enumerate(source, 1) if s.strip() == text]
        return f"main.go:{n}"

    took_accounts = line("accounts.Lock()")
    took_ledger = line("ledger.Lock()")
    waits_ledger = line("ledger.Lock() // blocks for ever: audit holds ledger")
    waits_accounts = line("accounts.Lock() // blocks for ever: transfer holds accounts")
    # The wait-for cycle (the other finding is the runtime's rule: every goroutine asleep).
    (cycle,) = [c for c in cycles if c.get("rule") != "all-asleep"]
    text = "\n".join(cycle["explanation"])
    assert f"acquired lock accounts at {took_accounts}" in text, text
    assert f"acquired lock ledger at {took_ledger}" in text, text
    assert f"waits for lock accounts at {waits_accounts}, held by main.transfer" in text, text
    assert f"waits for lock ledger at {waits_ledger}, held by main.audit" in text, text


def test_channel_deadlock_is_reported(programs: dict[str, Path], tmp_path: Path) -> None:
    """Two goroutines each waiting to receive what the other would send: a deadlock on
    channels naming both goroutines and both receiving lines; the agent's own goroutines
    appear in no finding."""
    stdout, report = run_and_analyze(tmp_path / "run", str(programs["chandeadlock"]))
    assert "deadlocked" in stdout
    # (info-level contention may show the test's own polling: runtime.Stack stops the world)
    serious = [f for f in report["findings"] if f["severity"] != "info"]
    assert [f["kind"] for f in serious] == ["deadlock"], report["findings"]
    f = serious[0]
    assert sorted(u["name"].split(" #")[0] for u in f["units"]) == ["main.ping", "main.pong"]
    assert sorted(r["where"] for r in f["resources"]) == ["main.go:18", "main.go:23"]
    assert {r["kind"] for r in f["resources"]} == {"channel"}


def test_sigterm_flushes_then_ends_the_program_by_the_signal(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """SIGTERM: the agent stores everything (the tracer's stream complete) and the program
    then dies of the signal as it would have without the agent."""
    out = tmp_path / "run"
    env = {**clean_env(), "WILLOWISP_OUT": str(out)}
    with subprocess.Popen(
        [str(programs["sigterm"])], env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.terminate()
        assert proc.wait(timeout=30) == -signal.SIGTERM
    analyzed = wisp("analyze", str(out), "--format", "json")
    report = json.loads(analyzed.stdout)
    assert report["trace"]["unreadable_files"] == []
    units = report["trace"]["units"]
    assert units >= 3 and report["processes"][0]["runtime"] == "go"


def test_http_call_into_python_is_a_linked_hop(programs: dict[str, Path], tmp_path: Path) -> None:
    """A Go client (wisp.Transport) calling a Python http.server, both recorded in one run:
    the hop is linked through traceparent, and so is the Python parent's spawn of the client."""
    stdout, report = run_and_analyze(
        tmp_path / "run",
        sys.executable,
        str(PROGRAMS / "serve_and_call.py"),
        str(programs["httpclient"]),
    )
    assert stdout.strip() == "200 in stock"
    assert sorted(report["trace"]["runtimes"]) == ["go", "python"]
    http = [h for h in report["hops"] if h["protocol"] == "http"]
    assert len(http) == 1, report["hops"]
    hop = http[0]
    assert hop["from"]["runtime"] == "go" and hop["to"]["runtime"] == "python"
    assert hop["linked"] == 1 and hop["provenance"] == {"traceparent": 1}
    assert "net/http" in hop["libraries"]
    spawn = [h for h in report["hops"] if h["protocol"] == "process"]
    assert spawn and spawn[0]["linked"] == 1


class _SlowBody(http.server.BaseHTTPRequestHandler):
    """Headers at once, the body 50 ms later: what a server that produces its body slowly
    (or Nagle's algorithm against a delayed ACK) does to a client."""

    def do_GET(self) -> None:
        body = b"late body"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # the headers are written now (wfile is unbuffered)
        time.sleep(0.05)  # the delay under test, not a wait for something to happen
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("program", "sent_at", "read_at"),
    [
        ("httpclient", ("main.go", 16, "main.main"), ("main.go", 22, "main.main")),
        ("bodyelsewhere", ("main.go", 18, "main.main"), ("main.go", 26, "main.main.func1")),
    ],
)
def test_http_call_lasts_until_its_body_is_read(
    programs: dict[str, Path],
    tmp_path: Path,
    program: str,
    sent_at: tuple[str, int, str],
    read_at: tuple[str, int, str],
) -> None:
    """A Go client's call ends when its response's body has been read, not at its headers:
    rpc.response comes >= 50 ms after msg.send when the body follows the headers by 50 ms,
    on the goroutine that sent the request and waits (also when another goroutine reads the
    body); the send is placed at the program's line (the Get), the reply where the body was
    read (io.ReadAll)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowBody)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/slow"
        done = wisp(
            "run",
            "--out",
            str(tmp_path / "run"),
            "--",
            str(programs[program]),
            url,
            env=clean_env(),
        )
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "200 late body"
    q = wisp(
        "query",
        "--no-cache",
        str(tmp_path / "run"),
        "SELECT kind, time_ns, unit, arg, file, line, func FROM events "
        "WHERE resource_kind = 'rpc' ORDER BY time_ns, seq",
        "--format",
        "json",
    )
    assert q.returncode == 0, q.stderr
    rows = [
        dict(zip(("kind", "t", "unit", "arg", "file", "line", "func"), r))
        for r in json.loads(q.stdout)["rows"]
    ]
    assert [r["kind"] for r in rows] == ["msg.send", "unit.block", "rpc.response"], rows
    send, wait, reply = rows
    assert reply["t"] - send["t"] >= 50_000_000, rows
    assert reply["arg"] == 200 and send["unit"] == wait["unit"] == reply["unit"], rows
    where = [(Path(r["file"] or "?").name, r["line"], r["func"]) for r in (send, reply)]
    assert where == [sent_at, read_at], rows


def test_leaked_goroutine_is_reported(programs: dict[str, Path], tmp_path: Path) -> None:
    """A goroutine blocked on a channel nobody sends on, while main ends with wisp.Stop: a
    leak at the receiving line."""
    stdout, report = run_and_analyze(tmp_path / "run", str(programs["leak"]))
    assert "leaked" in stdout
    leaks = findings(report, "leak")
    assert len(leaks) == 1, report["findings"]
    assert leaks[0]["units"][0]["name"].startswith("main.waitForResult")
    assert leaks[0]["resources"][0]["kind"] == "channel"
    assert leaks[0]["resources"][0]["where"] == "main.go:16"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"WILLOWISP_OUT": "{tmp}/a-file/run"}, "cannot create"),
        ({"WILLOWISP_OUT": "/proc/willowisp-run"}, "cannot create"),
        ({"WILLOWISP_OUT": "{tmp}/run", "WILLOWISP_MODE": "turbo"}, "WILLOWISP_MODE"),
        ({"WILLOWISP_OUT": "{tmp}/run", "WILLOWISP_TRACE_RATIO": "lots"}, "WILLOWISP_TRACE_RATIO"),
        ({"WILLOWISP_OUT": "{tmp}/run", "WILLOWISP_CLOCK_OFFSET_NS": "1e9"}, "CLOCK_OFFSET"),
        ({"WILLOWISP_OUT": "{tmp}/run", "WILLOWISP_STREAM_RETRY_S": "-1"}, "STREAM_RETRY_S"),
        ({"WILLOWISP_OUT": "{tmp}/run", "WILLOWISP_DISABLED": "1"}, None),
    ],
)
def test_bad_configuration_never_breaks_the_program(
    programs: dict[str, Path], tmp_path: Path, variables: dict[str, str], message: str | None
) -> None:
    """Garbage in WILLOWISP_* or an unwritable run folder: the program runs and exits 0, the
    agent stays off and says why in one line on stderr (nothing when disabled on purpose)."""
    (tmp_path / "a-file").write_text("not a folder")
    env = clean_env()
    env.update({k: v.replace("{tmp}", str(tmp_path)) for k, v in variables.items()})
    env["TRACEPARENT"] = "garbage"
    done = subprocess.run(
        [str(programs["counter"])], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout == "4000\n"
    lines = done.stderr.splitlines()
    if message is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith("willowisp: Go agent disabled:")
        assert message in lines[0]
    assert not list(tmp_path.rglob("*.wtrace"))


def test_garbage_traceparent_is_ignored(programs: dict[str, Path], tmp_path: Path) -> None:
    """A malformed TRACEPARENT is kept as a label but starts no trace; recording goes on."""
    env = {**clean_env(), "WILLOWISP_OUT": str(tmp_path), "TRACEPARENT": "00-zz-yy-01"}
    done = subprocess.run(
        [str(programs["counter"])], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "4000\n", "")
    analyzed = wisp("analyze", str(tmp_path), "--format", "json")
    report = json.loads(analyzed.stdout)
    assert report["trace"]["runtimes"] == ["go"] and report["trace"]["units"] >= 5


def test_a_zero_value_mutex_is_named_after_the_variable_it_locks(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """`var mu wisp.Mutex` has no name of its own: the line of its first Lock
    (`mu.Lock()`) names it, the source being readable where the program runs."""
    env = {**clean_env(), "WILLOWISP_OUT": str(tmp_path)}
    done = subprocess.run(
        [str(programs["counter"])], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, "4000\n"), done.stderr
    locks = [r["name"] for r in query(tmp_path, "select name from resources where kind = 'lock'")]
    assert locks == ["mu"], locks


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"go 1.26 trace\x00\x00\x00", "header"),
        (b'{"wisp":"go-exectrace","format":9}\n', "unknown format"),
        (b'{"format":1,"process_id":"xyz","stream":1}\n', "process_id"),
        (b'{"format":1,"process_id":"' + b"a" * 32 + b'","stream":0}\n', "stream"),
    ],
)
def test_bad_agent_stream_is_one_format_error(data: bytes, problem: str) -> None:
    """A damaged go-exectrace header is one TraceFormatError naming the problem."""
    with pytest.raises(TraceFormatError, match=problem):
        go_trace.decode(AGENT_STORED, data, "x.wtrace")


# --- live processes: the control channel, the native stream, hops mode, segments ------------


def start_live(
    program: Path, tmp_path: Path, **env: str
) -> tuple[subprocess.Popen[str], Path, str]:
    """A program that runs until signalled, its control channel in a short private folder;
    returns it, that folder and its first line of output (once it printed it)."""
    runtime = Path(tempfile.mkdtemp(prefix="wg-", dir="/tmp"))
    proc = subprocess.Popen(
        [str(program)],
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
    return proc, runtime, proc.stdout.readline().strip()


def stop_live(proc: subprocess.Popen[str], runtime: Path, sig: int = signal.SIGTERM) -> int:
    """Signal the program, wait for it and remove its runtime folder; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
    status = proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()
    shutil.rmtree(runtime, ignore_errors=True)
    return status


def test_control_channel_passes_the_protocol_corpus(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """Every control item of conformance/protocols, over the Unix socket and over TCP, and
    the channel still answers after each; the descriptor and socket are private (0600) and
    removed when the program ends."""
    proc, runtime, line = start_live(
        programs["hang"], tmp_path, WILLOWISP_CONTROL="tcp", WILLOWISP_CONTROL_TOKEN=CORPUS_TOKEN
    )
    try:
        assert line == "ready"
        (desc_path,) = runtime.glob(f"{proc.pid}-*.json")
        desc = check_control_corpus(desc_path, "go")
        assert desc["protocol"] == "willowisp-control" and desc["versions"] == [1]
        assert desc["run"] == os.path.realpath(tmp_path / "run")
        assert proc.poll() is None  # the program never noticed
    finally:
        assert stop_live(proc, runtime) == -signal.SIGTERM
    assert not list(runtime.glob("*"))


def test_willowisp_ctl_reaches_a_go_process(programs: dict[str, Path], tmp_path: Path) -> None:
    """`willowisp ctl PID status` and `enable SPEC` reach a running Go program."""
    proc, runtime, _ = start_live(programs["hang"], tmp_path)
    try:
        env = {**clean_env(), "WILLOWISP_RUNTIME_DIR": str(runtime)}
        done = wisp("ctl", str(proc.pid), "status", "--format", "json", env=env)
        assert done.returncode == 0, done.stderr
        assert '"runtime": "go"' in done.stdout and str(proc.pid) in done.stdout
        spec = "entry=http:POST /pay;runtimes=go"
        done = wisp("ctl", str(proc.pid), "enable", spec, env=env)
        assert done.returncode == 0, done.stderr
        done = wisp("ctl", str(tmp_path / "run"), "status", "--format", "json", env=env)
        assert done.returncode == 0, done.stderr
        assert "http:POST /pay" in done.stdout
        done = wisp("ctl", str(proc.pid), "disable", "http:POST /nothing", env=env)
        assert done.returncode != 0
    finally:
        stop_live(proc, runtime)


def analyze_json(*folders: Path) -> dict[str, Any]:
    done = wisp("analyze", *map(str, folders), "--format", "json", env=clean_env())
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def lock_cycle(report: dict[str, Any]) -> dict[str, Any]:
    """The one deadlock finding on the two wisp.Mutex of deadlock/ and hang/, checked."""
    (cycle,) = [
        f
        for f in findings(report, "deadlock")
        if {r["kind"] for r in f["resources"]} == {"lock"} and "cycle" in f["summary"]
    ]
    assert sorted(u["name"].split(" #")[0] for u in cycle["units"]) == [
        "main.audit",
        "main.transfer",
    ]
    return cycle


def has_lock_cycle(folder: Path) -> bool:
    done = wisp("analyze", str(folder), "--format", "json", env=clean_env())
    if done.returncode != 0:
        return False
    report = json.loads(done.stdout)
    return any("cycle" in f["summary"] for f in findings(report, "deadlock"))


def test_native_stream_to_a_collector(programs: dict[str, Path], tmp_path: Path) -> None:
    """With WILLOWISP_COLLECTOR the chunks, the execution tracer's stream among them, go to
    `willowisp collect --native` and nothing to the out folder; analyzing the collector's
    folder finds the deadlock between the two goroutines."""
    collected, out = tmp_path / "collected", tmp_path / "out"
    collector, address = start_collector(collected)
    try:
        env = {**clean_env(), "WILLOWISP_OUT": str(out), "WILLOWISP_COLLECTOR": address}
        done = subprocess.run(
            [str(programs["deadlock"])], env=env, check=False, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    finally:
        stop_collector(collector)
    assert not out.exists()  # everything went to the collector
    report = analyze_json(collected)
    assert report["trace"]["unreadable_files"] == [] and report["trace"]["agent_faults"] == 0
    cycle = lock_cycle(report)
    assert {u["kind"] for u in cycle["units"]} == {"goroutine"}


def test_stream_falls_back_to_files(programs: dict[str, Path], tmp_path: Path) -> None:
    """A collector that is not there, and one that stops while the program runs and comes
    back: the segment file gets the process record, a fault saying why, and every
    unacknowledged chunk; the agent reconnects; the folders together hold the whole story."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    out = tmp_path / "out1"
    env = {**clean_env(), "WILLOWISP_OUT": str(out), "WILLOWISP_COLLECTOR": dead}
    done = subprocess.run(
        [str(programs["deadlock"])], env=env, check=False, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    report = analyze_json(out)
    assert {f["kind"] for f in report["findings"] if f["severity"] != "info"} == {
        "agent-fault",
        "deadlock",
    }
    lock_cycle(report)
    (fault,) = findings(report, "agent-fault")
    assert "cannot reach collector" in json.dumps(fault)

    # a collector that stops, then comes back on the same port: the agent falls back to
    # its file, then reconnects (a new file at the collector, starting with the process)
    collected, again = tmp_path / "collected", tmp_path / "again"
    out = tmp_path / "out2"
    collector, address = start_collector(collected)
    proc, runtime, line = start_live(
        programs["hang"], tmp_path, WILLOWISP_COLLECTOR=address, WILLOWISP_OUT=str(out)
    )
    try:
        assert line == "ready"
        # the tracer's data reaches the collector a generation (~1 s) at a time: wait until
        # what it holds shows the deadlock, then take it away
        deadline = time.monotonic() + 60
        while not has_lock_cycle(collected) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling a condition with a deadline, not hoping
        stop_collector(collector)  # it says bye; the agent's next flush falls back
        while not list(out.glob("*.wtrace")) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a deadline, not hoping
        collector, _ = start_collector(again, int(address.rsplit(":", 1)[1]))
        try:
            while not list(again.glob("*.wtrace")) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop_live(proc, runtime)  # SIGTERM: the agent ends its stream in order
            stop_collector(collector)
    finally:
        stop_live(proc, runtime)
    assert len(list(again.glob("*.wtrace"))) == 1  # the agent came back
    report = analyze_json(collected, out, again)
    assert report["trace"]["processes"] == 1
    lock_cycle(report)
    # the collector's bye is an orderly end, not a fault (tracer bytes it did not
    # acknowledge, if any, are a fault of their own)
    faults = [json.dumps(f) for f in findings(report, "agent-fault")]
    assert not [f for f in faults if "went away" in f], [json.loads(f)["summary"] for f in faults]


def chunks_of(folder: Path, pid: int) -> int:
    """How many chunks the .wtrace files of ``folder`` hold that belong to process ``pid``
    (a file whose process record names it); a file still being written counts what is
    whole."""
    from willowisp.wtrace.reader import read_file

    n = 0
    for path in folder.glob("*.wtrace"):
        try:
            chunks = read_file(path).chunks
        except (OSError, TraceFormatError):
            continue  # not one whole chunk yet
        if any(r.rtype == 1 and r.get("pid") == pid for c in chunks for r in c.records):
            n += len(chunks)
    return n


def test_stream_keeps_retrying_until_a_collector_comes(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """A collector absent for longer than the first five retries (1 initial + 5 attempts
    was the old end): with WILLOWISP_STREAM_RETRY_S=0.2 the agent keeps trying every 0.2 s
    when it has a chunk, and once a real collector listens on that port the process's
    chunks reach it; the fallback file holds what came before, so nothing is lost."""
    collected, out = tmp_path / "collected", tmp_path / "out"
    absent = AbsentCollector()
    collector = None
    proc, runtime, line = start_live(
        programs["hang"],
        tmp_path,
        WILLOWISP_COLLECTOR=absent.address,
        WILLOWISP_OUT=str(out),
        WILLOWISP_STREAM_RETRY_S="0.2",
    )
    try:
        assert line == "ready"
        assert absent.wait_attempts(7, timeout=12) >= 7  # past the old schedule's end
        absent.close()
        collector, _ = start_collector(collected, absent.port)
        deadline = time.monotonic() + 10
        while not chunks_of(collected, proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a deadline, not hoping
    finally:
        status = stop_live(proc, runtime)  # SIGTERM: the agent ends its stream in order
        if collector is not None:
            stop_collector(collector)
        absent.close()
    assert status == -signal.SIGTERM
    assert chunks_of(collected, proc.pid) > 0, "the agent never reached the collector"
    assert chunks_of(out, proc.pid) > 0  # the fallback file, from before
    report = analyze_json(out, collected)
    assert report["trace"]["processes"] == 1
    assert report["trace"]["unreadable_files"] == []
    lock_cycle(report)  # the two folders together hold the deadlock
    (fault,) = findings(report, "agent-fault")
    assert "cannot reach collector" in json.dumps(fault)


def query(folder: Path, sql: str) -> list[dict[str, Any]]:
    done = wisp("query", str(folder), sql, "--format", "json", env=clean_env())
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    names = [c["name"] for c in table["columns"]]
    return [dict(zip(names, row)) for row in table["rows"]]


def ctl_status(pid: int, runtime: Path) -> dict[str, Any]:
    env = {**clean_env(), "WILLOWISP_RUNTIME_DIR": str(runtime)}
    done = wisp("ctl", str(pid), "status", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    (process,) = json.loads(done.stdout)["processes"]
    result: dict[str, Any] = process["result"]
    return result


def test_hops_mode_runs_the_tracer_only_inside_boundaries(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """WILLOWISP_MODE=hops without a boundary: requests are recorded as hops (on their
    goroutines) but the execution tracer is off, so no lock or wait is; `ctl enable` of a
    boundary starts the tracer, the requests after it are instances whose goroutines are
    recorded (not the worker that predates them), and status counts them as the
    boundary's entries."""
    proc, runtime, line = start_live(programs["server"], tmp_path, WILLOWISP_MODE="hops")
    try:
        url = f"http://{line.split()[1]}/work"

        def post(n: int) -> None:
            for _ in range(n):
                with urllib.request.urlopen(urllib.request.Request(url, b"", method="POST")) as r:
                    assert r.status == 200

        post(3)
        before = ctl_status(proc.pid, runtime)
        env = {**clean_env(), "WILLOWISP_RUNTIME_DIR": str(runtime)}
        # a boundary that leaves Go out records nothing here: no tracer for it
        other = "entry=http:POST /checkout;runtimes=python,nodejs"
        done = wisp("ctl", str(proc.pid), "enable", other, env=env)
        assert done.returncode == 0, done.stderr
        assert ctl_status(proc.pid, runtime)["tracer"] is False
        done = wisp("ctl", str(proc.pid), "disable", other, env=env)
        assert done.returncode == 0, done.stderr
        done = wisp("ctl", str(proc.pid), "enable", "entry=http:POST /work;runtimes=go", env=env)
        assert done.returncode == 0, done.stderr
        after = ctl_status(proc.pid, runtime)
        post(3)
        final = ctl_status(proc.pid, runtime)
    finally:
        assert stop_live(proc, runtime) == -signal.SIGTERM
    assert before["mode"] == "hops" and before["tracer"] is False
    assert after["tracer"] is True
    assert "http:POST /work" in {b["name"] for b in after["boundaries"]}
    (counted,) = [b for b in final["boundaries"] if b["name"] == "http:POST /work"]
    assert (counted["entries"], counted["active"], counted["source"]) == (3, 0, "ctl")
    out = tmp_path / "run"
    kinds = {
        r["kind"]: r["n"]
        for r in query(out, "select kind, count(*) as n from events group by kind")
    }
    assert kinds.get("msg.recv") == 6 and kinds.get("rpc.reply") == 6
    # the worker goroutine takes the lock for the requests, but it was started before any
    # instance (it does not carry the boundary's label): in hops mode it is not recorded,
    # the handlers' goroutines (inside the instances) are
    held = query(out, "select resource_name from events where kind = 'lock.acquired'")
    assert held == []
    names = [r["name"] for r in query(out, "select name from units")]
    assert any(n.startswith("net/http.(*conn).serve") for n in names), names
    assert not any(n.startswith("main.main.func1") for n in names), names


def test_segments_rotate_with_a_new_tracer_stream_each(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """At the segment size limit the agent closes its tracer stream, opens the next segment
    and starts the tracer again: every segment is readable on its own terms and together
    they hold every request."""
    proc, runtime, line = start_live(
        programs["server"], tmp_path, WILLOWISP_SEGMENT_BYTES=str(64 * 1024)
    )
    out = tmp_path / "run"
    posted = 0
    try:
        url = f"http://{line.split()[1]}/work"
        deadline = time.monotonic() + 120
        while len(list(out.glob("*.wtrace"))) < 3 and time.monotonic() < deadline:
            for _ in range(20):
                with urllib.request.urlopen(urllib.request.Request(url, b"", method="POST")) as r:
                    assert r.status == 200
                posted += 1
    finally:
        assert stop_live(proc, runtime) == -signal.SIGTERM
    files = sorted(out.glob("*.wtrace"))
    assert len(files) >= 3
    assert [f.name.rsplit("-", 1)[1] for f in files[:3]] == ["1.wtrace", "2.wtrace", "3.wtrace"]
    report = analyze_json(out)
    assert report["trace"]["unreadable_files"] == [] and report["trace"]["processes"] == 1
    recv = query(out, "select count(*) as n from events where kind = 'msg.recv'")
    assert recv == [{"n": posted}]


def test_killed_program_keeps_its_goroutines_up_to_the_last_generation(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """SIGKILL, no wisp.Stop: the tracer stream has no last piece, and is read up to its last
    complete generation: the deadlock between the two goroutines is still found."""
    proc, runtime, line = start_live(programs["hang"], tmp_path)
    out = tmp_path / "run"
    try:
        assert line == "ready"
        deadline = time.monotonic() + 60
        while not has_lock_cycle(out) and time.monotonic() < deadline:
            time.sleep(0.2)  # until a generation holding the deadlock is on disk
    finally:
        assert stop_live(proc, runtime, signal.SIGKILL) == -signal.SIGKILL
    report = analyze_json(out)
    assert report["trace"]["unreadable_files"] == []
    lock_cycle(report)


class _Downstream(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def test_boundary_follows_a_request_and_only_its_goroutines_are_recorded(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """hops mode with a boundary, every request unsampled: POST /checkout (the entry) and
    GET /work from a Python client whose tracestate carries wisp=b-<id> open instances;
    their goroutines (the handler's, the worker it starts) are recorded with their lock
    events and waits, the outgoing call carries the member on, and the goroutine that
    works for no request (background, its own lock every millisecond) is not recorded."""
    spec = "entry=http:POST /checkout;runtimes=python,go"
    bid = hashlib.sha256(b"http:POST /checkout").hexdigest()[:8]
    seen: list[dict[str, str]] = []
    handler = type("Downstream", (_Downstream,), {"seen": seen})
    down = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=down.serve_forever, daemon=True)
    thread.start()
    proc, runtime, line = start_live(
        programs["boundary"],
        tmp_path,
        WILLOWISP_MODE="hops",
        WILLOWISP_BOUNDARIES=spec,
        DOWNSTREAM=f"http://127.0.0.1:{down.server_address[1]}/down",
    )
    try:
        base = f"http://{line.split()[1]}"

        def call(method: str, path: str, state: str) -> None:
            headers = {"traceparent": f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"}
            if state:
                headers["tracestate"] = state
            req = urllib.request.Request(
                base + path, b"" if method == "POST" else None, headers, method=method
            )
            with urllib.request.urlopen(req) as r:
                assert r.status == 200

        call("POST", "/checkout", "x=1")  # the entry itself
        call("GET", "/work", f"wisp=b-{bid},x=2")  # a caller inside the boundary
        call("GET", "/work", "x=3")  # neither: unsampled, not recorded
        status = ctl_status(proc.pid, runtime)
    finally:
        assert stop_live(proc, runtime) == -signal.SIGTERM
        down.shutdown()
        down.server_close()
    # the boundary travels on: the downstream calls made inside instances carry it first
    states = [h.get("tracestate", "") for h in seen]
    assert states[0] == f"wisp=b-{bid},x=1" and states[1] == f"wisp=b-{bid},x=2"
    assert states[2] == "x=3"
    (b,) = status["boundaries"]
    assert (b["entries"], b["propagated"], b["active"]) == (1, 1, 0)
    assert b["events"] > 0 and b["cost_ns"] > 0 and status["gate"] is True
    out = tmp_path / "run"
    report = analyze_json(out)
    (shown,) = report["trace"]["boundaries"]
    assert shown["entry"] == "http:POST /checkout" and shown["instances"] == 1
    (proc_report,) = report["processes"]
    cost = proc_report["agent"]["by_boundary"]["http:POST /checkout"]
    assert (cost["entries"], cost["propagated"], cost["active"]) == (1, 1, 0)
    assert cost["events"] >= 8 and cost["cost_ns"] > 0 and cost["spec"] == spec
    # the recorded hops: the two instances' requests and their calls, not the third one
    kinds = {
        r["kind"]: r["n"]
        for r in query(out, "select kind, count(*) as n from events group by kind")
    }
    assert kinds.get("msg.recv") == 2 and kinds.get("rpc.reply") == 2
    assert kinds.get("msg.send") == 2
    held = query(out, "select resource_name from events where kind = 'lock.acquired'")
    assert sorted(r["resource_name"] for r in held) == ["cart", "cart"]
    names = [r["name"] for r in query(out, "select name from units")]
    assert sum("checkoutWorker" in n for n in names) == 2, names
    assert not any("background" in n for n in names), names
    server = query(out, "select attrs from resources where kind = 'rpc' and method = 'POST'")
    attrs = server[0]["attrs"]
    attrs = json.loads(attrs) if isinstance(attrs, str) else attrs
    assert attrs["boundary"] == "http:POST /checkout" and attrs["caller_sampled"] == 0


def test_work_handed_to_an_older_pool_joins_the_instance(tmp_path: Path) -> None:
    """hops mode, a boundary on every GET: a worker pool started before any request does
    the requests' work (a wisp.Mutex). Handed over with wisp.Carry, or run with wisp.Within
    and the request's context, the work is inside the request's instance and its wait and
    lock events are recorded on the worker; handed over as it is, it is outside and not."""
    BUILD.mkdir(parents=True, exist_ok=True)
    program = BUILD / "pool"
    built = subprocess.run(
        [str(GO), "build", "-o", str(program), "./wisp/testdata/pool"],
        cwd=AGENT,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    proc, runtime, line = start_live(
        program, tmp_path, WILLOWISP_MODE="hops", WILLOWISP_BOUNDARIES="entry=http:GET /*"
    )
    try:
        base = f"http://{line.split()[1]}"
        for path in ("/plain", "/carried", "/within", "/plain"):
            with urllib.request.urlopen(base + path) as r:
                assert r.status == 200
        status = ctl_status(proc.pid, runtime)
    finally:
        assert stop_live(proc, runtime) == -signal.SIGTERM
    (b,) = status["boundaries"]
    assert b["entries"] == 4 and b["active"] == 0
    out = tmp_path / "run"
    held = query(
        out,
        "select u.name as unit from events e join units u on u.id = e.unit "
        "where e.kind = 'lock.acquired' and e.resource_name = 'stock'",
    )
    assert len(held) == 2, held
    assert all("poolWorker" in r["unit"] for r in held), held
    # the job's sleep comes before its lock: kept because the worker said it went in
    slept = query(
        out,
        "select u.name as unit from waits w join units u on u.id = w.unit where w.reason = 'sleep'",
    )
    assert len(slept) == 2 and all("poolWorker" in r["unit"] for r in slept), slept


def test_boundary_crosses_from_python_into_go(programs: dict[str, Path], tmp_path: Path) -> None:
    """A Python service (the Python agent) whose POST /checkout is a boundary's entry calls
    the Go service inside the instance, in hops mode with nothing sampled: the Python
    client's tracestate carries wisp=b-<id>, the Go agent opens a propagated instance, so
    its handler's goroutines are recorded (the worker's lock too) and the call linked; the
    same Go request made outside the boundary, and the Go goroutine that works for no
    request, are not recorded."""
    out = tmp_path / "run"
    done = wisp(
        "run",
        "--out",
        str(out),
        "--mode",
        "hops",
        "--trace-ratio",
        "0",
        "--boundary",
        "entry=http:POST /checkout;runtimes=python,go",
        "--",
        sys.executable,
        str(PROGRAMS / "front.py"),
        str(programs["boundary"]),
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["checkout", "1", "direct", "2"]
    report = analyze_json(out)
    (shown,) = report["trace"]["boundaries"]
    assert shown["instances"] == 1 and shown["units"] >= 4
    by_runtime = {p["runtime"]: p for p in report["processes"]}
    go_cost = by_runtime["go"]["agent"]["by_boundary"]["http:POST /checkout"]
    assert (go_cost["entries"], go_cost["propagated"], go_cost["active"]) == (0, 1, 0)
    assert go_cost["events"] > 0
    linked = [
        h
        for h in report["hops"]
        if h["protocol"] == "http"
        and h["from"]["runtime"] == "python"
        and h["to"]["runtime"] == "go"
    ]
    assert len(linked) == 1 and linked[0]["linked"] == 1, report["hops"]
    go_units = [r["name"] for r in query(out, "select name from units where service = 'boundary'")]
    assert sum("checkoutWorker" in n for n in go_units) == 1, go_units
    assert not any("background" in n for n in go_units), go_units
    held = query(out, "select resource_name from events where kind = 'lock.acquired'")
    assert [r["resource_name"] for r in held] == ["cart"]
    recv = query(
        out, "select count(*) as n from events where kind = 'msg.recv' and service = 'boundary'"
    )
    assert recv[0]["n"] == 1


def build_testdata(name: str) -> Path:
    """A program of agents/go/wisp/testdata, built into the test cache."""
    BUILD.mkdir(parents=True, exist_ok=True)
    program = BUILD / name
    built = subprocess.run(
        [str(GO), "build", "-o", str(program), f"./wisp/testdata/{name}"],
        cwd=AGENT,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return program


@pytest.mark.skipif(not CAN_MOUNT, reason="needs root with unshare and mount")
def test_full_disk_is_said_and_never_breaks_the_program(tmp_path: Path) -> None:
    """A 224 KiB file system (64 KiB of it the agent's reserve) for a program recording
    ~220 KB over three seconds: the first tracer generation fits, later chunks do not. The
    program prints and exits as without the agent; one stderr line says the loss; the file
    ends at a whole chunk, says the drops and the faults (the write, the broken tracer
    stream) and still holds the first generation's goroutines and lock events."""
    program = build_testdata("diskfill")
    alone = subprocess.run(
        [str(program)], capture_output=True, text=True, timeout=120, check=False, env=clean_env()
    )
    assert (alone.returncode, alone.stdout) == (0, "14400\n"), alone.stderr
    done, kept = run_on_full_disk(tmp_path, [str(program)], "224k")
    assert (done.returncode, done.stdout) == (alone.returncode, alone.stdout), done.stderr
    assert "panic" not in done.stderr and "goroutine " not in done.stderr, done.stderr
    said = [line for line in done.stderr.splitlines() if "could not be written" in line]
    assert len(said) == 1 and "No space left on device" in said[0], done.stderr
    assert said[0].startswith("willowisp: ") and " events of diskfill (pid " in said[0]
    lost = int(said[0].split("willowisp: ", 1)[1].split(" events", 1)[0])
    agent = check_loss_reported(kept, "diskfill")
    assert 0 < int(str(agent["dropped"])) <= lost
    report = analyze_json(kept)
    wheres = {f["explanation"][0].split(" raised ", 1)[0] for f in findings(report, "agent-fault")}
    assert "write" in wheres, wheres  # (the broken stream's fault may come after the news)
    # the stream is read up to its last complete generation: goroutines and the lock's holds
    assert report["trace"]["units"] > 10, report["trace"]
    (lock,) = [c for c in report["contention"] if c["resource"]["name"] == "total"]
    assert 0 < lock["acquisitions"] < 14400, lock  # what was written, not all
