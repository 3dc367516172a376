"""Where the exports draw spans: as slices nested by parent, on their thread's or service's track.

A unit of kind ``span`` (an imported OTLP, Jaeger, Zipkin or Chrome span) is not a thread: it
is an interval of work *on* something. A viewer user expects it as a slice, so the exports
draw it on its **host** track — the nearest ancestor that is not a span (the thread a Chrome
slice was on: the Chrome importer makes each slice's unit a child of the slice enclosing it,
and the outermost one a child of its thread's unit), or, for a span with no such ancestor
(an OTLP root span), one ``spans`` track per process (service). Giving each span its own
track instead made a 6-thread Chrome trace 668 tracks of two instants each.

Slices on a track are a stack, so :func:`place` puts each slice on the first lane of its
host where it nests *under its parent*: a child span only directly inside its parent span,
a root span only where no span is open (two concurrent requests of one service are side by
side, not one inside the other), a wait of a span inside that span, and a wait or hold of a
thread (``ANY``) wherever it nests in time, as before. A slice that fits no lane opens a
new one; lane 0 is the host track itself, the others are drawn as its "overlap" tracks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from willowisp.causality.program_order import first_per_unit
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

SPAN = "span"
ANY = -1  # nests wherever it fits in time (waits and holds of threads, tasks, ...)
ROOT = -2  # nests only where no span is open (a span with no parent span)
PROCESS = -1  # host of a span with no non-span ancestor: its process' ``spans`` track


@dataclass(frozen=True, slots=True)
class Spans:
    """Per unit: its host unit (itself if not a span, PROCESS if its process' track), the
    parent span it nests under (ROOT if none; ANY for non-spans), its depth among spans, and
    the event indices of its first ``unit.start`` and ``unit.end`` (-1 when missing)."""

    host: list[int]
    under: list[int]
    depth: list[int]
    start: list[int]
    end: list[int]

    def is_slice(self, u: int) -> bool:
        """Is unit ``u`` drawn as a slice (a span that started) rather than as a track?"""
        return self.under[u] != ANY and self.start[u] >= 0


def spans(trace: Trace) -> Spans:
    """Hosts, parents and bounds of every unit's span (see :class:`Spans`)."""
    units = trace.units
    n = len(units)
    host = list(range(n))
    under = [ANY] * n
    depth = [0] * n
    # Parents come before children in the importers' numbering, but nothing here relies
    # on it: each chain is walked once and memoised, and a cycle (malformed input) stops.
    done = [False] * n
    for u in range(n):
        chain: list[int] = []
        v = u
        while 0 <= v < n and not done[v] and units[v].kind == SPAN and v not in chain:
            chain.append(v)
            v = int(units[v].parent)
        for w in reversed(chain):
            p = int(units[w].parent)
            # a parent in another process cannot hold the slice: the span is a root then
            here = 0 <= p < n and units[p].proc == units[w].proc
            if here and units[p].kind == SPAN and done[p]:
                host[w], under[w], depth[w] = host[p], p, depth[p] + 1
            elif here and units[p].kind != SPAN:
                host[w], under[w] = p, ROOT
            else:
                host[w], under[w] = PROCESS, ROOT
            done[w] = True
        done[u] = True
    start = first_per_unit(trace, K.UNIT_START).tolist()
    end = first_per_unit(trace, K.UNIT_END).tolist()
    return Spans(host, under, depth, start, end)


@dataclass(frozen=True, slots=True)
class Item:
    """A slice to place: its times, the span it is (-1 if none) and what it nests under."""

    start: int
    end: int
    node: int
    under: int
    depth: int


@dataclass(slots=True)
class Lanes:
    """The placement: a lane per item (input order) and, per lane, its begins and ends in
    drawing order as (time, item index, is_begin)."""

    lane: list[int] = field(default_factory=list)
    order: list[list[tuple[int, int, bool]]] = field(default_factory=list)


def _fits(stack: list[tuple[int, int]], item: Item, under: int) -> bool:
    if stack and item.end > stack[-1][0]:
        return False  # it would end after the innermost open slice: no nesting
    if under == ANY:
        return True
    open_span = next((node for _, node in reversed(stack) if node >= 0), ROOT)
    return open_span == under


def place(items: Sequence[Item]) -> Lanes:
    """Each item on the first lane where it nests (see the module doc); lanes are stacks of
    open (end, node), closed lazily when a later item starts at or after their end.

    A span that nests in no lane under its parent (it outlives it, as a Chrome async slice
    may, or a sibling holds its parent's lane) goes where a root span would: its parent is
    in its annotations, and a lane that empties is reused rather than a new one opened for
    every such span.
    """
    out = Lanes(lane=[0] * len(items))
    stacks: list[list[tuple[int, int]]] = []
    # Outer first; at equal bounds a parent before its children, and a span's wait before
    # its child spans (a parent waiting for a child then holds the child's slice).
    ranked = sorted(range(len(items)), key=lambda i: _rank(items[i]))
    for i in ranked:
        s = items[i]
        k = _lane(stacks, out, s, s.under)
        if k < 0 and s.under >= 0:
            k = _lane(stacks, out, s, ROOT)
        if k < 0:
            k = len(stacks)
            stacks.append([])
            out.order.append([])
        stacks[k].append((s.end, s.node))
        out.lane[i] = k
        out.order[k].append((s.start, i, True))
    for k, stack in enumerate(stacks):
        while stack:
            out.order[k].append((stack.pop()[0], -1, False))
    return out


def _rank(item: Item) -> tuple[int, int, int, bool]:
    return item.start, -item.end, item.depth, item.node >= 0


def _lane(stacks: list[list[tuple[int, int]]], out: Lanes, item: Item, under: int) -> int:
    """The first lane where ``item`` nests under ``under``, -1 if none; closes what ended."""
    for k, stack in enumerate(stacks):
        while stack and stack[-1][0] <= item.start and not _keeps_open(stack, item):
            out.order[k].append((stack.pop()[0], -1, False))
        if _fits(stack, item, under):
            return k
    return -1


def _keeps_open(stack: list[tuple[int, int]], item: Item) -> bool:
    """A span stays open for a child that starts at its very end (a zero-length Chrome
    instant inside a zero-length one): only a later item that is not its child closes it."""
    end, node = stack[-1]
    return node >= 0 and item.under == node and item.end <= end
