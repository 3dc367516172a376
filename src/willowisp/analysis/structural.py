"""Structural delay: waits explained by a consumer's own rhythm, not by slowness.

A consumer that looks for work every 500 ms makes each message wait up to 500 ms, however
fast the producer, the broker and the network are. That time is real latency, but the fix is
a setting (a poll period, a batch window, a timer), not a faster service; this module finds
such rhythms from the consumer's *own* behaviour and labels the gaps they leave, so that the
critical path (:mod:`willowisp.analysis.critical_path`) calls the time spent in them
``structural`` and ``structural-delay`` findings say how much of the operations' latency they
explain. Nothing here compares the consumer's times with another unit's to decide.

A unit pauses in one of two ways the trace shows:

- **recorded timed waits**: sleeps (block reason ``sleep``, from the runtimes that record
  it) and waits on an event, condition or future that timed out (``Event.wait(0.5)``
  returning False). A get or a broker read that times out is not one: an item would have
  ended it the moment it came, so it never delays anything;
- **silent gaps**: a stretch of at least a millisecond with no event at all, while the unit
  was not in a recorded wait (``time.sleep``, which the Python agent does not hook).

A **rhythm** is at least ``MIN_CYCLES`` pauses of one length P (a period of at least 1 ms):
recorded waits within ``TOLERANCE`` of their median, or silent gaps within ``TOLERANCE`` * P
of a whole multiple of P (a poll that found nothing may leave no event, so two periods can
look like one pause), in at least 80 % of the unit's pauses. Its kind:

- ``poll`` -- the unit receives (``msg.recv`` of a message, ``queue.get``) right after its
  pauses, without having waited for the item: it looked when its timer said so;
- ``batch-window`` -- the same, but the receives come several at a time (a median of two or
  more per look);
- ``timer`` -- recorded waits of constant length and no receive after them: a sleep before
  an action (a retry back-off, a periodic flush).

Silent gaps alone are weak evidence (a thread blocked in an unhooked call is silent too), so
a rhythm of silent gaps counts only as a poll, and only when the messages it received had
waited on average at least ``MIN_WAITED`` of the period -- what a poll does to them, and what
a consumer that receives the moment a periodic producer sends does not.

The **gaps** of a rhythm are its pauses (adjusted ns, per unit). A message sent while its
consumer paused waited, from its send to the end of the pause, for the consumer's rhythm.

Findings (severity ``info``): one per rhythm that explains some latency -- a poll or batch
window that delayed a linked message or queue item, a timer whose pauses an operation
waited through (before its end: a consumer's idle pauses after its last message delay
nothing) -- naming the unit, the pattern, the period, what waited on average and the share
of those operations' latency (root to end, as the critical path measures it). The id comes
from the pattern, the service, what is consumed (protocol and destination, or the queue's
name and creation place) and the place of the pause.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from willowisp.analysis import critical_path
from willowisp.analysis.finding import Finding, ResourceRef
from willowisp.analysis.naming import (
    at,
    event_where,
    fmt_duration,
    plural,
    possessive,
    resource_name,
    unit_label,
    unit_ref,
)
from willowisp.causality.graph import EdgeKind
from willowisp.causality.link import Causality
from willowisp.causality.messages import DESTINATION
from willowisp.causality.operations import NO_OPERATION
from willowisp.causality.program_order import unit_order
from willowisp.causality.provenance import attr_str
from willowisp.causality.waits import Waits, waits
from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K, Outcome, Reason

I64 = npt.NDArray[np.int64]

MIN_CYCLES = 4  # pauses of one length before it is called a rhythm
MIN_PERIOD_NS = 1_000_000  # shorter pauses are a busy loop, not a schedule
TOLERANCE = 0.1  # of the period: how far a pause may be from it
REGULAR_SHARE = 0.8  # of a unit's pauses that must keep the rhythm
MIN_WAITED = 0.2  # of the period: what messages must have waited for a rhythm of silent gaps
BURST_NS = 1_000_000  # receives closer than this are one look

POLL = "poll"
BATCH_WINDOW = "batch-window"
TIMER = "timer"


@dataclass(frozen=True, slots=True)
class Pattern:
    """One unit's rhythm (see the module doc)."""

    kind: str  # POLL, BATCH_WINDOW or TIMER
    unit: int  # the consumer (or the unit that pauses)
    period_ns: int
    jitter_ns: int  # the largest distance of a regular pause from the period (or a multiple)
    recorded: bool  # pauses are recorded timed waits (else silent gaps)
    pauses: I64  # per regular pause: the event that began it (its block, or the last event)
    gap_start: I64  # adjusted ns, sorted
    gap_end: I64
    receives: I64  # receives right after a regular pause (poll-driven), event indices
    burst_median: float  # receives per look

    @property
    def cycles(self) -> int:
        return len(self.pauses)


