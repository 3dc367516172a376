"""Predicted deadlocks: lock-order inversions that could hang, and only those."""

from __future__ import annotations

from pathlib import Path

from golden.test_golden import GOLDEN, build_run
from golden.tracetext import WALL0, analyze_run, chunk, process
from willowisp.analysis import analyze_paths
from willowisp.analysis.finding import Finding
from willowisp.analysis.lock_order import (
    MAX_CYCLE,
    dependencies,
    inversions_of,
    lock_cycles,
)
from willowisp.causality.waits import holds
from willowisp.ingest.load import load

ANCHOR = f"ev 0 clock.anchor a={WALL0}"
# Locations: 1-3 where locks a, b, c are made; 10+ where they are taken (line = number).
PLACES = [f'rec location {n} file="/app/bank.py" line={n}' for n in (1, 2, 3, 4, *range(10, 30))]


def _head(pid_hex: str = "bb", pid: int = 1, kinds: tuple[str, ...] = ("lock",) * 4) -> list[str]:
    names = ("a", "b", "c", "gate")
    return [
        process(pid_hex, pid, "bank", run_root=1),
        ANCHOR,
        *PLACES,
        *(f'rec unit {u} kind="thread" name="T{u}" parent=0' for u in range(1, 5)),
        *(
            f'rec resource {r} kind="{kinds[r - 1]}" name="{names[r - 1]}" loc={r}'
            for r in range(1, 5)
        ),
    ]


def _nest(
    t: int, u: int, first: int, second: int, at: int, mode: tuple[int, int] = (0, 0)
) -> list[str]:
    """Unit u takes lock `first` (line `at`), then `second` (line at + 1), releases both."""
    return [
        f"ev {t} lock.acquired u={u} r={first} a={mode[0]} l={at}",
        f"ev {t + 1} lock.acquired u={u} r={second} a={mode[1]} l={at + 1}",
        f"ev {t + 2} lock.release u={u} r={second} a={mode[1]} l={at + 1}",
        f"ev {t + 3} lock.release u={u} r={first} a={mode[0]} l={at}",
    ]


def _gated(t: int, u: int, first: int, second: int, at: int, gate_mode: int = 0) -> list[str]:
    """_nest inside the gate lock (resource 4), taken on line 29."""
    return [
        f"ev {t} lock.acquired u={u} r=4 a={gate_mode} l=29",
        *_nest(t + 1, u, first, second, at),
        f"ev {t + 5} lock.release u={u} r=4 a={gate_mode} l=29",
    ]


def _predicted(tmp_path: Path, *lines: str, **head: object) -> list[Finding]:
    run = analyze_run(tmp_path, a=chunk(*_head(**head), *lines))  # type: ignore[arg-type]
    return [f for f in run.findings if f.kind == "potential-deadlock"]


def test_opposite_orders_that_never_overlapped_are_predicted(tmp_path: Path) -> None:
    """T1 takes a then b and is done before T2 takes b then a: one warning naming both
    locks, both units and all four places."""
    (f,) = _predicted(tmp_path, *_nest(100, 1, 1, 2, 10), *_nest(200, 2, 2, 1, 20))
    assert f.severity == "warning"
    assert [r.name for r in f.resources] == ["a", "b"]
    assert [u.name for u in f.units] == ["T1", "T2"]
    assert f.summary == (
        "potential deadlock: locks a and b taken in opposite orders by 2 threads "
        "(bank.py:11 and bank.py:21)"
    )
    assert "took lock a at bank.py:10, then lock b at bank.py:11" in f.explanation[0]
    assert "took lock b at bank.py:20, then lock a at bank.py:21" in f.explanation[1]
    assert "did not overlap" in f.explanation[-1]
    assert dict(f.extra)["overlapped"] is False
    assert len(f.events) == 4


def test_the_same_order_everywhere_is_not_an_inversion(tmp_path: Path) -> None:
    """Two units that both take a before b: no cycle, nothing predicted."""
    assert _predicted(tmp_path, *_nest(100, 1, 1, 2, 10), *_nest(200, 2, 1, 2, 20)) == []


