"""What-if: re-simulate a recording with delays added (``replay --delay``).

This is a timed re-simulation of **one** schedule, not a proof over all interleavings: it
answers "had this been 50 ms slower, what would this run have done", keeping everything the
recording shows to be necessary and re-deciding only what timing decided.

**Kept (causally necessary).** Each unit's program order, with the recorded time between
its consecutive events (its own work); spawns, joins, notifications, requests, replies,
process starts and messages. A spawned process's first events (a runtime records its main
thread's ``unit.start`` before ``proc.start``) depend on the spawn too: nothing in a
process precedes its spawn. An event with such an edge into it happens at the later of its
unit's previous event plus its own time and the edge's source plus the edge's transit.

**Slack is not latency.** Which of the two decided an event's recorded time is read from the
recording: the edge did when its source came after the unit's previous event (the unit was
waiting for it), or when it brought a request or message to a unit born after it was sent (a
handler started for it). Then the unit's time before the event was waiting, not work (0 in
the simulation, so the wait grows or shrinks with the source), and the edge's transit is its
recorded latency (a wire, a wake-up). Otherwise the unit's previous event decided: its own
time is kept, and the edge's transit is 0, because the time from the source to the event was
slack (a thread joined 60 ms after it ended): a later source moves the event only by what
exceeds that slack. Keeping the whole recorded gap after the later of the two would add
every delay of a finished thread to its join. A request, a reply or a message keeps its
recorded transit even then: what the receiver did meanwhile may have been handling it
through steps no agent records (an accept loop, a dispatcher thread handing the request to a
worker, a parked pool thread), and taking that transit as slack let a delayed request arrive
the instant it was sent, so delaying a call made it faster. The cost: a receiver that really
was busy with something else absorbs none of a delay (the answer errs late, never early). A
wait that no recorded event ended (a sleep, a timeout, a wake-up whose cause was not
recorded) keeps its recorded length: nothing in the simulation could end it sooner or later.
Treating such a wait as "ended at once" would move events earlier with no delay at all and
invent reorderings the recording's own order rules out.

**Re-decided (what timing chose).** Who gets an owned lock (lock, rlock, rwlock, monitor)
and when: a unit asks for it where it asked in the recording (its block, or its acquire
when uncontended); a release wakes the waiter the recording served first (readers of an
rwlock together), which tries again after its recorded wake-up latency (from the later of
its block and the release that handed it the lock, to its acquire); a unit that asks while
the lock is free meanwhile takes it, as a non-fair lock lets it, and the woken one waits
again. Which item a queue get takes: a put hands its item to the waiting get the recording
served first, after that get's recorded latency. Priorities and latencies come from the
recording, so with no delay every grant goes where it went and every event keeps its time;
only a delay changes an order. Hence the invariant tests/replay checks: with a positive
delay no event happens earlier than recorded unless a re-decided grant or item made it
(``Outcome.redecided`` and what follows from them); with a zero delay every event keeps
its time. The cost: a lock's real fairness policy is not modelled,
only the order it produced in this run.

**Reported.** The makespan; each operation's end-to-end (``analyze``'s operations: from its
root to the event that ended it in the recording), since a server idle until the program
stops it sets the run's length whatever its requests do; the new critical path (from the
last event back along the dependency that decided each time, the recording's on a tie, to an
event nothing recorded caused: the run's root when the spawns and hops that started each
process were recorded); pairs of conflicting operations that now run in the other order —
two units' accesses to the same data, at least one a write (a race the delay exposes), the
order two units got a lock in (also a waiter the recording served that never gets it now),
and queue gets that took another put's item; and a wait cycle if the simulated run cannot
finish (a deadlock the delay causes, or one the recording already had). When the run's end
is a unit that only idles out its recorded life (a server's main thread until the process is
stopped), the makespan cannot move and its path says nothing: ``idle_end`` names that unit
and ``op_path`` is the critical path of the operation that changed most instead.
``whatif_report`` renders it as JSON and text.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from willowisp.analysis import critical_path as _cp
from willowisp.analysis.engine import Analysis
from willowisp.analysis.naming import resource_name
from willowisp.causality.graph import EdgeKind
from willowisp.causality.program_order import BOOKKEEPING
from willowisp.causality.waits import OWNED_LOCKS, holds, waits
from willowisp.model.spec import K
from willowisp.replay.targets import Resolved

I64 = npt.NDArray[np.int64]
UNSET = np.iinfo(np.int64).min
SMALL_BUCKET = 200  # data accesses per piece of data compared pairwise; above: neighbours

_COMPLETE, _REQUEST, _RETRY = 0, 1, 2  # at equal times: releases before asks
# Edges that carry something over a wire or a mailbox: their recorded transit is kept even
# when the receiver's own chain came last (see _transit)
_ARRIVALS = frozenset({int(EdgeKind.REQUEST), int(EdgeKind.REPLY), int(EdgeKind.MESSAGE)})


@dataclass(frozen=True, slots=True)
class OperationTime:
    """One logical operation's end-to-end, recorded and simulated: from its root to the
    event that ended it in the recording (``analyze``'s operations and ends). ``simulated``
    is None when the simulated run never reached one of the two."""

    op: int
    trace_id: str
    root: int
    end: int
    recorded: int
    simulated: int | None

    @property
    def change(self) -> int | None:
        return None if self.simulated is None else self.simulated - self.recorded


@dataclass
class Outcome:
    """What the simulation found (see the module doc)."""

    sim: I64  # per event: simulated time, UNSET where it never happened
    bind: I64  # per event: the dependency that set its simulated time (-1: none)
    makespan_recorded: int
    makespan: int
    start: int  # simulated time of the run's first event (the makespan's zero)
    path: list[int]  # critical path, events from first to last
    lock_flips: list[tuple[int, int]]  # (earlier-now, later-now) acquire events
    race_flips: list[tuple[int, int]]  # conflicting accesses now in the other order
    cycle: list[tuple[int, int, int]]  # (waiting unit, resource or -1, unit it waits for)
    stuck_units: list[int]
    matched: list[str] = field(default_factory=list)
    # every operation analyze ranks, those that changed first (largest change first)
    operations: list[OperationTime] = field(default_factory=list)
    # arbitrated events the simulation decided differently: a lock grant after another
    # grant than recorded (or never), a queue get that took another put's item (or none)
    redecided: set[int] = field(default_factory=set)
    never_granted: list[tuple[int, int]] = field(default_factory=list)  # (granted now, waiter)
    items_flipped: list[tuple[int, int]] = field(default_factory=list)  # (get, put it took)
    idle_end: int = -1  # unit whose idle life sets the run's end (-1: not so)
    op_path: list[int] = field(default_factory=list)  # most-changed operation's path
    op_path_trace: str = ""


class _Sim:
    """The event-driven simulation. Built once from the analysis, run once.

    Invariant: with no delay every event happens at exactly its recorded (adjusted) time
    and every lock and queue hand-off goes to the unit the recording gave it to: whatever
    the simulation re-decides, it decides from the recording's own times, so only a delay
    can change an order (tests/replay checks this on a real polyglot run).
    """

    def __init__(self, a: Analysis, delays: Resolved) -> None:
        self.a = a
        trace = a.trace
        ev = trace.events
        n = len(ev)
        self.n = n
        self.t = a.causality.clocks.adjusted.astype(np.int64)
        self.unit = ev.unit
        self.proc = ev.proc
        self.kind = ev.kind
        self.res = ev.res
        self.arg = ev.arg
        # program order: the next event of the same unit
        rows = np.flatnonzero(ev.unit >= 0)
        by_unit = rows[np.lexsort((rows, ev.unit[rows]))]
        self.by_unit = by_unit  # every unit's events in program order, unit after unit
        self.prev = np.full(n, -1, dtype=np.int64)
        self.next = np.full(n, -1, dtype=np.int64)
        same = ev.unit[by_unit][1:] == ev.unit[by_unit][:-1]
        self.prev[by_unit[1:][same]] = by_unit[:-1][same]
        self.next[by_unit[:-1][same]] = by_unit[1:][same]
        self.owned = np.isin(trace.resource_kind, OWNED_LOCKS) if trace.resources else None
        kinds = trace.resource_kind if trace.resources else np.zeros(0, dtype=str)
        self.rlock = kinds == "rlock"
        self.rwlock = kinds == "rwlock"
        self.arbitrated = self._arbitrated_events()
        # fixed edges: every edge but the lock hand-offs and queue items that the simulation
        # decides again (a semaphore's or condition's hand-off stays as recorded)
        g = a.causality.graph
        redecided = np.isin(g.kind, [int(EdgeKind.LOCK), int(EdgeKind.QUEUE)])
        redecided &= self.arbitrated[g.dst]
        # what handed each re-decided event its lock or item in the recording (for its lag)
        self.rec_src = dict(zip(g.dst[redecided].tolist(), g.src[redecided].tolist(), strict=True))
        self.e_src, self.e_dst, self.e_kind = self._with_process_roots(
            g.src[~redecided], g.dst[~redecided], g.kind[~redecided]
        )
        self.out_edges: dict[int, list[int]] = {}
        self.deps = np.zeros(n, dtype=np.int64)  # fixed dependencies not yet done
        for k, (s, d) in enumerate(zip(self.e_src.tolist(), self.e_dst.tolist(), strict=True)):
            self.out_edges.setdefault(s, []).append(k)
            self.deps[d] += 1
        self.deps[self.prev >= 0] += 1
        self.binding = self._binding_edges()
        w = waits(trace)
        # event that ended a wait -> its block (for a lock or item waiter's wake-up latency)
        self.wait_block = dict(zip(w.end.tolist(), w.block.tolist(), strict=True))
        self.wait_block.pop(-1, None)
        self.open_blocks = [int(b) for b, e in zip(w.block, w.end, strict=True) if e < 0]
        self.before = delays.before
        self.on_edge_into = delays.on_edge_into
        # state
        self.ready = np.full(n, UNSET, dtype=np.int64)  # max over satisfied deps so far
        self.bind = np.full(n, -1, dtype=np.int64)  # the dependency that set ``ready``
        self.sim = np.full(n, UNSET, dtype=np.int64)
        self.heap: list[tuple[int, int, int, int]] = []
        self.seq = 0
        self.holders: dict[int, dict[int, int]] = {}  # lock -> unit -> 1 (or -1 shared)
        # Invariant: a waiter is in exactly one of lock_waiters (asleep) or woken_by (a
        # retry is scheduled); heaps keyed by the recorded time it got the lock or item
        self.lock_waiters: dict[int, list[tuple[int, int]]] = {}
        self.woken_by: dict[int, int] = {}  # waiter -> the release that woke it
        self.items: dict[int, deque[int]] = {}  # queue -> puts whose items wait, in order
        self.took: dict[int, int] = {}  # get -> the put whose item it took
        self.queue_waiters: dict[int, list[tuple[int, int]]] = {}
        self.grant_order: dict[int, list[int]] = {}

    def _arbitrated_events(self) -> npt.NDArray[np.bool_]:
        """Events whose time the simulation decides: the outermost acquire of an owned
        lock, and a queue get that takes an item."""
        n = len(self.kind)
        if self.owned is None:
            return np.zeros(n, dtype=bool)
        r = np.maximum(self.res, 0)
        on = self.res >= 0
        acq = (self.kind == K.LOCK_ACQUIRED) & on & self.owned[r]
        acq &= ~(self.rlock[r] & (self.arg > 1))  # reentrant: no wait
        get = (self.kind == K.QUEUE_GET) & on & (self.arg != 0)
        out: npt.NDArray[np.bool_] = acq | get
        return out

    def _binding_edges(self) -> I64:
        """Per event: the fixed incoming edge that decided its recorded time, -1 if its own
        unit's previous event did.

        An edge decided it when the unit had to wait for it: its source came after the
        unit's previous meaningful event (or the unit has none; a garbage collection or a
        task's resumption in between is part of receiving it, not work it was busy with),
        or it brought a request or message to a unit that came to be after it was sent (a
        handler started for it). Of several, the one with the latest source. An edge whose
        source came first (a join of a thread that had already ended, a reply that was
        waiting in the socket) decided nothing: the time between its source and its target
        is slack, not a latency to keep."""
        out = np.full(self.n, -1, dtype=np.int64)
        if not len(self.e_dst):
            return out
        src_t, dst = self.t[self.e_src], self.e_dst
        p = self._previous_meaningful()[dst]
        waited = (p < 0) | (src_t > self.t[np.maximum(p, 0)])
        first = np.flatnonzero((self.prev < 0) & (self.unit >= 0))
        born = np.zeros(len(self.a.trace.units), dtype=np.int64)
        born[self.unit[first]] = self.t[first]
        u = self.unit[dst]
        arrival = np.isin(self.e_kind, [int(EdgeKind.REQUEST), int(EdgeKind.MESSAGE)])
        waited |= arrival & (u >= 0) & (born[np.maximum(u, 0)] >= src_t)
        k = np.flatnonzero(waited)
        # per target, the waited-for edge with the latest source (ties: the first edge)
        order = k[np.lexsort((-k, src_t[k], dst[k]))]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = dst[order][1:] != dst[order][:-1]
        out[dst[order[last]]] = order[last]
        return out

    def _previous_meaningful(self) -> I64:
        """Per event: its unit's latest earlier event that is not bookkeeping (a GC, a
        task's run or yield, an agent's own record), -1 if none."""
        order = self.by_unit
        keep = ~np.isin(self.kind[order], BOOKKEEPING)
        at = np.arange(len(order), dtype=np.int64)
        latest = np.maximum.accumulate(np.where(keep, at, -1))
        before = np.concatenate([np.array([-1], dtype=np.int64), latest[:-1]])
        # a unit's own first position: what lies before it belongs to other units
        first = np.zeros(len(order), dtype=np.int64)
        if len(order):
            starts = np.flatnonzero(np.r_[True, self.unit[order][1:] != self.unit[order][:-1]])
            first[starts] = starts
            first = np.maximum.accumulate(first)
        out = np.full(self.n, -1, dtype=np.int64)
        ok = before >= first
        out[order[ok]] = order[before[ok]]
        return out

    def _with_process_roots(
        self, src: I64, dst: I64, kind: npt.NDArray[np.uint8]
    ) -> tuple[I64, I64, npt.NDArray[np.uint8]]:
        """Add, for each process spawn, an edge to every unit of the child that nothing else
        starts (its main thread's ``unit.start`` comes before ``proc.start``): nothing in a
        process happens before it was spawned, and the critical path can walk back through
        the spawn to the run's root."""
        spawn = np.flatnonzero(kind == int(EdgeKind.PROCESS))
        if not len(spawn):
            return src, dst, kind
        has_in = np.zeros(len(self.kind), dtype=bool)
        has_in[dst] = True
        roots = np.flatnonzero((self.unit >= 0) & (self.prev < 0) & ~has_in)
        add_s, add_d = [], []
        for s, d in zip(src[spawn].tolist(), dst[spawn].tolist(), strict=True):
            mine = roots[(self.proc[roots] == self.proc[d]) & (self.t[roots] >= self.t[s])]
            add_s += [s] * len(mine)
            add_d += mine.tolist()
        return (
            np.concatenate([src, np.array(add_s, dtype=np.int64)]),
            np.concatenate([dst, np.array(add_d, dtype=np.int64)]),
            np.concatenate([kind, np.full(len(add_d), int(EdgeKind.PROCESS), dtype=np.uint8)]),
        )

    # -- weights -------------------------------------------------------------------------

    def _own_work(self, i: int) -> int:
        """ns of the unit's own time before event i: 0 when it was waiting for something
        the simulation decides (the fixed edge that decided its time, a lock, an item);
        otherwise the recorded gap. A wait nothing recorded ended (a sleep, a timeout, a
        wake-up whose cause was not recorded) keeps its recorded length: the simulation
        has no reason to end it earlier or later. So does a wait whose edge's source came
        before the wait began (a join of an ended thread): the edge decided nothing."""
        p = int(self.prev[i])
        if p < 0 or self.binding[i] >= 0:
            return 0
        if self.arbitrated[i] and i in self.wait_block:
            return 0
        return max(int(self.t[i]) - int(self.t[p]), 0)

    def _transit(self, k: int) -> int:
        """ns from fixed edge k's source to its target: the recorded latency (a wire's
        transit, a wake-up) when the edge decided the target's time; otherwise 0, since
        the target then happened when its own unit got there and the time in between was
        slack: a later source pushes the target only by what exceeds it. A request, reply
        or message always keeps its recorded transit: its receiver's "own" chain may be
        the unrecorded hand-off of this very request (see the module doc)."""
        d = int(self.e_dst[k])
        if int(self.binding[d]) != k and int(self.e_kind[k]) not in _ARRIVALS:
            return 0
        return max(int(self.t[d]) - int(self.t[int(self.e_src[k])]), 0)

    def _lag(self, i: int) -> int:
        """A waiter's wake-up latency: recorded time from the later of its block and the
        release (or put) that handed it the lock (or item), to its acquire (or get)."""
        if i not in self.wait_block:
            return 0
        base = int(self.t[int(self.prev[i])])
        s = self.rec_src.get(i)
        if s is not None:
            base = max(base, int(self.t[s]))
        return max(int(self.t[i]) - base, 0)

    # -- the run -------------------------------------------------------------------------

    def _push(self, t: int, action: int, i: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, action, self.seq, i))

    def _satisfy(self, i: int, t: int, via: int, *, decided: bool) -> None:
        """One dependency of event i is done and allows it at ``t``. ``decided``: this
        dependency set i's time in the recording, so it wins a tie (the critical path
        then follows what the recording shows to have decided)."""
        if t > self.ready[i] or (decided and t == self.ready[i]):
            self.ready[i] = t
            self.bind[i] = via
        self.deps[i] -= 1
        if self.deps[i] == 0:
            self._schedule(i)

    def _schedule(self, i: int) -> None:
        t = int(self.ready[i]) if self.ready[i] != UNSET else int(self.t[i])
        t += self.before.get(i, 0)
        self._push(t, _REQUEST if self.arbitrated[i] else _COMPLETE, i)

    def run(self) -> None:
        roots = np.flatnonzero(self.deps == 0)
        for i in roots.tolist():
            self.ready[i] = int(self.t[i])
            self._schedule(i)
        while self.heap:
            t, action, _, i = heapq.heappop(self.heap)
            if action == _REQUEST:
                self._request(i, t)
            elif action == _RETRY:
                self._retry(i, t)
            else:
                self._complete(i, t)

    def _request(self, i: int, t: int) -> None:
        """A unit asks for a lock or an item at ``t`` (where it asked in the recording)."""
        r = int(self.res[i])
        if int(self.kind[i]) == K.QUEUE_GET:
            waiting = self.items.get(r)
            if waiting:
                self.took[i] = waiting.popleft()
                self._push(t + self._lag(i), _COMPLETE, i)
            else:
                heapq.heappush(self.queue_waiters.setdefault(r, []), (int(self.t[i]), i))
            return
        if not self._can_hold(r, i, woken=False):
            heapq.heappush(self.lock_waiters.setdefault(r, []), (int(self.t[i]), i))
            return
        lag = self._lag(i)  # free now, but in the recording it waited: it wakes first
        if lag:
            self.woken_by[i] = -1
            self._push(t + lag, _RETRY, i)
        else:
            self._grant(r, i, t)

    def _retry(self, i: int, t: int) -> None:
        """A woken waiter tries again; a unit that asked meanwhile may have taken the lock
        first (as a non-fair lock lets it), and then it waits again."""
        r = int(self.res[i])
        if self._can_hold(r, i, woken=True):
            self._grant(r, i, t)
        else:
            self.woken_by.pop(i, None)
            heapq.heappush(self.lock_waiters.setdefault(r, []), (int(self.t[i]), i))

    def _can_hold(self, r: int, i: int, *, woken: bool) -> bool:
        held = self.holders.get(r)
        if not held:
            return True
        if self.rwlock[r] and int(self.arg[i]) == 1:  # a reader joins other readers
            return all(v < 0 for v in held.values()) and (woken or not self.lock_waiters.get(r))
        return False

    def _grant(self, r: int, i: int, t: int) -> None:
        shared = bool(self.rwlock[r]) and int(self.arg[i]) == 1
        self.holders.setdefault(r, {})[int(self.unit[i])] = -1 if shared else 1
        self.grant_order.setdefault(r, []).append(i)
        by = self.woken_by.pop(i, -1)
        if by >= 0 and t > self.ready[i]:
            self.bind[i] = by  # the hand-off decided its time
        self._push(t, _COMPLETE, i)

    def _wake(self, r: int, t: int, by: int) -> None:
        """A release: wake the waiter the recording served first (and, when it is a reader
        of an rwlock, the other readers); each tries again after its wake-up latency."""
        heap = self.lock_waiters.get(r)
        if not heap:
            return
        _, w = heapq.heappop(heap)
        woken = [w]
        if self.rwlock[r] and int(self.arg[w]) == 1:
            woken += [x for _, x in heap if int(self.arg[x]) == 1]
            heap[:] = [(k, x) for k, x in heap if int(self.arg[x]) != 1]
            heapq.heapify(heap)
        for x in woken:
            self.woken_by[x] = by
            self._push(t + self._lag(x), _RETRY, x)

    def _complete(self, i: int, t: int) -> None:
        self.sim[i] = t
        k, r = int(self.kind[i]), int(self.res[i])
        owned = r >= 0 and self.owned is not None and bool(self.owned[r])
        if k == K.LOCK_RELEASE and owned and not (self.rlock[r] and int(self.arg[i]) > 0):
            self.holders.get(r, {}).pop(int(self.unit[i]), None)
            self._wake(r, t, i)
        if k == K.QUEUE_PUT and r >= 0 and int(self.arg[i]) != 0:
            heap = self.queue_waiters.get(r)
            if heap:
                _, w = heapq.heappop(heap)
                self.took[w] = i
                at = t + self._lag(w)
                if at > self.ready[w]:
                    self.bind[w] = i
                self._push(at, _COMPLETE, w)
            else:
                self.items.setdefault(r, deque()).append(i)
        nxt = int(self.next[i])
        if nxt >= 0:
            self._satisfy(nxt, t + self._own_work(nxt), i, decided=self.binding[nxt] < 0)
        for k_edge in self.out_edges.get(i, ()):
            d = int(self.e_dst[k_edge])
            lat = self._transit(k_edge) + self.on_edge_into.get(d, 0)
            self._satisfy(d, t + lat, i, decided=int(self.binding[d]) == k_edge)


