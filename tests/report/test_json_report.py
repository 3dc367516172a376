"""The JSON document keeps the contract's schema: names, order, types."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from golden.test_golden import GOLDEN, build_run
from willowisp.analysis import analyze_paths
from willowisp.cli.main import main
from willowisp.report import render_json


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = build_run(GOLDEN / "http_callback", tmp_path_factory.mktemp("r") / "run")
    parsed: dict[str, Any] = json.loads(render_json(analyze_paths([run]).document()))
    return parsed


def test_top_level_order_and_schema(doc: dict[str, Any]) -> None:
    """``schema`` first, then trace, processes, clocks, hops, contention, critical_paths,
    findings."""
    assert list(doc) == [
        "schema",
        "trace",
        "processes",
        "clocks",
        "hops",
        "contention",
        "critical_paths",
        "findings",
    ]
    assert doc["schema"] == "willowisp.findings/1"


def test_trace_section(doc: dict[str, Any]) -> None:
    """The contract's trace fields with their types."""
    t = doc["trace"]
    assert {
        k: t[k]
        for k in (
            "files",
            "processes",
            "runtimes",
            "dropped_events",
            "agent_faults",
            "unreadable_files",
        )
    } == {
        "files": 2,
        "processes": 2,
        "runtimes": ["python"],
        "dropped_events": 0,
        "agent_faults": 0,
        "unreadable_files": [],
    }
    assert t["events"] == 42 and t["units"] == 7


def test_processes_and_clocks(doc: dict[str, Any]) -> None:
    """Processes name their clock domain; clocks carry the offset interval fields."""
    p = doc["processes"][1]
    assert set(p) >= {"id", "pid", "host", "service", "runtime", "clock_domain", "agent"}
    assert (p["service"], p["pid"], p["host"], p["clock_domain"]) == (
        "stock",
        977,
        "stock-host",
        "D2",
    )
    assert set(p["agent"]) == {
        "events",
        "dropped",
        "faults",
        "cost_ns_per_event",
        "by_boundary",
        "extra",
    }
    assert p["agent"]["extra"] == {}
    ref, other = doc["clocks"]
    keys = {
        "id",
        "host",
        "pid",
        "runtime",
        "processes",
        "reference",
        "simulated",
        "offset_ns",
        "offset_min_ns",
        "offset_max_ns",
        "uncertainty_ns",
        "drift_ns_per_s",
    }
    assert set(ref) >= keys and set(other) >= keys
    assert (ref["reference"], ref["offset_ns"], ref["uncertainty_ns"]) == (True, 0, 0)
    assert other["processes"] == [p["id"]]
    assert other["offset_min_ns"] < other["offset_ns"] < other["offset_max_ns"]
    assert other["uncertainty_ns"] == (other["offset_max_ns"] - other["offset_min_ns"]) // 2


def test_hops_and_findings(doc: dict[str, Any]) -> None:
    """Hop groups and findings have the contract's field names."""
    h = doc["hops"][0]
    assert h["from"] == {"service": "orders", "runtime": "python"}
    assert set(h) >= {
        "from",
        "to",
        "protocol",
        "libraries",
        "count",
        "linked",
        "provenance",
        "unlinked",
        "latency_ns",
    }
    assert set(h["latency_ns"]) == {"p50", "p99"}
    f = doc["findings"][0]
    assert list(f)[:8] == [
        "id",
        "kind",
        "severity",
        "summary",
        "units",
        "resources",
        "events",
        "explanation",
    ]
    assert set(f["units"][0]) == {"id", "pid", "host", "service", "runtime", "kind", "name"}
    assert f["units"][0]["id"].startswith(doc["processes"][0]["id"] + ":")
    assert all(":" in e for e in f["events"])


def test_unbounded_offsets_are_null(tmp_path: Path) -> None:
    """A domain no causal edge reaches has null bounds and uncertainty."""
    from golden.tracetext import WALL0, chunk, process, run_folder

    run = run_folder(
        tmp_path,
        a=chunk(process("a1", 1, "a", run_root=1), f"ev 0 clock.anchor a={WALL0}"),
        b=chunk(process("b1", 2, "b", boot="x"), f"ev 0 clock.anchor a={WALL0}"),
    )
    clocks = json.loads(render_json(analyze_paths([run]).document()))["clocks"]
    assert clocks[1]["offset_min_ns"] is None and clocks[1]["uncertainty_ns"] is None


def test_agent_counters_beyond_the_contract_are_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stats record's own counters (Java's jfr_pinned, ...) reach ``agent.extra`` in
    analyze's JSON and the ``agent`` column of query's processes table; the last stats
    record wins, as for the contract's counters."""
    case = tmp_path / "case"
    shutil.copytree(GOLDEN / "http_callback", case)
    stock = case / "stock.wtxt"
    lines = stock.read_text().splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("rec stats"))
    first = min(i for i, line in enumerate(lines) if line.startswith("rec stats"))
    lines[first] += " jfr_pinned=1"
    lines[last] += " jfr_pinned=3 hooked_classes=12"
    stock.write_text("\n".join(lines) + "\n")
    run = build_run(case, tmp_path / "run")
    doc = json.loads(render_json(analyze_paths([run]).document()))
    by_service = {p["service"]: p["agent"] for p in doc["processes"]}
    assert by_service["stock"]["extra"] == {"jfr_pinned": 3, "hooked_classes": 12}
    assert by_service["orders"]["extra"] == {}
    assert by_service["stock"]["cost_ns_per_event"] == 380

    assert (
        main(["query", str(run), "--format", "json", "SELECT service, agent FROM processes"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    agents = dict(rows["rows"])
    assert agents["stock"]["extra"] == {"jfr_pinned": 3, "hooked_classes": 12}
    assert agents["stock"]["events"] == 17
