"""Critical paths: where each logical operation's time went, walked over the causal graph.

An operation (a W3C trace, :mod:`willowisp.causality.operations`) starts at its root and
ends at its **end**: its latest event in adjusted time that is not a unit starting or
staying in a wait, and not in a consumer's idle tail (below). The critical path is found by
walking back from the end, never by comparing timestamps of unrelated events:

- **along program order** while the unit ran: the interval between two of its events is
  ``running`` (an asyncio task suspended without a recorded wait, ``unit.yield`` to
  ``unit.run``, is ``io``: it awaited a sleep, a socket or a future the agent does not name);
- **at the end of a wait** (the event that ended a ``unit.block``: ``lock.acquired``,
  ``queue.get``, ``rpc.response``, ``join.done``, ``unit.wake``, ``msg.recv``), through the
  happens-before edge that released it. The interval from the releaser's event to the
  waiter's next step is the wake-up: ``runnable`` inside a process (a thread waiting for the
  scheduler and the GIL; a task from its waker to its ``unit.run``), ``peer`` for a reply
  crossing processes, ``queue`` for a message. The wait before the release is explained by
  the releaser's own path, which the walk enters when the releaser works for the same
  operation, down to the moment the wait began, then returns to the waiter. A lock is never
  entered (the holder does other work: the wait is ``lock-blocked``, naming the holder), nor
  is a releaser of another operation (Go's rule: stop at contention, do not follow into
  another request);
- **at an arrival** that ended no wait (a request reaching its server, a message or a queue
  item reaching a consumer that was busy, a thread or process starting), through the edge to
  its sender: the interval is ``peer`` for a request's transit, ``queue`` for an item or a
  message waiting to be taken, ``runnable`` for a thread's start, ``running`` for a process's.

A wait with no releaser in the trace (a timeout, a sleep, a reply from a process without an
agent) is classified by its reason: ``lock-blocked`` (locks and other primitives), ``queue``
(a get, put or message wait), ``peer`` (a request), ``io`` (a sleep, I/O, a timed wait that
timed out). Finally the consumer behaviour that :mod:`willowisp.analysis.structural` found
(polls, batch windows, timers) turns the parts of ``queue`` and ``io`` intervals that lie in
its gaps into ``structural``: time spent because of the consumer's rhythm, not slowness.

The walk stops at the root. Every interval is clipped to the window it explains, so the
segments are contiguous and their durations add up to the operation's duration. A thread
waiting for the GIL while it runs cannot be told from running (no event marks it): that time
is ``running``. Times are adjusted (clock-aligned); an interval whose two ends are in
different clock domains carries the sum of the two domains' uncertainties.

**The consumer's idle tail.** A consumer's events belong to the message it received until
its next receive (operations rule 2), so its next poll would count as the end of the
previous message's operation. Events after the unit's first *idle* wait since its receive
(a wait for work -- a get, a message, a sleep, a timed wait -- that timed out or that
another operation ended) are not ends, unless they are on one of the operation's own hop
resources.

Cost: the per-event navigation arrays (previous event that needs a look, the wait each event
ends, its latest incoming edge) are built once with numpy; the walk is a Python loop over
the *marked* events on the path (waits, arrivals, task steps), never over every event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.analysis.naming import event_where, resource_name, stable_name
from willowisp.causality.graph import EdgeKind
from willowisp.causality.link import Causality
from willowisp.causality.operations import NO_OPERATION
from willowisp.causality.program_order import BOOKKEEPING, next_in_unit, unit_order
from willowisp.causality.waits import Waits, waits
from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K, Outcome, Reason

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

RUNNING = "running"
RUNNABLE = "runnable"
LOCK_BLOCKED = "lock-blocked"
IO = "io"
PEER = "peer"
QUEUE = "queue"
STRUCTURAL = "structural"
KINDS = (RUNNING, RUNNABLE, LOCK_BLOCKED, IO, PEER, QUEUE, STRUCTURAL)

# Per unit: sorted, non-overlapping (start, end) intervals in adjusted ns during which the
# unit's waits are explained by its own rhythm (see analysis/structural.py).
Gaps = Mapping[int, tuple[I64, I64]]

# Edges through which an event that ended no wait is still reached: something arrived.
ARRIVALS = (EdgeKind.REQUEST, EdgeKind.MESSAGE, EdgeKind.QUEUE, EdgeKind.SPAWN, EdgeKind.PROCESS)
_ARRIVAL_KIND: dict[int, str] = {
    EdgeKind.REQUEST: PEER,
    EdgeKind.MESSAGE: QUEUE,
    EdgeKind.QUEUE: QUEUE,
    EdgeKind.SPAWN: RUNNABLE,
    EdgeKind.PROCESS: RUNNING,
}
_EDGE_NAME = {k: k.name.lower() for k in EdgeKind}
# What a wait is, when nothing the operation did released it, by its block reason.
_WAIT_KIND: dict[int, str] = {
    Reason.ACQUIRE: LOCK_BLOCKED,
    Reason.ACQUIRE_SHARED: LOCK_BLOCKED,
    Reason.WAIT: LOCK_BLOCKED,
    Reason.JOIN: LOCK_BLOCKED,
    Reason.AWAIT: LOCK_BLOCKED,
    Reason.GET: QUEUE,
    Reason.PUT: QUEUE,
    Reason.MESSAGE: QUEUE,
    Reason.RPC: PEER,
    Reason.SLEEP: IO,
    Reason.IO: IO,
}
# Waits for work: when one times out or another operation ends it, the unit is idle.
_IDLE_REASONS = (Reason.GET, Reason.MESSAGE, Reason.SLEEP, Reason.WAIT, Reason.AWAIT)
_NOT_AN_END = np.concatenate([BOOKKEEPING, np.array([K.UNIT_BLOCK], dtype=np.uint8)])
STEP_LIMIT = 1_000_000  # walk steps per operation; only a damaged graph could need more
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class Segment:
    """One interval of a critical path, on the unit it is charged to.

    ``start_event``/``end_event`` are the events whose adjusted times bound it (the bound of
    a clipped interval is the event that defined the clip); ``at`` is the event that tells
    where in the program it happened (a wait's block, a receive, the end of a running
    stretch). ``other_unit`` is the unit on the other side: the lock's holder, the sender,
    the releaser. ``uncertainty_ns`` is 0 within a clock domain, the sum of the two domains'
    uncertainties across two (None: unbounded).
    """

    kind: str
    start_ns: int
    end_ns: int
    unit: int
    start_event: int
    end_event: int
    at: int
    resource: int = NO_INDEX
    edge: str = ""  # the happens-before edge crossed: "request", "reply", "lock", ...
    other_unit: int = NO_INDEX
    uncertainty_ns: int | None = 0

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class SegmentKey:
    """What identifies a segment across runs (for ``diff``): no ids, pids or times."""

    service: str
    unit: str  # unit kind and name with numbers folded: "thread:Thread-N (process_request_thread)"
    kind: str
    resource: str  # "lock state_lock", "rpc POST /order", "message recv orders", or ""
    where: str  # file.py:LINE of the segment's ``at`` event, or ""


@dataclass(frozen=True, slots=True)
class CriticalPath:
    """One operation's critical path: contiguous segments from the root (or from where the
    walk had to stop, ``complete`` False) to the end, in time order."""

    op: int
    trace_id: str
    root: int
    end: int
    start_ns: int  # the root's adjusted time
    end_ns: int
    segments: tuple[Segment, ...]
    complete: bool

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def totals(self) -> dict[str, int]:
        """ns per kind, every kind present (0 when absent), in KINDS order."""
        out = dict.fromkeys(KINDS, 0)
        for s in self.segments:
            out[s.kind] += s.duration_ns
        return out

    def keyed(self, trace: Trace) -> list[tuple[SegmentKey, Segment]]:
        """The segments with their stable keys, in time order (what ``diff`` compares)."""
        return [(segment_key(trace, s), s) for s in self.segments]


def segment_key(trace: Trace, s: Segment) -> SegmentKey:
    unit = trace.units[s.unit]
    service = trace.processes[unit.proc].service
    res = ""
    if s.resource >= 0:
        res = f"{trace.resources[s.resource].kind} {stable_name(trace, s.resource)}"
    return SegmentKey(
        service,
        f"{unit.kind}:{_DIGITS.sub('N', unit.name)}",
        s.kind,
        res,
        event_where(trace, s.at),
    )


@dataclass(frozen=True, slots=True)
class PathIndex:
    """Per-event navigation for the walk, built once per analysis (see the module doc)."""

    c: Causality
    adj: I64
    # The unit's previous event the walk must look at (a wait, an arrival, a task step, an
    # operation's root, the unit's first event); NO_INDEX for a unit's first event.
    prev_mark: I64
    block_of_end: I64  # the unit.block whose wait this event ended, NO_INDEX
    last_run: I64  # the unit's latest unit.run at or before this event, NO_INDEX
    in_src: I64  # the source of the incoming edge with the latest source, NO_INDEX
    in_kind: U8  # its EdgeKind (0: none)
    order: I64  # every unit's events in program order, unit after unit
    pos: I64  # per event: its position in ``order``
    task: list[bool]  # per unit: does it run in steps (an asyncio task)?
    domain_unc: list[int | None]  # per clock domain: its uncertainty (half-width)
    ends: I64  # per operation: its end event (NO_INDEX: no events)
    gaps: Gaps

    def duration_ns(self, o: int) -> int:
        root, end = int(self.c.operations.root[o]), int(self.ends[o])
        return int(self.adj[end] - self.adj[root]) if root >= 0 and end >= 0 else 0

    def durations(self) -> I64:
        """Per operation: end minus root, adjusted ns (0 without events)."""
        root, ends = self.c.operations.root, self.ends
        ok = (root >= 0) & (ends >= 0)
        out = np.zeros(len(root), dtype=np.int64)
        out[ok] = self.adj[ends[ok]] - self.adj[root[ok]]
        return out


def build_index(c: Causality, gaps: Gaps | None = None) -> PathIndex:
    """The navigation arrays over all events (numpy only; see the module doc)."""
    trace, ops, g = c.trace, c.operations, c.graph
    ev = trace.events
    n = len(ev)
    adj = c.clocks.adjusted
    order, ptr = unit_order(trace)
    unit_of = ev.unit[order].astype(np.int64)
    start_pos = ptr[unit_of] if len(order) else np.zeros(0, np.int64)
    pos = np.full(n, NO_INDEX, dtype=np.int64)
    pos[order] = np.arange(len(order), dtype=np.int64)

    w = waits(trace, next_in_unit(trace))
    block_of_end = np.full(n, NO_INDEX, dtype=np.int64)
    ok = w.end >= 0
    ok[ok] = ev.kind[w.end[ok]] != K.UNIT_BLOCK
    block_of_end[w.end[ok]] = w.block[ok]

    in_src = np.full(n, NO_INDEX, dtype=np.int64)
    in_kind = np.zeros(n, dtype=np.uint8)
    if len(g):
        o2 = np.lexsort((adj[g.src], g.dst))
        dst = g.dst[o2]
        last = np.ones(len(dst), dtype=bool)
        last[:-1] = dst[1:] != dst[:-1]
        in_src[dst[last]] = g.src[o2][last]
        in_kind[dst[last]] = g.kind[o2][last]

    kind = ev.kind
    marked = (block_of_end >= 0) | np.isin(in_kind, [int(k) for k in ARRIVALS])
    marked |= np.isin(kind, (K.UNIT_BLOCK, K.UNIT_RUN, K.UNIT_YIELD))
    marked[ops.root[ops.root >= 0]] = True
    first = ptr[:-1][ptr[1:] > ptr[:-1]]
    marked[order[first]] = True
    return PathIndex(
        c=c,
        adj=adj,
        prev_mark=_previous_where(n, order, start_pos, marked[order]),
        block_of_end=block_of_end,
        last_run=_latest_where(n, order, start_pos, kind[order] == K.UNIT_RUN),
        in_src=in_src,
        in_kind=in_kind,
        order=order,
        pos=pos,
        task=_task_units(trace),
        domain_unc=[0 if d.reference else d.uncertainty_ns for d in c.clocks.domains],
        ends=operation_ends(c, in_src, order, start_pos, w),
        gaps=gaps or {},
    )


def _previous_where(n: int, order: I64, start_pos: I64, flag: npt.NDArray[np.bool_]) -> I64:
    """Per event (of ``order``): the unit's latest flagged event strictly before it."""
    out = np.full(n, NO_INDEX, dtype=np.int64)
    if not len(order):
        return out
    at = np.arange(len(order), dtype=np.int64)
    latest = np.maximum.accumulate(np.where(flag, at, NO_INDEX))
    before = np.empty_like(latest)
    before[0] = NO_INDEX
    before[1:] = latest[:-1]
    ok = before >= start_pos
    out[order[ok]] = order[before[ok]]
    return out