def simulate(a: Analysis, delays: Resolved) -> Outcome:
    """Run the simulation and compare it with the recording."""
    sim = _Sim(a, delays)
    sim.run()
    happened = sim.sim != UNSET
    drawn = sim.unit >= 0
    rec = sim.t[drawn]
    makespan_recorded = int(rec.max() - rec.min()) if len(rec) else 0
    got = sim.sim[happened & drawn]
    makespan = int(got.max() - got.min()) if len(got) else 0
    path = _critical_path(sim, happened)
    cycle, stuck = _stuck(sim, happened)
    never = _never_granted(sim)
    items = _items_flipped(sim)
    operations = _operations(a, sim.sim)
    out = Outcome(
        sim=sim.sim,
        bind=sim.bind,
        makespan_recorded=makespan_recorded,
        makespan=makespan,
        start=int(got.min()) if len(got) else 0,
        path=path,
        lock_flips=_lock_flips(sim),
        race_flips=_race_flips(a, sim),
        cycle=cycle,
        stuck_units=stuck,
        matched=list(delays.matched),
        operations=operations,
        redecided=_redecided_grants(sim) | {w for _, w in never} | _items_redecided(sim),
        never_granted=never,
        items_flipped=items,
    )
    if makespan == makespan_recorded:
        out.idle_end = _idle_end(sim, path)
    if out.idle_end >= 0 and operations and operations[0].change:
        out.op_path = _operation_path(sim, operations[0])
        out.op_path_trace = operations[0].trace_id
    return out


