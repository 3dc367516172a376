"""Finding ids do not depend on which of two symmetric sides a run happened to see first."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.scenarios.test_end_to_end import PROGRAMS, analyze_json, wisp

from golden.tracetext import WALL0, analyze_run, chunk, process
from willowisp.analysis.finding import Finding, canonical_identity, finding_id

SELECT = "SELECT qty FROM stock WHERE id = ?"
UPDATE = "UPDATE stock SET qty = ? WHERE id = ?"
TURNS = str(Path(__file__).parent / "race_turns.py")
SHOP = str(PROGRAMS / "race_shop.py")


def _race(read_by: str, write_by: str, read_at: str, write_at: str) -> tuple[str, ...]:
    """A race's identity as race.py builds it from one pairing of services and sides."""
    return (
        "race",
        "sqlite:shop.db#stock",
        f"{read_by}|{read_at}|{SELECT}|read",
        f"{write_by}|{write_at}|{UPDATE}|write",
    )


def test_swapped_sides_give_one_id() -> None:
    """Part order never counts, and of a race's two service pairings the same one is kept
    whichever a run saw: the one the README and the golden traces already published."""
    a_reads = _race("stock_a", "stock_b", "race_shop.py:47", "race_shop.py:49")
    b_reads = _race("stock_b", "stock_a", "race_shop.py:47", "race_shop.py:49")
    assert finding_id("race", a_reads) == finding_id("race", tuple(reversed(a_reads)))
    assert finding_id("race", a_reads) != finding_id("race", b_reads)
    kept = canonical_identity("race", [a_reads, b_reads])
    assert kept == canonical_identity("race", [b_reads, a_reads])
    assert finding_id("race", kept) == "F-97e81b"  # README section 5
    golden = [
        _race("stock_b", "stock_a", "stock.py:21", "stock.py:23"),
        _race("stock_a", "stock_b", "stock.py:21", "stock.py:23"),
    ]
    assert finding_id("race", canonical_identity("race", golden)) == "F-f7b65d"
    assert finding_id("race", canonical_identity("race", golden[::-1])) == "F-f7b65d"


# --- text-twin traces: both write orders, built deterministically -------------------------


def _stock(pid_hex: str, pid: int, service: str, read_ns: int, write_ns: int, file: str) -> str:
    """One stock service: reads the row at line 21, writes it at 23 inside SQLite's lock."""
    return chunk(
        process(pid_hex, pid, service),
        f"ev 0 clock.anchor a={WALL0}",
        f'rec location 1 file="/srv/{file}" line=21',
        f'rec location 2 file="/srv/{file}" line=23',
        'rec resource 1 kind="data" name="sqlite:/srv/shop.db#stock[id=k1]" store="sqlite" '
        f'table="stock" row="id=k1" statement="{SELECT}"',
        'rec resource 2 kind="data" name="sqlite:/srv/shop.db#stock[id=k1]" store="sqlite" '
        f'table="stock" row="id=k1" statement="{UPDATE}"',
        'rec resource 3 kind="lock" name="sqlite:/srv/shop.db" shared=1',
        f"ev {read_ns} data.access u=1 r=1 l=1",
        f"ev {write_ns} lock.acquired u=1 r=3 l=2",
        f"ev {write_ns + 1} data.access u=1 r=2 a=1 l=2",
        f"ev {write_ns + 2} lock.release u=1 r=3 l=2",
    )


def _shop_race(folder: Path, first: str, files: tuple[str, str]) -> Finding:
    """Both services read, then ``first`` writes before the other: the one race."""
    wa, wb = (300, 400) if first == "stock_a" else (400, 300)
    found = analyze_run(
        folder,
        a=_stock("aa", 1, "stock_a", 100, wa, files[0]),
        b=_stock("bb", 2, "stock_b", 200, wb, files[1]),
    ).findings
    (race,) = [f for f in found if f.kind == "race"]
    return race


def test_one_program_in_two_services_races_under_one_id(tmp_path: Path) -> None:
    """Same code in both services: "A reads, B writes" and "B reads, A writes" are one bug."""
    files = ("stock.py", "stock.py")
    a_first = _shop_race(tmp_path / "a", "stock_a", files)
    b_first = _shop_race(tmp_path / "b", "stock_b", files)
    assert "stock_b reads it" in a_first.summary  # the two runs really differ ...
    assert "stock_a reads it" in b_first.summary
    assert a_first.id == b_first.id == "F-f7b65d"  # ... and the id does not


def test_services_with_their_own_code_keep_their_id(tmp_path: Path) -> None:
    """Where neither service ever does the other's access, nothing is swapped: the id is
    the one its single pairing always had (baselines hold it)."""
    race = _shop_race(tmp_path, "stock_a", ("a.py", "b.py"))
    assert race.id == finding_id(
        "race",
        (
            "race",
            "sqlite:shop.db#stock",
            f"stock_b|b.py:21|{SELECT}|read",
            f"stock_a|a.py:23|{UPDATE}|write",
        ),
    )


# --- real programs under `willowisp run` ------------------------------------------------


def _race_ids(tmp_path: Path, name: str, *program: str) -> tuple[list[str], list[str]]:
    """Record one run of the program, analyze it: its race ids and summaries."""
    out, data = tmp_path / f"{name}-run", tmp_path / f"{name}-data"
    data.mkdir()
    r = wisp("run", "--out", str(out), "--", sys.executable, *program, str(data))
    assert r.returncode == 0, r.stderr
    code, doc, err = analyze_json(out)
    assert code == 0, err
    races = [f for f in doc["findings"] if f["kind"] == "race"]
    return [f["id"] for f in races], [f["summary"] for f in races]


def test_either_write_order_of_real_services_gives_one_id(tmp_path: Path) -> None:
    """Two real recordings, stock_a writing first in one and stock_b in the other: the race
    is the other way round and its id is the same."""
    ids_a, said_a = _race_ids(tmp_path, "a", TURNS, "stock_a")
    ids_b, said_b = _race_ids(tmp_path, "b", TURNS, "stock_b")
    assert len(ids_a) == 1 and "stock_b reads it" in said_a[0], said_a
    assert len(ids_b) == 1 and "stock_a reads it" in said_b[0], said_b
    assert ids_a == ids_b


def test_readme_race_example_has_one_id_in_every_run(tmp_path: Path) -> None:
    """README section 5, recorded four times: whichever service wrote first, one race id,
    the one the README shows."""
    ids = {tuple(_race_ids(tmp_path, f"run{i}", SHOP, "racy")[0]) for i in range(4)}
    assert ids == {("F-97e81b",)}
