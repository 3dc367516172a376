"""Golden traces: each folder is one real situation, written in the text twin, with the
findings the analyzer must report beside it (``expected.json``).

A folder holds one ``.wtxt`` per process (its top comment tells the situation) and
``expected.json``: ``findings`` (compared exactly: id, kind, severity, summary, unit names,
resources, explanation), and optionally ``clocks`` (offsets with a tolerance: what the
situation says the true offset is; a drifting clock's rate likewise), ``hops`` (count and
linked, and any of HOP_DETAIL a case gives), ``edges`` (happens-before edge counts) and
``critical_path`` (one operation's critical path, segment by segment: see
``check_critical_path``).
Every case is also checked for what holds in any trace: aligned clocks order every certain
cross-process hop, and each finding's event times can be recomputed from the document.
After a deliberate change of wording, ``WISP_UPDATE_GOLDEN=1 pytest tests/golden``
rewrites the ``findings`` part only; review the diff before committing it.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from willowisp.analysis import analyze_paths
from willowisp.report import render_text
from willowisp.wtrace.text import from_text
from willowisp.wtrace.writer import write_file

GOLDEN = Path(__file__).parent
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "expected.json").is_file())
FINDING_FIELDS = ("id", "kind", "severity", "summary", "resources", "explanation")
# Hop fields a case may pin besides count and linked (compared exactly when given).
HOP_DETAIL = (
    "libraries",
    "provenance",
    "unlinked",
    "low_confidence",
    "latency_ns",
    "latency_omitted",
    "seams",
)


def build_run(case: Path, out: Path) -> Path:
    """Encode each .wtxt of a case into a run folder, as an agent would have written it."""
    out.mkdir()
    for text in sorted(case.glob("*.wtxt")):
        write_file(out / f"{text.stem}.wtrace", from_text(text.read_text(), str(text)))
    return out


def comparable(finding: dict[str, Any]) -> dict[str, Any]:
    out = {k: finding[k] for k in FINDING_FIELDS}
    out["units"] = [u["name"] for u in finding["units"]]
    for extra in ("broken", "occurrences", "simulated", "count"):
        if extra in finding:
            out[extra] = finding[extra]
    return out


def test_every_case_has_a_story() -> None:
    """Each golden case has traces whose first line says what real situation they model."""
    assert len(CASES) >= 7
    for name in CASES:
        texts = sorted((GOLDEN / name).glob("*.wtxt"))
        assert texts, name
        assert all(t.read_text().startswith("# ") for t in texts), name


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str, tmp_path: Path) -> None:
    """The analyzer reports exactly the expected findings for the situation."""
    case = GOLDEN / name
    doc = analyze_paths([build_run(case, tmp_path / "run")]).document()
    expected_path = case / "expected.json"
    expected = json.loads(expected_path.read_text())
    got = [comparable(f) for f in doc["findings"]]
    if os.environ.get("WISP_UPDATE_GOLDEN") == "1":
        expected["findings"] = got
        expected_path.write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")
    assert got == expected["findings"]
    assert doc["trace"]["unreadable_files"] == []
    for want in expected.get("clocks", []):
        clock = next(c for c in doc["clocks"] if c["id"] == want["id"])
        assert abs(clock["offset_ns"] - want["offset_ns"]) <= want["tolerance_ns"], clock
        assert clock["offset_min_ns"] <= want["offset_ns"] <= clock["offset_max_ns"], clock
        assert clock["simulated"] == want["simulated"]
        if "drift_ns_per_s" in want:
            assert clock["drift_applied"], clock
            error = abs(clock["drift_ns_per_s"] - want["drift_ns_per_s"])
            assert error <= want["drift_tolerance_ns_per_s"], clock
            lo, hi = clock["drift_min_ns_per_s"], clock["drift_max_ns_per_s"]
            assert lo <= want["drift_ns_per_s"] <= hi, clock
    for want in expected.get("hops", []):
        hop = next(
            h
            for h in doc["hops"]
            if h["from"]["service"] == want["from"]
            and h["to"]["service"] == want["to"]
            and h["protocol"] == want["protocol"]
        )
        assert (hop["count"], hop["linked"]) == (want["count"], want["linked"]), hop
        for key in HOP_DETAIL:
            if key in want:
                assert hop[key] == want[key], (key, hop)
    if "edges" in expected:
        assert doc["trace"]["happens_before_edges"] == expected["edges"]
    if "critical_path" in expected:
        check_critical_path(doc, expected["critical_path"])


def check_critical_path(doc: dict[str, Any], want: dict[str, Any]) -> None:
    """The document shows the operation's path exactly: per segment its kind, duration,
    service, unit name, resource (``kind name``), place and clock uncertainty."""
    paths = {p["trace_id"]: p for p in doc["critical_paths"]["paths"]}
    got = paths[want["trace_id"]]
    rows = [
        [
            s["kind"],
            s["duration_ns"],
            s["service"],
            s["unit"]["name"],
            f"{s['resource']['kind']} {s['resource']['name']}" if s["resource"] else None,
            s["where"],
            s["uncertainty_ns"],
        ]
        for s in got["segments"]
    ]
    assert rows == want["segments"]
    assert got["duration_ns"] == want["duration_ns"] == sum(r[1] for r in rows)
    assert (got["complete"], got["services"]) == (want["complete"], want["services"])


@pytest.mark.parametrize("name", CASES)
def test_aligned_clocks_order_every_hop(name: str, tmp_path: Path) -> None:
    """After alignment (offsets, and drift where applied) no certain cross-process edge
    runs backwards, and every event of a logical operation is at or after its root."""
    result = analyze_paths([build_run(GOLDEN / name, tmp_path / "run")])
    c = result.causality
    adj, ev = c.clocks.adjusted, result.trace.events
    cross = c.graph.certain & (ev.proc[c.graph.src] != ev.proc[c.graph.dst])
    src, dst = c.graph.src[cross], c.graph.dst[cross]
    if all(d.slack_ns == 0 for d in c.clocks.domains):
        assert (adj[src] <= adj[dst]).all(), name
        in_op = c.operations.op >= 0
        assert (c.operations.root_rel_ns[in_op] >= 0).all(), name


@pytest.mark.parametrize("name", CASES)
def test_event_times_are_traceable_from_the_document(name: str, tmp_path: Path) -> None:
    """Each finding's events carry raw, adjusted and root-relative times, and the adjusted
    time is the raw time plus what the document says its clock domain applies."""
    doc = analyze_paths([build_run(GOLDEN / name, tmp_path / "run")]).document()
    clocks = {c["id"]: c for c in doc["clocks"]}
    for f in doc["findings"]:
        assert set(f["event_times"]) == set(f["events"]), f["id"]
        for t in f["event_times"].values():
            clock = clocks[t["clock_domain"]]
            adj = clock["adjustment"]
            drift = 0
            if adj["drift_ns_per_s"]:
                drift = adj["drift_ns_per_s"] * (t["raw_ns"] - adj["ref_ns"]) // 1_000_000_000
            assert t["adjusted_ns"] == t["raw_ns"] + adj["offset_ns"] + drift, (f["id"], t)
            assert adj["offset_ns"] == clock["offset_ns"]
            lower, upper = adj["lower"], adj["upper"]
            if lower["bound_ns"] is not None and upper["bound_ns"] is not None:
                assert adj["offset_ns"] == (lower["bound_ns"] + upper["bound_ns"]) // 2
            for end, sign in ((lower, -1), (upper, 1)):
                if end["edges"]:
                    total = sum(e["bound_ns"] + adj["slack_ns"] for e in end["edges"])
                    assert end["bound_ns"] == sign * total, (f["id"], end)


def test_text_report_tells_each_event_time_into_its_operation(tmp_path: Path) -> None:
    """The text report lists a finding's events as time into their trace, measured on the
    aligned line: the worker's receive, stamped 49.7 ms before api's send by raw time, is
    +95.300 ms into the trace api's spawn began."""
    doc = analyze_paths([build_run(GOLDEN / "skew_false_causality", tmp_path / "run")]).document()
    out = io.StringIO()
    render_text(doc, out, color=False)
    lines = out.getvalue().splitlines()
    assert "    a91a9100…:4 +95.000 ms into trace 55555555… (root a91a9100…:3, D1)" in lines
    assert "    b0b0b000…:4 +95.300 ms into trace 55555555… (root a91a9100…:3, D2)" in lines
    times = next(f for f in doc["findings"] if f["kind"] == "false-causality")["event_times"]
    recv = times["b0b0b000000000000000000000000006:4"]
    assert recv["root_rel_ns"] == 95_300_000 and recv["trace_id"] == "5" * 32
    assert recv["adjusted_ns"] - recv["raw_ns"] == 50_000_000  # the worker's offset