def _latest_where(n: int, order: I64, start_pos: I64, flag: npt.NDArray[np.bool_]) -> I64:
    """Per event (of ``order``): the unit's latest flagged event at or before it."""
    out = np.full(n, NO_INDEX, dtype=np.int64)
    if not len(order):
        return out
    at = np.arange(len(order), dtype=np.int64)
    latest = np.maximum.accumulate(np.where(flag, at, NO_INDEX))
    ok = latest >= start_pos
    out[order[ok]] = order[latest[ok]]
    return out


def operation_ends(c: Causality, in_src: I64, order: I64, start_pos: I64, w: Waits) -> I64:
    """Per operation: its end event (see the module doc), or its root if nothing qualifies.

    ``in_src``, ``order``/``start_pos`` and ``w`` are build_index's: the latest incoming
    edge per event, program order with each position's unit start, the waits."""
    trace, ops = c.trace, c.operations
    block, end, reason = w.block, w.end, w.reason
    ev = trace.events
    op = ops.op
    n_ops = len(ops.trace_ids)
    out = np.full(n_ops, NO_INDEX, dtype=np.int64)
    if not n_ops:
        return out
    # Idle waits: a wait for work that timed out, or that another operation (or nothing
    # in the trace) ended.
    ended = end >= 0
    e = np.maximum(end, 0)
    timed_out = ended & (ev.kind[e] == K.UNIT_WAKE) & (ev.arg[e] == Outcome.TIMEOUT)
    releaser = np.where(ended, in_src[e], NO_INDEX)
    foreign = ~ended | ((releaser >= 0) & (op[np.maximum(releaser, 0)] != op[block]))
    idle = np.isin(reason, [int(r) for r in _IDLE_REASONS]) & (timed_out | foreign)
    idle_flag = np.zeros(len(ev), dtype=bool)
    idle_flag[block[idle]] = True
    recv_flag = ev.kind == K.MSG_RECV
    at = np.arange(len(order), dtype=np.int64)
    last_idle = np.maximum.accumulate(np.where(idle_flag[order], at, NO_INDEX))
    last_recv = np.maximum.accumulate(np.where(recv_flag[order], at, NO_INDEX))
    tail = np.zeros(len(ev), dtype=bool)
    tail[order] = (last_idle >= start_pos) & (last_idle > last_recv)
    # Events on a hop resource of their own operation always count (rule 1 of operations).
    own = np.zeros(len(ev), dtype=bool)
    has_res = np.flatnonzero((ev.res >= 0) & (op != NO_OPERATION))
    if len(has_res):
        ids = {t: i for i, t in enumerate(ops.trace_ids)}
        res_op = np.fromiter(
            (ids.get(r.trace_id, NO_OPERATION) for r in trace.resources),
            np.int64,
            len(trace.resources),
        )
        own[has_res] = res_op[ev.res[has_res]] == op[has_res]
    kind = ev.kind
    cand = (op != NO_OPERATION) & ~np.isin(kind, _NOT_AN_END) & (ev.unit >= 0)
    cand &= ~((kind == K.UNIT_WAKE) & (ev.arg != Outcome.OK))
    cand &= ~tail | own
    idx = np.flatnonzero(cand)
    if len(idx):
        # The latest candidate per operation (ties: the later row).
        srt = idx[np.lexsort((idx, c.clocks.adjusted[idx], op[idx]))]
        o = op[srt]
        last = np.ones(len(srt), dtype=bool)
        last[:-1] = o[1:] != o[:-1]
        out[o[last]] = srt[last]
    missing = (out < 0) & (ops.root >= 0)
    out[missing] = ops.root[missing]
    return out


