"""Predicted deadlocks and lock contention on real programs: `willowisp run` a Python
program to completion, then `willowisp analyze --format json`. The programs sequence their
threads with events, never with sleeps, and finish on their own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PROGRAMS = Path(__file__).parent / "programs"


def wisp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_and_analyze(program: str, out: Path) -> tuple[str, dict[str, Any]]:
    """(the program's stdout, the analysis document) of one recorded run."""
    r = wisp("run", "--out", str(out), "--", sys.executable, str(PROGRAMS / program))
    assert r.returncode == 0, r.stderr
    a = wisp("analyze", str(out), "--format", "json")
    assert a.returncode == 0, a.stderr
    return r.stdout, json.loads(a.stdout)


def place(program: str, marker: str) -> str:
    """``program.py:LINE`` of the one source line that ends with ``marker``."""
    lines = (PROGRAMS / program).read_text().splitlines()
    [n] = [i for i, text in enumerate(lines, 1) if text.endswith(marker)]
    return f"{program}:{n}"


def test_an_inversion_that_never_overlapped_is_predicted_with_both_paths(tmp_path: Path) -> None:
    """transfer takes accounts then ledger, refund (after an Event) ledger then accounts:
    nothing hangs, and analyze predicts the deadlock naming both code paths."""
    prog = "lock_order_quiet.py"
    stdout, doc = run_and_analyze(prog, tmp_path / "run")
    assert stdout.strip() == "ok"
    assert not [f for f in doc["findings"] if f["kind"] == "deadlock"]
    [f] = [f for f in doc["findings"] if f["kind"] == "potential-deadlock"]
    assert f["severity"] == "warning"
    assert {(r["kind"], r["name"], r["where"]) for r in f["resources"]} == {
        ("lock", "accounts_lock", f"{prog}:8"),
        ("lock", "ledger_lock", f"{prog}:9"),
    }
    assert sorted(u["name"] for u in f["units"]) == ["refund", "transfer"]
    paths = {
        (p["holds"]["lock"], p["holds"]["at"], p["takes"]["lock"], p["takes"]["at"])
        for p in f["paths"]
    }
    assert paths == {
        (
            "accounts_lock",
            place(prog, "# transfer: first"),
            "ledger_lock",
            place(prog, "# transfer: second"),
        ),
        (
            "ledger_lock",
            place(prog, "# refund: first"),
            "accounts_lock",
            place(prog, "# refund: second"),
        ),
    }
    story = "\n".join(f["explanation"])
    for marker in ("# transfer: first", "# transfer: second", "# refund: first"):
        assert place(prog, marker) in story
    assert f["overlapped"] is False
    assert len(f["events"]) == 4 and set(f["event_times"]) == set(f["events"])


def test_a_healthy_program_predicts_no_deadlock_and_warns_of_no_contention(
    tmp_path: Path,
) -> None:
    """healthy_shop (a thread pool behind one lock, a condition, asyncio tasks behind an
    asyncio.Lock): no potential deadlock, no contention warning, and its locks' counts in
    the contention section are the program's."""
    stdout, doc = run_and_analyze("healthy_shop.py", tmp_path / "run")
    assert stdout.strip() == "300"
    kinds = {(f["kind"], f["severity"]) for f in doc["findings"]}
    assert ("potential-deadlock", "warning") not in kinds
    assert ("lock-contention", "warning") not in kinds
    by_name = {e["resource"]["name"]: e for e in doc["contention"]}
    assert by_name["totals_lock"]["acquisitions"] == 1500  # one per order
    assert 1 <= by_name["totals_lock"]["holders"] <= 4  # the workers that got orders
    assert by_name["cache_lock"]["acquisitions"] == 300  # one per asyncio task
    assert by_name["cache_lock"]["resource"]["kind"] == "lock"
    for entry in doc["contention"]:
        assert entry["still_waiting"] == 0 and entry["held_at_end"] == 0
