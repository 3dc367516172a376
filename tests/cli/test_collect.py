"""`willowisp collect` with real agents: a program under `willowisp run` streams into the
collector's folder; a stopped or missing collector loses nothing; bad usage is refused."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from willowisp.channel.frames import (
    MAX_MESSAGE_BODY,
    STREAM_MAGIC,
    pack_frame,
    parse_object,
    read_frame,
    recv_exact,
)
from willowisp.errors import ProtocolError
from willowisp.ingest import load
from willowisp.model.spec import KIND_BY_CODE, K
from willowisp.wtrace.framing import CHUNK_HEADER_SIZE, CHUNK_MAGIC, parse_chunk_header
from willowisp.wtrace.payload import rows_of
from willowisp.wtrace.reader import read_file
from willowisp.wtrace.writer import SegmentWriter
from wispkit import faults_in

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
    print("acknowledged" if rec.out.writer.sync(10) else "not acknowledged", flush=True)
    sys.stdin.readline()
    phase()
if "--unacked" in sys.argv:  # for a collector that never acknowledges
    rec = recorder.RECORDER
    with rec._write_lock:
        rec._flush_locked()
    print(rec.out.writer._sent, flush=True)  # chunks sent to the collector so far
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
    it acknowledged in its folder; the agent writes the rest into its own run folder;
    together they hold every chunk exactly once. The collector's bye is an orderly end,
    not an agent fault."""
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
    assert faults_in(tmp_path / "run") == []
    names = [u for u, k in program_events(tmp_path / "run") if k == "unit.start"]
    assert names == ["w0", "w1", "w2"]  # the second phase, after the collector left
    r = wisp("analyze", str(collector.out), str(tmp_path / "run"), "--format", "json")
    assert r.returncode == 0, r.stderr
    trace = json.loads(r.stdout)["trace"]
    assert trace["processes"] == 1 and trace["agent_faults"] == 0


class SilentCollector:
    """A collector killed between writing chunks and acknowledging them: it takes one
    agent's hello, writes every chunk it receives into its file (named as the real
    collector names it) and never acknowledges one, until ``close()`` drops the
    connection. Its listener is closed once the agent is in, so reconnects are refused."""

    def __init__(self, out: Path) -> None:
        out.mkdir()
        self.out = out
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.written = 0  # chunks in the file
        self.conn: socket.socket | None = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return  # closed before an agent came
        finally:
            self.listener.close()
        with self.changed:
            self.conn = conn
        body = read_frame(conn, STREAM_MAGIC, MAX_MESSAGE_BODY)
        assert body is not None
        hello = parse_object(body)
        name = f"{hello['service']}-{hello['pid']}-{hello['process_id'][:8]}-1.wtrace"
        reply = {"ok": True, "op": "hello", "version": 1, "file": name}
        conn.sendall(pack_frame(STREAM_MAGIC, reply))
        with SegmentWriter(self.out / name) as file:
            while True:
                try:
                    head = recv_exact(conn, CHUNK_HEADER_SIZE)
                    if head[:4] != CHUNK_MAGIC:
                        return  # closed (or the agent's bye): nothing more to write
                    stored = recv_exact(conn, parse_chunk_header(head, 0).stored_len)
                except (OSError, ProtocolError):
                    return
                file.write_raw_chunk(head + stored)
                with self.changed:
                    self.written += 1
                    self.changed.notify_all()

    def close(self, after: int) -> None:
        """Drop the connection once ``after`` chunks are in the file."""
        with self.changed:
            assert self.changed.wait_for(lambda: self.written >= after, timeout=60)
            conn = self.conn
        assert conn is not None
        conn.shutdown(socket.SHUT_RDWR)  # wakes the reading thread with an end of file
        self.thread.join(timeout=60)
        conn.close()

    def stop(self) -> None:
        self.listener.close()
        with self.changed:
            conn = self.conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=60)
        if conn is not None:
            conn.close()


