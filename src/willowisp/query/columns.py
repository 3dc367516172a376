"""The columns behind the query tables, taken from a linked trace without copying events.

Each function returns one *base* table as a dict of numpy arrays (DuckDB scans numeric
numpy arrays in place, so the million-row event columns are never copied or turned into
Python objects). The public tables of :mod:`willowisp.query.schema` are SQL views over
these bases (:mod:`willowisp.query.database`): strings that repeat per event — event ids,
kind names, unit and resource ids — are made by DuckDB in those views by joining the event
columns with the small tables here, where Python builds one string per unit, resource or
process, never one per event.

Bases are named with a leading underscore; indices are the loader's global ones (``-1``
for none, turned into NULL by the views' outer joins).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.analysis.agent_health import dropped_per_process, faults_per_process
from willowisp.analysis.document import agent_summary
from willowisp.causality.graph import EdgeKind
from willowisp.causality.hops import HopKind
from willowisp.causality.link import Causality
from willowisp.causality.program_order import next_in_unit
from willowisp.causality.provenance import Provenance, Unlinked
from willowisp.causality.waits import holds, wait_outcome, waits
from willowisp.ingest.tables import Attrs
from willowisp.model.spec import EVENT_KINDS, K, Reason
from willowisp.wtrace.payload import AttrValue

Columns = dict[str, npt.NDArray[Any]]


def objects(values: list[Any]) -> npt.NDArray[np.object_]:
    """An object array holding exactly ``values`` (numpy would split lists into 2-D)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _json_value(v: AttrValue) -> int | str:
    return v.hex() if isinstance(v, bytes) else v


def attrs_json(attrs: Attrs) -> str:
    """A definition record's attributes as a JSON object (bytes as hex)."""
    return json.dumps({k: _json_value(v) for k, v in attrs}, ensure_ascii=False)


def events(c: Causality) -> Columns:
    """``_ev``: the event columns, plus adjusted and root-relative time and operation."""
    ev = c.trace.events
    return {
        "idx": np.arange(len(ev), dtype=np.int64),
        "proc": ev.proc,
        "unit": ev.unit,
        "kind": ev.kind,
        "seq": ev.seq,
        "time_ns": ev.time,
        "raw_ns": ev.raw,
        "adjusted_ns": c.clocks.adjusted,
        "root_rel_ns": c.operations.root_rel_ns,
        "op": c.operations.op,
        "res": ev.res,
        "arg": ev.arg,
        "loc": ev.loc,
    }


def kinds() -> Columns:
    """``_kinds``: event kind code -> name."""
    return {
        "code": np.array([k.code for k in EVENT_KINDS], dtype=np.uint8),
        "name": objects([k.name for k in EVENT_KINDS]),
    }


def labels(name: str) -> Columns:
    """Small code -> label tables: ``_edge_kinds``, ``_provenances``, ``_unlinked``,
    ``_hop_kinds``, ``_reasons``."""
    pairs: list[tuple[int, str]]
    if name == "_edge_kinds":
        pairs = [(int(k), k.name.lower()) for k in EdgeKind]
    elif name == "_provenances":
        pairs = [(int(p), p.label) for p in Provenance]
    elif name == "_unlinked":
        pairs = [(int(u), u.label) for u in Unlinked]
    elif name == "_hop_kinds":
        pairs = [(int(h), h.name.lower()) for h in HopKind]
    elif name == "_reasons":
        pairs = [(int(r), r.name.lower().replace("_", "-")) for r in Reason]
    else:  # pragma: no cover - the caller names only the tables above
        raise KeyError(name)
    return {
        "code": np.array([p[0] for p in pairs], dtype=np.int64),
        "name": objects([p[1] for p in pairs]),
    }


def operations(c: Causality) -> Columns:
    """``_ops``: operation index -> W3C trace id."""
    ids = c.operations.trace_ids
    return {"idx": np.arange(len(ids), dtype=np.int32), "trace_id": objects(list(ids))}