class _Walk:
    """One backward walk (see the module doc). Segments are collected latest first."""

    def __init__(self, ix: PathIndex, o: int) -> None:
        self.ix = ix
        self.o = o
        ev = ix.c.trace.events
        self.unit, self.kind, self.arg, self.res = ev.unit, ev.kind, ev.arg, ev.res
        self.proc = ev.proc
        self.dom = ix.c.clocks.domain_of_proc
        self.op = ix.c.operations.op
        self.task = ix.task
        # Invariant: each segment in ``out`` starts where the one before it (a later one)
        # ends, and the cursor is where the last one starts; lo <= cursor throughout, and
        # only ``add`` moves the cursor, only backwards.
        self.out: list[Segment] = []
        self.cursor = 0  # adjusted ns: where the next (earlier) segment must end
        self.cursor_ev = NO_INDEX  # the event at the cursor
        self.lo = 0  # the current window's lower bound: the root's time, or a waiter's block
        self.lo_ev = NO_INDEX  # the event at lo

    def add(
        self,
        kind: str,
        start_ev: int,
        unit: int,
        at: int,
        *,
        resource: int = NO_INDEX,
        edge: str = "",
        other: int = NO_INDEX,
    ) -> None:
        """The interval from ``start_ev`` to the cursor, clipped to the window; moves the
        cursor back to its start."""
        t = int(self.ix.adj[start_ev])
        if t <= self.lo:
            t, start_ev = self.lo, self.lo_ev
        t = min(t, self.cursor)
        if t < self.cursor:
            self.out.append(
                Segment(
                    kind,
                    t,
                    self.cursor,
                    unit,
                    start_ev,
                    self.cursor_ev,
                    at,
                    resource,
                    edge,
                    other,
                    self.uncertainty(start_ev, self.cursor_ev),
                )
            )
        self.cursor, self.cursor_ev = t, start_ev

    def uncertainty(self, a: int, b: int) -> int | None:
        da, db = int(self.dom[self.proc[a]]), int(self.dom[self.proc[b]])
        if da == db:
            return 0
        ua, ub = self.ix.domain_unc[da], self.ix.domain_unc[db]
        return None if ua is None or ub is None else ua + ub

    def run(self, root: int, end: int) -> bool:
        """Walk from ``end`` back to ``root``; True if the root was reached."""
        ix = self.ix
        adj = ix.adj
        self.cursor, self.cursor_ev = int(adj[end]), end
        self.lo, self.lo_ev = int(adj[root]), root
        t_root = self.lo
        # Frames of entered releasers: (the waiter's block, its unit, the wait's kind,
        # the outer window's bound and its event).
        stack: list[tuple[int, int, str, int, int]] = []
        e = end
        for _ in range(STEP_LIMIT):
            if self.cursor <= self.lo:
                # Down to the start of the window: back to the waiter whose wait this
                # stretch explained, or, in the operation's own window, done.
                if not stack or self.lo <= t_root:
                    return True
                e, _, _, self.lo, self.lo_ev = stack.pop()
                continue
            if e == root:
                return True
            u = int(self.unit[e])
            b = int(ix.block_of_end[e])
            if b >= 0:
                e = self._wait(e, b, u, stack)
                continue
            r, k = int(ix.in_src[e]), int(ix.in_kind[e])
            if r >= 0 and k in _ARRIVAL_KIND and int(self.op[r]) == self.o:
                self.add(
                    _ARRIVAL_KIND[EdgeKind(k)],
                    r,
                    u,
                    e,
                    resource=int(self.res[e]),
                    edge=_EDGE_NAME[EdgeKind(k)],
                    other=int(self.unit[r]),
                )
                e = r
                continue
            p = int(ix.prev_mark[e])
            if p < 0:
                # The unit's first event, and nothing in this operation caused it.
                if not stack:
                    return False
                b, waiter, kind, _, _ = stack[-1]
                self.add(kind, self.lo_ev, waiter, b, resource=int(self.res[b]))
                continue
            # A task suspended with no recorded wait: told where it suspended.
            if self.kind[e] == K.UNIT_RUN and self.kind[p] == K.UNIT_YIELD:
                self.add(IO, p, u, p)
            else:
                self.add(RUNNING, p, u, e)
            e = p
        return False

    def _wait(self, e: int, b: int, u: int, stack: list[tuple[int, int, str, int, int]]) -> int:
        """Charge the wait that ``e`` ended (block ``b``); returns where to go on."""
        ix = self.ix
        adj = ix.adj
        s = e  # the event from which the unit ran again (a task: its unit.run)
        if self.task[u]:
            run = int(ix.last_run[e])
            if run >= 0 and ix.pos[run] > ix.pos[b]:
                s = run
        if s != e:
            self.add(RUNNING, s, u, e)
        r, k = int(ix.in_src[e]), int(ix.in_kind[e])
        res = int(self.res[b])
        reason = int(self.arg[b])
        outcome = int(self.arg[e]) if self.kind[e] == K.UNIT_WAKE else Outcome.OK
        waited = _WAIT_KIND.get(reason, IO) if outcome == Outcome.OK else _timed_out_kind(reason)
        if r >= 0 and adj[r] > adj[b]:
            edge = EdgeKind(k)
            crosses = int(self.proc[r]) != int(self.proc[e])
            if edge == EdgeKind.MESSAGE:
                wake = QUEUE
            elif crosses:
                wake = PEER
            else:
                wake = RUNNABLE
            other = int(self.unit[r])
            self.add(wake, r, u, e, resource=int(self.res[e]), edge=_EDGE_NAME[edge], other=other)
            if edge != EdgeKind.LOCK and int(self.op[r]) == self.o:
                stack.append((b, u, waited, self.lo, self.lo_ev))
                if adj[b] > self.lo:
                    self.lo, self.lo_ev = int(adj[b]), b
                return r
            self.add(waited, b, u, b, resource=res, edge=_EDGE_NAME[edge], other=other)
            return b
        self.add(waited, b, u, b, resource=res)
        return b


