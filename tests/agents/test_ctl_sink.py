"""`willowisp ctl status` says where a Go or a Java agent's chunks go (docs/protocols.md, the
status result's `sink`), as the Python and Node agents do: the segment file being written;
or the collector, streaming, and once that collector is gone the fallback file with the
failed reconnects counted. Real programs (Go linked with its agent, a JVM with the agent
jar), a real `willowisp collect --native`, the real `willowisp ctl`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_go_agent import GO, PROGRAMS, ctl_status
from test_java_agent import JAVA, JAVAC, TICKER, agent_jar, java_env

from wispkit import clean_env, start_collector, stop_collector

__all__ = ["agent_jar"]  # a fixture, used by name

RUNTIMES = ["go", "java"]
DEADLINE_S = 30.0  # the longest a test waits for the agent to notice the collector is gone


@pytest.fixture(scope="module")
def hang(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go program that prints "ready" and runs until signalled, built once."""
    assert GO is not None, "go is needed for the Go agent's tests"
    target = tmp_path_factory.mktemp("go-sink") / "hang"
    done = subprocess.run(
        [GO, "build", "-o", str(target), "./hang"],
        cwd=PROGRAMS, env={**os.environ, "GOFLAGS": "-mod=mod"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture(scope="module")
def ticker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Java program that takes a lock every 10 ms (so the flusher always has a chunk) after
    printing "ticking", until signalled; its compiled classes."""
    assert JAVAC is not None, "a JDK is needed for the Java agent's tests"
    src = tmp_path_factory.mktemp("java-sink")
    (src / "Ticker.java").write_text(TICKER)
    subprocess.run([JAVAC, "-d", str(src), str(src / "Ticker.java")], check=True, timeout=120)
    return src


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A short private folder for the control channel's socket and descriptor."""
    folder = Path(tempfile.mkdtemp(prefix="ws-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def start(request: pytest.FixtureRequest, runtime_dir: Path) -> Iterator[Any]:
    """Starts the runtime's program with WILLOWISP_* settings (its control channel in
    runtime_dir) and returns it once it says it runs (its build fixture asked for then, so a
    Go test needs no JDK); ends it by SIGTERM at the end of the test."""
    started: list[subprocess.Popen[str]] = []

    def launch(runtime: str, out: Path, **env: str) -> subprocess.Popen[str]:
        env = {**env, "WILLOWISP_RUNTIME_DIR": str(runtime_dir)}
        if runtime == "go":
            argv = [str(request.getfixturevalue("hang"))]
            full, ready = {**clean_env(WILLOWISP_OUT=str(out)), **env}, "ready"
        else:
            classes = request.getfixturevalue("ticker")
            argv = [JAVA or "java", "-cp", str(classes), "Ticker"]
            full = java_env(request.getfixturevalue("agent_jar"), out, **env)
            ready = "ticking"
        proc = subprocess.Popen(argv, env=full, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == ready
        return proc

    yield launch
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the agent's last flush
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def sink_of(proc: subprocess.Popen[str], runtime_dir: Path) -> dict[str, Any]:
    """The program's `sink` from `willowisp ctl PID status --format json`."""
    return dict(ctl_status(proc.pid, runtime_dir)["sink"])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_file_sink_names_the_segment_file(
    runtime: str, start: Any, runtime_dir: Path, tmp_path: Path
) -> None:
    """Without a collector the sink is the process's segment file in the run folder."""
    out = tmp_path / "run"
    proc = start(runtime, out)
    sink = sink_of(proc, runtime_dir)
    assert sink["kind"] == "file", sink
    path = Path(sink["path"])
    assert path.parent == out and path.name.endswith("-1.wtrace"), sink
    assert f"-{proc.pid}-" in path.name and path.is_file()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_stream_sink_says_streaming_then_the_fallback_and_its_retries(
    runtime: str, start: Any, runtime_dir: Path, tmp_path: Path
) -> None:
    """Streaming: the collector's address, no fallback file, no retries. Once the collector
    stops (it says bye), the next chunk goes to the fallback file: state `file`, that file,
    and the failed reconnects counted (every 0.2 s with WILLOWISP_STREAM_RETRY_S)."""
    out, collected = tmp_path / "run", tmp_path / "collected"
    collector, address = start_collector(collected)
    try:
        proc = start(runtime, out, WILLOWISP_COLLECTOR=address, WILLOWISP_STREAM_RETRY_S="0.2")
        sink = sink_of(proc, runtime_dir)
        assert (sink["kind"], sink["state"], sink["collector"]) == (
            "stream", "streaming", address,
        )  # fmt: skip
        assert (sink["file"], sink["retries"]) == ("", 0), sink
        assert f"-{proc.pid}-" in sink["collector_file"], sink
    finally:
        stop_collector(collector)
    deadline = time.monotonic() + DEADLINE_S
    while sink["state"] != "file" or sink["retries"] == 0:
        assert time.monotonic() < deadline, f"still {sink} {DEADLINE_S} s after the collector"
        time.sleep(0.1)  # polling the agent's own answer with a deadline
        sink = sink_of(proc, runtime_dir)
    assert (sink["kind"], sink["collector"]) == ("stream", address)
    fallback = Path(sink["file"])
    assert fallback.parent == out and f"-{proc.pid}-" in fallback.name, sink
    assert fallback.is_file()
