"""``happens_before(a, b)`` for queries: is there a causal path from event a to event b?

The relation is the one races are judged by (:mod:`willowisp.causality.reach`): program
order within each unit, the happens-before edges that are facts (confidence 1.0: an edge
resting on a reused message id is left out) and the edges between holds of a lock shared
across processes.

:class:`PairSearch` answers it by searching forward from a, per asked pair. It builds
nothing beyond two sorts of the edges, so a query that asks about a few pairs answers at
once; a pair costs at most a sweep over the edges reachable from a (sub-millisecond when
b is soon reached, a few milliseconds on a million events when the answer is "no").
``ReachIndex`` (``causality/reach.py``) answers pairs with a binary search each, but needs
the events that will be asked about before it is built, and a DuckDB scalar function
sees its pairs one row at a time; :func:`order_for` is where a query would switch to it.

PairSearch works on *chains* rather than events: a unit's events are totally ordered, so
"what a reaches" is, per unit, a suffix of that unit's events, which one number holds (the
earliest position reached). From a's position it takes every edge leaving a's chain at or
after it, lowers the reached position of each edge's target chain, and repeats for every
chain whose position was lowered, visiting only the newly reached range of its edges
(sorted by source chain and position). It stops as soon as b's chain is reached at or
before b. Events done by no unit (agent metadata) are ordered with nothing.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from willowisp.causality.link import Causality
from willowisp.causality.program_order import unit_order

I64 = npt.NDArray[np.int64]


class Order(Protocol):
    def happens_before(self, a: int, b: int) -> bool:
        """Does event index a happen before event index b (strictly: False for a == b)?"""
        ...


def _optional(module: str) -> Any:
    """A causality module other work provides, or None where this tree lacks it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def hb_edges(c: Causality) -> tuple[I64, I64]:
    """(src, dst) of the relation's cross-unit edges (see the module doc)."""
    g = c.graph
    keep = g.certain
    src, dst = [g.src[keep]], [g.dst[keep]]
    shared = _optional("willowisp.causality.shared_locks")
    if shared is not None:
        s, d = shared.shared_lock_edges(c.trace, c.clocks.domain_of_proc)
        src.append(np.asarray(s, np.int64))
        dst.append(np.asarray(d, np.int64))
    return np.concatenate(src).astype(np.int64), np.concatenate(dst).astype(np.int64)


def order_for(causality: Causality) -> Order:
    """What answers ``happens_before`` in queries (the one place to switch it)."""
    return PairSearch(causality)


class PairSearch:
    """Answers one pair at a time by searching forward from a (see the module doc)."""

    def __init__(self, causality: Causality) -> None:
        trace = causality.trace
        ev = trace.events
        n = len(ev)
        n_units = len(trace.units)
        order, ptr = unit_order(trace)
        # chain and position of every event; events of no unit get chains of their own.
        self._chain = np.empty(n, dtype=np.int64)
        self._pos = np.zeros(n, dtype=np.int64)
        if len(order):
            self._chain[order] = ev.unit[order]
            self._pos[order] = np.arange(len(order), dtype=np.int64) - ptr[ev.unit[order]]
        alone = np.flatnonzero(ev.unit < 0)
        self._chain[alone] = n_units + np.arange(len(alone), dtype=np.int64)
        self._chains = n_units + len(alone)
        src, dst = hb_edges(causality)
        ok = (src >= 0) & (dst >= 0)
        src, dst = src[ok], dst[ok]
        ok = (ev.unit[src] >= 0) & (ev.unit[dst] >= 0)
        src, dst = src[ok], dst[ok]
        src_chain = self._chain[src]
        by_src = np.lexsort((self._pos[src], src_chain))
        # Edges sorted by (source chain, source position); chain c's are rows
        # self._ptr[c]:self._ptr[c + 1].
        self._src_pos = self._pos[src][by_src]
        self._dst_chain = self._chain[dst][by_src]
        self._dst_pos = self._pos[dst][by_src]
        self._ptr = np.searchsorted(
            src_chain[by_src], np.arange(self._chains + 1, dtype=np.int64)
        ).astype(np.int64)

    def happens_before(self, a: int, b: int) -> bool:
        if a == b:
            return False
        ca, pa = int(self._chain[a]), int(self._pos[a])
        cb, pb = int(self._chain[b]), int(self._pos[b])
        if ca == cb:
            return pa < pb
        never = np.iinfo(np.int64).max
        # reached[c]: the earliest position of chain c known to follow a (never: none).
        reached = np.full(self._chains, never, dtype=np.int64)
        reached[ca] = pa
        # (chain, newly reached position, previously reached position) to expand.
        todo = [(ca, pa, never)]
        while todo:
            c, new, old = todo.pop()
            lo, hi = int(self._ptr[c]), int(self._ptr[c + 1])
            pos = self._src_pos[lo:hi]
            start = lo + int(np.searchsorted(pos, new, side="left"))
            stop = lo + int(np.searchsorted(pos, old, side="left")) if old != never else hi
            if start >= stop:
                continue
            targets = self._dst_chain[start:stop]
            at = self._dst_pos[start:stop]
            # The earliest position reached per target chain in this range.
            by = np.lexsort((at, targets))
            targets, at = targets[by], at[by]
            first = np.ones(len(targets), dtype=bool)
            first[1:] = targets[1:] != targets[:-1]
            for t, q in zip(targets[first].tolist(), at[first].tolist(), strict=True):
                before = int(reached[t])
                if q < before:
                    reached[t] = q
                    if t == cb and q <= pb:
                        return True
                    todo.append((t, q, before))
        return False
