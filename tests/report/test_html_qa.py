"""The HTML report's promises a QA pass found broken: the stable section anchors exist even
when a section has nothing to list, and a trace string's bidirectional controls are spelled
out (and right-to-left names isolated) so they cannot reverse the report's own text."""

from __future__ import annotations

import re
from typing import Any

from willowisp.display import clip
from willowisp.report.html_markup import text
from willowisp.report.html_report import render

RLO, PDF, HEBREW = "\u202e", "\u202c", "\u05e9\u05dc\u05d5\u05dd"


def _doc(findings: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": "willowisp.analysis/1", "trace": {}, "findings": findings}


def test_every_documented_anchor_exists_when_its_section_is_empty() -> None:
    page = render(_doc([]))
    for anchor in ("trace", "clocks", "hops", "boundaries", "contention", "critical-path"):
        section = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
        assert section, anchor
        assert "<h2>" in section.group(1)
    for anchor in ("hops", "boundaries", "contention", "critical-path"):
        body = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
        assert body and "none" in body.group(1), anchor
    assert 'id="findings"' in page


def test_bidi_controls_are_spelled_out_and_rtl_names_isolated() -> None:
    name = f"{RLO}evil{PDF} {HEBREW}"
    finding = {
        "id": "F-abcdef",
        "kind": "deadlock",
        "severity": "error",
        "summary": f"deadlock: {name} waits",
        "explanation": [f"{name} acquired lock L at a.py:1", "still stuck"],
        "units": [{"id": "p:1", "name": name, "kind": "thread"}],
        "resources": [{"kind": "lock", "name": name, "where": "a.py:1"}],
        "events": [],
    }
    page = render(_doc([finding]))
    for ch in ("\u202a", "\u202b", RLO, PDF, "\u202d", "\u2066", "\u2067", "\u200e", "\u200f"):
        assert ch not in page
    assert "\\u202eevil\\u202c" in page
    assert f"\u2068\\u202eevil\\u202c {HEBREW}\u2069" in page
    # plain names are left exactly as they were; escaping still comes first
    assert clip("Thread-1") == "Thread-1"
    assert text(f"<b>{HEBREW}") == f"\u2068&lt;b&gt;{HEBREW}\u2069"
