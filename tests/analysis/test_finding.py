"""The Finding type: validation, content-derived ids, ordering and merging."""

from __future__ import annotations

import pytest

from willowisp.analysis.finding import (
    Finding,
    ResourceRef,
    finding_id,
    merge_repeats,
    sort_findings,
)


def test_ids_depend_on_content_only() -> None:
    """The id hashes kind and identity parts; their order and repeats do not matter."""
    a = finding_id("deadlock", ["lock|a|x.py:1", "lock|b|x.py:2"])
    assert a == finding_id("deadlock", ["lock|b|x.py:2", "lock|a|x.py:1", "lock|a|x.py:1"])
    assert a != finding_id("leak", ["lock|a|x.py:1", "lock|b|x.py:2"])
    assert a == "F-21c8dc"  # pinned: baselines in CI rely on ids never changing


def test_unknown_kinds_and_severities_are_refused() -> None:
    """Only the contract's finding kinds and severities exist."""
    with pytest.raises(ValueError, match="kind"):
        Finding("hang", "error", "s", ())
    with pytest.raises(ValueError, match="severity"):
        Finding("deadlock", "fatal", "s", ())


def test_json_has_the_contract_fields_and_extras() -> None:
    """to_json gives id, kind, severity, summary, units, resources, events, explanation."""
    f = Finding(
        "race",
        "warning",
        "s",
        ("x",),
        resources=(ResourceRef("data", "k", "a.py:1"),),
        extra=(("count", 3),),
    )
    doc = f.to_json()
    assert list(doc)[:8] == [
        "id",
        "kind",
        "severity",
        "summary",
        "units",
        "resources",
        "events",
        "explanation",
    ]
    assert doc["resources"] == [{"kind": "data", "name": "k", "where": "a.py:1"}]
    assert doc["count"] == 3


def test_sorting_and_merging() -> None:
    """Errors first; the same id twice becomes one finding with occurrences."""
    warn = Finding("clock-skew", "warning", "w", ("1",))
    err = Finding("deadlock", "error", "e", ("1",))
    merged = merge_repeats([warn, err, err])
    assert [f.kind for f in sort_findings(merged)] == ["deadlock", "clock-skew"]
    assert dict(next(f for f in merged if f.kind == "deadlock").extra) == {"occurrences": 2}


def test_object_addresses_are_not_part_of_a_resources_identity() -> None:
    """A JVM monitor is named with its object's address, which differs every run; the id
    of a finding about it must not."""
    from willowisp.analysis.finding import ResourceRef

    a = ResourceRef("monitor", "Deadlock$Left@0x7f1c2a10", "")
    b = ResourceRef("monitor", "Deadlock$Left@0x600e8820", "")
    c = ResourceRef("monitor", "Deadlock$Right@0x600e8820", "")
    assert a.key() == b.key() != c.key()