def unexplained_early(out: Outcome, recorded: I64) -> list[int]:
    """Events the simulation put earlier than recorded that no re-decided grant or item
    explains: for each, the dependency chain that set its time (``bind``) must reach an
    event of ``out.redecided`` through events that are themselves early. Empty when the
    simulation keeps its promise (see the module doc)."""
    happened = out.sim != UNSET
    early = happened & (out.sim < recorded)
    explained: dict[int, bool] = {}
    for i in np.flatnonzero(early)[np.argsort(out.sim[early], kind="stable")].tolist():
        b = int(out.bind[i])
        explained[i] = i in out.redecided or (b >= 0 and explained.get(b, False))
    return [i for i, ok in explained.items() if not ok]


def _operations(a: Analysis, sim: I64) -> list[OperationTime]:
    """Each operation's end-to-end before and after, for the operations ``analyze`` ranks
    by critical path (a child process's whole life is not one). The makespan alone hides a
    slower request when something else sets the run's length (a server thread idle until
    the program stops it); the request's own end-to-end does not."""
    ix = a.timing.index if a.timing is not None else _cp.build_index(a.causality)
    ops = a.causality.operations
    t = a.causality.clocks.adjusted
    out = []
    for o in range(len(ops.trace_ids)):
        root, end = int(ops.root[o]), int(ix.ends[o])
        if root < 0 or end < 0 or int(a.trace.events.kind[root]) == K.PROC_SPAWN:
            continue
        done = sim[root] != UNSET and sim[end] != UNSET
        out.append(
            OperationTime(
                o,
                ops.trace_ids[o],
                root,
                end,
                int(t[end]) - int(t[root]),
                int(sim[end]) - int(sim[root]) if done else None,
            )
        )

    def rank(x: OperationTime) -> tuple[int, int, str]:
        # changed (largest first), then never finished, then unchanged
        change = x.change
        if change is None:
            return (1, 0, x.trace_id)
        return (0 if change else 2, -abs(change), x.trace_id)

    return sorted(out, key=rank)