def test_a_gate_lock_held_by_both_paths_guards_the_inversion(tmp_path: Path) -> None:
    """Both inversions run inside the same exclusive gate lock: they can never be pending
    at once, so nothing is predicted."""
    assert _predicted(tmp_path, *_gated(100, 1, 1, 2, 10), *_gated(200, 2, 2, 1, 20)) == []


def test_a_gate_held_for_reading_by_both_guards_nothing(tmp_path: Path) -> None:
    """Two readers of one rwlock can both be inside it: it is no gate."""
    kinds = ("lock", "lock", "lock", "rwlock")
    found = _predicted(
        tmp_path, *_gated(100, 1, 1, 2, 10, 1), *_gated(200, 2, 2, 1, 20, 1), kinds=kinds
    )
    assert [sorted(r.name for r in f.resources) for f in found] == [["a", "b"]]


def test_one_unit_taking_both_orders_cannot_deadlock_with_itself(tmp_path: Path) -> None:
    """A single unit that takes a->b and later b->a: no second unit, nothing predicted."""
    assert _predicted(tmp_path, *_nest(100, 1, 1, 2, 10), *_nest(200, 1, 2, 1, 20)) == []


def test_readers_do_not_wait_for_readers(tmp_path: Path) -> None:
    """An inversion whose contested step is two readers of an rwlock cannot hang; the same
    with a writer on one side can."""
    kinds = ("rwlock", "lock", "lock", "lock")
    # T1 reads a, then takes b; T2 holds b, then reads a: a reader never waits for a reader.
    both_read = _predicted(
        tmp_path / "r",
        *_nest(100, 1, 1, 2, 10, (1, 0)),
        *_nest(200, 2, 2, 1, 20, (0, 1)),
        kinds=kinds,
    )
    assert both_read == []
    writer = _predicted(
        tmp_path / "w",
        *_nest(100, 1, 1, 2, 10, (1, 0)),
        *_nest(200, 2, 2, 1, 20, (0, 0)),
        kinds=kinds,
    )
    assert len(writer) == 1


def test_three_locks_in_a_cycle(tmp_path: Path) -> None:
    """a->b, b->c, c->a in three units: one finding with all three locks, cycle order."""
    (f,) = _predicted(
        tmp_path, *_nest(100, 1, 1, 2, 10), *_nest(200, 2, 2, 3, 20), *_nest(300, 3, 3, 1, 14)
    )
    assert [r.name for r in f.resources] == ["a", "b", "c"]
    assert f.summary.startswith("potential deadlock: locks a, b and c taken in a cyclic order")
    assert len(f.units) == 3 and "a cycle" in f.explanation[3]


def test_an_order_fixed_by_starting_the_thread_is_not_predicted(tmp_path: Path) -> None:
    """T1 takes a->b and only then starts T2, which takes b->a: T2 cannot exist while T1 is
    in its path. Starting T2 first makes the same two paths a real risk."""
    later = [
        *_nest(100, 1, 1, 2, 10),
        "ev 150 unit.create u=1 a=2 l=12",
        "ev 160 unit.start u=2 a=1",
        *_nest(200, 2, 2, 1, 20),
    ]
    assert _predicted(tmp_path / "after", *later) == []
    first = [
        "ev 50 unit.create u=1 a=2 l=12",
        "ev 60 unit.start u=2 a=1",
        *_nest(100, 1, 1, 2, 10),
        *_nest(200, 2, 2, 1, 20),
    ]
    assert len(_predicted(tmp_path / "before", *first)) == 1


def test_an_order_fixed_by_joining_the_thread_is_not_predicted(tmp_path: Path) -> None:
    """T2 takes b->a and ends; T1 joins it and then takes a->b: ordered by the join."""
    lines = [
        'rec resource 9 kind="join" name="end of T2" unit=2',
        *_nest(100, 2, 2, 1, 20),
        "ev 150 unit.end u=2",
        "ev 160 join.done u=1 r=9 a=2 l=13",
        *_nest(200, 1, 1, 2, 10),
    ]
    assert _predicted(tmp_path, *lines) == []