def processes(c: Causality) -> Columns:
    """``_processes``: one row per process, every public column."""
    trace, clocks = c.trace, c.clocks
    ps = trace.processes
    counts = np.bincount(trace.events.proc, minlength=len(ps)).astype(np.int64)
    dropped = dropped_per_process(trace)
    return {
        "idx": np.arange(len(ps), dtype=np.int32),
        "id": objects([p.id for p in ps]),
        "pid": np.array([p.pid for p in ps], dtype=np.int64),
        "host": objects([p.host for p in ps]),
        "service": objects([p.service for p in ps]),
        "runtime": objects([p.runtime for p in ps]),
        "boot_id": objects([p.boot_id for p in ps]),
        "run_root": np.array([p.run_root for p in ps], dtype=bool),
        "parent_process_id": objects([p.parent_process_id or None for p in ps]),
        "clock_domain": objects(
            [clocks.domains[int(clocks.domain_of_proc[p.index])].id for p in ps]
        ),
        "events": counts,
        "dropped": np.array(dropped, dtype=np.int64),
        "files": objects([list(p.files) for p in ps]),
        "attrs": objects([attrs_json(p.attrs) for p in ps]),
        "agent": objects(
            [
                json.dumps(agent_summary(p.stats, int(n), int(d), int(f)), ensure_ascii=False)
                for p, n, d, f in zip(ps, counts, dropped, faults_per_process(trace), strict=True)
            ]
        ),
    }


def units(c: Causality) -> Columns:
    """``_units``: one row per unit (ids made here: units are few)."""
    trace = c.trace
    pids = [p.id for p in trace.processes]
    us = trace.units
    ev_unit = trace.events.unit
    counts = np.bincount(ev_unit[ev_unit >= 0], minlength=len(us)).astype(np.int64)
    return {
        "idx": np.arange(len(us), dtype=np.int32),
        "id": objects([f"{pids[u.proc]}:{u.number}" for u in us]),
        "proc": np.array([u.proc for u in us], dtype=np.int32),
        "number": np.array([u.number for u in us], dtype=np.int64),
        "kind": objects([u.kind for u in us]),
        "name": objects([u.name for u in us]),
        "parent": np.array([u.parent for u in us], dtype=np.int32),
        "coro": objects([u.coro for u in us]),
        "loc": np.array([u.loc for u in us], dtype=np.int32),
        "events": counts,
    }


def resources(c: Causality) -> Columns:
    """``_resources``: one row per resource, the lifted attributes as columns."""
    trace = c.trace
    pids = [p.id for p in trace.processes]
    rs = trace.resources

    def col(name: str) -> npt.NDArray[np.object_]:
        return objects([getattr(r, name) for r in rs])

    return {
        "idx": np.arange(len(rs), dtype=np.int32),
        "id": objects([f"{pids[r.proc]}:{r.number}" for r in rs]),
        "proc": np.array([r.proc for r in rs], dtype=np.int32),
        "number": np.array([r.number for r in rs], dtype=np.int64),
        "loc": np.array([r.loc for r in rs], dtype=np.int32),
        "unit": np.array([r.unit for r in rs], dtype=np.int32),
        **{
            name: col(name)
            for name in (
                "kind",
                "name",
                "trace_id",
                "span_id",
                "parent_span_id",
                "protocol",
                "library",
                "method",
                "target",
                "peer",
            )
        },
    }


def resource_attrs(c: Causality) -> Columns:
    """``_resource_attrs``: each resource's whole record as JSON (only for ``resources``)."""
    rs = c.trace.resources
    return {
        "idx": np.arange(len(rs), dtype=np.int32),
        "attrs": objects([attrs_json(r.attrs) for r in rs]),
    }


def locations(c: Causality) -> Columns:
    """``_locations``: one row per source location."""
    ls = c.trace.locations
    return {
        "idx": np.arange(len(ls), dtype=np.int32),
        "file": objects([loc.file for loc in ls]),
        "line": np.array([loc.line for loc in ls], dtype=np.int32),
        "func": objects([loc.func for loc in ls]),
    }


def edges(c: Causality) -> Columns:
    """``_edges``: the happens-before graph's arrays, as they are."""
    g = c.graph
    return {
        "src_idx": g.src,
        "dst_idx": g.dst,
        "kind": g.kind,
        "provenance": g.provenance,
        "confidence": g.confidence.astype(np.float64),
    }


