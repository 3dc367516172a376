"""Deadlock findings: cycles of waits, and only cycles, with stable ids."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from golden.tracetext import WALL0, analyze_run, chunk, process
from wispkit import wisp

HEAD = process("aa", 1, "svc", run_root=1)
ANCHOR = f"ev 0 clock.anchor a={WALL0}"


def _locks(names: tuple[str, str] = ("a", "b"), where: str = "/x/app.py") -> list[str]:
    return [
        f'rec location 1 file="{where}" line=3',
        f'rec location 2 file="{where}" line=4',
        f'rec location 3 file="{where}" line=10',
        f'rec location 4 file="{where}" line=11',
        f'rec resource 1 kind="lock" name="{names[0]}" loc=1',
        f'rec resource 2 kind="lock" name="{names[1]}" loc=2',
    ]


def _inversion(t0: int = 100, t1: int = 1, t2: int = 2) -> list[str]:
    """Unit t1 takes lock 1 then wants 2; unit t2 takes 2 then wants 1; both stay stuck."""
    return [
        f"ev {t0} lock.acquired u={t1} r=1 l=3",
        f"ev {t0 + 1} lock.acquired u={t2} r=2 l=3",
        f"ev {t0 + 2} unit.block u={t1} r=2 a=1 l=4",
        f"ev {t0 + 3} unit.block u={t2} r=1 a=1 l=4",
    ]


def test_lock_inversion_is_one_deadlock(tmp_path: Path) -> None:
    """Two units each holding the lock the other waits for: one finding naming both."""
    (f,) = analyze_run(tmp_path, a=chunk(HEAD, ANCHOR, *_locks(), *_inversion())).findings
    assert f.kind == "deadlock" and f.severity == "error"
    assert sorted(r.name for r in f.resources) == ["a", "b"]
    assert {r.where for r in f.resources} == {"app.py:3", "app.py:4"}
    assert len(f.units) == 2 and len(f.events) == 4
    assert f.explanation[-1].startswith("still stuck")
    assert f.explanation[-2].endswith("→ cycle")


def test_contention_without_a_cycle_is_not_a_deadlock(tmp_path: Path) -> None:
    """A unit waiting for a lock whose holder goes on and releases it: no finding."""
    run = analyze_run(
        tmp_path,
        a=chunk(
            HEAD,
            ANCHOR,
            *_locks(),
            "ev 10 lock.acquired u=1 r=1",
            "ev 11 unit.block u=2 r=1 a=1",
            "ev 12 unit.block u=1 r=2 a=1",  # waits for a lock nobody holds (e.g. a semaphore)
            "ev 13 lock.acquired u=1 r=2",
            "ev 14 lock.release u=1 r=1",
            "ev 15 lock.acquired u=2 r=1",
        ),
    )
    assert run.findings == ()


def test_acquiring_a_held_non_reentrant_lock_deadlocks_itself(tmp_path: Path) -> None:
    """A thread blocking on a plain lock it already holds waits for itself."""
    (f,) = analyze_run(
        tmp_path,
        a=chunk(
            HEAD,
            ANCHOR,
            *_locks(),
            "ev 10 lock.acquired u=1 r=1 l=3",
            "ev 20 unit.block u=1 r=1 a=1 l=4",
        ),
    ).findings
    assert f.summary == "deadlock: 1 unit in 1 process wait in a cycle on lock a"
    assert "held by itself" in f.explanation[-2]


def test_threads_joining_each_other(tmp_path: Path) -> None:
    """u1 joins u2 while u2 joins u1: a cycle of joins."""
    (f,) = analyze_run(
        tmp_path,
        a=chunk(
            HEAD,
            ANCHOR,
            'rec unit 1 kind="thread" name="A"',
            'rec unit 2 kind="thread" name="B"',
            'rec resource 1 kind="join" name="end of B" unit=2',
            'rec resource 2 kind="join" name="end of A" unit=1',
            "ev 10 unit.block u=1 r=1 a=6",
            "ev 20 unit.block u=2 r=2 a=6",
        ),
    ).findings
    assert f.summary == "deadlock: 2 threads in 1 process wait in a cycle on 2 joins"
    assert f.explanation[0].startswith("A (pid 1, svc, python) waits for B")


def test_the_same_deadlock_has_the_same_id_in_every_run(tmp_path: Path) -> None:
    """Process ids, pids, unit numbers, thread names, times and directories change; the id
    does not. Another lock name is another problem."""
    first = analyze_run(tmp_path / "1", a=chunk(HEAD, ANCHOR, *_locks(), *_inversion())).findings
    other_head = process("bb", 999, "svc", run_root=1)
    renamed = [
        'rec unit 7 kind="thread" name="Thread-9 (w)"',
        'rec unit 8 kind="thread" name="Thread-4 (w)"',
    ]
    second = analyze_run(
        tmp_path / "2",
        a=chunk(
            other_head,
            f"ev 5 clock.anchor a={WALL0 + 12345}",
            *renamed,
            *_locks(where="/home/ci/checkout/app.py"),
            *_inversion(t0=5000, t1=7, t2=8),
        ),
    ).findings
    third = analyze_run(
        tmp_path / "3", a=chunk(HEAD, ANCHOR, *_locks(names=("a", "c")), *_inversion())
    ).findings
    assert first[0].id == second[0].id
    assert first[0].id != third[0].id
    assert first[0].id.startswith("F-") and len(first[0].id) == 8


def test_a_repeated_deadlock_is_reported_once_with_a_count(tmp_path: Path) -> None:
    """New threads deadlocking on the same locks at the same places: one finding, counted."""
    lines = [
        *_inversion(100, 1, 2),
        "ev 200 unit.wake u=1 r=2 a=1 l=4",
        "ev 201 lock.release u=1 r=1 l=3",
        "ev 202 lock.acquired u=2 r=1 l=4",
        "ev 203 lock.release u=2 r=1 l=4",
        "ev 204 lock.release u=2 r=2 l=3",
        *_inversion(300, 3, 4),
    ]
    (f,) = analyze_run(tmp_path, a=chunk(HEAD, ANCHOR, *_locks(), *lines)).findings
    assert dict(f.extra)["occurrences"] == 2


# A Go program (wisp.Mutex) whose two goroutines take a and b in opposite orders while main
# waits on the WaitGroup they would mark done: the trace is complete (the process record says
# so), so the every-goroutine-asleep rule applies as well as the cycle.
GO_HEAD = (
    process("go", 7, "goapp").replace('runtime="python"', 'runtime="go"')
    + ' complete=1 runtime_units=""'
)


def _go_hang(main_waits_on: int = 3) -> list[str]:
    return [
        'rec location 1 file="/x/main.go" line=17',
        'rec location 2 file="/x/main.go" line=18',
        'rec location 5 file="/x/main.go" line=19',
        'rec resource 1 kind="lock" name="Mutex#1" loc=2',  # first seen on func2's line
        'rec resource 2 kind="lock" name="Mutex#2" loc=1',
        'rec resource 3 kind="waitgroup" name="sync.WaitGroup" loc=5',
        'rec resource 4 kind="channel" name="chan receive" loc=5',
        'rec unit 1 kind="goroutine" name="main.main #1" parent=0',
        'rec unit 2 kind="goroutine" name="main.main.func1 #30" parent=1',
        'rec unit 3 kind="goroutine" name="main.main.func2 #31" parent=1',
        f"ev 90 unit.block u=1 r={main_waits_on} a=1 l=5",
        "ev 100 lock.acquired u=3 r=1 l=2",
        "ev 101 lock.acquired u=2 r=2 l=1",
        "ev 150 unit.block u=3 r=2 a=1 l=2",  # func2 waits for a on ITS line, 18
        "ev 151 unit.block u=2 r=1 a=1 l=1",
    ]


def test_asleep_around_a_cycle_is_one_finding(tmp_path: Path) -> None:
    """A hang the wait-for cycle explains is one finding: the cycle's, which adds main's
    WaitGroup wait and the every-goroutine-asleep conclusion; each wait names the line where
    the goroutine waits, not where its lock was first seen."""
    findings = analyze_run(tmp_path, a=chunk(GO_HEAD, ANCHOR, *_go_hang())).findings
    (f,) = [x for x in findings if x.kind in ("deadlock", "leak")]
    assert dict(f.extra).get("rule") != "all-asleep" and dict(f.extra)["all_asleep"] is True
    assert f.summary.startswith("deadlock: 2 goroutines in 1 process wait in a cycle")
    assert sorted(u.name for u in f.units) == [
        "main.main #1",
        "main.main.func1 #30",
        "main.main.func2 #31",
    ]
    story = "\n".join(f.explanation)
    assert "main.main #1 (goroutine, pid 7, goapp, go) waits on waitgroup" in story
    assert "main.go:19 too" in story and "every goroutine asleep" in story
    assert "main.main.func2 #31 waits for lock Mutex#2 at main.go:18" in story
    assert "waits on lock (Mutex#2) at main.go:17" not in story
    assert {r.name for r in f.resources} == {"Mutex#1", "Mutex#2", "sync.WaitGroup"}
    # Same id as the cycle alone: the hang is the cycle.
    plain = process("go", 7, "goapp").replace('runtime="python"', 'runtime="go"')
    (alone,) = analyze_run(tmp_path / "b", a=chunk(plain, ANCHOR, *_go_hang())).findings
    assert alone.id == f.id and "every goroutine asleep" not in "\n".join(alone.explanation)


def test_asleep_without_a_cycle_keeps_its_finding(tmp_path: Path) -> None:
    """Goroutines asleep where no cycle explains the hang (channel waits) are still one
    all-asleep deadlock, each wait at the line where it waits."""
    lines = [
        *_go_hang(main_waits_on=4)[:10],
        "ev 90 unit.block u=1 r=4 a=1 l=5",
        "ev 150 unit.block u=3 r=4 a=1 l=2",
        "ev 151 unit.block u=2 r=4 a=1 l=1",
    ]
    (f,) = analyze_run(tmp_path, a=chunk(GO_HEAD, ANCHOR, *lines)).findings
    assert f.kind == "deadlock" and dict(f.extra)["rule"] == "all-asleep"
    story = "\n".join(f.explanation)
    assert "main.main.func2 #31 (goroutine, pid 7, goapp, go) waits on channel" in story
    assert "(chan receive) at main.go:18" in story and "(chan receive) at main.go:17" in story


def test_a_broken_cycle_says_what_broke_it(tmp_path: Path) -> None:
    """The summary says how the first wait ended: a timeout, or a cancellation (asyncio's
    Ctrl-C), never a timeout for a cancellation; two locks sharing one name read as two."""
    said = {}
    for outcome, word in ((1, "timeout"), (2, "cancellation")):
        lines = [
            *_inversion(100, 1, 2),
            f"ev 200 unit.wake u=1 r=2 a={outcome} l=4",
            "ev 201 lock.release u=1 r=1 l=3",
            "ev 202 lock.acquired u=2 r=1 l=4",
        ]
        locks = _locks(names=("lock@app.py:3", "lock@app.py:3"))
        folder = tmp_path / word
        (f,) = analyze_run(folder, a=chunk(HEAD, ANCHOR, *locks, *lines)).findings
        said[word] = f.summary
    assert said["timeout"].endswith("on locks lock@app.py:3 and lock@app.py:3; a timeout broke it")
    assert said["cancellation"].endswith("; a cancellation broke it")


def test_a_waiter_abandoned_while_it_waits_released_nothing(tmp_path: Path) -> None:
    """An async flow that ends while it waits (its request closed; a task dropped at
    shutdown) never got the lock and gave nothing back: the summary and the story say so,
    not that the deadlock broke by itself. A wait ended by an event that says nothing of
    how names that event."""
    abandoned = [*_inversion(100, 1, 2), "ev 200 unit.end u=1 a=2"]
    (f,) = analyze_run(tmp_path / "a", a=chunk(HEAD, ANCHOR, *_locks(), *abandoned)).findings
    assert f.summary.endswith("; a waiter was abandoned (nothing was released)"), f.summary
    assert "was abandoned (its unit was cancelled while still waiting)" in f.explanation[-1]
    assert "no lock in the cycle was released" in f.explanation[-1]
    dropped = [
        *_inversion(100, 1, 2),
        'rec resource 3 kind="waker" name="waker of 2"',
        "ev 200 sync.notify u=1 r=3 a=1",
        "ev 201 lock.release u=1 r=1 l=3",
        "ev 202 lock.acquired u=2 r=1 l=4",
    ]
    (f,) = analyze_run(tmp_path / "d", a=chunk(HEAD, ANCHOR, *_locks(), *dropped)).findings
    assert f.explanation[-1].endswith("ended when it signalled waker of 2"), f.explanation


def test_units_stuck_behind_a_cycle_are_named_in_its_story(tmp_path: Path) -> None:
    """A third unit waiting for a lock a deadlocked unit holds, and a fourth joining the
    third, are stuck because of the cycle: the story names them (not as part of it)."""
    lines = [
        *_inversion(100, 1, 2),
        "ev 110 unit.block u=3 r=1 a=1 l=4",
        'rec resource 9 kind="join" name="end of 3" unit=3',
        "ev 120 unit.block u=4 r=9 a=6 l=4",
    ]
    (f,) = analyze_run(tmp_path, a=chunk(HEAD, ANCHOR, *_locks(), *lines)).findings
    assert len(f.explanation) == 6 and f.explanation[-1].startswith("still stuck")
    behind = f.explanation[-2]
    assert behind.startswith("stuck behind it: ") and "waits for lock a" in behind, behind
    assert behind.index("waits for lock a") < behind.index(" to end"), behind
    assert f.summary.startswith("deadlock: 2 ")  # the cycle is still two units


def _call_into_own_lock(granted: bool) -> list[str]:
    """Unit 1 holds lock a and calls a server (unit 2) that waits for a; the call then fails
    (its connection dropped) and 1 lets a go; unit 2 gets a only when ``granted``."""
    trace, span = "ab" * 16, "cd" * 8
    lines = [
        f'rec resource 3 kind="rpc" trace_id="{trace}" span_id="{span}" method="GET" target="/cb"',
        f'rec resource 4 kind="rpc" trace_id="{trace}" span_id="{"ef" * 8}" '
        f'parent_span_id="{span}" method="GET" target="/cb"',
        "ev 100 lock.acquired u=1 r=1 l=3",
        "ev 101 msg.send u=1 r=3",
        "ev 102 unit.block u=1 r=3 a=7",
        "ev 103 msg.recv u=2 r=4",
        "ev 104 unit.block u=2 r=1 a=1 l=4",
        "ev 900 rpc.response u=1 r=3 a=-1",
        "ev 901 lock.release u=1 r=1 l=3",
    ]
    return [*lines, "ev 902 lock.acquired u=2 r=1 l=4"] if granted else lines


def test_a_cycle_torn_down_by_a_failed_call_never_resolved(tmp_path: Path) -> None:
    """Stopping a hung run ends its processes one by one: a call in the cycle fails as its
    peer goes, and nobody in the cycle ever gets what it waited for. That is no cycle that
    "broke later" (the QA's cross-runtime deadlock stopped by SIGTERM); one where the
    server then got the lock did resolve."""
    (f,) = analyze_run(
        tmp_path / "t", a=chunk(HEAD, ANCHOR, *_locks(), *_call_into_own_lock(False))
    ).findings
    assert f.summary.endswith("; it never resolved (a call failed as a peer stopped)"), f.summary
    assert f.explanation[-1].startswith("never resolved: after "), f.explanation
    assert dict(f.extra)["resolved"] is False
    (f,) = analyze_run(
        tmp_path / "g", a=chunk(HEAD, ANCHOR, *_locks(), *_call_into_own_lock(True))
    ).findings
    assert f.summary.endswith("; a failed call broke it"), f.summary
    assert f.explanation[-1].startswith("broken after "), f.explanation
    assert dict(f.extra)["resolved"] is True


def test_waiting_on_a_gather_of_tasks_that_need_a_held_lock(tmp_path: Path) -> None:
    """A real asyncio program: a task holds a lock and awaits a gather of tasks that need
    it (the QA's hang, reported as "no findings"): the wait on the gather's future is a
    wait for each of its tasks, so the cycle is found."""
    program = Path(__file__).parent / "programs" / "gather_under_lock.py"
    out = tmp_path / "run"
    done = wisp("run", "--out", str(out), "--", sys.executable, str(program))
    assert done.returncode == 0 and "timed out" in done.stdout, done.stderr
    report = json.loads(wisp("analyze", str(out), "--format", "json").stdout)
    (f,) = [f for f in report["findings"] if f["kind"] == "deadlock"]
    assert "lock shared_lock and 1 join" in f["summary"], f["summary"]
    assert f["summary"].endswith("a cancellation broke it"), f["summary"]
    assert any(u["name"].startswith("kid") for u in f["units"]), f["units"]
