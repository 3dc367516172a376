"""The pytest plugin: `pytest --wisp` records a session; `wisp_trace` records one test."""

from __future__ import annotations

import subprocess
import sys

TEST_FILE = """
import threading

def test_with_fixture(wisp_trace):
    guard = threading.Lock()
    with guard:
        pass
    doc = wisp_trace.analyze()
    assert doc["schema"] == "willowisp.findings/1"
    assert doc["trace"]["events"] > 0
    assert doc["findings"] == [] or all(f["kind"] != "deadlock" for f in doc["findings"])
"""


def test_wisp_trace_fixture(tmp_path):
    """A test using the wisp_trace fixture gets its own recording and its analysis."""
    (tmp_path / "test_inner.py").write_text(TEST_FILE)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_inner.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout


def test_wisp_option_records_the_session(tmp_path):
    """pytest --wisp --wisp-keep DIR writes the session's run into DIR."""
    (tmp_path / "test_plain.py").write_text(
        "import threading\n\ndef test_x():\n    with threading.Lock():\n        pass\n"
    )
    keep = tmp_path / "keep"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--wisp",
            "--wisp-keep",
            str(keep),
            str(tmp_path / "test_plain.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(keep.glob("pytest-*.wtrace"))
    assert "session recorded in" in r.stdout
