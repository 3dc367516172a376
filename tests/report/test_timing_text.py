"""The text report's timing views: a seams line under each hop and the slowest operation's
critical path, one line per segment, folded when long."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

from golden.test_golden import GOLDEN, build_run
from willowisp.analysis import analyze_paths
from willowisp.report import render_text


def _text(doc: dict[str, Any]) -> list[str]:
    out = io.StringIO()
    render_text(doc, out, color=False)
    return out.getvalue().splitlines()


def _doc(name: str, tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = analyze_paths([build_run(GOLDEN / name, tmp_path / "run")]).document()
    return doc


def test_seams_and_the_critical_path_are_shown(tmp_path: Path) -> None:
    """The hop shows each part's p50 (p99), with ± where it crosses clocks; the path shows
    each segment's start into the operation, kind, duration, unit, resource and place."""
    lines = _text(_doc("cp_rpc_lock_in_callee", tmp_path))
    assert (
        "      seams p50 (p99): marshal 20.0 µs (20.0 µs) · transit 280.0 µs ±300.0 µs "
        "(280.0 µs) · handler 1.0 ms (1.0 ms) · reply 300.0 µs ±300.0 µs (300.0 µs)"
    ) in lines
    start = lines.index(
        "critical path: slowest of 1 operation, trace c7c7c7c7… 1.6 ms, shop → stock"
    )
    path = lines[start + 1 : start + 9]
    assert path[3] == (
        "     +350.0 µs  lock-blocked   600.0 µs  stock Thread-1 (process_request_thread)  "
        "lock stock_lock  held by restock  stock.py:21"
    )
    transit = "±300.0 µs  stock Thread-1 (process_request_thread)  rpc POST /reserve  from shop"
    assert path[1].endswith(f"{transit}  stock.py:19")
    assert path[7] == (
        "  time: lock-blocked 600.0 µs · peer 580.0 µs · running 370.0 µs · runnable 50.0 µs"
    )


def test_a_long_path_is_folded(tmp_path: Path) -> None:
    """A path of many segments lists the longest ones in time order and folds each run of
    the others into one line with their count, total and kinds."""
    doc = _doc("cp_rpc_lock_in_callee", tmp_path)
    path = doc["critical_paths"]["paths"][0]
    one = path["segments"][2]  # a short running segment
    path["segments"] = [copy.deepcopy(one) for _ in range(30)]
    for i, s in enumerate(path["segments"]):
        s["duration_ns"] = 1_000 * (i + 1)
    lines = _text(doc)
    start = next(i for i, x in enumerate(lines) if x.startswith("critical path:"))
    body = lines[start + 1 :]
    assert body[0].strip() == "… 10 segments folded, 55.0 µs (running)"
    assert len([x for x in body if "  running  " in x]) == 20
