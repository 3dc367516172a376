"""model/spec.py agrees with docs/format.md, conformance/spec.json and the K enum."""

from __future__ import annotations

import json
import re
from pathlib import Path

from willowisp.model.spec import (
    EVENT_KINDS,
    KIND_BY_CODE,
    KIND_BY_NAME,
    RECORD_TYPES,
    K,
    markdown_table,
    spec_json,
)

ROOT = Path(__file__).resolve().parents[2]
FORMAT_MD = ROOT / "docs" / "format.md"
SPEC_JSON = ROOT / "conformance" / "spec.json"


def _between(text: str, begin: str, end: str) -> str:
    assert text.count(begin) == 1, f"{begin} must appear once"
    assert text.count(end) == 1, f"{end} must appear once"
    return text.split(begin, maxsplit=1)[1].split(end, maxsplit=1)[0].strip()


def test_event_table_in_format_md_is_generated_from_spec() -> None:
    """The table between the event-table markers in docs/format.md is exactly markdown_table()."""
    doc = FORMAT_MD.read_text("utf-8")
    embedded = _between(doc, "<!-- event-table:begin -->", "<!-- event-table:end -->")
    assert embedded == markdown_table(), "paste markdown_table() between the markers"


def test_record_tables_in_format_md_match_spec() -> None:
    """Each record type's heading and attribute table in docs/format.md match RECORD_TYPES."""
    doc = FORMAT_MD.read_text("utf-8")
    records_section = _between(doc, "\n## Records\n", "\n## Events\n")
    for rt in RECORD_TYPES:
        heading = f"**{rt.code} `{rt.name}`** — id: {rt.id_meaning}."
        assert heading in records_section, f"missing heading {heading!r}"
        table = records_section.split(heading, 1)[1].split("\n\n**", 1)[0]
        rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", table, flags=re.MULTILINE)
        assert rows == list(rt.attrs), f"attribute table of {rt.name} differs from spec.py"


def test_conformance_spec_json_is_generated_from_spec() -> None:
    """conformance/spec.json is exactly spec_json() (regenerate with conformance/generate.py)."""
    assert SPEC_JSON.read_text("ascii") == spec_json()


def test_spec_json_is_complete() -> None:
    """spec_json() lists every event kind and record type with its code and the format version."""
    doc = json.loads(spec_json())
    assert doc["format"] == {"major": 1, "minor": 2}
    assert [(k["code"], k["name"]) for k in doc["event_kinds"]] == [
        (k.code, k.name) for k in EVENT_KINDS
    ]
    assert [r["code"] for r in doc["record_types"]] == [r.code for r in RECORD_TYPES]
    assert doc["codecs"] == {"none": 0, "deflate": 1, "zstd": 2}


def test_kind_codes_and_names_are_unique_bytes() -> None:
    """Every event kind has a distinct code in 1..255 and a distinct dotted name."""
    codes = [k.code for k in EVENT_KINDS]
    names = [k.name for k in EVENT_KINDS]
    assert len(set(codes)) == len(codes)
    assert len(set(names)) == len(names)
    assert all(1 <= c <= 255 for c in codes)
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+", n) for n in names)
    assert len(KIND_BY_CODE) == len(KIND_BY_NAME) == len(EVENT_KINDS)


def test_k_enum_matches_event_kinds() -> None:
    """K has exactly one member per event kind, named after it ("unit.create" -> UNIT_CREATE)."""
    expected = {k.name.replace(".", "_").upper(): k.code for k in EVENT_KINDS}
    assert {m.name: m.value for m in K} == expected


def test_record_type_codes_are_unique() -> None:
    """Record types have distinct codes and names and no attribute is listed twice."""
    assert len({r.code for r in RECORD_TYPES}) == len(RECORD_TYPES)
    assert len({r.name for r in RECORD_TYPES}) == len(RECORD_TYPES)
    for rt in RECORD_TYPES:
        keys = [a for a, _ in rt.attrs]
        assert len(set(keys)) == len(keys), rt.name