def hops(c: Causality) -> Columns:
    """``_hops``: the hop table's columns, as they are."""
    h = c.hops
    return {
        "kind": h.kind,
        "reason": h.reason,
        "provenance": h.provenance,
        "confidence": h.confidence.astype(np.float64),
        "client": h.client,
        "server": h.server,
        "send": h.send,
        "recv": h.recv,
        "reply": h.reply,
        "response": h.response,
    }


def clocks(c: Causality) -> Columns:
    """``_clocks``: one row per clock domain (the public columns)."""
    ds = c.clocks.domains
    pids = [p.id for p in c.trace.processes]

    def opt(values: list[int | None]) -> npt.NDArray[np.object_]:
        return objects(values)

    return {
        "id": objects([d.id for d in ds]),
        "processes": objects([[pids[p] for p in d.processes] for d in ds]),
        "reference": np.array([d.reference for d in ds], dtype=bool),
        "simulated": np.array([d.simulated for d in ds], dtype=bool),
        "offset_ns": np.array([d.offset_ns for d in ds], dtype=np.int64),
        "offset_min_ns": opt([d.interval.lo for d in ds]),
        "offset_max_ns": opt([d.interval.hi for d in ds]),
        "uncertainty_ns": opt([d.uncertainty_ns for d in ds]),
        "drift_ns_per_s": np.array([d.drift_ns_per_s for d in ds], dtype=np.int64),
        "drift_method": objects([d.drift_method for d in ds]),
        "drift_applied": np.array([d.drift_applied for d in ds], dtype=bool),
        "constraints": np.array([d.constraints for d in ds], dtype=np.int64),
        "inconsistency_ns": np.array([d.slack_ns for d in ds], dtype=np.int64),
    }


def wait_rows(c: Causality) -> Columns:
    """``_waits``: every ``unit.block`` and the event that ended it, with the outcome.

    Waits are far fewer than events; the outcome word is computed once per distinct
    (end kind, end arg) pair, not per wait.
    """
    trace = c.trace
    w = waits(trace, next_in_unit(trace))
    ev = trace.events
    end = np.maximum(w.end, 0)
    kind = ev.kind[end].astype(np.int64) if len(ev) else np.zeros(len(w), np.int64)
    arg = ev.arg[end] if len(ev) else np.zeros(len(w), np.int64)
    # What decides the word: the end's kind, and for a unit.wake its outcome argument.
    detail = np.where((kind == K.UNIT_WAKE) & (arg >= 0) & (arg < 256), arg, 256)
    key = np.where(w.end >= 0, kind << 9 | detail, -1)
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    words = objects([wait_outcome(trace, int(w.end[i])) for i in first.tolist()])
    return {
        "block_idx": w.block,
        "end_idx": w.end,
        "unit": w.unit,
        "res": w.res,
        "reason": w.reason,
        "outcome": words[inverse.reshape(-1)] if len(uniq) else objects([]),
    }


def hold_rows(c: Causality) -> Columns:
    """``_holds``: every hold of an owned lock."""
    h = holds(c.trace)
    return {
        "acquire_idx": h.acquire,
        "release_idx": h.release,
        "unit": h.unit,
        "res": h.res,
        "shared": h.shared,
    }


def findings(found: list[dict[str, Any]]) -> Columns:
    """``_findings``: the document's findings (few), lists as lists, objects as JSON text."""
    return {
        "id": objects([f["id"] for f in found]),
        "kind": objects([f["kind"] for f in found]),
        "severity": objects([f["severity"] for f in found]),
        "summary": objects([f["summary"] for f in found]),
        "units": objects([[u["id"] for u in f.get("units", [])] for f in found]),
        "resources": objects([json.dumps(f.get("resources", [])) for f in found]),
        "events": objects([list(f.get("events", [])) for f in found]),
        "explanation": objects([list(f.get("explanation", [])) for f in found]),
        "occurrences": np.array([int(f.get("occurrences", 1)) for f in found], np.int64),
        "detail": objects([json.dumps(f, ensure_ascii=False) for f in found]),
    }
