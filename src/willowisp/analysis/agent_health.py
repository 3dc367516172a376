"""``buffer-drop`` and ``agent-fault``: what the agents say about their own recording.

Analyses are only as complete as the events they get. An agent that ran out of buffer
space, or whose writes the file system refused (a full disk), counts what it lost
(``agent.drop`` events per unit, and the running total in its ``stats`` record); one that
caught an error inside itself writes a ``fault`` record and an ``agent.fault`` event.
Both are reported so nobody trusts a clean result that was built on missing events. The
per-unit counts are one ``bincount`` over the drop events.
"""

from __future__ import annotations

import re

import numpy as np

from willowisp.analysis.finding import Finding
from willowisp.analysis.naming import plural, unit_label, unit_ref
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

MAX_LINES = 10  # units listed per finding; the rest are counted


def find(trace: Trace) -> list[Finding]:
    return _drops(trace) + _faults(trace)


def dropped_per_process(trace: Trace) -> list[int]:
    """Events each process lost: the larger of its stats total and its drop events' sum."""
    ev = trace.events
    drops = ev.kind == K.AGENT_DROP
    summed = np.bincount(
        ev.proc[drops], weights=ev.arg[drops].astype(np.float64), minlength=len(trace.processes)
    )
    return [max(p.stats.dropped, round(float(summed[p.index]))) for p in trace.processes]


def faults_per_process(trace: Trace) -> list[int]:
    counted = [0] * len(trace.processes)
    for f in trace.faults:
        counted[f.proc] += 1
    return [max(p.stats.faults, counted[p.index]) for p in trace.processes]


def _drops(trace: Trace) -> list[Finding]:
    ev = trace.events
    out: list[Finding] = []
    totals = dropped_per_process(trace)
    refused_writes = {f.proc: f.message for f in trace.faults if f.where == "write"}
    for p in trace.processes:
        if totals[p.index] == 0:
            continue
        lo, hi = int(trace.proc_bounds[p.index]), int(trace.proc_bounds[p.index + 1])
        drops = np.flatnonzero(ev.kind[lo:hi] == K.AGENT_DROP) + lo
        units = ev.unit[drops]
        per_unit: dict[int, int] = {}
        for u, n in zip(units.tolist(), ev.arg[drops].tolist(), strict=True):
            per_unit[u] = per_unit.get(u, 0) + n
        ranked = sorted(per_unit.items(), key=lambda kv: (-kv[1], kv[0]))
        lines = [
            f"{unit_label(trace, u) if u >= 0 else 'the agent itself'}: "
            f"{plural(n, 'event')} dropped"
            for u, n in ranked[:MAX_LINES]
        ]
        if len(ranked) > MAX_LINES:
            lines.append(f"... and {len(ranked) - MAX_LINES} more units")
        if p.stats.dropped > sum(per_unit.values()):
            lines.append(f"the agent's counters say {p.stats.dropped} in all")
        refused = refused_writes.get(p.index)
        if refused is not None:
            lines.append(
                f"some or all were lost because the file system refused the agent's writes "
                f"({refused}): a full disk or a quota, not a full buffer; the stderr of the "
                "program says how many in all"
            )
        lines.append(
            "waits, holds and edges of these units may be missing: findings about "
            "them can be incomplete, and an absent finding proves nothing"
        )
        total = totals[p.index]
        named = [u for u, _ in ranked if u >= 0]
        out.append(
            Finding(
                kind="buffer-drop",
                severity="warning",
                summary=(
                    f"buffer-drop: the agent in {p.label()} dropped "
                    f"{plural(total, 'event')}"
                    + (f" of {plural(len(named), 'unit')}" if named else "")
                ),
                identity=(f"service|{p.service}", f"runtime|{p.runtime}"),
                units=tuple(unit_ref(trace, u) for u in named),
                explanation=tuple(lines),
                extra=(("dropped", total),),
            )
        )
    return out


_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")


def _faults(trace: Trace) -> list[Finding]:
    ev = trace.events
    hits = np.flatnonzero(ev.kind == K.AGENT_FAULT)
    times: dict[tuple[int, int], int] = {}
    for proc, n in zip(ev.proc[hits].tolist(), ev.arg[hits].tolist(), strict=True):
        times[(proc, n)] = times.get((proc, n), 0) + 1
    groups: dict[tuple[int, str, str], list[int]] = {}
    for f in trace.faults:
        groups.setdefault((f.proc, f.where, f.message), []).append(f.number)
    out: list[Finding] = []
    for (proc, where, message), numbers in sorted(groups.items()):
        p = trace.processes[proc]
        count = sum(max(1, times.get((proc, n), 0)) for n in numbers)
        out.append(
            Finding(
                kind="agent-fault",
                severity="warning",
                summary=(
                    f"agent-fault: the agent in {p.label()} caught "
                    f"{plural(count, 'error')} in {where or '?'}: {message}"
                ),
                identity=(
                    f"service|{p.service}",
                    f"where|{where}",
                    f"message|{_NUMBERS.sub('N', message)}",
                ),
                explanation=(
                    f"{where or 'an agent hook'} raised {message!r} "
                    f"({plural(count, 'time')}, fault records {', '.join(map(str, numbers))})",
                    "the program itself was not affected (the agent swallows its own errors); "
                    "events that hook would have recorded are missing",
                ),
                extra=(("count", count),),
            )
        )
    return out
