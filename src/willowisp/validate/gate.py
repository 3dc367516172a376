"""Running the gate: a loaded trace in, a :class:`Report` out.

``validate(trace, options)`` matches hops once (``causality.hops.match``; no clock
alignment and no happens-before graph, which the checks do not need), indexes the traces,
runs every check, then narrows to the traces asked for (``--last N``, or those a replay
produced) and sets aside the problems a baseline accepts. It never raises on a damaged or
incomplete trace: what is missing is what it reports. A file still being written (a torn
end, its writer alive: ``live_segments``) is a note in the report, not a problem, so a gate
run next to a live service does not fail on the chunk an agent is appending.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from willowisp.causality.hops import match
from willowisp.ingest.files import discover
from willowisp.ingest.trace import Trace
from willowisp.validate.checks import check_hops, check_recording
from willowisp.validate.contract_spec import Contract
from willowisp.validate.contracts import check_contracts
from willowisp.validate.live_segments import InProgress, find_in_progress
from willowisp.validate.problems import Hop, Problem
from willowisp.validate.trace_index import TraceIndex, entry_label, index_traces


@dataclass(frozen=True, slots=True)
class GateOptions:
    last: int | None = None  # --last N: the N traces that started last
    contracts: tuple[Contract, ...] = ()
    baseline: frozenset[str] = frozenset()  # accepted problem ids
    # Callers outside the recording that are expected ((trace id, span id)): the replay
    # client of --replay-against. Their receivers are entries, not broken links.
    known_parents: frozenset[tuple[str, str]] = frozenset()
    # Check only these traces (--replay-against: the traces the replay started); None: all.
    only: frozenset[str] | None = None
    # The PATHs the trace was loaded from: every trace file in them counts as read, even
    # one whose spans were all repeats of spans read before (they belong to no process).
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TraceCase:
    """One checked trace: its id, where it entered, when it started (raw ns)."""

    id: str
    entry: str
    start_ns: int


@dataclass(frozen=True, slots=True)
class Report:
    traces: tuple[TraceCase, ...]  # in start order
    problems: tuple[Problem, ...]  # not accepted by the baseline: these fail the gate
    accepted: tuple[Problem, ...]  # found, and accepted by the baseline
    files: int
    # Files (or embedded streams) whose torn end a live writer explains: notes, not problems.
    in_progress: tuple[InProgress, ...] = ()
    # Files of recordings that carry no trace context (Go execution traces, JFR): nothing in
    # them is a trace to check, only their health (drops, faults, unreadable parts).
    untraced: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """The one-line summary (after ``willowisp validate: ``): traces, files, problems,
        and when no trace was found in recordings that cannot hold one, why: "0 traces"
        alone would read as a clean bill for files nothing was checked in."""
        accepted = f" ({len(self.accepted)} accepted by the baseline)" if self.accepted else ""
        line = (
            f"{len(self.traces)} trace(s) in {self.files} file(s): "
            f"{len(self.problems)} problem(s){accepted}"
        )
        if self.traces or not self.untraced:
            return line
        names = ", ".join(os.path.basename(p) for p in self.untraced)
        return (
            f"{line}; no traces to check: {names} "
            f"{'carries' if len(self.untraced) == 1 else 'carry'} no trace context (Go "
            "execution traces and JFR recordings record no W3C trace ids), so only the "
            "recordings' health was checked (unreadable or cut files, drops, agent faults)"
        )


def validate(trace: Trace, options: GateOptions | None = None) -> Report:
    options = options or GateOptions()
    hops = match(trace)
    index = index_traces(trace, hops)
    named: dict[int, Hop] = {}
    live = find_in_progress(trace)
    chosen = set(index.ids) if options.only is None else set(index.ids) & options.only
    if options.last is not None:
        chosen = _last(index, chosen, options.last)
    found = (
        check_recording(trace, live)
        + check_hops(trace, hops, index, options.known_parents, named)
        + check_contracts(trace, hops, index, options.contracts, named, chosen)
    )
    kept: list[Problem] = []
    for p in found:
        if not p.traces:
            kept.append(p)
            continue
        traces = tuple(t for t in p.traces if t in chosen)
        if traces:
            kept.append(p if len(traces) == len(p.traces) else replace(p, traces=traces))
    problems = tuple(p for p in kept if p.id not in options.baseline)
    accepted = tuple(p for p in kept if p.id in options.baseline)
    number = index.number()
    cases = sorted(
        (
            TraceCase(t, entry_label(trace, index.entry[number[t]]), int(index.start_ns[number[t]]))
            for t in chosen
        ),
        key=lambda c: (c.start_ns, c.id),
    )
    return Report(
        tuple(cases),
        problems,
        accepted,
        _file_count(trace, options.paths),
        tuple(live[p] for p in sorted(live)),
        _untraced(trace),
    )


# Importers whose recordings hold no trace context (docs/validate.md)
_UNTRACED_IMPORTS = frozenset({"go", "jfr"})


def _untraced(trace: Trace) -> tuple[str, ...]:
    """Files of the processes imported from recordings with no trace context."""
    paths = {
        f
        for p in trace.processes
        if dict(p.attrs).get("imported") in _UNTRACED_IMPORTS
        for f in p.files
    }
    return tuple(sorted(paths))


def _file_count(trace: Trace, inputs: tuple[str, ...]) -> int:
    """Files looked at: those read, those refused whole (an unreadable one is a file of
    the recording too; a folder with no trace file in it is not), and every trace file in
    ``inputs``: a collector's segment of retried requests adds no process and no span, yet
    it was read."""
    paths = {f.path for f in trace.files}
    paths |= {u.path for u in trace.unreadable if not u.partial and os.path.isfile(u.path)}
    paths |= set(discover(inputs)[0])
    return len({os.path.realpath(p) for p in paths})


def _last(index: TraceIndex, chosen: set[str], n: int) -> set[str]:
    """The ``n`` of ``chosen`` that started last (by start time, then id: deterministic)."""
    number = index.number()
    ordered = sorted(chosen, key=lambda t: (int(index.start_ns[number[t]]), t))
    return set(ordered[max(len(ordered) - n, 0) :])