def _critical_path(sim: _Sim, happened: npt.NDArray[np.bool_]) -> list[int]:
    """From the last simulated event back along the dependency that set each time (the
    unit's previous event, a fixed edge, the release or put that handed it a lock or item)
    to an event nothing recorded caused: the run's root when every step was recorded, since
    a spawned process's first events depend on the spawn."""
    rows = np.flatnonzero(happened & (sim.unit >= 0))
    if not len(rows):
        return []
    # the last event; of several at that time the latest row, which depends on the others
    # when they are its causes (a join done the instant the thread ends)
    i = int(rows[np.flatnonzero(sim.sim[rows] == sim.sim[rows].max())[-1]])
    path = [i]
    seen = {i}
    while True:
        b = int(sim.bind[i])
        if b < 0 or b in seen:
            break
        path.append(b)
        seen.add(b)
        i = b
    return path[::-1]


def _stuck(
    sim: _Sim, happened: npt.NDArray[np.bool_]
) -> tuple[list[tuple[int, int, int]], list[int]]:
    """Units that never finished, and a wait cycle among them if there is one."""
    waits_for: dict[int, tuple[int, int]] = {}  # unit -> (resource, unit)
    for r, q in sim.lock_waiters.items():
        holders = list(sim.holders.get(r, {}))
        for _, i in q:
            if holders:
                waits_for[int(sim.unit[i])] = (r, holders[0])
    hops = sim.a.causality.hops
    server_of = hops.server_of_client()
    for b in sim.open_blocks:
        if not happened[b]:
            continue
        r, u = int(sim.res[b]), int(sim.unit[b])
        holders = [h for h in sim.holders.get(r, {}) if h != u]
        if holders:
            waits_for.setdefault(u, (r, holders[0]))
            continue
        row = server_of.get(r)  # a request still waiting for its reply: the server's unit
        if row is not None and int(hops.reply[row]) < 0 and int(hops.recv[row]) >= 0:
            server = int(sim.unit[int(hops.recv[row])])
            if server >= 0 and happened[int(hops.recv[row])]:
                waits_for.setdefault(u, (r, server))
    # units stuck on a fixed edge whose source never ran: wait for that source's unit
    pending = np.flatnonzero(~happened & (sim.unit >= 0) & (sim.deps > 0))
    for i in pending.tolist():
        u = int(sim.unit[i])
        if u in waits_for or (int(sim.prev[i]) >= 0 and not happened[int(sim.prev[i])]):
            continue
        for s, d in zip(sim.e_src.tolist(), sim.e_dst.tolist(), strict=True):
            if d == i and not happened[s] and int(sim.unit[s]) >= 0:
                waits_for[u] = (-1, int(sim.unit[s]))
                break
    stuck = sorted(waits_for)
    for start in stuck:
        seen: list[int] = []
        u = start
        while u in waits_for and u not in seen:
            seen.append(u)
            u = waits_for[u][1]
        if u in seen:
            loop = seen[seen.index(u) :]
            return [(x, waits_for[x][0], waits_for[x][1]) for x in loop], stuck
    return [], stuck


