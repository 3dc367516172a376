"""The critical-path walk: which edges it follows, how it classifies each interval, where it
stops, and that its segments tile each operation and carry keys that survive a re-run."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from golden.test_golden import CASES, GOLDEN, build_run
from golden.tracetext import WALL0, analyze_run, chunk, process
from willowisp.analysis import analyze_paths
from willowisp.analysis.critical_path import (
    KINDS,
    CriticalPath,
    build_index,
    critical_paths,
    slowest,
)
from willowisp.analysis.engine import Analysis

ANCHOR = f"ev 0 clock.anchor a={WALL0}"
TRACE = "ab" * 16
LOCS = [f'rec location {i} file="/srv/app.py" line={10 * i}' for i in range(1, 10)]


def _server(trace: str = TRACE, r: int = 1) -> str:
    """A request the handler receives from a client with no agent (the trace starts here)."""
    return (
        f'rec resource {r} kind="rpc" name="POST /work" trace_id="{trace}" '
        f'span_id="{trace[:14]}01" sampled=1 protocol="http" library="http.server" '
        'method="POST" target="/work"'
    )


def _paths(a: Analysis) -> dict[str, CriticalPath]:
    return {p.trace_id: p for p in critical_paths(a.causality)}


def _shape(p: CriticalPath, a: Analysis) -> list[tuple[str, int, str]]:
    return [(s.kind, s.duration_ns, a.trace.units[s.unit].name) for s in p.segments]


def test_a_join_enters_the_joined_thread(tmp_path: Path) -> None:
    """A handler that starts a worker and joins it: the worker's own work is on the path,
    with the thread start and the join's wake-up as runnable."""
    a = analyze_run(
        tmp_path,
        svc=chunk(
            process("aa", 1, "svc", run_root=1),
            *LOCS,
            'rec unit 1 kind="thread" name="handler" parent=0',
            'rec unit 2 kind="thread" name="worker" parent=1',
            'rec resource 2 kind="join" name="end of worker" unit=2',
            _server(),
            ANCHOR,
            "ev 1000 unit.start u=1",
            "ev 10000 msg.recv u=1 r=1 l=1",
            "ev 11000 unit.create u=1 a=2 l=2",
            "ev 12000 unit.block u=1 r=2 a=6 l=3",
            "ev 15000 unit.start u=2 a=1",
            "ev 2015000 unit.end u=2",
            "ev 2017000 join.done u=1 r=2 a=2 l=3",
            "ev 2020000 rpc.reply u=1 r=1 a=200 l=4",
        ),
    )
    (p,) = _paths(a).values()
    assert p.complete and p.duration_ns == 2_010_000
    assert _shape(p, a) == [
        ("running", 2_000, "handler"),
        ("runnable", 3_000, "worker"),  # from the handler's block: it was waiting from then
        ("running", 2_000_000, "worker"),
        ("runnable", 2_000, "handler"),
        ("running", 3_000, "handler"),
    ]


def test_a_wait_another_operation_released_is_not_entered(tmp_path: Path) -> None:
    """A handler waiting on a condition that a background thread (in no operation) notifies:
    the wait is lock-blocked, naming the notifier, and the notifier's work is not followed."""
    a = analyze_run(
        tmp_path,
        svc=chunk(
            process("aa", 1, "svc", run_root=1),
            *LOCS,
            'rec unit 1 kind="thread" name="handler" parent=0',
            'rec unit 2 kind="thread" name="cache-filler" parent=0',
            'rec resource 2 kind="condition" name="filled" loc=1',
            _server(),
            ANCHOR,
            "ev 1000 unit.start u=1",
            "ev 1000 unit.start u=2",
            "ev 10000 msg.recv u=1 r=1 l=1",
            "ev 20000 unit.block u=1 r=2 a=5 l=2",
            "ev 900000 sync.notify u=2 r=2 a=-1 l=5",
            "ev 910000 unit.wake u=1 r=2 l=2",
            "ev 930000 rpc.reply u=1 r=1 a=200 l=3",
        ),
    )
    (p,) = _paths(a).values()
    held = [s for s in p.segments if s.kind == "lock-blocked"]
    assert [(s.duration_ns, a.trace.units[s.other_unit].name) for s in held] == [
        (880_000, "cache-filler")
    ]
    assert {a.trace.units[s.unit].name for s in p.segments} == {"handler"}
    assert [s.kind for s in p.segments] == ["running", "lock-blocked", "runnable", "running"]