def _timed_out_kind(reason: int) -> str:
    """A wait that timed out (or failed): a lock or a queue wait stays what it was; any
    other timed wait was in effect a sleep."""
    kind = _WAIT_KIND.get(reason, IO)
    return kind if reason in _KEPT_ON_TIMEOUT else IO


_KEPT_ON_TIMEOUT = (
    Reason.ACQUIRE,
    Reason.ACQUIRE_SHARED,
    Reason.GET,
    Reason.PUT,
    Reason.MESSAGE,
    Reason.RPC,
)


def _task_units(trace: Trace) -> list[bool]:
    """Per unit: does it run in steps (unit.run / unit.yield), like an asyncio task?"""
    ev = trace.events
    steps = np.zeros(len(trace.units), dtype=bool)
    idx = np.flatnonzero((ev.kind == K.UNIT_RUN) & (ev.unit >= 0))
    steps[ev.unit[idx]] = True
    return [bool(x) or u.kind == "task" for x, u in zip(steps.tolist(), trace.units, strict=True)]


def critical_path(ix: PathIndex, o: int) -> CriticalPath | None:
    """The critical path of operation ``o`` (None if it has no events)."""
    ops = ix.c.operations
    root, end = int(ops.root[o]), int(ix.ends[o])
    if root < 0 or end < 0:
        return None
    walk = _Walk(ix, o)
    complete = walk.run(root, end) if end != root else True
    segments = _merge(_structural(list(reversed(walk.out)), ix.gaps))
    return CriticalPath(
        o,
        ops.trace_ids[o],
        root,
        end,
        int(ix.adj[root]),
        int(ix.adj[end]),
        tuple(segments),
        complete,
    )


