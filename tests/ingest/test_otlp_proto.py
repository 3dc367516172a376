"""OTLP protobuf import: the real SDK's bytes, sniffing, skips, and fuzzed garbage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from willowisp.errors import TraceFormatError
from willowisp.ingest import formats
from willowisp.ingest.load import load
from willowisp.ingest.otlp_proto import parse_proto, sniff

APP = Path(__file__).parent / "programs" / "otel_sdk_app.py"


@pytest.fixture(scope="module")
def sdk_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("pb") / "spans.pb"
    r = subprocess.run(
        [sys.executable, str(APP), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def test_real_sdk_protobuf_imports_linked(sdk_bytes: bytes, tmp_path: Path) -> None:
    """The exporter's own protobuf: sniffed as otlp-proto, every span a unit, the three
    shop → pay calls linked."""
    assert sniff(sdk_bytes[:64]) and formats.sniff(sdk_bytes[: formats.HEAD_BYTES]) == "otlp-proto"
    path = tmp_path / "spans.bin"  # no telling extension: content decides
    path.write_bytes(sdk_bytes)
    trace = load([path])
    assert not trace.unreadable
    assert sorted(p.service for p in trace.processes) == ["pay", "shop"]
    assert sum(1 for u in trace.units if u.kind == "span") == 8
    from willowisp.analysis.engine import analyze

    (hop,) = [h for h in analyze(trace).document()["hops"] if h["protocol"] == "http"]
    assert (hop["count"], hop["linked"]) == (3, 3)


def test_bad_spans_are_skipped_and_counted(sdk_bytes: bytes) -> None:
    msg = TracesData()
    msg.ParseFromString(sdk_bytes)
    spans = msg.resource_spans[0].scope_spans[0].spans
    spans[0].trace_id = b"\x01" * 5  # wrong length
    spans[1].end_time_unix_nano = spans[1].start_time_unix_nano - 1  # ends before it starts
    files, notes = parse_proto(msg.SerializeToString(), "x.pb")
    assert sum(1 for f in files for c in f.chunks for r in c.records if r.rtype == 2) == 6
    (note,) = notes
    assert note.startswith("x.pb: 2 of 8 spans skipped") and "trace_id of 5 bytes" in note


def test_not_protobuf_is_one_error() -> None:
    with pytest.raises(TraceFormatError, match="not OTLP protobuf"):
        parse_proto(b"\x0a\x05hello world, not a message", "x.pb")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_only_format_errors(sdk_bytes: bytes, data: st.DataObject) -> None:
    """Flipped, cut and inserted bytes in a real export: spans imported, a note, or one
    TraceFormatError — never another exception."""
    raw = bytearray(sdk_bytes)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        i = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[i : i + data.draw(st.integers(1, 40))]
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=12))
    try:
        files, _notes = parse_proto(bytes(raw), "fuzz.pb")
    except TraceFormatError:
        return
    for f in files:
        assert f.events > 0