def test_waits_nothing_released_are_classified_by_reason(tmp_path: Path) -> None:
    """A timed wait that timed out is io, so is a sleep; a request to a server with no
    agent is peer; a queue get that gave up is queue."""
    a = analyze_run(
        tmp_path,
        svc=chunk(
            process("aa", 1, "svc", run_root=1),
            *LOCS,
            'rec unit 1 kind="thread" name="handler" parent=0',
            'rec resource 2 kind="event" name="backoff" loc=1',
            'rec resource 3 kind="queue" name="jobs" loc=1',
            'rec resource 4 kind="sleep" name="time.sleep"',
            f'rec resource 5 kind="rpc" name="GET /rates" trace_id="{TRACE}" '
            f'span_id="{TRACE[:14]}05" sampled=1 protocol="http" library="urllib" '
            'method="GET" target="/rates" peer="10.0.0.3:80"',
            _server(),
            ANCHOR,
            "ev 1000 unit.start u=1",
            "ev 10000 msg.recv u=1 r=1 l=1",
            "ev 20000 unit.block u=1 r=2 a=5 l=2",
            "ev 120000 unit.wake u=1 r=2 a=1 l=2",
            "ev 130000 unit.block u=1 r=4 a=9 l=3",
            "ev 330000 unit.wake u=1 r=4 l=3",
            "ev 340000 msg.send u=1 r=5 l=4",
            "ev 341000 unit.block u=1 r=5 a=7 l=4",
            "ev 841000 rpc.response u=1 r=5 a=200 l=4",
            "ev 850000 unit.block u=1 r=3 a=3 l=5",
            "ev 950000 unit.wake u=1 r=3 a=1 l=5",
            "ev 960000 rpc.reply u=1 r=1 a=200 l=6",
        ),
    )
    (p,) = _paths(a).values()
    waits = [(s.kind, s.duration_ns) for s in p.segments if s.kind != "running"]
    assert waits == [("io", 100_000), ("io", 200_000), ("peer", 500_000), ("queue", 100_000)]
    assert sum(s.duration_ns for s in p.segments) == p.duration_ns == 950_000


def test_a_consumers_next_poll_is_not_the_end_of_the_message(tmp_path: Path) -> None:
    """A consumer's events belong to the message it received until its next receive; its
    next timed poll, and what it does after that poll, do not end the message's operation."""
    a = analyze_run(
        tmp_path,
        svc=chunk(
            process("aa", 1, "svc", run_root=1),
            *LOCS,
            'rec unit 1 kind="thread" name="consumer" parent=0',
            'rec resource 2 kind="event" name="timer" loc=1',
            'rec resource 3 kind="lock" name="book" loc=1',
            'rec resource 4 kind="lock" name="conn" loc=1',
            f'rec resource 1 kind="message" name="recv jobs" trace_id="{TRACE}" '
            f'span_id="{TRACE[:14]}02" sampled=1 protocol="redis" destination="jobs"',
            ANCHOR,
            "ev 1000 unit.start u=1",
            "ev 10000 msg.recv u=1 r=1 l=1",
            "ev 11000 lock.acquired u=1 r=3 l=2",
            "ev 15000 lock.release u=1 r=3 l=2",
            "ev 20000 unit.block u=1 r=2 a=5 l=3",
            "ev 120000 unit.wake u=1 r=2 a=1 l=3",
            "ev 121000 lock.acquired u=1 r=4 l=4",
            "ev 122000 lock.release u=1 r=4 l=4",
        ),
    )
    ix = build_index(a.causality)
    (o,) = range(len(a.causality.operations.trace_ids))
    assert a.trace.events.time[ix.ends[o]] == 15000
    assert ix.duration_ns(o) == 5000


def test_a_walk_with_no_cause_in_the_trace_stops_and_says_so(tmp_path: Path) -> None:
    """Two requests of one trace from a caller with no agent, handled by two threads: the
    later one ends the operation, and nothing in the trace caused its thread's start, so
    the path covers that thread and says it is not complete."""
    a = analyze_run(
        tmp_path,
        svc=chunk(
            process("aa", 1, "svc", run_root=1),
            *LOCS,
            'rec unit 1 kind="thread" name="MainThread" parent=0',
            'rec unit 2 kind="thread" name="first" parent=1',
            'rec unit 3 kind="thread" name="second" parent=1',
            _server(r=1),
            _server(r=2).replace('01"', '02"'),
            ANCHOR,
            "ev 1000 unit.start u=1",
            "ev 2000 unit.create u=1 a=2 l=1",
            "ev 3000 unit.start u=2 a=1",
            "ev 10000 msg.recv u=2 r=1 l=2",
            "ev 20000 rpc.reply u=2 r=1 a=200 l=3",
            "ev 40000 unit.create u=1 a=3 l=1",
            "ev 50000 unit.start u=3 a=1",
            "ev 60000 msg.recv u=3 r=2 l=2",
            "ev 600000 rpc.reply u=3 r=2 a=200 l=3",
        ),
    )
    (p,) = _paths(a).values()
    assert p.duration_ns == 590_000
    assert not p.complete
    assert [(s.kind, s.duration_ns) for s in p.segments] == [("running", 550_000)]


