"""Linking a loaded trace: hops, clock alignment and the happens-before graph, in that order.

Hops come first because their edges (requests, replies, spawns and messages, those with
confidence 1.0 only) are the only evidence clock alignment uses; the graph
comes last and includes the hop edges. Everything here is computed once per analysis and
shared by every analysis module.
"""

from __future__ import annotations

from dataclasses import dataclass

from willowisp.causality.clock_domains import ClockAlignment, align
from willowisp.causality.graph import HBGraph, build
from willowisp.causality.hops import Hops, hop_edge_columns, match
from willowisp.ingest.trace import Trace


@dataclass(frozen=True, slots=True)
class Causality:
    """What the causality layer knows about a trace."""

    trace: Trace
    hops: Hops
    clocks: ClockAlignment
    graph: HBGraph


def link(trace: Trace, reference: str | None = None) -> Causality:
    """Match hops, align clocks (``reference``: see clock_domains.align) and build the graph.

    Raises UsageError only for a ``reference`` that names no process or is ambiguous.
    """
    hops = match(trace)
    edges = hop_edge_columns(hops)
    # Only facts bound offsets: an edge that might belong to another message (a reused
    # message id) could pull a whole domain's interval onto a wrong value.
    certain = edges.certain
    clocks = align(trace, edges.src[certain], edges.dst[certain], reference)
    return Causality(trace, hops, clocks, build(trace, hops))
