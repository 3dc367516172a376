"""`willowisp collect` with real agents: a program under `willowisp run` streams into the
collector's folder; a stopped or missing collector loses nothing; bad usage is refused."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from willowisp.model.spec import KIND_BY_CODE
from willowisp.wtrace.payload import rows_of
from willowisp.wtrace.reader import read_file

# Deterministic on purpose (threads run one after the other: no contention), so two runs
# record the same events. With --pause it waits, after making sure the collector
# acknowledged everything so far, for a line on stdin, then does it all again.
PROGRAM = """
import sys, threading
from willowisp.agent import recorder
lock = threading.Lock()
def worker():
    for _ in range(20):
        with lock:
            pass
def phase():
    for i in range(3):
        t = threading.Thread(target=worker, name=f"w{i}")
        t.start()
        t.join()
phase()
if "--pause" in sys.argv:
    rec = recorder.RECORDER
    with rec._write_lock:  # flush() skips while the flusher runs: wait for it instead
        rec._flush_locked()
    print("acknowledged" if rec._writer.sync(10) else "not acknowledged", flush=True)
    sys.stdin.readline()
    phase()
"""
AGENT_KINDS = {"clock.anchor", "agent.flush", "agent.drop", "agent.fault", "gc.begin", "gc.end"}


def wisp(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False, **kw,
    )  # fmt: skip


class Collector:
    """`willowisp collect --native 0`; the address is read from its first line."""

    def __init__(self, out: Path, *extra: str) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "willowisp", "collect", "--native", "0", "--out", str(out),
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"native stream on (\S+), writing into", line)
        assert m, (line, self.proc.stderr.read() if self.proc.stderr else "")
        self.address = m.group(1)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, err


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path / "collected")
    try:
        yield c
    finally:
        c.stop()


def run_program(tmp_path: Path, out: Path, collector: str = "", token: str = "", **kw):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    env = {**os.environ, "WILLOWISP_SERVICE": "prog"}
    env.pop("WILLOWISP_COLLECTOR", None)
    if collector:
        env["WILLOWISP_COLLECTOR"] = collector
    if token:
        env["WILLOWISP_TOKEN"] = token
    args = [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--"]
    return args + [sys.executable, str(script)], env


def finished(cmd: list[str], env: dict[str, str]) -> int:
    """Run to the end; the exit status."""
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    return r.returncode


def chunks_of(folders: list[Path]) -> list[tuple[int, list[tuple[int, int]]]]:
    """(first_seq, [(kind, unit)...]) of every chunk with events in these folders."""
    out = []
    for folder in folders:
        for path in sorted(folder.glob("*.wtrace")):
            tf = read_file(path)
            assert tf.problems == [] and not tf.truncated, path
            for c in tf.chunks:
                if c.events is not None and len(c.events):
                    out.append((c.events.first_seq, [(r[0], r[1]) for r in rows_of(c.events)]))
    return out


def program_events(folder: Path) -> list[tuple[str, str]]:
    """(unit name, event kind) of the program's own events, unit by unit (by name), each
    unit's in its order. (The order across units depends on when flushes happen.)"""
    names: dict[int, str] = {}
    rows: list[tuple[int, int, int]] = []
    for path in sorted(folder.glob("*.wtrace")):
        for c in read_file(path).chunks:
            for r in c.records:
                if r.rtype == 2 and r.get("name") is not None:
                    names[r.id] = str(r.get("name"))
            if c.events is not None:
                for i, (k, u, *_rest) in enumerate(rows_of(c.events)):
                    rows.append((c.events.first_seq + i, k, u))
    kinds = [(names.get(u, "?"), seq, KIND_BY_CODE[k].name) for seq, k, u in rows]
    return [(u, k) for u, _, k in sorted(kinds) if k not in AGENT_KINDS]


def faults_in(folder: Path) -> list[str]:
    return [
        str(r.get("message"))
        for path in folder.glob("*.wtrace")
        for c in read_file(path).chunks
        for r in c.records
        if r.rtype == 5
    ]


