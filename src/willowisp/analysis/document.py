"""The ``analyze --format json`` document (contract: ``willowisp.findings/1``).

``schema`` comes first, then trace, processes, clocks, hops (each with its ``seams``),
contention, critical_paths, findings. Field
names in the contract are kept exactly; extra fields are added beside them (never renamed:
that would need a new schema version). The text report renders this same document, so
both formats always say the same thing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from willowisp.analysis.agent_health import dropped_per_process, faults_per_process
from willowisp.analysis.clock_findings import clock_detail, event_times
from willowisp.analysis.contention import section as contention_section
from willowisp.causality.hops import HopGroup, Side
from willowisp.ingest.tables import AgentStats

if TYPE_CHECKING:  # engine imports this module
    from willowisp.analysis.engine import Analysis

SCHEMA = "willowisp.findings/1"


def build_document(a: Analysis) -> dict[str, Any]:
    trace, clocks = a.trace, a.causality.clocks
    dropped = dropped_per_process(trace)
    faults = faults_per_process(trace)
    counts = np.bincount(trace.events.proc, minlength=len(trace.processes))
    times = event_times(a.causality, (e for f in a.findings for e in f.events))
    processes = []
    for p in trace.processes:
        loaded = int(counts[p.index])
        processes.append(
            {
                "id": p.id,
                "pid": p.pid,
                "host": p.host,
                "service": p.service,
                "runtime": p.runtime,
                "clock_domain": clocks.domains[int(clocks.domain_of_proc[p.index])].id,
                "agent": agent_summary(p.stats, loaded, dropped[p.index], faults[p.index]),
                "loaded_events": loaded,
                "files": list(p.files),
                "run_root": p.run_root,
                "parent_process_id": p.parent_process_id or None,
            }
        )
    domains = []
    for d in clocks.domains:
        first = trace.processes[d.processes[0]]
        domains.append(
            {
                "id": d.id,
                "host": first.host,
                "pid": first.pid,
                "runtime": first.runtime,
                "processes": [trace.processes[p].id for p in d.processes],
                "reference": d.reference,
                "simulated": d.simulated,
                "offset_ns": d.offset_ns,
                "offset_min_ns": d.interval.lo,
                "offset_max_ns": d.interval.hi,
                "uncertainty_ns": d.uncertainty_ns,
                "drift_ns_per_s": d.drift_ns_per_s,
                "drift_method": d.drift_method,
                "constraints": d.constraints,
                "inconsistency_ns": d.slack_ns,
                # drift applied to adjusted time, and the evidence behind the adjustment
                **clock_detail(a.causality, d),
            }
        )
    return {
        "schema": SCHEMA,
        "trace": {
            "files": len({f.path for f in trace.files}),  # one file may hold many processes
            "events": len(trace.events),
            "units": len(trace.units),
            "processes": len(trace.processes),
            "runtimes": trace.runtimes,
            "dropped_events": sum(dropped),
            "agent_faults": sum(faults),
            "unreadable_files": [
                {"path": u.path, "error": u.message, "partial": u.partial} for u in trace.unreadable
            ],
            "notes": list(trace.notes),
            "unknown_events": trace.unknown_kinds,
            "happens_before_edges": a.causality.graph.counts(),
            "happens_before_provenance": a.causality.graph.provenance_counts(),
            "happens_before_uncertain": int(np.count_nonzero(~a.causality.graph.certain)),
            "boundaries": _boundaries(a),
            "suppress": a.options.suppress,
            "suppressed_findings": a.suppressed,
        },
        "processes": processes,
        "clocks": domains,
        "hops": [_with_seams(_hop(g), g, a) for g in a.hops],
        # lock-like resources by total wait (analysis/contention.py)
        "contention": contention_section(trace, a.contention),
        # the slowest operations' critical paths (analysis/critical_path.py)
        "critical_paths": a.timing.critical_paths_json() if a.timing is not None else None,
        "findings": [_with_times(f.to_json(), times) for f in a.findings],
    }


def _boundaries(a: Analysis) -> list[dict[str, Any]]:
    given = {b.entry for b in a.options.boundaries}
    per = {i.boundary.entry: i for i in a.inside.per_boundary} if a.inside is not None else {}
    out = []
    for b in a.boundaries:
        inst = per.get(b.entry)
        lat = [x for x in inst.latency_ns if x >= 0] if inst is not None else []
        out.append(
            {
                "spec": b.spec,
                "entry": b.entry,
                "exit": b.exit or None,
                "runtimes": list(b.runtimes),
                "source": "given" if b.entry in given else "recorded",
                "instances": inst.entries if inst is not None else 0,
                "events": inst.events if inst is not None else 0,
                "units": inst.units if inst is not None else 0,
                "latency_ns": {"p50": _pct(lat, 50), "p99": _pct(lat, 99)} if lat else None,
            }
        )
    return out


def _pct(values: list[int], q: int) -> int:
    return int(np.percentile(np.array(values, dtype=np.int64), q, method="nearest"))


def agent_summary(stats: AgentStats, loaded: int, dropped: int, faults: int) -> dict[str, Any]:
    """A process's ``agent`` object: its last stats record, the counts the loader saw,
    and ``extra``, the agent's own counters (Java's ``jfr_pinned``, ``hooked_classes``...)."""
    return {
        "events": stats.events or loaded,
        "dropped": dropped,
        "faults": faults,
        "cost_ns_per_event": stats.cost_ns_per_event,
        "by_boundary": by_boundary(stats.by_boundary),
        "extra": {k: v.hex() if isinstance(v, bytes) else v for k, v in stats.extra},
    }


def by_boundary(text: str) -> dict[str, Any]:
    """The agent's own cost per boundary, from its last stats record (a JSON attribute)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # nested too deep for the parser is bad too
        return {}
    return value if isinstance(value, dict) else {}


def _with_times(finding: dict[str, Any], times: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A finding with ``event_times``: per listed event, its raw, adjusted and
    root-relative time and its trace (see clock_findings.event_times)."""
    finding["event_times"] = {e: times[e] for e in finding["events"] if e in times}
    return finding


def _side(s: Side) -> dict[str, Any]:
    out: dict[str, Any] = {"service": s.service, "runtime": s.runtime}
    if s.peer:
        out["peer"] = s.peer
    if s.destination:
        out["destination"] = s.destination
    return out


def _with_seams(hop: dict[str, Any], g: HopGroup, a: Analysis) -> dict[str, Any]:
    """A hop with ``seams``: its latency split per part (analysis/seams.py), None if no
    request of the group was seen on both sides."""
    key = (g.source, g.target, g.protocol)
    hop["seams"] = a.timing.seams_json(key) if a.timing is not None else None
    return hop


def _hop(g: HopGroup) -> dict[str, Any]:
    latency = None
    if g.latency_p50_ns is not None:
        latency = {"p50": g.latency_p50_ns, "p99": g.latency_p99_ns}
    return {
        "from": _side(g.source),
        "to": _side(g.target),
        "protocol": g.protocol,
        "libraries": list(g.libraries),
        "count": g.count,
        "linked": g.linked,
        "provenance": g.provenance,
        "unlinked": g.unlinked,
        "latency_ns": latency,
        # links below confidence 1, by why ({"message-id-reused": n}), and linked messages
        # whose latency is not given because their ends are in different clock domains
        "low_confidence": g.low_confidence,
        "latency_omitted": g.latency_omitted,
    }
