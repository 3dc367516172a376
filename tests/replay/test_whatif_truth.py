"""What-if predictions checked against the known structure of real recorded programs: a join
of a thread that had already ended adds only what exceeds its slack, each operation's own
end-to-end moves even when an idle server sets the run's length, and a name (``unit:NAME``,
``resource:NAME``, the script's ``unit NAME``) takes the thing of that name, not every name
containing it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from willowisp.analysis.engine import Analysis, analyze
from willowisp.analysis.naming import resource_name
from willowisp.causality.waits import holds
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
def join_finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory.mktemp("truth"), "join_finished")


@pytest.fixture(scope="module")
def parallel_calls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory.mktemp("truth"), "parallel_calls")


@pytest.fixture(scope="module")
def two_locks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory.mktemp("truth"), "two_locks")


@pytest.fixture(scope="module")
def named_tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _record(tmp_path_factory.mktemp("truth"), "named_tasks")


def _simulate(a: Analysis, *delays: str) -> whatif.Outcome:
    return whatif.simulate(a, resolve(a, [parse_delay(d) for d in delays]))


def _replay_json(run: Path, delay: str) -> dict[str, Any]:
    done = wisp("replay", str(run), "--delay", delay, "--format", "json")
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def _unit(a: Analysis, name: str) -> int:
    (u,) = [x.index for x in a.trace.units if x.name == name]
    return u


def _join_of(a: Analysis, name: str) -> tuple[int, int]:
    """(the unit.end of thread ``name``, the main thread's join.done that waited for it)."""
    ev = a.trace.events
    u = _unit(a, name)
    (end,) = np.flatnonzero((ev.unit == u) & (ev.kind == K.UNIT_END)).tolist()
    g = a.causality.graph
    (done,) = [
        int(d)
        for s, d in zip(g.src.tolist(), g.dst.tolist(), strict=True)
        if s == end and int(ev.kind[d]) == K.JOIN_DONE
    ]
    return end, done


def test_a_zero_delay_reproduces_each_recording_and_its_path_skips_finished_threads(
    join_finished: Path, parallel_calls: Path, named_tasks: Path
) -> None:
    """Every event at its recorded time; the critical path of the join program follows the
    slow thread that the main thread waited for, never fast, which had ended long before
    its join (the time in between was slack, not a latency)."""
    a = analyze(load([join_finished]))
    out = _simulate(a, "unit:fast=0ms")
    on_path = {int(a.trace.events.unit[i]) for i in out.path}
    assert _unit(a, "slow") in on_path and _unit(a, "fast") not in on_path
    for run, unit in ((join_finished, "fast"), (parallel_calls, "callb"), (named_tasks, "A")):
        a = analyze(load([run]))
        out = _simulate(a, f"unit:{unit}=0ms")
        drawn = a.trace.events.unit >= 0
        moved = np.flatnonzero(drawn & (out.sim != a.causality.clocks.adjusted))
        assert len(moved) == 0, (run.name, len(moved))
        assert out.makespan == out.makespan_recorded
        assert all(o.change == 0 for o in out.operations)


def test_joining_a_thread_that_had_ended_adds_nothing_within_its_slack(
    join_finished: Path,
) -> None:
    """fast ends about 90 ms before the main thread joins it: 20 ms more on fast moves
    neither the join nor the run's end, and the path still does not go through fast."""
    a = analyze(load([join_finished]))
    end, done = _join_of(a, "fast")
    t = a.causality.clocks.adjusted
    slack = int(t[done] - t[end])
    assert slack > 40 * MS, slack  # the program's structure: slow sleeps 90 ms longer
    out = _simulate(a, "unit:fast=20ms")
    assert int(out.sim[end]) == int(t[end]) + 20 * MS
    assert int(out.sim[done]) == int(t[done])
    assert out.makespan == out.makespan_recorded
    done_cli = wisp("replay", str(join_finished), "--delay", "unit:fast=20ms")
    assert done_cli.returncode == 0, done_cli.stderr
    assert "(+0 ns)" in done_cli.stdout.splitlines()[2]
    path = done_cli.stdout.split("critical path", 1)[1].split("races the delay", 1)[0]
    assert " fast (join_finished, python) unit." not in path, path


def test_a_delay_past_the_slack_moves_the_join_by_what_exceeds_it(join_finished: Path) -> None:
    """fast 40 ms past its slack: the join (and the run's end) come 40 ms later, not the
    whole delay, and the critical path now goes through fast."""
    a = analyze(load([join_finished]))
    end, done = _join_of(a, "fast")
    t = a.causality.clocks.adjusted
    slack = int(t[done] - t[end])
    delay = slack + 40 * MS
    out = _simulate(a, f"unit:fast={delay}ns")
    assert int(out.sim[done]) - int(t[done]) == delay - slack
    assert abs(out.makespan - out.makespan_recorded - 40 * MS) <= MS
    assert _unit(a, "fast") in {int(a.trace.events.unit[i]) for i in out.path}


def test_a_slower_reply_already_waiting_when_joined_changes_nothing(parallel_calls: Path) -> None:
    """GET /b (10 ms) runs beside GET /a (100 ms); its caller is joined after /a's: 20 ms
    more on /b makes /b's own end-to-end 20 ms longer and moves nothing after the joins."""
    a = analyze(load([parallel_calls]))
    end, done = _join_of(a, "callb")
    out = _simulate(a, "hop:GET /b=20ms")
    t = a.causality.clocks.adjusted
    assert int(out.sim[end]) - int(t[end]) == 20 * MS
    assert int(out.sim[done]) == int(t[done])
    doc = _replay_json(parallel_calls, "hop:GET /b=20ms")
    change = {o["name"]: o["change_ns"] for o in doc["operations"]}
    assert set(change) == {"rpc GET /a from parallel_calls", "rpc GET /b from parallel_calls"}
    assert abs(change["rpc GET /b from parallel_calls"] - 20 * MS) <= MS
    assert change["rpc GET /a from parallel_calls"] == 0


def test_an_idle_server_sets_the_makespan_but_the_request_shows_its_own_change(
    parallel_calls: Path,
) -> None:
    """The service stays up 600 ms whatever its requests do, so the makespan does not
    move; GET /a's own end-to-end is reported 50 ms longer, and only it."""
    doc = _replay_json(parallel_calls, "hop:GET /a=50ms")
    assert doc["makespan_ns"]["simulated"] == doc["makespan_ns"]["recorded"]
    assert doc["operations_total"] == 2 and doc["operations_changed"] == 1
    assert doc["operations_unchanged"] == 1 and doc["operations_unfinished"] == 0
    first = doc["operations"][0]
    assert first["name"] == "rpc GET /a from parallel_calls"
    assert abs(first["change_ns"] - 50 * MS) <= MS
    assert first["simulated_ns"] - first["recorded_ns"] == first["change_ns"]
    done = wisp("replay", str(parallel_calls), "--delay", "hop:GET /a=50ms")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = lines.index("operations (end-to-end, root to end): 1 of 2 changed")
    assert lines[at + 1].startswith("  +50.0 ms  rpc GET /a from parallel_calls: ")
    assert lines[at + 2] == "  1 unchanged"


def test_unit_names_match_whole_names_first_and_say_what_they_matched(named_tasks: Path) -> None:
    """unit:A is the task named A alone; a name nothing has exactly falls back to a
    substring ignoring case, ~TEXT asks for one, a glob matches whole names; every
    delay's line lists what it took."""
    a = analyze(load([named_tasks]))
    out = _simulate(a, "unit:A=50ms")
    ev = a.trace.events
    t = a.causality.clocks.adjusted
    for unit in a.trace.units:  # only A starts later
        first = int(np.flatnonzero(ev.unit == unit.index)[0])
        late = 50 * MS if unit.name == "A" else 0
        assert int(out.sim[first]) - int(t[first]) == late, unit.name
    names = sorted(u.name for u in a.trace.units)
    with_a = [n for n in names if "a" in n.lower()]
    assert len(with_a) >= 3, names  # MainThread, Task-N, A: the trap the exact match avoids
    for delay, line in (
        ("unit:A=50ms", "1 unit(s) start later (exact name): A (named_tasks)"),
        ("unit:a=50ms", f"{len(with_a)} unit(s) start later (no unit is named exactly 'a'; "),
        ("unit:~A=50ms", f"{len(with_a)} unit(s) start later (name contains 'A', ignoring"),
        ("unit:Task-*=50ms", "unit(s) start later (name matches the glob 'Task-*'): Task-"),
    ):
        doc = _replay_json(named_tasks, delay)
        (said,) = doc["delays"]
        assert said.startswith(f"{delay}: ") and line in said, said
    (said,) = _replay_json(named_tasks, "unit:~A=50ms")["delays"]
    assert "MainThread (named_tasks)" in said and "A (named_tasks)" in said
    done = wisp("replay", str(named_tasks), "--delay", "unit:=50ms")  # not every unit
    assert done.returncode == 2 and "no unit matches ''" in done.stderr, done.stderr


def _release_of(a: Analysis, lock: str) -> int:
    """The release that ends the one hold of the lock named ``lock``."""
    h = holds(a.trace)
    (release,) = [
        int(e)
        for r, e in zip(h.res.tolist(), h.release.tolist(), strict=True)
        if resource_name(a.trace, r) == lock
    ]
    return release


def test_resource_names_match_whole_names_first_and_say_what_they_matched(
    two_locks: Path,
) -> None:
    """resource:db lengthens the hold of db alone, never db_pool's; ~db and a name nothing
    has exactly (DB) take both, a glob whole names; every line lists the resources."""
    a = analyze(load([two_locks]))
    t = a.causality.clocks.adjusted
    db, pool = _release_of(a, "db"), _release_of(a, "db_pool")
    out = _simulate(a, "resource:db=40ms")
    assert int(out.sim[db]) - int(t[db]) == 40 * MS
    assert int(out.sim[pool]) == int(t[pool])  # the two threads share nothing
    both = "2 resource(s) (name contains 'db', ignoring case): lock db, lock db_pool; "
    for delay, line in (
        ("resource:db=40ms", "1 resource(s) (exact name): lock db; 1 hold(s) lengthened"),
        ("resource:db_pool=40ms", "1 resource(s) (exact name): lock db_pool; 1 hold(s)"),
        ("resource:~db=40ms", both + "2 hold(s) lengthened"),
        ("resource:DB=40ms", "2 resource(s) (no resource is named exactly 'DB'; name contains"),
        ("resource:db_*=40ms", "1 resource(s) (name matches the glob 'db_*'): lock db_pool;"),
    ):
        (said,) = _replay_json(two_locks, delay)["delays"]
        assert said.startswith(f"{delay}: ") and line in said, said
    done = wisp("replay", str(two_locks), "--delay", "resource:=40ms")  # not every resource
    assert done.returncode == 2 and "no resource matches ''" in done.stderr, done.stderr


def test_the_scripts_unit_command_picks_the_unit_a_delay_would(
    named_tasks: Path, tmp_path: Path
) -> None:
    """``unit A`` selects the task A, as unit:A delays it, not MainThread (the first unit
    whose name contains an "a"); a name nothing has exactly still finds one containing it."""
    script = tmp_path / "steps.txt"
    script.write_text("unit A\nnext-unit\nunit a\nunit ~ask\n")
    done = wisp("replay", str(named_tasks), "--script", str(script))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    picked = [lines[k + 1] for k, x in enumerate(lines) if x.startswith("> unit ")]
    assert picked[0].startswith("unit: A "), picked
    step = lines[lines.index("> next-unit") + 1]
    assert ": A (" in step, step  # A's own step, not MainThread's
    assert picked[1].startswith("unit: MainThread "), picked  # no unit is named "a"
    assert picked[2].startswith("unit: Task-"), picked
