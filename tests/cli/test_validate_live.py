"""``willowisp validate --ci-mode`` next to live programs: a segment whose writer is still
running and whose only fault is the chunk being appended is in progress (a note, exit 0);
the same file once its writer is dead, or with a pid reused by a later process, is a problem.

The writers are real programs under ``willowisp run`` (Go linked with its agent, Python,
Node). A reader racing a write sees the file end inside a chunk for a moment only; to make
that moment last, the test stops the writer (SIGSTOP: still alive, still the same process)
and leaves on its segment the first bytes of a chunk, as a write in progress does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from willowisp.errors import TraceFormatError
from willowisp.ingest.files import parse_segment_name, split_embedded
from willowisp.wtrace.framing import CHUNK_HEADER_SIZE, FILE_HEADER_SIZE, parse_chunk_header
from willowisp.wtrace.payload import Record
from willowisp.wtrace.reader import read_file
from willowisp.wtrace.writer import R_EMBEDDED, SegmentWriter
from wispkit import clean_env, start_run

ROOT = Path(__file__).resolve().parents[2]
GO_PROGRAMS = ROOT / "tests" / "agents" / "programs" / "go"
GO = shutil.which("go")
NODE = shutil.which("node")
DEADLINE_S = 60.0
R_PROCESS = 1
PROCESS_ID = "0badc0de" + "0" * 24  # of the segments the test writes itself

# Each waits, recording, until it is ended by a signal; "ready" once its agent is running.
PYTHON_WAITER = "import sys\nprint('ready', flush=True)\nsys.stdin.read()\n"
NODE_WAITER = "console.log('ready');\nprocess.stdin.resume();\n"


def validate_json(*paths: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "validate", "--ci-mode", "--json", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=clean_env(),
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def unreadable(doc: dict[str, Any]) -> dict[str, str]:
    """file -> summary of each unreadable-file problem."""
    return {p["file"]: p["summary"] for p in doc["problems"] if p["kind"] == "unreadable-file"}


@pytest.fixture(scope="module")
def go_hang(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go agent's test program that records until a signal ends it, built here."""
    assert GO is not None, "go is a toolchain of this project's machine"
    target = tmp_path_factory.mktemp("go") / "hang"
    done = subprocess.run(
        [GO, "build", "-o", str(target), "./hang"],
        cwd=GO_PROGRAMS,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return target


def command(runtime: str, tmp_path: Path, go_hang: Path) -> list[str]:
    if runtime == "go":
        return [str(go_hang)]
    if runtime == "python":
        script = tmp_path / "waiter.py"
        script.write_text(PYTHON_WAITER)
        return [sys.executable, str(script)]
    assert NODE is not None, "node is a toolchain of this project's machine"
    script = tmp_path / "waiter.js"
    script.write_text(NODE_WAITER)
    return [NODE, str(script)]


@pytest.fixture
def live_run(
    request: pytest.FixtureRequest, tmp_path: Path, go_hang: Path
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``willowisp run`` of a waiting program of the runtime asked for, once it said
    "ready"; ended (SIGKILL to the program, then the run) whatever the test did."""
    out = tmp_path / "run"
    proc = start_run(out, *command(request.param, tmp_path, go_hang), env=clean_env(), stdin=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc, out
    finally:
        for seg in out.glob("*.wtrace"):
            name = parse_segment_name(str(seg))
            if name is not None and _alive(name.pid):
                os.kill(name.pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=30)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def poll(what: str, check: Any) -> Any:
    """``check()`` until it returns something true (an agent flushes every 100 ms)."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {DEADLINE_S} s")


def first_segment(out: Path) -> Path:
    """The program's first segment, once it holds a complete chunk (its process record)."""

    def ready() -> Path | None:
        for seg in sorted(out.glob("*.wtrace")):
            try:
                if read_file(seg).chunks:
                    return seg
            except (TraceFormatError, OSError):  # being written: look again
                continue
        return None

    found: Path = poll("segment with a complete chunk", ready)
    return found


def torn_chunk(data: bytes) -> bytes:
    """The first bytes of the first chunk of ``data`` (a segment): a header that parses and
    a payload cut short, what a reader sees while that chunk's write is under way."""
    header = parse_chunk_header(data, FILE_HEADER_SIZE)
    keep = CHUNK_HEADER_SIZE + max(header.stored_len // 2, 0)
    return data[FILE_HEADER_SIZE : FILE_HEADER_SIZE + keep]


def freeze(pid: int) -> None:
    """Stop the writer (SIGSTOP): alive and the same process, but writing nothing more."""
    os.kill(pid, signal.SIGSTOP)
    poll(f"stop of pid {pid}", lambda: _state(pid) == "T")


@pytest.mark.parametrize("live_run", ["go", "python", "nodejs"], indirect=True)
def test_a_torn_end_is_in_progress_while_its_writer_lives_and_a_problem_after(
    live_run: tuple[subprocess.Popen[str], Path],
) -> None:
    """A live writer's cut last chunk and its next segment's unfinished first chunk are
    notes (exit 0); after the writer is killed they are unreadable-file problems (exit 1)."""
    proc, out = live_run
    seg = first_segment(out)
    name = parse_segment_name(str(seg))
    assert name is not None
    freeze(name.pid)
    data = seg.read_bytes()
    torn = torn_chunk(data)
    with seg.open("ab") as f:
        f.write(torn)
    # A segment just rotated to: its header and part of its first chunk.
    nxt = out / f"{name.service}-{name.pid}-{name.prefix}-{name.n + 1}.wtrace"
    nxt.write_bytes(data[:FILE_HEADER_SIZE] + torn)

    code, doc = validate_json(out)
    assert (code, doc["ok"], unreadable(doc)) == (0, True, {}), doc
    live = {p["file"]: p for p in doc["in_progress"]}
    assert set(live) == {str(seg), str(nxt)}, doc
    assert {p["pid"] for p in live.values()} == {name.pid}

    os.kill(name.pid, signal.SIGKILL)
    proc.wait(timeout=60)  # the run ends once its program is reaped: the writer is gone
    code, doc = validate_json(out)
    assert code == 1 and doc["in_progress"] == [], doc
    problems = unreadable(doc)
    assert set(problems) == {str(seg), str(nxt)}, doc
    assert "cut short" in problems[str(seg)] and "unreadable" in problems[str(nxt)]


def one_chunk_segment(tmp_path: Path, pid: int) -> bytes:
    """The bytes of a segment of process ``PROCESS_ID`` (pid ``pid``) holding one whole
    chunk: its process record."""
    whole = tmp_path / "whole.wtrace"
    writer = SegmentWriter(whole)
    writer.write_chunk(
        [Record(R_PROCESS, 0, (("process_id", PROCESS_ID), ("pid", pid), ("service", "svc")))]
    )
    writer.close()
    data = whole.read_bytes()
    whole.unlink()
    return data


@pytest.fixture
def waiter() -> Iterator[subprocess.Popen[str]]:
    """A live process that writes no trace (a pid to reuse)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def test_a_live_pid_that_started_after_the_last_write_is_not_the_writer(
    tmp_path: Path, waiter: subprocess.Popen[str]
) -> None:
    """A torn segment named after a live pid whose process started after the file was last
    written (the kernel reused a dead writer's pid) stays a problem; the same file written
    after that process started is in progress."""
    data = one_chunk_segment(tmp_path, waiter.pid)
    seg = tmp_path / f"svc-{waiter.pid}-0badc0de-1.wtrace"
    seg.write_bytes(data[:FILE_HEADER_SIZE] + torn_chunk(data))
    an_hour_ago = time.time() - 3600
    os.utime(seg, (an_hour_ago, an_hour_ago))
    code, doc = validate_json(seg)
    assert code == 1 and doc["in_progress"] == [] and set(unreadable(doc)) == {str(seg)}, doc

    os.utime(seg)  # written now: by a process that was already running
    code, doc = validate_json(seg)
    assert code == 0 and [p["pid"] for p in doc["in_progress"]] == [waiter.pid], doc


def tracer_stream(seg: Path) -> tuple[int, bytes] | None:
    """The number and bytes so far of the Go execution tracer's stream in ``seg``, once
    it holds a whole generation."""
    try:
        streams, _ = split_embedded(read_file(seg))
    except (TraceFormatError, OSError):  # being written: look again
        return None
    got = [(n, data) for n, fmt, data, _ in streams if fmt == "go-exectrace" and data]
    return got[0] if got else None


@pytest.mark.parametrize("live_run", ["go"], indirect=True)
def test_a_go_tracer_stream_cut_in_its_first_part_is_in_progress_while_the_writer_lives(
    live_run: tuple[subprocess.Popen[str], Path],
) -> None:
    """A Go segment's execution-tracer stream whose first generation is only partly written
    (a busy program flushes 4 MiB of tracer bytes before the generation ends) is in
    progress while the program runs, and an unreadable-file problem once it is killed."""
    proc, out = live_run
    seg = first_segment(out)
    name = parse_segment_name(str(seg))
    assert name is not None
    number, data = poll("execution-tracer stream", lambda: tracer_stream(seg))
    freeze(name.pid)
    # The next stream's first piece: a third of a first generation, more to come.
    piece = Record(
        R_EMBEDDED,
        number + 1,
        (("format", "go-exectrace"), ("data", data[: len(data) // 3]), ("more", 1)),
    )
    appender = SegmentWriter(seg)
    appender.write_chunk([piece])
    appender.close()
    where = f"{seg} (embedded stream {number + 1}, go-exectrace)"

    code, doc = validate_json(out)
    assert (code, unreadable(doc)) == (0, {}), doc
    assert [p["file"] for p in doc["in_progress"]] == [where], doc

    os.kill(name.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    code, doc = validate_json(out)
    assert code == 1 and doc["in_progress"] == [] and set(unreadable(doc)) == {where}, doc


@pytest.mark.parametrize("where", ["first chunk", "middle chunk"])
def test_damage_is_a_problem_even_while_the_writer_lives(
    tmp_path: Path, waiter: subprocess.Popen[str], where: str
) -> None:
    """A corrupt whole chunk is damage, not a write in progress: a live writer does not
    excuse it, whether it is the only chunk or one in the middle."""
    data = one_chunk_segment(tmp_path, waiter.pid)
    bad = bytearray(data)
    bad[-1] ^= 0xFF  # the payload no longer matches its checksum
    body = (
        bytes(bad)
        if where == "first chunk"
        else data + bytes(bad[FILE_HEADER_SIZE:]) + data[FILE_HEADER_SIZE:]
    )
    seg = tmp_path / f"svc-{waiter.pid}-0badc0de-1.wtrace"
    seg.write_bytes(body)
    code, doc = validate_json(seg)
    assert code == 1 and doc["in_progress"] == [] and set(unreadable(doc)) == {str(seg)}, doc