@dataclass(frozen=True, slots=True)
class Structure:
    """Every rhythm found (at most one per unit), and the gaps the critical path and the
    seams call structural: unit -> (starts, ends), adjusted ns, sorted."""

    patterns: tuple[Pattern, ...] = ()
    gaps: dict[int, tuple[I64, I64]] = field(default_factory=dict)


def detect(c: Causality, w: Waits | None = None) -> Structure:
    """Every unit's rhythm (at most one per unit: recorded waits win over silent gaps)."""
    trace = c.trace
    ev = trace.events
    order, ptr = unit_order(trace, meaningful_only=True)
    if w is None:
        # next_in_unit, from the order at hand (one sort of the events less)
        nxt = np.full(len(ev), NO_INDEX, dtype=np.int64)
        same = ev.unit[order[1:]] == ev.unit[order[:-1]]
        nxt[order[:-1][same]] = order[1:][same]
        w = waits(trace, nxt)
    receives = _receives(trace)
    woken = np.zeros(len(ev), dtype=bool)
    ended = w.end >= 0
    woken[w.end[ended]] = True
    patterns: list[Pattern] = []
    taken: set[int] = set()
    for p in _timed_waits(c, w, order, ptr, receives & ~woken):
        patterns.append(p)
        taken.add(p.unit)
    for p in _silent_gaps(c, order, ptr, receives & ~woken, taken):
        patterns.append(p)
    gaps = {p.unit: (p.gap_start, p.gap_end) for p in patterns}
    return Structure(tuple(patterns), gaps)


def _receives(trace: Trace) -> npt.NDArray[np.bool_]:
    """Per event: is it a unit taking an item of work (a message received, a queue get)?"""
    ev = trace.events
    msg = (ev.kind == K.MSG_RECV) & trace.resource_kind_mask("message")
    out: npt.NDArray[np.bool_] = msg | ((ev.kind == K.QUEUE_GET) & (ev.res >= 0) & (ev.unit >= 0))
    return out


def _timed_waits(
    c: Causality, w: Waits, order: I64, ptr: I64, takes: npt.NDArray[np.bool_]
) -> list[Pattern]:
    ev = c.trace.events
    end = np.maximum(w.end, 0)
    # A sleep, or a wait on a timer-like primitive that timed out. A get or a message wait
    # that times out is not one: it would have returned the moment an item came.
    timed = (w.end >= 0) & (
        (w.reason == Reason.SLEEP)
        | (
            np.isin(w.reason, (Reason.WAIT, Reason.AWAIT))
            & (ev.kind[end] == K.UNIT_WAKE)
            & (ev.arg[end] == Outcome.TIMEOUT)
        )
    )
    dur = ev.time[end] - ev.time[w.block]
    rows = np.flatnonzero(timed & (dur >= MIN_PERIOD_NS))
    out: list[Pattern] = []
    for u, mine in _per_unit(w.unit[rows], rows):
        d = dur[mine]
        period = int(np.median(d))
        off = np.abs(d - period)
        regular = off <= TOLERANCE * period
        if regular.sum() < MIN_CYCLES or regular.mean() < REGULAR_SHARE:
            continue
        keep = mine[regular]
        blocks, wakes = w.block[keep], w.end[keep]
        pattern = _pattern(
            c, u, period, int(off[regular].max()), True, blocks, blocks, wakes, order, ptr, takes
        )
        out.append(pattern)
    return out