def test_an_order_fixed_by_a_waitgroup_is_not_predicted(tmp_path: Path) -> None:
    """Go's join: T2 takes b->a and calls wg.Done(); T1's wg.Wait() returns after it, then
    T1 takes a->b: ordered whatever the schedule. The same through a plain event (an order
    of this schedule only) is still predicted."""
    for kind, predicted in (("waitgroup", 0), ("event", 1)):
        lines = [
            f'rec resource 9 kind="{kind}" name="wg"',
            "ev 90 unit.block u=1 r=9 a=5 l=13",
            *_nest(100, 2, 2, 1, 20),
            "ev 150 sync.notify u=2 r=9 a=1",
            "ev 160 unit.wake u=1 r=9 a=0 l=13",
            *_nest(200, 1, 1, 2, 10),
        ]
        assert len(_predicted(tmp_path / kind, *lines)) == predicted, kind


def test_a_deadlock_that_happened_is_left_to_the_deadlock_finding(tmp_path: Path) -> None:
    """timeout_broken both deadlocked and, after the timeout, took the locks in both orders:
    the inversion is there, but the only report is the deadlock."""
    run = build_run(GOLDEN / "timeout_broken", tmp_path / "run")
    trace = load([run])
    assert len(inversions_of(trace, dependencies(trace, holds(trace)))) == 1
    kinds = [f.kind for f in analyze_paths([run]).findings]
    assert "deadlock" in kinds and "potential-deadlock" not in kinds


def test_rlock_reentry_is_not_an_acquisition(tmp_path: Path) -> None:
    """Re-entering an rlock while holding other locks adds no lock-order edge, and a
    re-entry's release does not give the lock up: the registry lock stays a gate."""
    trace = load([build_run(GOLDEN / "lock_order_rlock_reentry", tmp_path / "run")])
    deps = dependencies(trace, holds(trace, ("lock", "rlock")))
    name = {r.index: r.name for r in trace.resources}
    taken = sorted((name[d.lock], sorted(name[h.lock] for h in d.held)) for d in deps)
    assert taken == [
        ("a_lock", ["b_lock", "registry_lock"]),
        ("a_lock", ["registry_lock"]),
        ("b_lock", ["a_lock", "registry_lock"]),
        ("b_lock", ["registry_lock"]),
    ]
    assert inversions_of(trace, deps) == []


def test_the_id_survives_a_rerun(tmp_path: Path) -> None:
    """Another process id, pid, other unit numbers and times: the same id. Another place
    of acquisition: another id."""
    (one,) = _predicted(tmp_path / "1", *_nest(100, 1, 1, 2, 10), *_nest(200, 2, 2, 1, 20))
    (two,) = _predicted(
        tmp_path / "2",
        *_nest(900, 3, 1, 2, 10),
        *_nest(5000, 4, 2, 1, 20),
        pid_hex="cc",
        pid=77,
    )
    (other,) = _predicted(tmp_path / "3", *_nest(100, 1, 1, 2, 10), *_nest(200, 2, 2, 1, 22))
    assert one.id == two.id != other.id


def testlock_cycles_are_each_found_once_shortest_first() -> None:
    """The cycle search yields every simple cycle up to MAX_CYCLE locks once, starting at
    its smallest lock, 2-cycles before longer ones; nodes outside a cycle are skipped."""
    edges: dict[int, dict[int, list[object]]] = {
        1: {2: [], 3: []},
        2: {1: [], 3: []},
        3: {1: []},
        4: {1: []},  # into the cycle, never back
    }
    cycles = list(lock_cycles(edges))  # type: ignore[arg-type]
    assert cycles == [(1, 2), (1, 3), (1, 2, 3)]
    ring = {i: {i % 6 + 1: []} for i in range(1, 7)}  # one cycle of 6 locks
    assert MAX_CYCLE < 6 and list(lock_cycles(ring)) == []  # type: ignore[arg-type]
