"""Inputs no importer reads get one line naming the file and the real problem: an empty
file, a Perfetto protobuf trace (which Willowisp writes but does not read)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from willowisp.errors import TraceFormatError
from willowisp.ingest import formats

DATA = Path(__file__).resolve().parent / "data"


def wisp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def pftrace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Perfetto protobuf trace written by `willowisp export --to perfetto`."""
    out = tmp_path_factory.mktemp("perfetto") / "spans.pftrace"
    done = wisp("export", str(DATA / "zipkin_v2_traces.json"), "--to", "perfetto", "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_empty_file_says_empty(tmp_path: Path) -> None:
    """An empty file: `<file>: empty`, exit 2, nothing written."""
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    out = tmp_path / "out.wtrace"
    done = wisp("import", str(empty), "-o", str(out))
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == f"willowisp import: {empty}: empty"
    assert not out.exists()


@pytest.mark.parametrize("name", ["spans.pftrace", "spans.bin"], ids=["named", "by-shape"])
def test_perfetto_trace_says_it_is_not_imported(pftrace: Path, tmp_path: Path, name: str) -> None:
    """A Perfetto protobuf trace, by its name or by its shape, is named as one that is
    exported but not imported; no "--from" hint."""
    path = tmp_path / name
    shutil.copyfile(pftrace, path)
    done = wisp("analyze", str(path))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if str(path) in line]
    assert len(lines) == 1
    assert f"{path}: a Perfetto protobuf trace: willowisp exports to Perfetto" in lines[0]
    assert "--from" not in lines[0].replace("--from chrome", "")


def test_otlp_protobuf_is_not_taken_for_perfetto(tmp_path: Path) -> None:
    """OTLP protobuf has Perfetto's outer shape (field 1 repeated) but only fields 1-3
    inside: it still imports."""
    otlp = tmp_path / "spans.json"
    done = wisp("export", str(DATA / "zipkin_v2_traces.json"), "--to", "otlp-json", "-o", str(otlp))
    assert done.returncode == 0, done.stderr
    msg = json_format.Parse(otlp.read_text(), trace_service_pb2.ExportTraceServiceRequest())
    pb = tmp_path / "spans.pb"
    pb.write_bytes(msg.SerializeToString())
    assert not formats.is_perfetto(pb.read_bytes(), str(pb))
    assert formats.prepare(str(pb)).name == "otlp-proto"


def test_garbage_keeps_the_generic_hint(tmp_path: Path) -> None:
    """Bytes that are no known format still get the list of importers and --from."""
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x0a\x02\x08\x01 not a trace")
    with pytest.raises(TraceFormatError, match="name it with willowisp import --from"):
        formats.prepare(str(junk))