def _per_unit(unit: npt.NDArray[np.int32], rows: I64) -> list[tuple[int, I64]]:
    """``rows`` grouped by ``unit`` (their units), for units with at least MIN_CYCLES rows;
    each group keeps the rows' order."""
    o = np.argsort(unit, kind="stable")
    u, r = unit[o], rows[o]
    starts = np.flatnonzero(np.concatenate([[True], u[1:] != u[:-1]])) if len(u) else u
    bounds = np.append(starts, len(u))
    return [
        (int(u[a]), r[a:b])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        if b - a >= MIN_CYCLES
    ]


def _silent_gaps(
    c: Causality, order: I64, ptr: I64, takes: npt.NDArray[np.bool_], taken: set[int]
) -> list[Pattern]:
    ev = c.trace.events
    if len(order) < 2:
        return []
    unit = ev.unit[order]
    same = unit[1:] == unit[:-1]
    before, after = order[:-1][same], order[1:][same]
    length = ev.time[after] - ev.time[before]
    silent = (length >= MIN_PERIOD_NS) & (ev.kind[before] != K.UNIT_BLOCK)
    before, after, length = before[silent], after[silent], length[silent]
    takers = set(np.unique(ev.unit[np.flatnonzero(takes)]).tolist())
    out: list[Pattern] = []
    for u, mine in _per_unit(ev.unit[before], np.arange(len(before), dtype=np.int64)):
        if u in taken or u not in takers:
            continue
        fit = _period_of(length[mine])
        if fit is None:
            continue
        period, regular, jitter = fit
        keep = mine[regular]
        p = _pattern(
            c, u, period, jitter, False, before[keep], before[keep], after[keep], order, ptr, takes
        )
        if p.kind == TIMER or not _waited_enough(c, p):
            continue
        out.append(p)
    return out


def _period_of(lengths: I64) -> tuple[int, npt.NDArray[np.bool_], int] | None:
    """The longest period P such that most silent gaps are whole multiples of it."""
    best: tuple[int, npt.NDArray[np.bool_], int] | None = None
    srt = np.sort(lengths)
    for q in (0.0, 0.1, 0.25, 0.5):
        base = srt[int(q * (len(srt) - 1))]
        period = int(np.median(srt[(srt >= base) & (srt <= 1.5 * base)]))
        m = np.rint(lengths / period)
        off = np.abs(lengths - m * period)
        regular = (m >= 1) & (off <= TOLERANCE * period)
        keeps = regular.sum() >= MIN_CYCLES and regular.mean() >= REGULAR_SHARE
        if keeps and (best is None or period > best[0]):
            best = (period, regular, int(off[regular].max()))
    return best


def _pattern(
    c: Causality,
    u: int,
    period: int,
    jitter: int,
    recorded: bool,
    pauses: I64,
    starts: I64,
    ends: I64,
    order: I64,
    ptr: I64,
    takes: npt.NDArray[np.bool_],
) -> Pattern:
    """A rhythm of unit ``u`` whose pauses run from ``starts`` to ``ends`` (events); its
    kind from what the unit does right after them."""
    adj = c.clocks.adjusted
    time = c.trace.events.time
    mine = order[ptr[u] : ptr[u + 1]]
    # A receive is poll-driven when it comes within a period after one of the pauses: the
    # look the timer allowed (a receive that ended a wait for the item is not one: it is
    # left out of ``takes``).
    at_ = np.arange(len(mine))
    last = np.maximum.accumulate(np.where(np.isin(mine, ends), at_, -1))
    since = time[mine] - time[mine[np.maximum(last, 0)]]
    driven = takes[mine] & (last >= 0) & (since <= period)
    got = mine[driven]
    if len(got):
        t = c.trace.events.time[got]
        looks = np.concatenate([[0], np.flatnonzero(np.diff(t) > BURST_NS) + 1, [len(got)]])
        burst = float(np.median(np.diff(looks)))
        kind = BATCH_WINDOW if burst >= 2 else POLL
    else:
        burst, kind = 0.0, TIMER
    o = np.argsort(adj[starts], kind="stable")
    return Pattern(
        kind,
        u,
        period,
        jitter,
        recorded,
        pauses[o],
        adj[starts][o],
        adj[ends][o],
        got,
        burst,
    )


