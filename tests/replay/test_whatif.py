"""What-if (``replay --delay``) on real recorded runs: a zero delay changes nothing, a delay
re-decides only what timing decided, the critical path starts at the run's root, and a
target names what the trace calls things."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from willowisp.analysis.engine import Analysis, analyze
from willowisp.analysis.naming import fmt_duration
from willowisp.ingest.load import load
from willowisp.model.spec import K
from willowisp.replay import whatif
from willowisp.replay.targets import parse_delay, resolve
from wispkit import wisp

PROGRAMS = Path(__file__).parent / "programs"
MS = 1_000_000


def _record(base: Path, program: str) -> Path:
    out = base / program
    done = wisp("run", "--out", str(out), "--", sys.executable, str(PROGRAMS / f"{program}.py"))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def timeout_lock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory.mktemp("whatif"), "timeout_lock")


@pytest.fixture(scope="module")
def spawned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory.mktemp("whatif"), "spawned")


def _replay(run: Path, *delays: str) -> dict[str, Any]:
    args = [a for d in delays for a in ("--delay", d)]
    done = wisp("replay", str(run), *args, "--format", "json")
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def _simulate(a: Analysis, delay: str) -> whatif.Outcome:
    return whatif.simulate(a, resolve(a, [parse_delay(delay)]))


def test_a_zero_delay_reproduces_the_recording_exactly(timeout_lock: Path, spawned: Path) -> None:
    """Every event at its recorded time, nothing reordered, the same makespan: waits that
    no recorded event ended (late's timeout, the parent's timed wait) keep their length."""
    for run, unit in ((timeout_lock, "early"), (spawned, "MainThread")):
        a = analyze(load([run]))
        out = _simulate(a, f"unit:{unit}=0ms")
        drawn = a.trace.events.unit >= 0
        moved = np.flatnonzero(drawn & (out.sim != a.causality.clocks.adjusted))
        assert len(moved) == 0, (run.name, len(moved), int(np.count_nonzero(drawn)))
        assert out.lock_flips == [] and out.race_flips == []
        assert out.makespan == out.makespan_recorded
    doc = _replay(timeout_lock, "unit:early=0ms")
    assert doc["reordered"]["lock_grants_total"] == 0
    assert doc["reordered"]["races_total"] == 0


def test_a_delay_past_the_timeout_hands_the_lock_to_the_other_unit(timeout_lock: Path) -> None:
    """early asks 300 ms later, after late's 200 ms timeout: late now gets the lock first."""
    doc = _replay(timeout_lock, "unit:early=300ms")
    assert doc["reordered"]["lock_grants_total"] == 1
    (grant,) = doc["reordered"]["lock_grants"]
    assert grant["first"].startswith("late ") and "the_lock" in grant["first"]
    assert grant["then"].startswith("early ")


def test_resource_delay_lengthens_holds_and_counts_those_never_released(
    timeout_lock: Path, deadlock_run: Path
) -> None:
    """A lock released twice: both holds last 30 ms longer. A lock held when the trace ends
    (a deadlock's) still matches: nothing to move, and the answer says so."""
    doc = _replay(timeout_lock, "resource:the_lock=30ms")
    assert doc["delays"] == [
        "resource:the_lock=30ms: 1 resource(s) (exact name): lock the_lock; 2 hold(s) lengthened"
    ]
    rec, new = doc["makespan_ns"]["recorded"], doc["makespan_ns"]["simulated"]
    assert new - rec >= 29 * MS  # late's hold ends the run and is 30 ms longer
    done = wisp("replay", str(deadlock_run), "--delay", "resource:ledger_lock=50ms")
    assert done.returncode == 0, done.stderr
    assert "0 hold(s) lengthened, 1 never released (still held when the trace ended" in done.stdout
    assert "deadlock: the simulated run cannot finish" in done.stdout


def test_a_target_that_names_nothing_says_what_exists(deadlock_run: Path) -> None:
    for delay, words in (
        ("resource:ledger_lok=5ms", "no resource matches 'ledger_lok'; did you mean 'ledger_lock'"),
        ("resource:zzzz=5ms", "resource names exist, e.g. "),
        ("unit:MainThraed=5ms", "no unit matches 'MainThraed'; did you mean 'MainThread'"),
    ):
        done = wisp("replay", str(deadlock_run), "--delay", delay)
        assert done.returncode == 2 and words in done.stderr, (delay, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


def test_critical_path_starts_at_the_runs_root_and_adds_up_to_the_makespan(
    spawned: Path,
) -> None:
    """The path goes back from the child's work through the spawn to the parent's first
    event; its steps are times since the run's start, the last one the makespan."""
    a = analyze(load([spawned]))
    ev = a.trace.events
    (spawn,) = np.flatnonzero(ev.kind == K.PROC_SPAWN).tolist()
    parent = a.trace.processes[int(ev.proc[spawn])].id
    (child,) = [p.id for p in a.trace.processes if p.id != parent]
    doc = _replay(spawned, "unit:MainThread=0ms")
    path = doc["critical_path"]
    procs = [step["event"].split(":")[0] for step in path]
    assert procs[0] == parent and child in procs, procs
    makespan = doc["makespan_ns"]["simulated"]
    assert path[0]["offset_ns"] == 0 and path[-1]["offset_ns"] == makespan
    done = wisp("replay", str(spawned), "--delay", "unit:MainThread=0ms")
    lines = done.stdout.split("critical path", 1)[1].splitlines()[1:]
    steps = [line for line in lines[: len(path)] if line.startswith("  +")]
    assert len(steps) == len(path)
    assert steps[0].startswith("  +0 ns ") and steps[-1].startswith(f"  +{fmt_duration(makespan)} ")


def test_a_spawned_process_moves_with_its_spawn(spawned: Path) -> None:
    """The parent's proc.spawn 200 ms later moves every event of the child, also those its
    runtime records before proc.start, and the run's end by as much."""
    a = analyze(load([spawned]))
    ev = a.trace.events
    (spawn,) = np.flatnonzero(ev.kind == K.PROC_SPAWN).tolist()
    parent = a.trace.processes[int(ev.proc[spawn])]
    out = _simulate(a, f"event:{parent.id[:12]}:{int(ev.seq[spawn])}=200ms")
    child = (ev.proc != ev.proc[spawn]) & (ev.unit >= 0)
    shift = out.sim[child] - a.causality.clocks.adjusted[child]
    assert (shift == 200 * MS).all(), sorted(set(shift.tolist()))
    assert out.makespan - out.makespan_recorded == 200 * MS


def test_a_gather_waits_for_the_delayed_task(tmp_path: Path) -> None:
    """Delaying the task a gather waits for last moves what the awaiting task does after
    the gather, and the run's end, by the delay (less no slack: it ended last)."""
    run = _record(tmp_path, "gathered")
    a = analyze(load([run]))
    out = _simulate(a, "unit:leaf3=50ms")
    ev = a.trace.events
    (main,) = [u.index for u in a.trace.units if u.coro.endswith("main")]
    (end,) = np.flatnonzero((ev.unit == main) & (ev.kind == K.UNIT_END)).tolist()
    moved = int(out.sim[end] - a.causality.clocks.adjusted[end])
    assert 45 * MS <= moved <= 50 * MS, moved
    # the run goes on a little after main (asyncio.run's teardown): that part moves too,
    # less the slack the teardown had
    assert moved - 2 * MS <= out.makespan - out.makespan_recorded <= moved