@pytest.mark.parametrize("name", CASES)
def test_segments_tile_every_operation(name: str, tmp_path: Path) -> None:
    """In every golden case, each operation's segments follow each other without gap or
    overlap, never run backwards, use the known kinds, and add up to the operation's
    duration when the walk reached the root."""
    a = analyze_paths([build_run(GOLDEN / name, tmp_path / "run")])
    ix = build_index(a.causality)
    for p in critical_paths(a.causality):
        assert p.duration_ns == ix.duration_ns(p.op)
        for s, t in itertools.pairwise(p.segments):
            assert s.end_ns == t.start_ns, (name, p.trace_id, s, t)
        assert all(s.duration_ns > 0 and s.kind in KINDS for s in p.segments), name
        if p.segments:
            assert p.segments[-1].end_ns == p.end_ns
        if p.complete:
            assert sum(s.duration_ns for s in p.segments) == p.duration_ns, (name, p)


def _rerun(src: Path, dst: Path, shift_ns: int) -> Path:
    """The same situation recorded again: other process ids, pids, thread numbers, times."""
    dst.mkdir()
    for f in src.glob("*.wtxt"):
        text = f.read_text()
        text = text.replace("5b0b0000", "5b0b9999").replace("57c0c000", "57c0c999")
        text = text.replace("pid=4100", "pid=8100").replace("pid=4200", "pid=8200")
        text = text.replace("Thread-1 (process", "Thread-7 (process")
        lines = []
        for line in text.splitlines():
            if line.startswith("ev "):
                _, t, rest = line.split(" ", 2)
                lines.append(f"ev {int(t) + shift_ns} {rest}")
            else:
                lines.append(line)
        (dst / f.name).write_text("\n".join(lines) + "\n")
    return dst


def test_segment_keys_survive_a_rerun(tmp_path: Path) -> None:
    """Two recordings of one situation (other pids, ids, thread numbers, times) give the
    same segment keys in the same order: what `diff` compares segment by segment."""
    case = GOLDEN / "cp_rpc_lock_in_callee"
    again = _rerun(case, tmp_path / "again", 123_456_789)
    keys = []
    for folder, out in ((case, tmp_path / "a"), (again, tmp_path / "b")):
        a = analyze_paths([build_run(folder, out)])
        (p,) = critical_paths(a.causality)
        keys.append([k for k, _ in p.keyed(a.trace)])
    assert keys[0] == keys[1]
    lock = next(k for k in keys[0] if k.kind == "lock-blocked")
    assert (lock.service, lock.unit, lock.resource, lock.where) == (
        "stock",
        "thread:Thread-N (process_request_thread)",
        "lock stock_lock",
        "stock.py:21",
    )


def test_the_ranking_leaves_out_process_lifetimes(tmp_path: Path) -> None:
    """An operation rooted at a proc.spawn (a child process's whole life) is walked on
    request but not ranked among the slowest operations."""
    a = analyze_paths([build_run(GOLDEN / "cp_rpc_lock_in_callee", tmp_path / "run")])
    assert [p.trace_id for p in slowest(build_index(a.causality))] == ["c7" * 16]
    spawn = analyze_run(
        tmp_path / "spawn",
        parent=chunk(
            process("aa", 1, "parent", run_root=1),
            'rec unit 1 kind="thread" name="MainThread" parent=0',
            f'rec resource 1 kind="spawn" name="child" trace_id="{TRACE}" '
            f'span_id="{TRACE[:14]}01" sampled=1',
            ANCHOR,
            "ev 1000 unit.start u=1",
            "ev 2000 proc.spawn u=1 r=1 a=2",
            "ev 9000000 unit.end u=1",
        ),
        child=chunk(
            process("bb", 2, "child"),
            'rec unit 1 kind="thread" name="MainThread" parent=0',
            f'rec resource 1 kind="spawn" name="start" trace_id="{TRACE}" '
            f'parent_span_id="{TRACE[:14]}01" sampled=1',
            ANCHOR,
            "ev 5000 proc.start u=1 r=1 a=1",
            "ev 8000000 unit.end u=1",
        ),
    )
    (p,) = critical_paths(spawn.causality)
    assert p.complete and p.duration_ns == 7_998_000
    assert slowest(build_index(spawn.causality)) == []