def critical_paths(
    c: Causality, ops: Iterable[int] | None = None, gaps: Gaps | None = None
) -> list[CriticalPath]:
    """Critical paths of the given operations (all when None), in that order. ``gaps``:
    the consumer rhythms' gaps (``structural.detect(c).gaps``), without which no interval
    is ``structural``; an analysis has both ready in ``Analysis.timing``."""
    ix = build_index(c, gaps)
    wanted = range(len(c.operations.trace_ids)) if ops is None else ops
    return [p for o in wanted if (p := critical_path(ix, o)) is not None]


def _structural(segments: list[Segment], gaps: Gaps) -> list[Segment]:
    """Split queue and io segments of units with a rhythm where they lie in its gaps."""
    if not gaps:
        return segments
    out: list[Segment] = []
    for s in segments:
        g = gaps.get(s.unit) if s.kind in (QUEUE, IO) else None
        if g is None:
            out.append(s)
            continue
        starts, ends = g
        t = s.start_ns
        lo = max(int(np.searchsorted(ends, s.start_ns, side="right")), 0)
        hi = int(np.searchsorted(starts, s.end_ns, side="left"))
        for gap_start, gap_end in zip(starts[lo:hi].tolist(), ends[lo:hi].tolist(), strict=True):
            a, z = max(gap_start, s.start_ns), min(gap_end, s.end_ns)
            if z <= a:
                continue
            if a > t:
                out.append(_part(s, s.kind, t, a))
            out.append(_part(s, STRUCTURAL, a, z))
            t = z
        if t < s.end_ns:
            out.append(_part(s, s.kind, t, s.end_ns))
    return out


