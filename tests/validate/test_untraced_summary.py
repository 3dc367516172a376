"""The gate's summary line says why recordings with no trace context had no traces to check."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest import test_go_trace as go_tests
from ingest import test_jfr as jfr_tests
from willowisp.cli.main import main
from willowisp.ingest.load import load
from willowisp.validate.gate import validate


def test_go_trace_and_jfr_say_there_was_nothing_to_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Go execution trace and a JFR recording: 0 traces, and the summary says these files
    carry no trace context and that only their health was checked; still no problem."""
    go = go_tests.traced("handoff", tmp_path)
    rec = jfr_tests.record(tmp_path, "Handoff")
    report = validate(load([str(go), str(rec)]))
    assert report.traces == () and report.problems == () and report.ok
    line = report.summary()
    assert line.startswith("0 trace(s) in 2 file(s): 0 problem(s); no traces to check: ")
    assert "Handoff.jfr, trace.out carry no trace context" in line
    assert "only the recordings' health was checked" in line
    # and what `validate --ci-mode` prints: the same line, exit 0 (healthy)
    assert main(["validate", "--ci-mode", str(go), str(rec)]) == 0
    assert f"willowisp validate: {line}" in capsys.readouterr().err


def test_traces_found_keep_the_plain_summary() -> None:
    """With traces to check, the summary is the usual count alone."""
    data = Path(__file__).resolve().parents[1] / "ingest" / "data" / "zipkin_v2_traces.json"
    report = validate(load([str(data)]))
    assert report.traces
    assert report.summary() == f"{len(report.traces)} trace(s) in 1 file(s): 0 problem(s)"
