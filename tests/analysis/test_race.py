"""Race findings: conflicting, unordered accesses to one piece of data, and only those."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from golden.tracetext import WALL0, analyze_run, chunk, process
from willowisp.analysis import race
from willowisp.analysis.finding import Finding
from wispkit import wisp

HEAD = process("aa", 1, "svc", run_root=1)
ANCHOR = f"ev 0 clock.anchor a={WALL0}"
LOCS = [
    'rec location 1 file="/srv/app.py" line=10',
    'rec location 2 file="/srv/app.py" line=20',
]


def _data(rid: int, name: str, row: str = "", store: str = "api", statement: str = "") -> str:
    extra = f' table="t" row="{row}"' if store == "sqlite" else ""
    return (
        f'rec resource {rid} kind="data" name="{name}" store="{store}" '
        f'statement="{statement}"{extra}'
    )


def _races(tmp_path: Path, *lines: str, head: str = HEAD) -> list[Finding]:
    found = analyze_run(tmp_path, a=chunk(head, ANCHOR, *LOCS, *lines)).findings
    return [f for f in found if f.kind == "race"]


def test_two_reads_never_race_a_read_and_a_write_do(tmp_path: Path) -> None:
    """Reads alone conflict with nothing; a write from another unit with no order does."""
    assert (
        _races(
            tmp_path / "reads",
            _data(1, "cart:42"),
            "ev 10 data.access u=1 r=1 l=1",
            "ev 20 data.access u=2 r=1 l=2",
        )
        == []
    )
    (f,) = _races(
        tmp_path / "write",
        _data(1, "cart:42"),
        "ev 10 data.access u=1 r=1 l=1",
        "ev 20 data.access u=2 r=1 a=1 l=2",
    )
    assert f.summary.startswith("race on cart:42: ")
    assert [r.name for r in f.resources] == ["cart:42"]
    assert dict(f.extra)["count"] == 1


def test_same_unit_and_ordered_accesses_do_not_race(tmp_path: Path) -> None:
    """Program order, and a queue hand-off between units, order the accesses."""
    assert (
        _races(
            tmp_path,
            _data(1, "cart:42"),
            'rec resource 2 kind="queue" name="jobs"',
            "ev 10 data.access u=1 r=1 a=1 l=1",
            "ev 11 data.access u=1 r=1 a=1 l=2",
            "ev 12 queue.put u=1 r=2 a=7",
            "ev 13 queue.get u=2 r=2 a=7",
            "ev 14 data.access u=2 r=1 a=1 l=2",
        )
        == []
    )


def test_rows_conflict_with_their_own_row_and_with_the_whole_table(tmp_path: Path) -> None:
    """Two rows of one table are different data; a whole-table access (a scan, an insert)
    conflicts with each of them."""
    db = "sqlite:/srv/shop.db#t"
    found = _races(
        tmp_path,
        _data(1, f"{db}[id=k1]", "id=k1", "sqlite", "UPDATE t SET q = ? WHERE id = ?"),
        _data(2, f"{db}[id=k2]", "id=k2", "sqlite", "UPDATE t SET q = ? WHERE id = ?"),
        _data(3, db, "", "sqlite", "SELECT * FROM t"),
        "ev 10 data.access u=1 r=1 a=1 l=1",
        "ev 20 data.access u=2 r=2 a=1 l=1",
        "ev 30 data.access u=3 r=3 l=2",
    )
    pairs = sorted(tuple(sorted(a["unit"] for a in dict(f.extra)["accesses"])) for f in found)
    assert [len(found), len(pairs)] == [1, 1]  # one place pair: the scan against the updates
    assert dict(found[0].extra)["count"] == 2  # ... with each of the two rows


def test_the_id_survives_a_rerun_in_another_folder(tmp_path: Path) -> None:
    """The same race with the database in another folder and another row hash (a new
    run's key) has the same id."""

    def one(folder: str, row: str, where: Path) -> str:
        name = f"sqlite:{folder}/shop.db#t[{row}]"
        (f,) = _races(
            where,
            _data(1, name, row, "sqlite", "SELECT q FROM t WHERE id = ?"),
            _data(2, name, row, "sqlite", "UPDATE t SET q = ? WHERE id = ?"),
            "ev 10 data.access u=1 r=1 l=1",
            "ev 20 data.access u=2 r=2 a=1 l=2",
        )
        return f.id

    assert one("/tmp/a1", "id=kaaaa", tmp_path / "1") == one("/tmp/b2", "id=kbbbb", tmp_path / "2")


def test_a_busy_bucket_checks_each_units_latest_access(tmp_path: Path) -> None:
    """Past SMALL accesses to one piece of data, each access is checked against the latest
    earlier conflicting one of every other unit: many racy pairs, one finding, counted."""
    n = race.SMALL + 8
    lines = [_data(1, "counter")]
    lines += [f"ev {10 + i} data.access u={1 + i % 2} r=1 a=1 l={1 + i % 2}" for i in range(n)]
    (f,) = _races(tmp_path, *lines)
    assert dict(f.extra)["count"] == n - 1


def test_http_requests_from_callers_outside_the_trace_are_left_out(tmp_path: Path) -> None:
    """Two PUTs to one URL that arrived without a traced caller (a browser) are not
    compared: nothing could show their order."""
    lines = [_data(1, "http:h:80/cart/42", store="http", statement="PUT /cart/42")]
    for u, t in ((1, 10), (2, 20)):
        lines.append(f'rec resource {1 + u} kind="rpc" name="PUT /cart/42" method="PUT"')
        lines += [f"ev {t} msg.recv u={u} r={1 + u}", f"ev {t + 1} data.access u={u} r=1 a=1"]
    assert _races(tmp_path, *lines) == []


def test_processes_recorded_in_hops_mode_are_left_out(tmp_path: Path) -> None:
    """hops mode records boundary instances only; what orders them is not in the trace."""
    head = HEAD + ' mode="hops"'
    assert (
        _races(
            tmp_path,
            _data(1, "cart:42"),
            "ev 10 data.access u=1 r=1 a=1 l=1",
            "ev 20 data.access u=2 r=1 a=1 l=2",
            head=head,
        )
        == []
    )


def test_writes_before_a_barrier_do_not_race_reads_after_it(tmp_path: Path) -> None:
    """A real threading.Barrier: each thread's write before it and another's read after it
    are ordered (they were reported as races: only the last arrival ordered anything);
    the writes all three make after it still race."""
    program = Path(__file__).parent / "programs" / "barrier_slots.py"
    out = tmp_path / "run"
    done = wisp("run", "--out", str(out), "--", sys.executable, str(program))
    assert done.returncode == 0, done.stderr
    report = json.loads(wisp("analyze", str(out), "--format", "json").stdout)
    raced = sorted(
        {r["name"] for f in report["findings"] if f["kind"] == "race" for r in f["resources"]}
    )
    assert raced == ["tally"], report["findings"]
