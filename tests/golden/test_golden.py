"""Golden traces: each folder is one real situation, written in the text twin, with the
findings the analyzer must report beside it (``expected.json``).

A folder holds one ``.wtxt`` per process (its top comment tells the situation) and
``expected.json``: ``findings`` (compared exactly: id, kind, severity, summary, unit names,
resources, explanation), and optionally ``clocks`` (offsets with a tolerance: what the
situation says the true offset is), ``hops`` (count and linked, and any of HOP_DETAIL a case
gives) and ``edges`` (happens-before edge counts).
After a deliberate change of wording, ``WISP_UPDATE_GOLDEN=1 pytest tests/golden``
rewrites the ``findings`` part only; review the diff before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from willowisp.analysis import analyze_paths
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
