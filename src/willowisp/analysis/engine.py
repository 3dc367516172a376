"""Running the analyses: load, link, every finding kind, one document.

``analyze(trace)`` links the trace once (hops, clocks, happens-before graph) and runs each
analysis over the shared result; analyses never see each other's output, so adding one is
one line in ``ANALYSES``. Findings are merged by id (a repeated problem is one finding
with a count) and sorted errors first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from willowisp.analysis import (
    agent_health,
    clock_findings,
    completeness,
    contention,
    deadlock,
    lock_order,
    race,
    seams,
    structural,
)
from willowisp.analysis import boundary as _boundary
from willowisp.analysis.boundary import Boundary, Inside
from willowisp.analysis.contention import ResourceContention
from willowisp.analysis.document import build_document
from willowisp.analysis.finding import Finding, merge_repeats, sort_findings
from willowisp.analysis.seams import Timing
from willowisp.causality.hops import HopGroup, summarize
from willowisp.causality.link import Causality, link
from willowisp.ingest.load import load
from willowisp.ingest.trace import Trace


@dataclass(frozen=True, slots=True)
class Options:
    reference: str | None = None  # --reference: process id prefix, pid or service
    boundaries: tuple[Boundary, ...] = ()  # --boundary and willowisp.toml
    suppress: bool = True  # --no-suppress turns it off


@dataclass(frozen=True, slots=True)
class Analysis:
    trace: Trace
    causality: Causality
    hops: tuple[HopGroup, ...]
    findings: tuple[Finding, ...]
    options: Options
    # Every boundary in effect: the options' then those the agents recorded (see
    # analysis/boundary.py), what each covers, and the findings suppressed outside them.
    boundaries: tuple[Boundary, ...] = ()
    inside: Inside | None = None
    suppressed: int = 0
    # The lock-like resources the document's contention section lists (analysis/contention.py).
    contention: tuple[ResourceContention, ...] = ()
    # Consumer rhythms, the slowest operations' critical paths and the seams of each hop
    # group, computed once (analysis/seams.py, critical_path.py, structural.py).
    timing: Timing | None = None

    def document(self) -> dict[str, Any]:
        """The contract's ``analyze --format json`` document."""
        return build_document(self)


# deadlock.find also applies the all-asleep rule (analysis/stuck.py), so that one hang is one
# finding.
ANALYSES: tuple[tuple[str, Callable[[Causality], list[Finding]]], ...] = (
    ("deadlock", deadlock.find),
    ("clocks", clock_findings.find),
    ("agent health", lambda c: agent_health.find(c.trace)),
    ("completeness", completeness.find),
    ("lock order", lock_order.find),
    ("contention", contention.find),
    ("race", race.find),
    ("structural delay", structural.find),
)


def analyze(trace: Trace, options: Options | None = None) -> Analysis:
    """Link and analyze a loaded trace. Raises UsageError for a bad ``options.reference``."""
    options = options or Options()
    c = link(trace, options.reference)
    found: list[Finding] = []
    for _, run in ANALYSES:
        found += run(c)
    findings = sort_findings(merge_repeats(found))
    bounds = _boundary.merge_boundaries(options.boundaries, _boundary.recorded(trace))
    ins = _boundary.inside(trace, c.hops, bounds, c.graph) if bounds else None
    suppressed = 0
    if ins is not None and options.suppress:
        findings, suppressed = _boundary.suppress(findings, trace, ins)
    return Analysis(
        trace,
        c,
        tuple(summarize(trace, c.hops)),
        tuple(findings),
        options,
        bounds,
        ins,
        suppressed,
        contention=contention.measure(c),
        timing=seams.timing(c),
    )


def analyze_paths(
    paths: Iterable[str | os.PathLike[str]], options: Options | None = None
) -> Analysis:
    """``load`` then ``analyze``; unreadable files are in ``result.trace.unreadable``."""
    return analyze(load(paths), options)
