"""Strings from a trace cannot drive the terminal: no markup, no escape sequences."""

from __future__ import annotations

import io
import subprocess
import sys

from willowisp.report.text_report import render_text


def test_markup_and_escapes_in_trace_strings_are_inert(tmp_path):
    """A thread and a lock named with rich markup and an ANSI escape print as plain text."""
    script = tmp_path / "evil.py"
    script.write_text(
        "import threading\n"
        "evil_lock = threading.Lock()\n"
        "def f():\n"
        "    with evil_lock:\n"
        "        pass\n"
        "t = threading.Thread(target=f, name='[bold red]boom[/] \\x1b[2J\\x1b]0;pwned\\x07')\n"
        "t.start(); t.join()\n"
    )
    out = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "willowisp",
            "run",
            "--out",
            str(out),
            "--",
            sys.executable,
            str(script),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    from willowisp.analysis import analyze_paths

    doc = analyze_paths([out]).document()
    assert doc["trace"]["units"] >= 2
    doc["findings"] = [
        {
            "id": "F-000000",
            "kind": "deadlock",
            "severity": "error",
            "summary": "[link=http://x]click[/link] \x1b[31mred",
            "units": [],
            "resources": [{"kind": "lock", "name": "\x1b[2J", "where": "a.py:1"}],
            "events": [],
            "explanation": ["step \x1b]8;;http://x\x07link"],
        }
    ]
    buf = io.StringIO()
    render_text(doc, buf, color=True)
    text = buf.getvalue()
    body = text.replace("\x1b[", "")  # rich's own styling codes start ESC [ ... m
    assert "\x07" not in text and "\x1b]" not in text and "\x1b[2J" not in text
    assert "[link=http://x]click[/link]" in text
    assert "\\x1b" in body
