"""Waits (block -> next meaningful event) and lock holds."""

from __future__ import annotations

from pathlib import Path

from golden.tracetext import chunk, process, write_trace
from willowisp.causality.waits import holds, wait_outcome, waits
from willowisp.ingest import load

HEAD = process("aa", 1, "svc", run_root=1)


def test_a_wait_ends_at_the_next_meaningful_event(tmp_path: Path) -> None:
    """A task's yield/run around a wait, and GC pauses, do not end it."""
    write_trace(
        tmp_path / "a.wtrace",
        chunk(
            HEAD,
            'rec resource 1 kind="lock"',
            'rec resource 2 kind="lock"',
            "ev 10 unit.block u=1 r=1 a=1",
            "ev 11 unit.yield u=1 r=1",
            "ev 12 gc.begin u=1",
            "ev 13 gc.end u=1",
            "ev 14 unit.run u=1 a=9",
            "ev 15 lock.acquired u=1 r=1",
            "ev 20 unit.block u=1 r=2 a=1",
            "ev 30 unit.wake u=1 r=2 a=1",
            "ev 40 unit.block u=2 r=2 a=1",
        ),
    )
    trace = load([tmp_path])
    w = waits(trace)
    t = trace.events.time
    assert [
        (int(t[b]), int(t[e]) if e >= 0 else None) for b, e in zip(w.block, w.end, strict=True)
    ] == [(10, 15), (20, 30), (40, None)]
    assert [wait_outcome(trace, int(e)) for e in w.end] == [
        "acquired",
        "timed out",
        "still waiting",
    ]


def test_holds_pair_acquires_with_releases(tmp_path: Path) -> None:
    """Plain locks pair each acquire with its release; rlocks span depth 1 -> 0; a hold
    without a release is open; semaphores are not owned."""
    write_trace(
        tmp_path / "a.wtrace",
        chunk(
            HEAD,
            'rec resource 1 kind="lock"',
            'rec resource 2 kind="rlock"',
            'rec resource 3 kind="semaphore"',
            "ev 10 lock.acquired u=1 r=1",
            "ev 20 lock.release u=1 r=1",
            "ev 30 lock.acquired u=2 r=2 a=1",
            "ev 31 lock.acquired u=2 r=2 a=2",
            "ev 32 lock.release u=2 r=2 a=1",
            "ev 33 lock.release u=2 r=2",
            "ev 40 lock.acquired u=2 r=1",
            "ev 50 lock.acquired u=1 r=3",
        ),
    )
    trace = load([tmp_path])
    h = holds(trace)
    t = trace.events.time
    got = [
        (int(r), int(t[a]), int(t[e]) if e >= 0 else None)
        for r, a, e in zip(h.res, h.acquire, h.release, strict=True)
    ]
    assert got == [(0, 10, 20), (0, 40, None), (1, 30, 33)]
