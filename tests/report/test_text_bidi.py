"""The text report shows a trace string's bidirectional controls as escapes: a thread named
with U+202E (right-to-left override) would otherwise reverse how the rest of the line reads,
pids and file:line included."""

from __future__ import annotations

import io
from pathlib import Path

from golden.test_golden import GOLDEN, build_run
from willowisp.analysis import analyze_paths
from willowisp.report import render_text


def test_bidi_controls_are_shown_as_escapes(tmp_path: Path) -> None:
    doc = analyze_paths([build_run(GOLDEN / "asyncio_locks", tmp_path / "run")]).document()
    doc.update(
        findings=[
            {
                "id": "F-000000",
                "kind": "deadlock",
                "severity": "error",
                "summary": "deadlock on lock \u202egnp.exe",
                "units": [],
                "resources": [{"kind": "lock", "name": "a\u2066b\u2069\u200f", "where": "a.py:1"}],
                "events": [],
                "explanation": ["\u202dstep at a.py:3"],
            }
        ]
    )
    buf = io.StringIO()
    render_text(doc, buf)
    text = buf.getvalue()
    for ch in ("\u202e", "\u2066", "\u2069", "\u200f", "\u202d"):
        assert ch not in text
    assert "\\u202egnp.exe" in text and "a\\u2066b\\u2069\\u200f" in text
    assert "\\u202dstep at a.py:3" in text
