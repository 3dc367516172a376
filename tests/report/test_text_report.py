"""The text report: readable in a plain terminal, everything a finding says."""

from __future__ import annotations

import io
from pathlib import Path

from golden.test_golden import GOLDEN, build_run
from willowisp.analysis import analyze_paths
from willowisp.report import render_text


def _text(tmp_path: Path, case: str, color: bool | None = None) -> str:
    doc = analyze_paths([build_run(GOLDEN / case, tmp_path / "run")]).document()
    out = io.StringIO()
    render_text(doc, out, color=color)
    return out.getvalue()


def test_plain_text_when_not_a_terminal(tmp_path: Path) -> None:
    """No escape codes into a file or pipe; header, clocks, hops and findings in order."""
    text = _text(tmp_path, "http_callback")
    assert "\x1b[" not in text
    lines = text.splitlines()
    assert lines[0] == "2 files · 42 events · 7 units · 2 processes · runtimes: python"
    order = [text.index(s) for s in ("clock domains", "hops", "findings (3)", "ERROR deadlock")]
    assert order == sorted(order)
    assert (
        "  orders (python) → stock (python)  http  urllib, http.server  3 requests, "
        "3 linked" in text
    )
    assert (
        "    6. Thread-3 (process_request_thread) of orders waits for lock state_lock at "
        "orders.py:27, held by MainThread → cycle" in lines
    )
    assert (
        "  resources: lock state_lock (orders.py:20), rpc POST /reserve (orders.py:43), "
        "rpc POST /confirm (stock.py:23)" in lines
    )


def test_colour_on_request(tmp_path: Path) -> None:
    """color=True forces styling (what a terminal gets)."""
    assert "\x1b[" in _text(tmp_path, "lock_order_killed", color=True)


def test_clean_run_says_no_findings(tmp_path: Path) -> None:
    """A correct program prints 'no findings' rather than nothing."""
    assert _text(tmp_path, "queues_clean").rstrip().endswith("no findings")


def test_no_operation_says_why_there_is_no_critical_path(tmp_path: Path) -> None:
    """A run with no W3C trace (threads and queues in one program) has no operation, and
    the report says so instead of leaving the critical path out without a word; a run with
    operations prints its path and not that line."""
    text = _text(tmp_path, "queues_clean")
    assert "critical path: none — no operation recorded" in text
    (tmp_path / "b").mkdir()
    served = _text(tmp_path / "b", "cp_rpc_lock_in_callee")
    assert "critical path: slowest of" in served
    assert "critical path: none" not in served