def _recorded_grants(sim: _Sim) -> dict[int, list[int]]:
    """Per owned lock: its arbitrated acquires in recorded order."""
    rows = np.flatnonzero(sim.arbitrated & (sim.kind == K.LOCK_ACQUIRED))
    out: dict[int, list[int]] = {}
    for i in rows[np.lexsort((rows, sim.t[rows]))].tolist():
        out.setdefault(int(sim.res[i]), []).append(i)
    return out


def _redecided_grants(sim: _Sim) -> set[int]:
    """Grants that now follow another grant of their lock than in the recording."""
    recorded = _recorded_grants(sim)
    out = set()
    for r, order in sim.grant_order.items():
        before = {i: p for p, i in itertools.pairwise([-1, *recorded.get(r, [])])}
        for prev, i in itertools.pairwise([-1, *order]):
            if before.get(i, -1) != prev:
                out.add(i)
    return out


def _never_granted(sim: _Sim) -> list[tuple[int, int]]:
    """Waiters the recording granted the lock to and the simulation never does, each with
    the grant that now came first although the recording made it later (-1: none did;
    the lock's holder never let it go)."""
    out = []
    for r, heap in sim.lock_waiters.items():
        order = sim.grant_order.get(r, [])
        for _, w in sorted(heap):
            took = [g for g in order if int(sim.t[g]) > int(sim.t[w])]
            out.append((took[0] if took else -1, w))
    return out