def test_chunks_written_but_not_acknowledged_are_loaded_once(tmp_path: Path):
    """A collector that wrote chunks and vanished before acknowledging them: the agent
    writes them again into its own file, so each is stored twice; `analyze` of both
    folders loads every event once, says how many chunks it dropped as repeats, and
    counts exactly the lock acquisitions the program made."""
    silent = SilentCollector(tmp_path / "collected")
    cmd, env = run_program(tmp_path, tmp_path / "run", collector=silent.address)
    prog = subprocess.Popen(
        [*cmd, "--unacked"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert prog.stdout is not None and prog.stdin is not None
        sent = int(prog.stdout.readline())
        assert sent > 0
        silent.close(after=sent)
        prog.stdin.write("go on\n")
        prog.stdin.close()
        assert prog.wait(timeout=120) == 0
    finally:
        silent.stop()
        if prog.poll() is None:
            prog.kill()
        prog.wait(timeout=30)
        for f in (prog.stdin, prog.stdout, prog.stderr):
            if f is not None and not f.closed:
                f.close()
    collected = chunks_of([silent.out])
    assert len(collected) >= sent
    stored = chunks_of([silent.out, tmp_path / "run"])
    assert len(stored) == len({first for first, _ in stored}) + len(collected)  # all twice
    # The agent's folder first: its fallback file has the collector's file's name.
    r = wisp("analyze", str(tmp_path / "run"), str(silent.out), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    recorded = sum(len(rows) for _, rows in set(map(_hashable, stored)))
    assert doc["trace"]["events"] == recorded
    [proc] = doc["processes"]
    plural = "chunk" if len(collected) == 1 else "chunks"
    prefix = f"{len(collected)} {plural} of process {proc['id'][:8]}… (prog, pid {proc['pid']})"
    assert any(n.startswith(f"{prefix} seen twice") for n in doc["trace"]["notes"])
    trace = load([tmp_path / "run", silent.out])
    seqs = trace.events.seq.tolist()
    assert sorted(seqs) == list(range(1, len(seqs) + 1))  # each event once, no gap
    assert int(np.count_nonzero(trace.events.kind == K.LOCK_ACQUIRED)) == 2 * 3 * 20
    program = ~np.isin(trace.events.kind, [K.CLOCK_ANCHOR, K.AGENT_FLUSH, K.AGENT_DROP])
    assert int(np.count_nonzero(program)) == trace.processes[0].stats.events


def _hashable(c: tuple[int, list[tuple[int, int]]]) -> tuple[int, tuple[tuple[int, int], ...]]:
    return c[0], tuple(c[1])


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
        (["--otlp-http", "http"], "is not a port number"),
        (["--native", "0", "--host", "0.0.0.0"], "is not loopback: give --token"),
        (["--native", "http"], "is not a port number"),
    ],
)
def test_collect_refuses_bad_usage(tmp_path: Path, args: list[str], message: str):
    """A public address without a token, a port that is not one: exit 2 with one line."""
    env = {k: v for k, v in os.environ.items() if k != "WILLOWISP_TOKEN"}
    r = wisp("collect", "--out", str(tmp_path / "c"), *args, env=env)
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith("willowisp collect: ") and message in line


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_collect_refuses_an_out_it_cannot_write(tmp_path: Path, where: str):
    """--out naming a regular file, or a path under one: exit 2 at start, naming it."""
    (tmp_path / "notadir").write_text("x")
    out = tmp_path / "notadir" if where == "file" else tmp_path / "notadir" / "x"
    r = wisp("collect", "--otlp-http", "0", "--native", "0", "--out", str(out))
    assert r.returncode == 2
    [line] = r.stderr.splitlines()
    assert line.startswith(f"willowisp collect: cannot write into --out {out}: ")
    assert r.stdout == ""  # never announced a port


def test_collect_refuses_a_read_only_out(tmp_path: Path):
    """--out on a read-only mount (a private bind mount, remounted ro): exit 2 at start."""
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (
        f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} && exec "
        + shlex.join([sys.executable, "-m", "willowisp", "collect", "--otlp-http", "0"])
        + f" --out {ro / 'x'}"
    )
    r = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    [line] = r.stderr.splitlines()
    assert line == f"willowisp collect: cannot write into --out {ro / 'x'}: Read-only file system"


def test_collect_without_receiver_flags_starts_all_three(tmp_path: Path):
    """No --native/--otlp-http/--otlp-grpc: all three receivers, OTLP on OpenTelemetry's
    default ports 4318 and 4317 (what an SDK exports to by default), the native stream on a
    free port. Run in a network namespace of its own (unshare, as root), so the fixed
    ports are free whatever else runs on this machine."""
    out = tmp_path / "c"
    script = (
        f"ip link set lo up && exec {shlex.quote(sys.executable)} -m willowisp collect"
        f" --out {shlex.quote(str(out))}"
    )
    proc = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", script],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(4)]
        text = "\n".join(lines)
        assert re.search(r"native stream on 127\.0\.0\.1:\d+, writing into", text), text
        assert "WILLOWISP_COLLECTOR=127.0.0.1:" in text
        assert "OTLP/HTTP on http://127.0.0.1:4318/v1/traces" in text
        assert "OTLP/gRPC on 127.0.0.1:4317" in text
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_collect_help():
    """collect explains its receivers, the token rule and how it stops."""
    r = wisp("collect", "--help")
    assert r.returncode == 0 and "usage: willowisp collect" in r.stdout
    for word in ("--native", "--token", "WILLOWISP_COLLECTOR", "SIGTERM", "loopback"):
        assert word in r.stdout


def test_totals_say_one_thing_in_the_singular() -> None:
    """The stop line counts in words: ``1 OTLP request``, ``1 segment``, ``2 spans``."""
    from types import SimpleNamespace

    from willowisp.cli.collect import _totals

    store = SimpleNamespace(
        stats=SimpleNamespace(requests=1, spans=2, rejected=0, bytes=1, refused=0, files=["a"])
    )
    native = SimpleNamespace(stats=SimpleNamespace(chunks=1, connections=1, files=["b", "c"]))
    line = _totals(native, store, "/runs/r1")  # type: ignore[arg-type]
    assert line == (
        "1 chunk from 1 connection in 2 segments; 1 OTLP request (2 spans, 0 rejected, "
        "1 byte, 0 refused) in 1 segment in /runs/r1"
    )


def test_sigterm_to_a_receiver_thread_stops_the_collector(tmp_path: Path):
    """The kernel may deliver a process's SIGTERM to any of its threads; sent to one of
    collect's receiver threads (gRPC's, HTTP's), collect still stops at once: its main
    thread wakes to run the handler (an untimed wait there was never interrupted, and a CI
    run's collector hung until killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "collect", "--otlp-http", "0", "--otlp-grpc", "0",
         "--native", "0", "--out", str(tmp_path / "c")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for _ in range(4):  # native (2 lines), OTLP/HTTP, OTLP/gRPC: every receiver is up
            assert proc.stdout.readline().startswith("willowisp collect: ")
        others = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        assert others, "the receivers run threads of their own"
        from wispkit import tgkill

        tgkill(proc.pid, max(others), signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "stopped" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