def _part(s: Segment, kind: str, start: int, end: int) -> Segment:
    """A piece of ``s``. An inner bound is a time of the unit the segment is charged to
    (its gap), so only the piece that keeps the original start keeps its uncertainty."""
    first = start == s.start_ns
    return Segment(
        kind,
        start,
        end,
        s.unit,
        s.start_event if first else s.at,
        s.end_event if end == s.end_ns else s.at,
        s.at,
        s.resource,
        s.edge,
        s.other_unit,
        s.uncertainty_ns if first else 0,
    )


def _merge(segments: Sequence[Segment]) -> list[Segment]:
    """Adjacent running stretches of one unit are one segment (a process's start, which
    crossed an edge, stays apart)."""
    out: list[Segment] = []
    for s in segments:
        if out:
            p = out[-1]
            if p.kind == s.kind == RUNNING and p.unit == s.unit and not (p.edge or s.edge):
                out[-1] = Segment(
                    RUNNING,
                    p.start_ns,
                    s.end_ns,
                    p.unit,
                    p.start_event,
                    s.end_event,
                    s.at,
                    uncertainty_ns=0,
                )
                continue
        out.append(s)
    return out


# -- the document's ``critical_paths`` section -------------------------------------------

SHOWN_PATHS = 5  # the slowest operations whose paths the document gives
SHOWN_SEGMENTS = 200  # per path; the rest are counted (totals always cover every segment)