def _items_flipped(sim: _Sim) -> list[tuple[int, int]]:
    """Queue gets that took another put's item than in the recording."""
    return [(g, p) for g, p in sorted(sim.took.items()) if sim.rec_src.get(g, p) != p]


def _items_redecided(sim: _Sim) -> set[int]:
    """Gets that took another item, or none, than in the recording."""
    out = {g for g, _ in _items_flipped(sim)}
    for heap in sim.queue_waiters.values():
        out |= {w for _, w in heap}
    return out


def _idle_end(sim: _Sim, path: list[int]) -> int:
    """The unit whose own recorded life, from its start to its last event, ends the
    critical path with nothing recorded deciding any step of it (a server's main thread
    idle until the process is stopped), or -1. Its path says only "this unit lived this
    long"."""
    if not path:
        return -1
    last = path[-1]
    u = int(sim.unit[last])
    k = len(path) - 1
    while k > 0 and int(sim.unit[path[k - 1]]) == u:
        k -= 1
    first = path[k]
    if int(sim.prev[first]) >= 0 or int(sim.next[last]) >= 0:
        return -1
    mine = sim.by_unit[sim.unit[sim.by_unit] == u]
    if (sim.binding[mine[1:]] >= 0).any() or sim.arbitrated[mine].any():
        return -1
    return u


