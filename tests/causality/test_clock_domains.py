"""Clock domains: which processes share a clock, the reference, offsets and drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from golden.tracetext import WALL0, chunk, process, write_trace
from willowisp.causality.clock_domains import align, group_processes
from willowisp.errors import UsageError
from willowisp.ingest import load
from willowisp.ingest.trace import Trace

NONE = np.zeros(0, np.int64)


def _proc(tmp_path: Path, name: str, head: str, wall_minus_mono: int) -> None:
    write_trace(
        tmp_path / f"{name}.wtrace",
        chunk(
            head,
            f"ev 1000 clock.anchor a={1000 + wall_minus_mono}",
            f"ev 1001000 clock.anchor a={1001000 + wall_minus_mono}",
            "ev 2000 unit.start u=1",
        ),
    )


def _load(tmp_path: Path, *procs: tuple[str, str, int]) -> Trace:
    for name, head, off in procs:
        _proc(tmp_path, name, head, off)
    return load([tmp_path])


def test_same_keys_and_agreeing_anchors_share_a_domain(tmp_path: Path) -> None:
    """Same boot, namespace and no fake time, anchors within 50 us: one domain."""
    trace = _load(
        tmp_path,
        ("a", process("a1", 1, "a", run_root=1), WALL0),
        ("b", process("b1", 2, "b", host="other-name"), WALL0 + 40_000),
    )
    assert group_processes(trace) == [[0, 1]]


@pytest.mark.parametrize(
    "head",
    [
        process("b1", 2, "b", boot="boot-2"),  # another boot
        process("b1", 2, "b", boot=""),  # boot unknown: nothing proves sharing
        process("b1", 2, "b", sim=1),  # a simulated offset
        process("b1", 2, "b", fake="libfaketime.so.1"),  # a fake-time library
    ],
)
def test_differing_keys_split_domains(tmp_path: Path, head: str) -> None:
    """Any key that differs (or cannot prove sharing) keeps processes apart."""
    trace = _load(tmp_path, ("a", process("a1", 1, "a", run_root=1), WALL0), ("b", head, WALL0))
    assert group_processes(trace) == [[0], [1]]


def test_anchors_disagreeing_by_more_than_50us_split(tmp_path: Path) -> None:
    """Same keys but wall - mono differing by 60 us: two clocks."""
    trace = _load(
        tmp_path,
        ("a", process("a1", 1, "a", run_root=1), WALL0),
        ("b", process("b1", 2, "b"), WALL0 + 60_000),
    )
    assert group_processes(trace) == [[0], [1]]


def test_reference_selection(tmp_path: Path) -> None:
    """--reference by service, pid or id prefix; else the run root; bad names are errors."""
    trace = _load(
        tmp_path,
        ("a", process("a1", 1, "api"), WALL0),
        ("b", process("b1", 2, "db", boot="x", run_root=1), WALL0),
    )
    assert trace.processes[0].service == "db"  # the run root is listed first
    assert align(trace, NONE, NONE).reference == 0
    assert align(trace, NONE, NONE, "api").reference == 1
    assert align(trace, NONE, NONE, "1").reference == 1
    assert align(trace, NONE, NONE, "b1").reference == 0
    with pytest.raises(UsageError, match="names no process"):
        align(trace, NONE, NONE, "nope")


def test_offsets_adjusted_column_and_drift(tmp_path: Path) -> None:
    """Offsets come from hop edges; adjusted = raw + offset; raw is untouched."""
    write_trace(
        tmp_path / "a.wtrace",
        chunk(
            process("a1", 1, "a", run_root=1),
            f"ev 0 clock.anchor a={WALL0}",
            f"ev 1000000000 clock.anchor a={WALL0 + 1000000100}",  # wall runs 100 ns/s fast
            "ev 10000 msg.send u=1",
            "ev 30000 rpc.response u=1",
        ),
    )
    write_trace(
        tmp_path / "b.wtrace",
        chunk(
            process("b1", 2, "b", boot="other"),
            f"ev 0 clock.anchor a={WALL0 + 5_000_000}",
            "ev 15000 msg.recv u=1",
            "ev 25000 rpc.reply u=1",
        ),
    )
    trace = load([tmp_path])
    ev = trace.events
    send, resp, recv, reply = 1, 2, 5, 6  # rows: a: anchor, send, response, anchor; b: anchor, ...
    assert ev.kind[[send, resp, recv, reply]].tolist() == [20, 23, 21, 22]
    src, dst = np.array([send, reply]), np.array([recv, resp])
    clocks = align(trace, src, dst)
    b = clocks.domains[1]
    assert (b.interval.lo, b.interval.hi) == (-5_000_000 - 5_000, -5_000_000 + 5_000)
    assert b.offset_ns == -5_000_000 and b.uncertainty_ns == 5_000
    assert clocks.adjusted[recv] == ev.raw[recv] - 5_000_000
    assert clocks.domains[0].drift_ns_per_s == 100
    assert clocks.evidence[(0, 1)] == (send, recv, int(ev.raw[recv] - ev.raw[send]))


def test_consistent_imported_spans_get_no_invented_skew(tmp_path: Path) -> None:
    """A client span (0-50 ms) and its server span (10-40 ms) from OTLP JSON, clocks in
    agreement: the request edge bounds the server's offset from one side only (its span's
    end is not its reply), and the offset stays 0 rather than the bound (-10 ms, the
    transit), so the hop's transit reads 10 ms, not 0."""
    import json
    import subprocess
    import sys

    t0 = 1_700_000_000_000_000_000
    trace_id = "0af7651916cd43dd8448eb211c80319c"

    def side(service: str, span_id: str, parent: str, kind: int, start: int, end: int) -> dict:
        span = {
            "traceId": trace_id, "spanId": span_id, "name": "GET /x", "kind": kind,
            "startTimeUnixNano": str(t0 + start), "endTimeUnixNano": str(t0 + end),
        }  # fmt: skip
        if parent:
            span["parentSpanId"] = parent
        attrs = [{"key": "service.name", "value": {"stringValue": service}}]
        return {"resource": {"attributes": attrs}, "scopeSpans": [{"spans": [span]}]}

    doc = {
        "resourceSpans": [
            side("front", "b7ad6b7169203331", "", 3, 0, 50_000_000),
            side("back", "c7ad6b7169203332", "b7ad6b7169203331", 2, 10_000_000, 40_000_000),
        ]
    }
    path = tmp_path / "pair.json"
    path.write_text(json.dumps(doc))
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(path), "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    clocks = json.loads(r.stdout)["clocks"]
    [back] = [c for c in clocks if not c.get("reference")]
    assert back["offset_min_ns"] == -10_000_000 and back["offset_max_ns"] is None
    assert back["offset_ns"] == 0, clocks