def slowest(ix: PathIndex, limit: int = SHOWN_PATHS) -> list[CriticalPath]:
    """The critical paths of the ``limit`` slowest operations (duration, then trace id).

    Operations rooted at a ``proc.spawn`` are a child process's whole life, not a request
    or a message: they are left out of the ranking (``critical_paths`` still walks them).
    """
    ops = ix.c.operations
    kind = ix.c.trace.events.kind
    dur = ix.durations()
    ok = (ops.root >= 0) & (ix.ends >= 0)
    ok[ok] = kind[ops.root[ok]] != K.PROC_SPAWN
    cand = np.flatnonzero(ok)
    ranked = sorted(cand.tolist(), key=lambda o: (-int(dur[o]), ops.trace_ids[o]))[:limit]
    return [p for o in ranked if (p := critical_path(ix, o)) is not None]


def ranked_operations(ix: PathIndex) -> int:
    """How many operations the ranking of :func:`slowest` considered."""
    ops = ix.c.operations
    ok = (ops.root >= 0) & (ix.ends >= 0)
    ok[ok] = ix.c.trace.events.kind[ops.root[ok]] != K.PROC_SPAWN
    return int(np.count_nonzero(ok))


def path_json(c: Causality, p: CriticalPath) -> dict[str, Any]:
    """One path as the document shows it (times in adjusted ns; ``at_ns`` since the root)."""
    trace = c.trace
    segs = p.segments
    shown = segs if len(segs) <= SHOWN_SEGMENTS else _keep_longest(segs, SHOWN_SEGMENTS)
    # Every process the path touches: the units it is charged to and both ends of each
    # interval (a request's transit starts in the caller).
    ev_proc = trace.events.proc
    seen = [int(ev_proc[p.root])]
    for s in segs:
        for e in (s.start_event, s.end_event):
            if e >= 0:
                seen.append(int(ev_proc[e]))
        seen.append(trace.units[s.unit].proc)
    procs = list(dict.fromkeys(seen))  # in the order the path reaches them
    return {
        "trace_id": p.trace_id,
        "root": str(trace.event_id(p.root)),
        "end": str(trace.event_id(p.end)),
        "duration_ns": p.duration_ns,
        "complete": p.complete,
        "services": list(dict.fromkeys(trace.processes[x].service for x in procs)),
        "processes": [trace.processes[x].id for x in procs],
        "totals_ns": p.totals(),
        "segments": [_segment_json(c, p, s) for s in shown],
        "segments_omitted": len(segs) - len(shown),
    }


