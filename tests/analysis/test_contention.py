"""Lock contention: waits, holds and convoys per lock, exact, and findings only above the
documented thresholds."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from golden.test_golden import GOLDEN, build_run
from golden.tracetext import WALL0, analyze_run, chunk, process
from willowisp.analysis import analyze_paths
from willowisp.analysis.contention import _percentiles
from willowisp.report import render_text

ANCHOR = f"ev 0 clock.anchor a={WALL0}"
MS = 1_000_000


def _golden(name: str, tmp_path: Path) -> dict[str, Any]:
    return analyze_paths([build_run(GOLDEN / name, tmp_path / "run")]).document()


def _head(kind: str = "lock", locks: int = 1) -> list[str]:
    return [
        process("dd", 1, "svc", run_root=1),
        ANCHOR,
        'rec location 1 file="/app/svc.py" line=3',
        'rec location 2 file="/app/svc.py" line=9',
        *(f'rec unit {u} kind="thread" name="T{u}" parent=0' for u in range(1, 5)),
        *(f'rec resource {r} kind="{kind}" name="l{r}" loc=1' for r in range(1, locks + 1)),
    ]


def _wait(t0: int, wait: int, hold: int = 1000, r: int = 1) -> list[str]:
    """T1 holds lock r from t0 while T2 waits `wait` ns for it, then takes it."""
    return [
        f"ev {t0} lock.acquired u=1 r={r} l=2",
        f"ev {t0 + 1} unit.block u=2 r={r} a=1 l=2",
        f"ev {t0 + wait} lock.release u=1 r={r} l=2",
        f"ev {t0 + wait + 1} lock.acquired u=2 r={r} l=2",
        f"ev {t0 + wait + 1 + hold} lock.release u=2 r={r} l=2",
    ]


def _doc(tmp_path: Path, *lines: str, kind: str = "lock", locks: int = 1) -> dict[str, Any]:
    return analyze_run(tmp_path, a=chunk(*_head(kind, locks), *lines)).document()


def _contention(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in doc["findings"] if f["kind"] == "lock-contention"]


def test_a_convoy_is_measured_exactly(tmp_path: Path) -> None:
    """Four workers queue on stock_lock: every number of the section is the trace's."""
    doc = _golden("lock_contention_convoy", tmp_path)
    stock, log = doc["contention"]
    assert stock["resource"] == {"kind": "lock", "name": "stock_lock", "where": "shop.py:5"}
    assert (stock["acquisitions"], stock["contended"], stock["gave_up"]) == (5, 3, 0)
    assert stock["wait_ns"] == {
        "total": 234_060_000,
        "p50": 78_020_000,
        "p99": 117_030_000,
        "max": 117_030_000,
    }
    assert stock["hold_ns"] == {
        "total": 161_000_000,
        "p50": 40_000_000,
        "p99": 40_000_000,
        "max": 40_000_000,
    }
    assert (stock["holders"], stock["waiters"], stock["held_at_end"]) == (4, 3, 0)
    assert (stock["convoys"], stock["longest_run"], stock["max_queue"]) == (1, 3, 3)
    assert stock["worst_wait"]["where"] == "shop.py:20"
    assert [(u["name"], u["wait_ns"]) for u in stock["units"]] == [
        ("worker-4", 117_030_000),
        ("worker-3", 78_020_000),
        ("worker-2", 39_010_000),
        ("worker-1", 0),
    ]
    assert stock["span_ns"] == 200_000_000 and stock["severity"] == "warning"
    (finding,) = _contention(doc)
    assert stock["finding"] == finding["id"]
    assert log["resource"]["name"] == "log_lock" and log["wait_ns"]["total"] == 0
    assert log["finding"] is None and log["acquisitions"] == 2


