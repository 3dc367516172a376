"""The Go agent (agents/go/wisp) end to end: real Go programs linked with the agent, built
with ``go build`` and run under ``willowisp run``, analyzed by ``willowisp analyze``; and
the agent's own Go tests (``go test``: conformance vectors byte for byte, the encoder, the
lock wrapper, propagation)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from willowisp.errors import TraceFormatError
from willowisp.ingest import go_trace

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


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}


@pytest.fixture(scope="module")
def programs() -> dict[str, Path]:
    """The test programs, built once into the checkout's ignored .cache/ folder."""
    BUILD.mkdir(parents=True, exist_ok=True)
    built = {}
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    for name in ("deadlock", "chandeadlock", "leak", "httpclient", "counter", "sigterm"):
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
        go_trace.decode(go_trace.AGENT_STORED, data, "x.wtrace")
