"""The Rust agent's spawns and joins end to end: awaiting a task's
``willowisp::tokio::JoinHandle``, taking it out of a ``willowisp::tokio::JoinSet``, or joining
a ``willowisp::thread`` (spawned or scoped) is ``join.done`` naming the worker, the
happens-before edge from its end, and a thread's spawn is ``unit.create``; so a lock-order
inversion between a worker and the unit that spawned it or joined it first is no potential
deadlock, and one sequenced only by a message (or by a join the agent does not see: tokio's
own ``JoinSet``, std's ``thread::scope``) still is. A real program from the workspace's
``testprogs`` crate (``joined.rs``), analyzed by ``willowisp analyze``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wispkit import clean_env

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / "agents" / "rust"
CARGO = shutil.which("cargo")
JOIN = 6  # unit.block's reason (docs/format.md)
UNIT_CREATE, UNIT_START, UNIT_END, UNIT_BLOCK, JOIN_DONE = 1, 2, 3, 4, 16  # event kinds
LOCK_ACQUIRED = 10

pytestmark = pytest.mark.skipif(CARGO is None, reason="cargo is not installed")


@pytest.fixture(scope="module")
def joined() -> Path:
    """The workspace built once (release) into agents/rust/target: the joined program."""
    done = subprocess.run(
        [str(CARGO), "build", "--release", "--workspace"],
        cwd=WORKSPACE,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return WORKSPACE / "target" / "release" / "joined"


def record(program: Path, mode: str, out: Path) -> dict[str, Any]:
    """Runs the program in one mode, recording into `out`; the analysis as JSON."""
    done = subprocess.run(
        [str(program), mode],
        env={**clean_env(), "WILLOWISP_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    analyzed = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(out), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=clean_env(),
    )
    assert analyzed.returncode == 0, analyzed.stderr
    result: dict[str, Any] = json.loads(analyzed.stdout)
    return result


def kinds(report: dict[str, Any]) -> list[str]:
    return [f["kind"] for f in report["findings"]]


def events(out: Path) -> tuple[dict[int, dict[str, Any]], list[tuple[int, int, int, int, int]]]:
    """Resources by number and events as (kind, unit, time, res, arg) of the one segment."""
    from willowisp.wtrace.reader import read_file

    (segment,) = out.glob("*.wtrace")
    resources: dict[int, dict[str, Any]] = {}
    rows: list[tuple[int, int, int, int, int]] = []
    for c in read_file(segment).chunks:
        resources.update({r.id: dict(r.attrs) for r in c.records if r.rtype == 3})
        if c.events is not None:
            ev = c.events
            cols = (ev.kind, ev.unit, ev.time, ev.res, ev.arg)
            rows.extend(zip(*(col.tolist() for col in cols), strict=True))
    return resources, rows


NAMED = ("finished", "thread-joined", "scope-joined")  # a Builder named the worker "worker"
ANY_OF_SET = ("joinset",)  # the wait is on the set's join resource, which names no unit


@pytest.mark.parametrize(
    "mode", ["pending", "finished", "thread-joined", "joinset", "scope", "scope-joined"]
)
def test_inversion_after_joining_the_worker_is_no_potential_deadlock(
    joined: Path, tmp_path: Path, mode: str
) -> None:
    """pending: the await waits for the task (unit.block on its join resource first);
    finished: the task's handle is ready at its first poll; thread-joined: a std thread
    joined with `willowisp::thread`; joinset: `JoinSet::join_next` waits (on the set) and
    returns the worker's output; scope: a `willowisp::thread::scope` thread nobody joined,
    joined by the scope's end; scope-joined: its handle joined inside the scope. Each join
    ends in join.done naming the worker, after the worker's unit.end, and the inversion is
    not reported."""
    out = tmp_path / "run"
    report = record(joined, mode, out)
    assert "potential-deadlock" not in kinds(report), report["findings"]
    resources, rows = events(out)
    (done,) = [r for r in rows if r[0] == JOIN_DONE]
    _, waiter, joined_at, res, worker = done
    assert resources[res]["kind"] == "join" and resources[res]["unit"] == worker
    if mode in NAMED:
        assert resources[res]["name"] == "end of worker"
    (end,) = [r for r in rows if r[0] == UNIT_END and r[1] == worker]
    assert end[2] <= joined_at  # the worker had ended when its handle said so
    # kind first: join.done's arg is the worker's unit number, which can be 6 (= join)
    blocks = [r for r in rows if r[0] == UNIT_BLOCK and r[1] == waiter and r[3:] == (res, JOIN)]
    if mode == "pending":
        assert len(blocks) == 1
    if mode in ("finished", "scope"):  # ready at once; the scope's end records no wait
        assert blocks == []
    on_set = [
        r
        for r in rows
        if r[0] == UNIT_BLOCK
        and r[1] == waiter
        and resources[r[3]]["kind"] == "join"
        and "unit" not in resources[r[3]]
    ]
    if mode in ANY_OF_SET:
        assert blocks == [] and len(on_set) == 1 and on_set[0][4] == JOIN
        assert on_set[0][2] <= joined_at  # the wait ended with the join
    else:
        assert on_set == []


def test_inversion_before_spawning_the_thread_is_no_potential_deadlock(
    joined: Path, tmp_path: Path
) -> None:
    """The main thread takes the locks in its order, then spawns (`willowisp::thread`) the
    worker that takes them the other way round: unit.create orders the two."""
    out = tmp_path / "run"
    report = record(joined, "thread-before", out)
    assert "potential-deadlock" not in kinds(report), report["findings"]
    _, rows = events(out)
    (create,) = [r for r in rows if r[0] == UNIT_CREATE]
    (start,) = [r for r in rows if r[0] == UNIT_START and r[1] == create[4]]
    assert start[4] == create[1]  # the worker's start names its spawner


@pytest.mark.parametrize("mode", ["signalled", "thread-signalled"])
def test_inversion_ordered_only_by_a_message_is_still_reported(
    joined: Path, tmp_path: Path, mode: str
) -> None:
    """The worker signals (a tokio oneshot, a std mpsc channel) after its locks and the
    spawner waits for that before taking them the other way round: another schedule can
    deadlock."""
    report = record(joined, mode, tmp_path / "run")
    assert kinds(report) == ["potential-deadlock"], report["findings"]
    (f,) = report["findings"]
    assert sorted(r["kind"] for r in f["resources"]) == ["lock", "lock"]


def test_a_join_set_names_the_task_that_came_out(joined: Path, tmp_path: Path) -> None:
    """A set holding an idler (spawned first, finishing only after the spawner's locks)
    and the worker: the first `join_next` is join.done naming the worker, the second the
    idler, each after that task's unit.end and each after a wait on the set."""
    out = tmp_path / "run"
    report = record(joined, "joinset-two", out)
    assert "potential-deadlock" not in kinds(report), report["findings"]
    resources, rows = events(out)
    first, second = [r for r in rows if r[0] == JOIN_DONE]
    waiter = first[1]
    lockers = {r[1] for r in rows if r[0] == LOCK_ACQUIRED and r[1] != waiter}
    assert lockers == {first[4]} and second[4] != first[4]  # the worker came out first
    for done in (first, second):
        assert resources[done[3]]["unit"] == done[4]
        (end,) = [r for r in rows if r[0] == UNIT_END and r[1] == done[4]]
        assert end[2] <= done[2]
    on_set = [r for r in rows if r[0] == UNIT_BLOCK and r[1] == waiter]
    assert len(on_set) == 2 and all("unit" not in resources[r[3]] for r in on_set)
    assert on_set[0][2] < first[2] < on_set[1][2] < second[2]


@pytest.mark.parametrize("mode", ["joinset-plain", "scope-plain"])
def test_joins_the_agent_does_not_see_leave_the_inversion_reported(
    joined: Path, tmp_path: Path, mode: str
) -> None:
    """tokio's own `JoinSet` and std's own `thread::scope` make no edge: the same program
    as `joinset` and `scope` is reported, which is what the wrappers are for."""
    out = tmp_path / "run"
    report = record(joined, mode, out)
    assert kinds(report) == ["potential-deadlock"], report["findings"]
    _, rows = events(out)
    assert [r for r in rows if r[0] == JOIN_DONE] == []