def _operation_path(sim: _Sim, op: OperationTime) -> list[int]:
    """The operation's critical path: from its end back along the dependency that set
    each simulated time, to its root or the first step before the root."""
    if int(sim.sim[op.end]) == UNSET or int(sim.sim[op.root]) == UNSET:
        return []
    start = int(sim.sim[op.root])
    path, seen, i = [op.end], {op.end}, op.end
    while i != op.root:
        b = int(sim.bind[i])
        if b < 0 or b in seen or int(sim.sim[b]) < start:
            break
        path.append(b)
        seen.add(b)
        i = b
    return path[::-1]


def _lock_flips(sim: _Sim) -> list[tuple[int, int]]:
    """Consecutive grants of a lock to two units whose recorded order was the other."""
    flips = []
    for order in sim.grant_order.values():
        for x, y in itertools.pairwise(order):
            if int(sim.unit[x]) != int(sim.unit[y]) and int(sim.t[x]) > int(sim.t[y]):
                flips.append((x, y))
    return flips


def _locks_held(a: Analysis, rows: I64) -> dict[int, frozenset[int]]:
    """Per access event: the owned locks its unit held then (recorded holds)."""
    h = holds(a.trace)
    ev = a.trace.events
    out: dict[int, frozenset[int]] = {}
    for i in rows.tolist():
        mine = np.flatnonzero(
            (h.unit == ev.unit[i]) & (h.acquire < i) & ((h.release > i) | (h.release < 0))
        )
        out[i] = frozenset(h.res[mine].tolist())
    return out