def test_streamed_run_equals_a_file_run(tmp_path: Path, collector: Collector):
    """Streamed to a collector, a program's trace lands in the collector's folder as a
    readable segment with the same events a file run records; nothing is left behind."""
    cmd, env = run_program(tmp_path, tmp_path / "files")
    assert finished(cmd, env) == 0
    cmd, env = run_program(tmp_path, tmp_path / "streamed", collector=collector.address)
    assert finished(cmd, env) == 0
    code, err = collector.stop()
    assert code == 0 and "stopped;" in err
    [segment] = list(collector.out.glob("*.wtrace"))
    assert re.fullmatch(r"prog-\d+-[0-9a-f]{8}-1\.wtrace", segment.name)
    assert list((tmp_path / "streamed").glob("*.wtrace")) == []  # no fallback was needed
    streamed = program_events(collector.out)
    assert streamed == program_events(tmp_path / "files")
    assert [u for u, k in streamed if k == "unit.start"] == ["w0", "w1", "w2"]
    assert faults_in(collector.out) == []
    r = wisp("analyze", str(collector.out), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["trace"]["processes"] == 1 and doc["trace"]["unreadable_files"] == []


def test_sigterm_mid_run_loses_nothing(tmp_path: Path, collector: Collector):
    """The collector stopped by SIGTERM while the program runs: it exits 0 with everything
    it acknowledged in its folder; the agent writes the rest (and a fault) into its own
    run folder; together they hold every chunk exactly once."""
    cmd, env = run_program(tmp_path, tmp_path / "run", collector=collector.address)
    prog = subprocess.Popen(
        [*cmd, "--pause"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert prog.stdout is not None and prog.stdin is not None
        assert prog.stdout.readline().strip() == "acknowledged"
        code, _ = collector.stop(signal.SIGTERM)
        assert code == 0
        acknowledged = chunks_of([collector.out])
        assert acknowledged  # what the agent had before the pause is in the collector's file
        prog.stdin.write("go on\n")
        prog.stdin.close()
        assert prog.wait(timeout=120) == 0
    finally:
        if prog.poll() is None:
            prog.kill()
        prog.wait(timeout=30)
        for f in (prog.stdin, prog.stdout, prog.stderr):
            if f is not None and not f.closed:
                f.close()
    assert chunks_of([collector.out]) == acknowledged
    chunks = sorted(chunks_of([collector.out, tmp_path / "run"]))
    seqs = [first for first, _ in chunks]
    assert len(seqs) == len(set(seqs)), "a chunk was stored twice"
    expected = 1
    for first, rows in chunks:
        assert first == expected, f"chunk at seq {first} follows a gap at {expected}"
        expected = first + len(rows)
    [fault] = faults_in(tmp_path / "run")
    assert "went away" in fault and collector.address in fault
    names = [u for u, k in program_events(tmp_path / "run") if k == "unit.start"]
    assert names == ["w0", "w1", "w2"]  # the second phase, after the collector left
    r = wisp("analyze", str(collector.out), str(tmp_path / "run"), "--format", "json")
    assert r.returncode == 0, r.stderr
    trace = json.loads(r.stdout)["trace"]
    assert trace["processes"] == 1 and trace["agent_faults"] == 1


def test_forked_child_streams_on_its_own_connection(tmp_path: Path, collector: Collector):
    """A forked child lets go of its parent's connection and streams as its own process:
    two segments in the collector's folder, nothing written to files."""
    script = tmp_path / "forker.py"
    script.write_text(
        "import os, threading\n"
        "lock = threading.Lock()\n"
        "pid = os.fork()\n"
        "with lock:\n"
        "    pass\n"
        "if pid == 0:\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "with lock:\n"
        "    pass\n"
    )
    env = {**os.environ, "WILLOWISP_COLLECTOR": collector.address}
    cmd = [sys.executable, "-m", "willowisp", "run", "--out", str(tmp_path / "run")]
    assert finished([*cmd, "--", sys.executable, str(script)], env) == 0
    assert collector.stop()[0] == 0
    segments = sorted(collector.out.glob("*.wtrace"))
    assert len(segments) == 2
    ids = set()
    for seg in segments:
        tf = read_file(seg)
        assert tf.problems == [] and not tf.truncated
        procs = [r for c in tf.chunks for r in c.records if r.rtype == 1]
        ids.add(procs[0].get("process_id"))
        assert seg.name.split("-")[2] == str(procs[0].get("process_id"))[:8]
    assert len(ids) == 2
    assert list((tmp_path / "run").glob("*.wtrace")) == []
    assert faults_in(collector.out) == []


def test_missing_collector_means_files_and_a_fault(tmp_path: Path):
    """Nobody listens at WILLOWISP_COLLECTOR: the run folder gets the whole trace and a
    fault saying the collector was unreachable."""
    import socket

    with socket.socket() as held:  # bound but not listening: connections are refused
        held.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{held.getsockname()[1]}"
        cmd, env = run_program(tmp_path, tmp_path / "run", collector=address)
        assert finished(cmd, env) == 0
        cmd, env = run_program(tmp_path, tmp_path / "files")
        assert finished(cmd, env) == 0
    [fault] = faults_in(tmp_path / "run")
    assert "unreachable" in fault and address in fault
    assert program_events(tmp_path / "run") == program_events(tmp_path / "files")


def test_token_is_checked(tmp_path: Path):
    """A collector with a token takes agents that send it and refuses others (which then
    write files, with a fault naming the refusal)."""
    c = Collector(tmp_path / "collected", "--token", "s3cret-token")
    try:
        cmd, env = run_program(tmp_path, tmp_path / "good", c.address, token="s3cret-token")
        assert finished(cmd, env) == 0
        cmd, env = run_program(tmp_path, tmp_path / "bad", c.address, token="wrong")
        assert finished(cmd, env) == 0
    finally:
        code, _ = c.stop(signal.SIGINT)
    assert code == 0
    assert len(list(c.out.glob("*.wtrace"))) == 1
    assert list((tmp_path / "good").glob("*.wtrace")) == []
    [fault] = faults_in(tmp_path / "bad")
    assert "unauthorized" in fault


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--native", "0", "--otlp-http", "4318"], "OTLP receiving is not available yet"),
        (["--otlp-grpc", "4317"], "OTLP receiving is not available yet"),
        (["--native", "0", "--host", "0.0.0.0"], "is not loopback: give --token"),
        ([], "nothing to receive"),
        (["--native", "http"], "is not a port number"),
    ],
)
def test_collect_refuses_bad_usage(tmp_path: Path, args: list[str], message: str):
    """OTLP (not there yet), a public address without a token, nothing to receive: exit 2
    with one line."""
    env = {k: v for k, v in os.environ.items() if k != "WILLOWISP_TOKEN"}
    r = wisp("collect", "--out", str(tmp_path / "c"), *args, env=env)
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith("willowisp collect: ") and message in line


def test_collect_help():
    """collect explains its receivers, the token rule and how it stops."""
    r = wisp("collect", "--help")
    assert r.returncode == 0 and "usage: willowisp collect" in r.stdout
    for word in ("--native", "--token", "WILLOWISP_COLLECTOR", "SIGTERM", "loopback"):
        assert word in r.stdout
