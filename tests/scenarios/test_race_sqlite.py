"""The issue's race, end to end: an orchestrator triggers two HTTP services at once, each
doing a read-modify-write of one SQLite row; real processes under `willowisp run`."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.scenarios.test_end_to_end import PROGRAMS, analyze_json, wisp

SHOP = str(PROGRAMS / "race_shop.py")
SELECT = "SELECT qty FROM stock WHERE id = ?"
UPDATE = "UPDATE stock SET qty = ? WHERE id = ?"


def _run(tmp_path: Path, mode: str) -> tuple[str, dict]:
    out = tmp_path / f"{mode}-run"
    data = tmp_path / f"{mode}-data"
    data.mkdir()
    r = wisp("run", "--out", str(out), "--", sys.executable, SHOP, mode, str(data))
    assert r.returncode == 0, r.stderr
    code, doc, err = analyze_json(out)
    assert code == 0, err
    return r.stdout.strip().splitlines()[-1], doc


def test_read_modify_write_from_two_services_is_a_race(tmp_path: Path) -> None:
    """Both services read 10 and write 9 (a lost sale): the analysis reports a race on the
    row naming both services and both statements, with the read that nothing ordered."""
    last, doc = _run(tmp_path, "racy")
    assert last == "qty 9"  # the lost update really happened
    races = [f for f in doc["findings"] if f["kind"] == "race"]
    assert races, doc["findings"]
    on_row = [f for f in races if "#stock[id=k" in f["resources"][0]["name"]]
    assert on_row, races
    for f in on_row:
        assert {u["service"] for u in f["units"]} == {"stock_a", "stock_b"}
        assert f["resources"][0]["kind"] == "data"
    sides = {(a["service"], a["mode"], a["statement"]) for f in on_row for a in f["accesses"]}
    modes = {(a["mode"], a["statement"]) for f in on_row for a in f["accesses"]}
    assert ("read", SELECT) in modes and ("write", UPDATE) in modes, sides
    text = "\n".join(line for f in on_row for line in f["explanation"])
    assert SELECT in text and UPDATE in text
    assert "stock_a" in text and "stock_b" in text
    # each service's write was inside the database's lock, its read was not
    assert "inside no lock" in text


def test_the_same_inside_begin_immediate_is_no_race(tmp_path: Path) -> None:
    """With BEGIN IMMEDIATE ... COMMIT both sales count and no race is reported: the
    transactions are holds of the database's lock, ordered across the two processes."""
    last, doc = _run(tmp_path, "txn")
    assert last == "qty 8"
    assert [f for f in doc["findings"] if f["kind"] == "race"] == []
    assert doc["findings"] == [] or all(f["kind"] != "race" for f in doc["findings"])