def test_the_text_report_has_a_contention_table(tmp_path: Path) -> None:
    """The text report shows the contended locks, one readable row each, and leaves out
    the locks nobody waited for."""
    out = io.StringIO()
    render_text(_golden("lock_contention_convoy", tmp_path), out, color=False)
    text = out.getvalue()
    assert "contention (top by total wait)" in text
    [row] = [line for line in text.splitlines() if line.startswith("lock stock_lock")]
    assert row.split() == [
        *("lock", "stock_lock", "(shop.py:5)", "stock", "3/5"),
        *("234.1", "ms", "117.0", "ms", "40.0", "ms", "/", "40.0", "ms", "3", "3"),
    ]
    assert "lock log_lock" not in text


def test_waits_still_open_at_the_end_are_counted_not_timed(tmp_path: Path) -> None:
    """A program killed in a deadlock: its waits are still_waiting, add no time, and make
    no contention finding (the deadlock tells it)."""
    doc = _golden("lock_order_killed", tmp_path)
    for entry in doc["contention"]:
        assert entry["still_waiting"] == 1 and entry["wait_ns"]["total"] == 0
        assert entry["held_at_end"] == 1 and entry["hold_ns"] is None
    assert _contention(doc) == []


def test_rlock_reentries_are_not_acquisitions(tmp_path: Path) -> None:
    """registry_lock is entered three times by one thread (twice re-entering) and once by
    another: two acquisitions, two holders."""
    doc = _golden("lock_order_rlock_reentry", tmp_path)
    [entry] = [e for e in doc["contention"] if e["resource"]["name"] == "registry_lock"]
    assert (entry["acquisitions"], entry["holders"]) == (2, 2)
    assert entry["hold_ns"]["max"] == 50_000  # 1000210000 .. 1000260000, the outer hold


def test_thresholds(tmp_path: Path) -> None:
    """Under 1 ms of waiting: nothing, however short the run. 2 ms in a 100 ms run (2 %):
    info. One wait of 150 ms: warning."""
    assert _contention(_doc(tmp_path / "a", *_wait(1000, 900_000))) == []
    info = _contention(_doc(tmp_path / "b", *_wait(1000, 2 * MS), f"ev {100 * MS} agent.flush"))
    assert [f["severity"] for f in info] == ["info"]
    warn = _contention(_doc(tmp_path / "c", *_wait(1000, 150 * MS)))
    assert [f["severity"] for f in warn] == ["warning"]
    assert warn[0]["summary"] == (
        "lock contention on lock l1: 150.0 ms of waiting in 1 wait, worst 150.0 ms; "
        "1 of 2 acquisitions waited"
    )
    quiet = _doc(tmp_path / "d", *_wait(1000, 2 * MS), f"ev {1000 * MS} agent.flush")
    assert _contention(quiet) == []  # 0.2 % of a second, no convoy
    assert quiet["contention"][0]["wait_ns"]["total"] == 2 * MS


def test_a_wait_that_gave_up(tmp_path: Path) -> None:
    """A timed acquire that times out is a wait that gave up: timed, not an acquisition."""
    doc = _doc(
        tmp_path,
        "ev 1000 lock.acquired u=1 r=1 l=2",
        "ev 1001 unit.block u=2 r=1 a=1 l=2",
        f"ev {1001 + 5 * MS} unit.wake u=2 r=1 a=1 l=2",
        f"ev {2 + 6 * MS} lock.release u=1 r=1 l=2",
    )
    [entry] = doc["contention"]
    assert (entry["acquisitions"], entry["contended"], entry["gave_up"]) == (1, 0, 1)
    assert entry["wait_ns"]["max"] == 5 * MS and entry["waiters"] == 1


