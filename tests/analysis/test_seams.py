"""Seams: each hop group's latency split into parts that add up, with the clock uncertainty
only where an interval crosses clock domains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from golden.test_golden import GOLDEN, build_run
from golden.tracetext import WALL0, analyze_run, chunk, process
from willowisp.analysis import analyze_paths


def _hops(name: str, tmp_path: Path) -> list[dict[str, Any]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    doc = analyze_paths([build_run(GOLDEN / name, tmp_path / "run")]).document()
    hops: list[dict[str, Any]] = doc["hops"]
    return hops


def test_a_request_splits_into_parts_that_add_up_to_its_latency(tmp_path: Path) -> None:
    """marshal + transit + handler + reply is the caller's send -> response time; transit
    and reply cross machines and carry the offset's uncertainty, the others do not."""
    (hop,) = [h for h in _hops("cp_rpc_lock_in_callee", tmp_path) if h["protocol"] == "http"]
    s = hop["seams"]
    parts = {k: s[f"{k}_ns"] for k in ("marshal", "transit", "handler", "reply")}
    assert sum(p["p50"] for p in parts.values()) == hop["latency_ns"]["p50"] == 1_600_000
    assert {k: p["uncertainty_ns"] for k, p in parts.items()} == {
        "marshal": 0,
        "transit": 300_000,
        "handler": 0,
        "reply": 300_000,
    }
    assert s["structural_ns"] is None and s["measured"] == 1


def test_percentiles_over_a_groups_requests(tmp_path: Path) -> None:
    """A group of many requests gives each part's p50 and p99 over all of them."""
    (hop,) = [h for h in _hops("drift_long_run", tmp_path) if h["protocol"] == "http"]
    s = hop["seams"]
    assert s["measured"] == hop["linked"] > 1
    for name in ("marshal", "transit", "handler", "reply"):
        part = s[f"{name}_ns"]
        assert part["count"] == s["measured"] and part["p50"] <= part["p99"], name


def test_a_message_splits_into_transit_and_the_consumers_rhythm(tmp_path: Path) -> None:
    """For a polled stream, produce -> consume is transit plus structural (the poll's
    share); without a rhythm in the consumer there is no structural part."""
    (polled,) = _hops("cp_polling_consumer", tmp_path / "a")
    s = polled["seams"]
    assert s["structural_ns"]["p50"] == 66_830_000 and s["transit_ns"]["p50"] == 200_000
    assert s["reply_ns"] is None and s["marshal_ns"] is None
    (plain,) = [h for h in _hops("kafka_traceparent", tmp_path / "b") if h["protocol"] == "kafka"]
    assert plain["seams"]["structural_ns"] is None
    assert plain["seams"]["transit_ns"]["count"] == plain["linked"]


def test_groups_with_no_request_seen_on_both_sides_have_no_seams(tmp_path: Path) -> None:
    """A request from a caller with no agent cannot be split: ``seams`` is null."""
    (hop,) = _hops("cp_queue_handoff", tmp_path)
    assert hop["linked"] == 0 and hop["seams"] is None


def test_a_callee_reading_before_the_caller_blocks_leaves_no_negative_transit(
    tmp_path: Path,
) -> None:
    """One machine: the caller sends at 1.0 ms, the callee reads it at 1.1 ms, the caller
    only blocks at 1.5 ms (still writing the body): marshal stops at the callee's read
    (0.1 ms) and transit is 0, not -0.4 ms; the parts still add up to the latency."""
    tid, span = "ab" * 16, "cd" * 8
    lines = [
        process("aa", 1, "svc", run_root=1),
        f"ev 0 clock.anchor a={WALL0}",
        f'rec resource 1 kind="rpc" trace_id="{tid}" span_id="{span}" method="POST" target="/x"'
        ' protocol="http"',
        f'rec resource 2 kind="rpc" trace_id="{tid}" span_id="{"ef" * 8}" parent_span_id="{span}"'
        ' method="POST" target="/x"',
        "ev 1000000 msg.send u=1 r=1",
        "ev 1100000 msg.recv u=2 r=2",
        "ev 1500000 unit.block u=1 r=1 a=7",
        "ev 2000000 rpc.reply u=2 r=2 a=200",
        "ev 2100000 rpc.response u=1 r=1 a=200",
    ]
    doc = analyze_run(tmp_path, a=chunk(*lines)).document()
    (hop,) = doc["hops"]
    s = hop["seams"]
    assert s["marshal_ns"]["p50"] == 100_000 and s["transit_ns"]["p50"] == 0
    parts = ("marshal", "transit", "handler", "reply")
    assert sum(s[f"{k}_ns"]["p50"] for k in parts) == hop["latency_ns"]["p50"] == 1_100_000
