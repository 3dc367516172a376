"""The query tables: every documented table and column exists, and they agree with the
analysis they are taken from."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from willowisp.analysis.engine import analyze
from willowisp.ingest import load
from willowisp.model.spec import KIND_BY_CODE
from willowisp.query import query
from willowisp.query.schema import HELPERS, TABLES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "query.md"


def rows(run: Path, sql: str) -> list[tuple]:
    answer = query([run], sql)
    assert answer.result is not None
    return answer.result.rows


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_every_table_has_its_documented_columns(recorded_run: Path, table) -> None:
    """DESCRIBE shows exactly the schema's columns and types, in order, on a real run."""
    described = rows(recorded_run, f"DESCRIBE {table.name}")
    assert [(r[0], r[1]) for r in described] == [(c.name, c.type) for c in table.columns]


def test_tables_agree_with_the_analysis(recorded_run: Path) -> None:
    """Counts by kind, units, edges, hops and findings are those of the analysis."""
    trace = load([recorded_run])
    result = analyze(trace)
    doc = result.document()
    by_kind = dict(rows(recorded_run, "SELECT kind, count(*) FROM events GROUP BY kind"))
    codes, counts = np.unique(trace.events.kind, return_counts=True)
    assert by_kind == {
        KIND_BY_CODE[int(c)].name: int(n) for c, n in zip(codes, counts, strict=True)
    }
    assert rows(recorded_run, "SELECT count(*) FROM units") == [(len(trace.units),)]
    assert rows(recorded_run, "SELECT count(*) FROM resources") == [(len(trace.resources),)]
    edges = dict(rows(recorded_run, "SELECT kind, count(*) FROM edges GROUP BY kind"))
    assert edges == {k: n for k, n in doc["trace"]["happens_before_edges"].items() if n}
    assert rows(recorded_run, "SELECT count(*) FROM hops") == [(len(result.causality.hops),)]
    found = rows(recorded_run, "SELECT id, kind, severity FROM findings ORDER BY id")
    assert found == sorted((f["id"], f["kind"], f["severity"]) for f in doc["findings"])
    ids = rows(recorded_run, "SELECT id FROM events ORDER BY idx")
    assert [r[0] for r in ids[:3]] == [trace.event_id(i) for i in range(3)]


def test_event_columns_are_the_trace_columns(callback_run: Path) -> None:
    """Raw, adjusted and root-relative times, units and resources come from the linked trace."""
    result = analyze(load([callback_run]))
    trace, c = result.trace, result.causality
    got = rows(
        callback_run,
        "SELECT id, unit, raw_ns, adjusted_ns, root_rel_ns, operation, resource_kind "
        "FROM events ORDER BY idx",
    )
    assert len(got) == len(trace.events)
    for i, (eid, unit, raw, adjusted, rel, op, res_kind) in enumerate(got):
        assert eid == trace.event_id(i)
        u = int(trace.events.unit[i])
        assert unit == (trace.unit_id(u) if u >= 0 else None)
        assert (raw, adjusted, rel) == (
            int(trace.events.raw[i]),
            int(c.clocks.adjusted[i]),
            int(c.operations.root_rel_ns[i]),
        )
        assert op == c.operations.trace_id_of(i)
        r = int(trace.events.res[i])
        assert res_kind == (trace.resources[r].kind if r >= 0 else None)


def test_finding_events_join_with_events(callback_run: Path) -> None:
    """Every event a finding lists is a row of events (ids are the same)."""
    got = rows(
        callback_run,
        "SELECT f.kind, count(*) AS listed, count(e.id) AS found "
        "FROM findings f, unnest(f.events) AS t(eid) LEFT JOIN events e ON e.id = t.eid "
        "GROUP BY f.kind ORDER BY f.kind",
    )
    assert got and all(listed == found for _, listed, found in got)
    assert "deadlock" in {k for k, _, _ in got}


def test_resources_keep_their_whole_record_as_json(callback_run: Path) -> None:
    """The attrs column holds the definition record; JSON functions read it."""
    got = rows(
        callback_run,
        "SELECT name, attrs->>'trace_id' = trace_id, attrs->>'kind' FROM resources "
        "WHERE kind = 'rpc' ORDER BY id LIMIT 1",
    )
    assert got == [("GET /health", True, "rpc")]


def test_docs_describe_every_table_column_and_helper() -> None:
    """docs/query.md names every table, each of its columns in its section, every helper."""
    text = DOCS.read_text()
    sections = re.split(r"^### ", text, flags=re.M)
    for table in TABLES:
        (section,) = [s for s in sections if s.startswith(f"`{table.name}`")]
        for column in table.columns:
            assert f"`{column.name}`" in section, (table.name, column.name)
    for helper in HELPERS:
        assert helper.signature.split("(")[0] in text