def test_a_wait_its_unit_abandoned_is_counted_not_timed(tmp_path: Path) -> None:
    """An async flow that ends while it waits (its request closed) never got the lock: the
    wait is counted as still open, adds no time and makes no finding (150 ms timed would)."""
    doc = _doc(
        tmp_path,
        "ev 1000 lock.acquired u=1 r=1 l=2",
        "ev 1001 unit.block u=2 r=1 a=1 l=2",
        f"ev {1001 + 150 * MS} unit.end u=2 a=2",
    )
    [entry] = doc["contention"]
    assert (entry["contended"], entry["gave_up"], entry["still_waiting"]) == (0, 0, 1)
    assert entry["wait_ns"]["total"] == 0
    assert _contention(doc) == []


def test_a_semaphore_permit_returned_by_another_unit(tmp_path: Path) -> None:
    """Each lock.acquired of a semaphore is an acquisition; a permit another unit returns
    is neither timed nor held at the end; one the same unit returns is a hold."""
    doc = _doc(
        tmp_path,
        "ev 100 lock.acquired u=1 r=1 l=2",
        "ev 200 lock.release u=2 r=1 l=2",
        "ev 300 lock.acquired u=3 r=1 l=2",
        "ev 400 lock.acquired u=4 r=1 l=2",
        "ev 700 lock.release u=3 r=1 l=2",
        kind="semaphore",
    )
    [entry] = doc["contention"]
    assert (entry["acquisitions"], entry["holders"], entry["held_at_end"]) == (3, 3, 0)
    assert entry["hold_ns"] == {"total": 400, "p50": 400, "p99": 400, "max": 400}


def test_the_section_is_ordered_by_total_wait(tmp_path: Path) -> None:
    """Resources come most-waited first; a lock without waits comes after those with."""
    doc = _doc(
        tmp_path,
        *_wait(1000, 3000, r=1),
        *_wait(10_000, 9000, r=2),
        *_wait(30_000, 5000, r=3),
        "ev 50000 lock.acquired u=3 r=4 l=2",
        "ev 50010 lock.release u=3 r=4 l=2",
        locks=4,
    )
    assert [e["resource"]["name"] for e in doc["contention"]] == ["l2", "l3", "l1", "l4"]
    assert [e["max_queue"] for e in doc["contention"]] == [1, 1, 1, 0]


def test_percentiles_are_nearest_rank() -> None:
    """p50 of holds 0.5 µs, 0.7 µs, 50.6 ms, 51 ms is the second (0.7 µs: half of them are
    at most that), not the third that numpy's "nearest" interpolation picks; of 5 each of
    1, 5, 10 and 20 ms it is 5 ms."""
    four = _percentiles(np.array([512, 704, 50_640_000, 51_050_000], dtype=np.int64))
    assert (four.p50, four.p99, four.max) == (704, 51_050_000, 51_050_000)
    ms = np.repeat(np.array([1, 5, 10, 20], dtype=np.int64) * 1_000_000, 5)
    assert _percentiles(ms).p50 == 5_000_000


def test_waits_summed_past_the_recorded_time_say_how_many_times(tmp_path: Path) -> None:
    """Three units wait at once behind one 100 ms hold: their waits sum to about three
    times the time recorded, which reads as "3.0x ..." and never as "300% of ... was
    recorded" (the QA's "534.0% of the 557.4 ms w2_aio was recorded")."""
    lines = ["ev 1000 lock.acquired u=1 r=1 l=1"]
    lines += [f"ev {1000 + u * 1000} unit.block u={u} r=1 a=1 l=2" for u in (2, 3, 4)]
    t = 1000 + 100 * MS
    lines += [f"ev {t} lock.release u=1 r=1 l=1"]
    for k, u in enumerate((2, 3, 4)):
        lines += [
            f"ev {t + k + 1} lock.acquired u={u} r=1 l=2",
            f"ev {t + k + 2} lock.release u={u} r=1 l=2",
        ]
    [finding] = _contention(_doc(tmp_path, *lines))
    waiting = next(x for x in finding["explanation"] if x.startswith("waiting:"))
    assert "3.0x the 100.0 ms svc was recorded: several units waited at once" in waiting, waiting
    assert "%" not in waiting