def _keep_longest(segs: Sequence[Segment], n: int) -> list[Segment]:
    keep = sorted(range(len(segs)), key=lambda i: -segs[i].duration_ns)[:n]
    return [segs[i] for i in sorted(keep)]


def _segment_json(c: Causality, p: CriticalPath, s: Segment) -> dict[str, Any]:
    trace = c.trace
    unit = trace.units[s.unit]
    proc = trace.processes[unit.proc]
    resource = None
    if s.resource >= 0:
        r = trace.resources[s.resource]
        where = trace.locations[r.loc].where() if r.loc >= 0 else ""
        resource = {"kind": r.kind, "name": resource_name(trace, s.resource), "where": where}
    other = None
    if s.other_unit >= 0:
        o = trace.units[s.other_unit]
        other = {
            "id": str(trace.unit_id(s.other_unit)),
            "name": o.name,
            "service": trace.processes[o.proc].service,
        }
    return {
        "kind": s.kind,
        "at_ns": s.start_ns - p.start_ns,
        "start_ns": s.start_ns,
        "end_ns": s.end_ns,
        "duration_ns": s.duration_ns,
        "uncertainty_ns": s.uncertainty_ns,
        "unit": {"id": str(trace.unit_id(s.unit)), "kind": unit.kind, "name": unit.name},
        "process": proc.id,
        "service": proc.service,
        "runtime": proc.runtime,
        "resource": resource,
        "edge": s.edge or None,
        "other_unit": other,
        "where": event_where(trace, s.at) or None,
    }


def section(ix: PathIndex, paths: Sequence[CriticalPath]) -> dict[str, Any]:
    """The document's ``critical_paths``: how many operations, the slowest ones' paths."""
    return {
        "operations": ranked_operations(ix),
        "kinds": list(KINDS),
        "paths": [path_json(ix.c, p) for p in paths],
    }
