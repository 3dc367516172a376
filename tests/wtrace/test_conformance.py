"""Conformance vectors: the files match the encoder, Node reproduces them, Python reads them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from willowisp.model.spec import EVENT_KINDS, RECORD_TYPES
from willowisp.wtrace.framing import CODEC_NONE
from willowisp.wtrace.payload import EventBatch, Record, rows_of
from willowisp.wtrace.reader import read_bytes
from willowisp.wtrace.writer import write_file

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT / "conformance"
ENCODE_MJS = CONFORMANCE / "node" / "encode.mjs"


def _load_generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "wtrace_conformance_generate", CONFORMANCE / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


generate = _load_generate()
VECTORS = {v.name: v for v in generate.vectors()}


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the portability check needs Node.js >= 18")
    return node


def _run_node_encoder(vector_json: Path, out: Path) -> bytes:
    proc = subprocess.run(
        [_node(), str(ENCODE_MJS), str(vector_json), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"encode.mjs failed on {vector_json.name}: {proc.stderr}"
    return out.read_bytes()


def _content_of_file(data: bytes) -> list[dict[str, Any]]:
    tf = read_bytes(data)
    assert not tf.problems
    assert not tf.truncated
    out = []
    for chunk in tf.chunks:
        rows = rows_of(chunk.events) if chunk.events is not None else []
        first_seq = chunk.events.first_seq if chunk.events is not None else None
        out.append(generate.chunk_json(chunk.records, first_seq, rows))
    return out


def test_committed_files_match_a_fresh_generation() -> None:
    """Regenerating vectors and spec.json in memory gives exactly the committed files, no more."""
    built = generate.build()
    committed = {f"vectors/{p.name}" for p in (CONFORMANCE / "vectors").iterdir()}
    assert committed == {rel for rel in built if rel.startswith("vectors/")}
    for rel, data in built.items():
        assert (CONFORMANCE / rel).read_bytes() == data, (
            f"{rel} is stale: run conformance/generate.py"
        )


def test_vectors_cover_what_the_format_needs() -> None:
    """The vectors include a header-only file, every kind and record type, escaped deltas."""
    kinds = set()
    rtypes = set()
    value_types = set()
    for v in VECTORS.values():
        for records, batch in v.chunks:
            rtypes |= {r.rtype for r in records}
            value_types |= {type(val) for r in records for _, val in r.attrs}
            if batch is not None:
                kinds |= set(batch.kind)
    assert {k.code for k in EVENT_KINDS} <= kinds
    assert {r.code for r in RECORD_TYPES} <= rtypes
    assert value_types == {int, str, bytes}
    assert VECTORS["header_only"].chunks == ()
    assert len(VECTORS["several_chunks"].chunks) >= 3
    assert max(len(b) for _, b in VECTORS["large_chunk"].chunks if b is not None) >= 2000
    extremes = (CONFORMANCE / "vectors" / "time_extremes.wtrace").read_bytes()
    assert (2**63 - 1).to_bytes(8, "little") in extremes  # the largest time, as u64 LE


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_python_reader_decodes_each_vector_to_its_json(name: str) -> None:
    """Reading NAME.wtrace gives back exactly the chunks written in NAME.json."""
    data = (CONFORMANCE / "vectors" / f"{name}.wtrace").read_bytes()
    doc = json.loads((CONFORMANCE / "vectors" / f"{name}.json").read_text("ascii"))
    assert _content_of_file(data) == doc["chunks"]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_write_file_writes_each_vector(name: str, tmp_path: Path) -> None:
    """The file writer (SegmentWriter) produces the same bytes as the vector."""
    out = tmp_path / f"{name}.wtrace"
    write_file(out, VECTORS[name].chunks, codec=CODEC_NONE)
    assert out.read_bytes() == (CONFORMANCE / "vectors" / f"{name}.wtrace").read_bytes()


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_node_encoder_reproduces_each_vector(name: str, tmp_path: Path) -> None:
    """node/encode.mjs, written from the spec alone, writes every vector byte for byte."""
    expected = (CONFORMANCE / "vectors" / f"{name}.wtrace").read_bytes()
    got = _run_node_encoder(CONFORMANCE / "vectors" / f"{name}.json", tmp_path / "out.wtrace")
    if got != expected:
        at = next(
            (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
            min(len(got), len(expected)),
        )
        pytest.fail(
            f"{name}: node wrote {len(got)} bytes, expected {len(expected)}; "
            f"first difference at byte {at}"
        )


def test_node_table_crc_matches_zlib() -> None:
    """The table-driven CRC-32 that encode.mjs falls back to on old Nodes equals zlib's crc32."""
    paths = sorted((CONFORMANCE / "vectors").glob("*.wtrace"))
    script = (
        f"import {{ tableCrc32 }} from {json.dumps(ENCODE_MJS.as_uri())};\n"
        "import { readFileSync } from 'node:fs';\n"
        f"for (const p of {json.dumps([str(p) for p in paths])}) "
        "console.log(tableCrc32(readFileSync(p)));\n"
        "console.log(tableCrc32(Buffer.alloc(0)));\n"
    )
    proc = subprocess.run(
        [_node(), "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    expected = [zlib.crc32(p.read_bytes()) for p in paths] + [0]
    assert [int(line) for line in proc.stdout.split()] == expected


# Random contents, so the Node encoder is checked beyond the fixed vectors. Each example
# starts a Node process, hence the small number of examples.
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_value = st.one_of(st.integers(-(2**63), 2**63 - 1), _text, st.binary(max_size=12))
_record = st.builds(
    Record,
    st.integers(0, 255),
    st.integers(0, 2**64 - 1),
    st.lists(st.tuples(_text, _value), max_size=4).map(tuple),
)
_delta = st.one_of(
    st.integers(-1_000, 1_000),
    st.sampled_from([-(2**31) - 1, -(2**31), -(2**31) + 1, 2**31 - 1, 2**31]),
    st.integers(-(2**40), 2**40),
)
_u32 = st.integers(0, 2**32 - 1)


@st.composite
def _batch(draw: st.DrawFn) -> EventBatch | None:
    deltas = draw(st.lists(_delta, max_size=12))
    if not deltas:
        return None
    batch = EventBatch(first_seq=draw(st.integers(0, 2**63)))
    t = draw(st.integers(2**41, 2**62))
    for i, d in enumerate(deltas):
        t += d if i else 0
        batch.append(
            draw(st.integers(0, 255)),
            draw(_u32),
            t,
            draw(_u32),
            draw(st.integers(-(2**63), 2**63 - 1)),
            draw(_u32),
        )
    return batch


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunks=st.lists(st.tuples(st.lists(_record, max_size=4), _batch()), max_size=3))
def test_node_encoder_agrees_on_random_content(
    chunks: list[tuple[list[Record], EventBatch | None]], tmp_path: Path
) -> None:
    """For random records and events, the Node and Python encoders write the same bytes."""
    vector = generate.Vector("random", "random content", tuple(chunks))
    src = tmp_path / "random.json"
    src.write_text(generate.vector_json(vector), "ascii")
    assert _run_node_encoder(src, tmp_path / "random.wtrace") == generate.encode_file(chunks)
