"""Linking a loaded trace: hops, clock alignment, the happens-before graph and the logical
operations, in that order.

Hops come first because their edges (requests, replies, spawns and messages, those with
confidence 1.0 only) are the only evidence clock alignment uses; the graph includes the hop
edges; operations come last because an operation's root is its earliest event in adjusted
time. Everything here is computed once per analysis and shared by every analysis module.
"""

from __future__ import annotations

from dataclasses import dataclass

from willowisp.causality.clock_domains import ClockAlignment, align
from willowisp.causality.graph import HBGraph, build
from willowisp.causality.hops import Hops, hop_edge_columns, match
from willowisp.causality.operations import Operations, operations
from willowisp.ingest.trace import Trace


@dataclass(frozen=True, slots=True)
class Causality:
    """What the causality layer knows about a trace."""

    trace: Trace
    hops: Hops
    clocks: ClockAlignment
    graph: HBGraph
    # Per event: its logical operation (W3C trace) and time since the operation's root.
    operations: Operations


def link(trace: Trace, reference: str | None = None) -> Causality:
    """Match hops, align clocks (``reference``: see clock_domains.align) and build the graph.

    Raises UsageError only for a ``reference`` that names no process or is ambiguous.
    """
    hops = match(trace)
    edges = hop_edge_columns(hops)
    # Only facts bound offsets: an edge that might belong to another message (a reused
    # message id) could pull a whole domain's interval onto a wrong value.
    certain = edges.certain
    # An imported server span's end as its reply only places an offset the facts leave
    # open on one side (see align).
    hint = edges.hints
    clocks = align(
        trace,
        edges.src[certain],
        edges.dst[certain],
        reference,
        hints=(edges.src[hint], edges.dst[hint]),
    )
    graph = build(trace, hops)
    return Causality(trace, hops, clocks, graph, operations(trace, hops, clocks.adjusted))