def _waited_enough(c: Causality, p: Pattern) -> bool:
    src, dst = _deliveries(c, p)
    if not len(dst):
        return False
    adj = c.clocks.adjusted
    return bool(np.mean(adj[dst] - adj[src]) >= MIN_WAITED * p.period_ns)


def _deliveries(c: Causality, p: Pattern) -> tuple[I64, I64]:
    """The linked items (message or queue edges) the rhythm's receives took."""
    g = c.graph
    if not len(p.receives) or not len(g):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # The graph is sorted by destination: each receive's edges are one slice of it.
    lo = np.searchsorted(g.dst, p.receives, side="left")
    n = np.searchsorted(g.dst, p.receives, side="right") - lo
    rows = np.repeat(lo, n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    rows = rows[np.isin(g.kind[rows], (EdgeKind.MESSAGE, EdgeKind.QUEUE))]
    return g.src[rows], g.dst[rows]


def explained(c: Causality, p: Pattern) -> tuple[I64, I64]:
    """Per delivery the rhythm delayed: (its receive, ns it waited inside the gaps)."""
    src, dst = _deliveries(c, p)
    adj = c.clocks.adjusted
    waited = np.zeros(len(dst), dtype=np.int64)
    for i, (a, z) in enumerate(zip(adj[src].tolist(), adj[dst].tolist(), strict=True)):
        lo = int(np.searchsorted(p.gap_end, a, side="right"))
        hi = int(np.searchsorted(p.gap_start, z, side="left"))
        starts, ends = p.gap_start[lo:hi], p.gap_end[lo:hi]
        waited[i] = int(np.sum(np.clip(np.minimum(ends, z) - np.maximum(starts, a), 0, None)))
    keep = waited > 0
    return dst[keep], waited[keep]


# -- findings ------------------------------------------------------------------------------


def find(c: Causality) -> list[Finding]:
    """``structural-delay`` findings (see the module doc)."""
    s = detect(c)
    if not s.patterns:
        return []
    ix = critical_path.build_index(c, s.gaps)
    out = []
    for p in s.patterns:
        f = _finding(ix, p)
        if f is not None:
            out.append(f)
    return out


def _finding(ix: critical_path.PathIndex, p: Pattern) -> Finding | None:
    c = ix.c
    trace = c.trace
    ev = trace.events
    op = c.operations.op
    durations = ix.durations()
    if p.kind == TIMER:
        # Pauses an operation waited through: in it, and before its end (a consumer's
        # idle waits after its work belong to its last message, but delay nothing).
        if not len(ix.ends):
            return None  # no operation in the trace: the rhythm delays nothing
        of = op[p.pauses]
        end_ns = np.where(of >= 0, ix.adj[ix.ends[np.maximum(of, 0)]], 0)
        within = (of != NO_OPERATION) & (p.gap_end <= end_ns)
        inside = p.pauses[within]
        if not len(inside):
            return None
        waits_ns = (p.gap_end - p.gap_start)[within]
        ops = np.unique(op[inside])
        total = int(waits_ns.sum())
        count = len(inside)
    else:
        got, waited = explained(c, p)
        if not len(got):
            return None
        ops = np.unique(op[got][op[got] != NO_OPERATION])
        total = int(waited.sum())
        count = len(got)
    latency = int(durations[ops].sum()) if len(ops) else 0
    share = _percent(total, latency)
    unit = p.unit
    proc = trace.processes[trace.units[unit].proc]
    pause_ev = int(p.pauses[0])
    pause_where = event_where(trace, pause_ev)
    period = fmt_duration(p.period_ns)
    resources: list[ResourceRef] = []
    if p.recorded and ev.res[pause_ev] >= 0:
        resources.append(_ref(trace, int(ev.res[pause_ev])))
    what = ""
    if p.kind != TIMER:
        what = _consumed(trace, p.receives)
        resources.append(_consumed_ref(trace, int(p.receives[0])))
    name = trace.units[unit].name
    who = f"{possessive(proc.service or '?')} {name}"
    if p.kind == TIMER:
        summary = (
            f"structural-delay: {who} pauses {period} before acting, {plural(count, 'time')} "
            f"inside operations: {fmt_duration(total)}, {share} of their latency"
        )
    else:
        verb = "polls" if p.kind == POLL else "takes batches from"
        items = "messages" if ev.kind[p.receives[0]] == K.MSG_RECV else "items"
        summary = (
            f"structural-delay: {who} {verb} {what} every {period}: {plural(count, items[:-1])} "
            f"waited on average {fmt_duration(total // count)} for its next "
            f"{'look' if p.kind == POLL else 'batch'} ({share} of their operations' latency)"
        )
    how = (
        f"waits {period} (±{fmt_duration(p.jitter_ns)}){at(pause_where)}, timing out"
        if p.recorded
        else f"pauses {period} (±{fmt_duration(p.jitter_ns)}) with no event, a sleep"
    )
    story = [f"{unit_label(trace, unit)} {how}, {plural(p.cycles, 'time')}"]
    if p.kind == TIMER:
        story.append(
            f"{plural(count, 'pause')} fell inside {plural(len(ops), 'operation')}: "
            f"{fmt_duration(total)} of their {fmt_duration(latency)}, spent waiting on the timer"
        )
    else:
        looks = "batch" if p.kind == BATCH_WINDOW else "look"
        story.append(
            f"after each pause it reads {what} (median {p.burst_median:g} per {looks}); what "
            "arrived during a pause waited for its end"
        )
        story.append(
            f"{plural(count, 'delivery', 'deliveries')} waited {fmt_duration(total)} in all, "
            f"on average {fmt_duration(total // count)}: {share} of the "
            f"{fmt_duration(latency)} their {plural(len(ops), 'operation')} took"
        )
    if p.kind == TIMER:  # a fixed pause on the way, not a consumer looking for work
        story.append(
            "a fixed pause in the operations' path, not slow work or a slow peer: if it "
            "waits for something, wait on that instead; if it is a back-off or a throttle, "
            "shorten it if this latency matters"
        )
    else:
        story.append(
            "the consumer's rhythm, not a slow producer, broker or network: shorten the "
            "period (or block on the source) if this latency matters"
        )
    identity = (
        p.kind,
        proc.service,
        pause_where,
        *(r.key() for r in resources),
    )
    events = [str(trace.event_id(pause_ev))]
    if p.kind != TIMER:
        events.append(str(trace.event_id(int(p.receives[0]))))
    return Finding(
        "structural-delay",
        "info",
        summary,
        identity,
        units=(unit_ref(trace, unit),),
        resources=tuple(resources),
        events=tuple(events),
        explanation=tuple(story),
    ).with_extra(
        pattern=p.kind,
        period_ns=p.period_ns,
        jitter_ns=p.jitter_ns,
        cycles=p.cycles,
        delayed=count,
        waited_ns=total,
        operations=len(ops),
        operations_latency_ns=latency,
    )


def _percent(part: int, whole: int) -> str:
    """``62%``; ``99.6%`` rather than a rounded ``100%`` that is not all of it."""
    if whole <= 0:
        return "an unknown share"
    pct = 100 * part / whole
    return f"{pct:.1f}%" if 99.5 <= pct < 100 else f"{pct:.0f}%"


def _ref(trace: Trace, r: int) -> ResourceRef:
    res = trace.resources[r]
    where = trace.locations[res.loc].where() if res.loc >= 0 else ""
    return ResourceRef(res.kind, resource_name(trace, r), where)


def _consumed(trace: Trace, receives: I64) -> str:
    """What the receives take, in words: ``redis stream orders``, ``queue jobs``."""
    r = int(trace.events.res[receives[0]])
    res = trace.resources[r]
    if res.kind == "message":
        res_of = trace.events.res[receives[:50]].tolist()
        dests = Counter(attr_str(trace.resources[x], DESTINATION) for x in res_of)
        return f"{res.protocol or 'message'} {dests.most_common(1)[0][0]}".strip()
    return f"{res.kind} {resource_name(trace, r)}"


def _consumed_ref(trace: Trace, receive: int) -> ResourceRef:
    """The consumed source as a resource: a message destination has no creation place (each
    message is its own resource), so its ``where`` is the receive's place."""
    r = int(trace.events.res[receive])
    res = trace.resources[r]
    if res.kind == "message":
        dest = attr_str(res, DESTINATION)
        return ResourceRef("message", f"{res.protocol} {dest}".strip(), event_where(trace, receive))
    return _ref(trace, r)