def _race_flips(a: Analysis, sim: _Sim) -> list[tuple[int, int]]:
    """Conflicting data accesses (same data name, different units, one writes) that run in
    the other order than recorded, and that no common lock orders (those are a lock grant
    in the other order, reported as such)."""
    trace = a.trace
    ev = trace.events
    acc = np.flatnonzero((ev.kind == K.DATA_ACCESS) & (ev.res >= 0) & (sim.sim != UNSET))
    held = _locks_held(a, acc)
    buckets: dict[str, list[int]] = {}
    for i in acc.tolist():
        buckets.setdefault(resource_name(trace, int(ev.res[i])), []).append(i)
    flips = []
    for rows in buckets.values():
        rows.sort(key=lambda i: int(sim.t[i]))
        pairs = (
            [(x, y) for k, x in enumerate(rows) for y in rows[k + 1 :]]
            if len(rows) <= SMALL_BUCKET
            else list(itertools.pairwise(rows))
        )
        for x, y in pairs:
            if ev.unit[x] == ev.unit[y] or not (ev.arg[x] == 1 or ev.arg[y] == 1):
                continue
            if held[x] & held[y]:
                continue
            if int(sim.sim[x]) > int(sim.sim[y]):
                flips.append((y, x))  # now first, now second
    return flips
