"""``lock-contention`` and the document's ``contention`` section: who waited for which lock,
for how long, and whether the waiters queued up behind each other.

For every lock-like resource (``lock``, ``rlock``, ``rwlock``, ``monitor``, ``semaphore``,
``condition``; asyncio's primitives are the same kinds), in any runtime:

- **acquisitions**: the holds it gave (an rlock's re-entries are not acquisitions); for a
  semaphore, every ``lock.acquired``.
- **waits**: each ``unit.block`` on it to acquire (exclusive or shared). A wait ends with
  the acquisition (a *contended* acquisition) or with a ``unit.wake`` (it *gave up*: a
  timeout, a cancellation). A wait still open when the trace ends is counted
  (``still_waiting``) but not timed: a unit stuck for good is a deadlock or a leak, which
  those findings tell, and its length would only measure when the recording stopped. So
  is a wait its unit abandoned (an async flow that ended, a task dropped, while waiting):
  it never got the lock, and its length measures when the flow was given up. A
  condition's wait for a notification is not contention and is not counted here.
- **wait and hold times** are differences of one unit's own monotonic times, so no clock
  alignment is involved. A hold runs from the acquire to the release that gives the lock up
  (causality/waits.py); one still held at the end is counted (``held_at_end``), not timed.
  A semaphore has no owner: its hold is a unit's acquire to that unit's own next release,
  and a permit another unit returns is not timed.
- **acquisitions the recorder did not see**: a wait to acquire that ends with ``unit.wake``
  on that lock (or on no resource) and outcome ok was let through: the unit got the lock,
  but its recorder writes no ``lock.acquired`` (the format's rule: a successful wait is
  followed by its specific event, a failed one by ``unit.wake`` with a failure outcome).
  Go's execution tracer is such a recorder: it sees a goroutine block on a ``sync.Mutex``
  and be unblocked, and a ``sync.Mutex`` has no timeout, so the unblocked goroutine took
  the lock (or, in the mutex's normal mode, lost it to a newcomer and queued again: a
  second wait). These waits are contended acquisitions (``acquired_unseen`` counts them),
  never "gave up"; their holds, and the acquisitions that did not wait, are unknown, so
  they start no hold and no convoy run (every acquisition seen would have waited, which
  says nothing about a queue).
- **holders** and **waiters**: the units that acquired it and that waited for it.
- **convoy**: a run of at least ``CONVOY_MIN`` consecutive acquisitions (in the order the
  resource was taken) each of which had waited. The lock then passes from waiter to waiter
  with a queue standing behind it, so it runs one unit at a time plus a hand-off each time,
  and a new arrival waits for the whole queue. ``longest_run`` is the longest such run of
  waited acquisitions, ``max_queue`` the most units waiting at once.

**Findings.** Only for a resource whose timed waits add up to at least ``INFO_TOTAL_NS``
(1 ms): less is not worth a person's attention, whatever the span. Then ``warning`` when
the worst wait is at least ``WARN_WORST_NS`` (100 ms), or the waits add up to at least
``WARN_TOTAL_NS`` (100 ms) and to ``WARN_SHARE`` (10 %) of the process's recorded span
(its first to its last event); ``info`` when they add up to at least ``INFO_SHARE`` (1 %)
of the span or there was a convoy. Below that, no finding, but the resource is still in
the section. The absolute floors matter for short programs: under CPython's GIL a thread
preempted while it holds a lock makes the others wait a switch interval (5 ms), which is
a large share of a 70 ms program and says nothing about its design. The id is the
resource's kind, name and creation place.

**Go's own locks are left out.** The Go importer can only place a wait the runtime reports
as ``sync`` at the nearest frame it has; when no program frame is on the stack that is a
place inside the standard library (``internal/poll``'s descriptor lock, ``fd_unix.go:114``),
a lock the program never took and whose release the trace does not show (so every wait
reads as given up). Such resources (a Go process's, whose place is in a function of the
standard library: a package path whose first element has no dot, other than ``main``)
stay in the trace but are not in this section nor found contended.

Everything is computed in bulk (sorts, bincounts, running maxima); only the resources that
are reported (the section's top ``TOP_N`` by total wait, and those with a finding) get
percentiles and per-unit detail, one small numpy call each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.analysis.finding import Finding, finding_id
from willowisp.analysis.naming import (
    event_where,
    fmt_duration,
    join_words,
    plural,
    resource_ref,
    unit_label,
    unit_names,
    unit_ref,
)
from willowisp.causality.link import Causality
from willowisp.causality.waits import holds, waits
from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K, Outcome, Reason

I64 = npt.NDArray[np.int64]

LOCK_LIKE = ("lock", "rlock", "rwlock", "monitor", "semaphore", "condition")
CONVOY_MIN = 3  # waited acquisitions in a row that make a convoy
WARN_WORST_NS = 100_000_000
WARN_TOTAL_NS = 100_000_000
WARN_SHARE = 0.10
INFO_TOTAL_NS = 1_000_000
INFO_SHARE = 0.01
TOP_N = 20  # resources in the document's section
UNITS_SHOWN = 10  # units per resource in the section


@dataclass(frozen=True, slots=True)
class Percentiles:
    total: int
    p50: int
    p99: int
    max: int


@dataclass(frozen=True, slots=True)
class UnitShare:
    """One unit's part in a resource's contention."""

    unit: int
    acquisitions: int
    waits: int
    wait_ns: int
    hold_ns: int


@dataclass(frozen=True, slots=True)
class ResourceContention:
    """What one lock-like resource cost its units (see the module doc for each word)."""

    resource: int
    acquisitions: int
    contended: int
    acquired_unseen: int  # of contended: ended by an ok unit.wake, no lock.acquired seen
    gave_up: int
    still_waiting: int
    wait_ns: Percentiles  # over the timed (ended) waits; all zero if none
    worst_wait: int  # the unit.block of the longest wait, NO_INDEX if none
    worst_wait_end: int  # the event that ended it
    hold_ns: Percentiles | None  # over the timed holds; None if none
    longest_hold: int  # the acquire of the longest hold, NO_INDEX if none
    held_at_end: int
    holders: int
    waiters: int
    units: tuple[UnitShare, ...]  # the top UNITS_SHOWN, by wait then hold time
    convoys: int
    longest_run: int
    max_queue: int
    span_ns: int  # the process's recorded span
    severity: str | None  # of its finding; None: no finding

    @property
    def share(self) -> float:
        """Total wait over the process's span."""
        return self.wait_ns.total / self.span_ns if self.span_ns > 0 else 0.0


def find(c: Causality) -> list[Finding]:
    return [_finding(c.trace, r) for r in measure(c) if r.severity is not None]


def measure(c: Causality) -> tuple[ResourceContention, ...]:
    """The reported resources: those with a finding, and the top TOP_N by total wait
    (then waits, then acquisitions); in that order."""
    return _Measure(c.trace).reported()


class _Measure:
    """The bulk arrays, per resource and per wait/hold/acquisition, built once."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        ev = trace.events
        n_res = len(trace.resources)
        kind_of = trace.resource_kind
        lockish = np.isin(kind_of, LOCK_LIKE) if n_res else np.zeros(0, bool)
        for r in np.flatnonzero(lockish).tolist():
            lockish[r] = not _go_internal(trace, r)
        semaphore = kind_of == "semaphore" if n_res else np.zeros(0, bool)
        self.semaphore = semaphore
        # Waits to acquire, and how each ended.
        w = waits(trace)
        pick = (w.res >= 0) & np.isin(w.reason, (Reason.ACQUIRE, Reason.ACQUIRE_SHARED))
        pick[pick] = lockish[w.res[pick]]
        self.w_block, self.w_end = w.block[pick], w.end[pick]
        self.w_res, self.w_unit = w.res[pick].astype(np.int64), w.unit[pick].astype(np.int64)
        end_c = np.maximum(self.w_end, 0)
        # a wait its unit abandoned (an async flow ended, a task dropped, while it waited)
        # never got the lock: counted with the waits still open, not timed
        ended = (self.w_end >= 0) & (ev.kind[end_c] != K.UNIT_END)
        acquired = ended & (ev.kind[end_c] == K.LOCK_ACQUIRED) & (ev.res[end_c] == self.w_res)
        # let through, the acquisition itself unrecorded (see the module doc): a wake on
        # the lock itself, or on none (Go's importer names none when no waker is known).
        # A wake on another resource (a task's own waker) says nothing about the lock.
        wake_res = ev.res[end_c]
        unseen = (
            ended
            & (ev.kind[end_c] == K.UNIT_WAKE)
            & (ev.arg[end_c] == Outcome.OK)
            & ((wake_res == self.w_res) | (wake_res == NO_INDEX))
        )
        self.w_ended = ended
        self.w_ns = np.where(ended, ev.time[end_c] - ev.time[self.w_block], 0)
        self.unseen = np.bincount(self.w_res[unseen], minlength=n_res)
        self.contended = np.bincount(self.w_res[acquired | unseen], minlength=n_res)
        acquired_or_unseen = acquired | unseen
        self.gave_up = np.bincount(self.w_res[ended & ~acquired_or_unseen], minlength=n_res)
        self.still = np.bincount(self.w_res[~ended], minlength=n_res)
        self.wait_total = np.bincount(self.w_res, weights=self.w_ns, minlength=n_res).astype(
            np.int64
        )
        self.wait_max = np.zeros(n_res, np.int64)
        np.maximum.at(self.wait_max, self.w_res, self.w_ns)
        # Holds (owned kinds; a semaphore's per unit, see the module doc).
        h = holds(trace, LOCK_LIKE)
        self.h_res, self.h_unit = h.res.astype(np.int64), h.unit.astype(np.int64)
        self.h_acq = h.acquire
        timed = h.release >= 0
        self.h_timed = timed
        self.h_ns = np.where(timed, ev.time[np.maximum(h.release, 0)] - ev.time[h.acquire], 0)
        self.held_at_end = np.bincount(self.h_res[~timed], minlength=n_res)
        self.held_at_end[semaphore] = 0
        # Acquisitions: hold starts, and every lock.acquired of a semaphore.
        sem_acq = np.flatnonzero(
            (ev.kind == K.LOCK_ACQUIRED) & trace.resource_kind_mask("semaphore")
        )
        acq = np.concatenate([h.acquire[~semaphore[self.h_res]], sem_acq.astype(np.int64)])
        acq_res = ev.res[acq].astype(np.int64)
        waited = np.isin(acq, self.w_end[acquired])
        self.convoys, self.longest_run = _runs(acq_res, acq, waited, n_res)
        # the unseen acquisitions count (at the wake that ended their wait), unit by unit
        acq = np.concatenate([acq, self.w_end[unseen]])
        acq_res = np.concatenate([acq_res, self.w_res[unseen]])
        self.acquisitions = np.bincount(acq_res, minlength=n_res)
        self.a_event, self.a_res = acq, acq_res
        self.max_queue = _max_queue(self.w_res, self.w_block, self.w_end, n_res)
        self.holders = _distinct(self.h_res, self.h_unit, n_res)
        # a semaphore's holders, and a lock's whose acquisitions were not all seen: the
        # units that acquired it
        by_acq = semaphore | (self.unseen > 0)
        self.holders[by_acq] = _distinct(acq_res, ev.unit[acq].astype(np.int64), n_res)[by_acq]
        self.waiters = _distinct(self.w_res, self.w_unit, n_res)
        # The process's span, per resource.
        lo, hi = trace.proc_bounds[:-1], trace.proc_bounds[1:]
        span = np.zeros(len(lo), np.int64)
        has = hi > lo
        span[has] = ev.time[hi[has] - 1] - ev.time[lo[has]]
        res_proc = np.array([r.proc for r in trace.resources], dtype=np.int64)
        self.span = span[res_proc]
        self.lockish = lockish

    def severity(self, r: int) -> str | None:
        total, worst, span = int(self.wait_total[r]), int(self.wait_max[r]), int(self.span[r])
        share = total / span if span > 0 else 0.0
        if total < INFO_TOTAL_NS:  # too little to mention, whatever the span
            return None
        if worst >= WARN_WORST_NS or (total >= WARN_TOTAL_NS and share >= WARN_SHARE):
            return "warning"
        if share >= INFO_SHARE or self.convoys[r] > 0:
            return "info"
        return None

    def reported(self) -> tuple[ResourceContention, ...]:
        n_waits = self.contended + self.gave_up + self.still
        active = np.flatnonzero(self.lockish & ((self.acquisitions > 0) | (n_waits > 0)))
        order = np.lexsort(
            (active, -self.acquisitions[active], -n_waits[active], -self.wait_total[active])
        )
        ranked = active[order].tolist()
        flagged = [r for r in ranked if self.severity(r) is not None]
        rank = {r: i for i, r in enumerate(ranked)}
        chosen = sorted(set(flagged + ranked[:TOP_N]), key=rank.__getitem__)
        if not chosen:
            return ()
        w_order = np.argsort(self.w_res, kind="stable")
        w_ptr = np.searchsorted(self.w_res[w_order], np.arange(len(self.trace.resources) + 1))
        h_order = np.argsort(self.h_res, kind="stable")
        h_ptr = np.searchsorted(self.h_res[h_order], np.arange(len(self.trace.resources) + 1))
        a_order = np.argsort(self.a_res, kind="stable")
        a_ptr = np.searchsorted(self.a_res[a_order], np.arange(len(self.trace.resources) + 1))
        out = []
        for r in chosen:
            wr = w_order[w_ptr[r] : w_ptr[r + 1]]
            hr = h_order[h_ptr[r] : h_ptr[r + 1]]
            ar = a_order[a_ptr[r] : a_ptr[r + 1]]
            out.append(self.detail(r, wr, hr, ar))
        return tuple(out)

    def detail(self, r: int, wr: I64, hr: I64, ar: I64) -> ResourceContention:
        ev = self.trace.events
        timed_w = wr[self.w_ended[wr]]
        w_ns = self.w_ns[timed_w]
        worst = worst_end = NO_INDEX
        if len(timed_w):
            k = int(timed_w[int(np.argmax(w_ns))])
            worst, worst_end = int(self.w_block[k]), int(self.w_end[k])
        timed_h = hr[self.h_timed[hr]]
        h_ns = self.h_ns[timed_h]
        longest = int(self.h_acq[timed_h[int(np.argmax(h_ns))]]) if len(timed_h) else NO_INDEX
        # Per unit: acquisitions, waits, wait and hold time.
        a_units = ev.unit[self.a_event[ar]].astype(np.int64)
        units = np.unique(np.concatenate([a_units, self.w_unit[wr]]))
        pos = {int(u): i for i, u in enumerate(units.tolist())}
        n = len(units)
        u_acq = np.bincount(np.searchsorted(units, a_units), minlength=n)
        u_waits = np.bincount(np.searchsorted(units, self.w_unit[wr]), minlength=n)
        u_wait_ns = np.bincount(
            np.searchsorted(units, self.w_unit[wr]), weights=self.w_ns[wr], minlength=n
        )
        u_hold_ns = np.zeros(n)
        known = np.isin(self.h_unit[timed_h], units)
        np.add.at(u_hold_ns, np.searchsorted(units, self.h_unit[timed_h][known]), h_ns[known])
        shares = sorted(
            (
                UnitShare(
                    int(u),
                    int(u_acq[i]),
                    int(u_waits[i]),
                    int(u_wait_ns[i]),
                    int(u_hold_ns[i]),
                )
                for u, i in pos.items()
            ),
            key=lambda s: (-s.wait_ns, -s.hold_ns, s.unit),
        )
        return ResourceContention(
            resource=r,
            acquisitions=int(self.acquisitions[r]),
            contended=int(self.contended[r]),
            acquired_unseen=int(self.unseen[r]),
            gave_up=int(self.gave_up[r]),
            still_waiting=int(self.still[r]),
            wait_ns=_percentiles(w_ns),
            worst_wait=worst,
            worst_wait_end=worst_end,
            hold_ns=_percentiles(h_ns) if len(h_ns) else None,
            longest_hold=longest,
            held_at_end=int(self.held_at_end[r]),
            holders=int(self.holders[r]),
            waiters=int(self.waiters[r]),
            units=tuple(shares[:UNITS_SHOWN]),
            convoys=int(self.convoys[r]),
            longest_run=int(self.longest_run[r]),
            max_queue=int(self.max_queue[r]),
            span_ns=int(self.span[r]),
            severity=self.severity(r),
        )


def _go_internal(trace: Trace, r: int) -> bool:
    """Is resource r a Go process's own lock, placed in the standard library's code?"""
    res = trace.resources[r]
    if trace.processes[res.proc].runtime != "go" or res.loc == NO_INDEX:
        return False
    return go_std_func(trace.locations[res.loc].func)


def go_std_func(func: str) -> bool:
    """``internal/poll.(*FD).Read`` → True, ``main.worker``/``github.com/a/b.F`` → False:
    a standard package's path has no dot in its first element (the helper's rule)."""
    if not func:
        return False
    slash = func.rfind("/")
    dot = func.find(".", slash + 1)
    pkg = func[:dot] if dot >= 0 else func
    return pkg != "main" and "." not in pkg.split("/", 1)[0]


def _percentiles(values: I64) -> Percentiles:
    if not len(values):
        return Percentiles(0, 0, 0, 0)
    p50, p99 = np.percentile(values, (50, 99), method="inverted_cdf")  # nearest rank
    return Percentiles(int(values.sum()), int(p50), int(p99), int(values.max()))


def _distinct(res: I64, unit: I64, n_res: int) -> I64:
    """Per resource: how many distinct units appear with it."""
    if not len(res):
        return np.zeros(n_res, np.int64)
    pairs = np.unique(res * (int(unit.max()) + 1) + unit)
    return np.bincount(pairs // (int(unit.max()) + 1), minlength=n_res).astype(np.int64)


def _runs(res: I64, event: I64, waited: npt.NDArray[np.bool_], n_res: int) -> tuple[I64, I64]:
    """Per resource: (convoys, longest run) of consecutive waited acquisitions, in the
    order it was taken (event order: one process's events are in time order)."""
    convoys, longest = np.zeros(n_res, np.int64), np.zeros(n_res, np.int64)
    n = len(res)
    if not n:
        return convoys, longest
    order = np.lexsort((event, res))
    res, waited = res[order], waited[order]
    pos = np.arange(n, dtype=np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = res[1:] != res[:-1]
    prev_waited = np.zeros(n, dtype=bool)
    prev_waited[1:] = waited[:-1]
    begins = waited & (new | ~prev_waited)
    begin = np.maximum.accumulate(np.where(begins, pos, -1))
    length = np.where(waited, pos - begin + 1, 0)
    np.maximum.at(longest, res, length)
    last = np.ones(n, dtype=bool)
    last[:-1] = new[1:] | ~waited[1:]
    ends = waited & last & (length >= CONVOY_MIN)
    convoys += np.bincount(res[ends], minlength=n_res)
    return convoys, longest


def _max_queue(res: I64, block: I64, end: I64, n_res: int) -> I64:
    """Per resource: the most units waiting at once (+1 at each block, -1 at its end)."""
    out = np.zeros(n_res, np.int64)
    if not len(res):
        return out
    ended = end >= 0
    r = np.concatenate([res, res[ended]])
    at = np.concatenate([block, end[ended]])
    step = np.concatenate([np.ones(len(res), np.int64), -np.ones(int(ended.sum()), np.int64)])
    order = np.lexsort((at, r))
    r, step = r[order], step[order]
    depth = np.cumsum(step)
    new = np.ones(len(r), dtype=bool)
    new[1:] = r[1:] != r[:-1]
    base = np.maximum.accumulate(np.where(new, np.arange(len(r)), 0))
    before = np.concatenate([[0], depth[:-1]])
    depth = depth - before[base]
    np.maximum.at(out, r, depth)
    return out


# --- the finding and the document ---------------------------------------------------------------


def _finding(trace: Trace, rc: ResourceContention) -> Finding:
    ref = resource_ref(trace, rc.resource)
    what = f"{ref.kind} {ref.name}"
    w, h = rc.wait_ns, rc.hold_ns
    units = [s.unit for s in rc.units]
    short = unit_names(trace, units)
    proc = trace.processes[trace.resources[rc.resource].proc]
    steps = [
        _acquisitions_step(rc)
        + (f", {plural(rc.gave_up, 'wait')} gave up" if rc.gave_up else "")
        + (f", {rc.still_waiting:,} still waiting when the trace ends" if rc.still_waiting else ""),
    ]
    worst = ""
    if rc.worst_wait >= 0:
        who = unit_label(trace, int(trace.events.unit[rc.worst_wait]))
        where = event_where(trace, rc.worst_wait)
        worst = f"; the worst by {who}" + (f" at {where}" if where else "")
    # waits of several units overlap: their sum can exceed the time recorded
    share = (
        f"{rc.share:.1%} of the {fmt_duration(rc.span_ns)} {proc.service or '?'} was recorded"
        if rc.share <= 1
        else f"{rc.share:.1f}x the {fmt_duration(rc.span_ns)} {proc.service or '?'} was "
        "recorded: several units waited at once"
    )
    steps.append(
        f"waiting: {fmt_duration(w.total)} summed over the waits ({share}), "
        f"p50 {fmt_duration(w.p50)}, worst {fmt_duration(w.max)}{worst}"
    )
    if h is not None:
        line = (
            f"held {fmt_duration(h.p50)} at p50, {fmt_duration(h.p99)} at p99, "
            f"{fmt_duration(h.max)} at most"
        )
        if rc.longest_hold >= 0:
            holder = short.get(int(trace.events.unit[rc.longest_hold]))
            where = event_where(trace, rc.longest_hold)
            holder = holder or unit_label(trace, int(trace.events.unit[rc.longest_hold]))
            line += f" (the longest by {holder}" + (f", from {where})" if where else ")")
        steps.append(line)
    elif rc.acquired_unseen:
        steps.append("held: unknown (the recording has no acquisitions or releases of it)")
    queue = f"at most {plural(rc.max_queue, 'unit')} waited at once"
    if rc.convoys:
        steps.append(
            f"convoy: {rc.longest_run} acquisitions in a row each waited for the one before "
            f"({plural(rc.convoys, 'run')} of {CONVOY_MIN} or more); {queue}"
        )
    else:
        steps.append(queue)
    waiting = [s for s in rc.units if s.wait_ns > 0][:3]
    if waiting:
        steps.append(
            "most waiting: "
            + join_words([f"{short[s.unit]} {fmt_duration(s.wait_ns)}" for s in waiting])
        )
    n_waits = rc.contended + rc.gave_up
    if _only_unseen(rc):
        outcome = f"{_taken(rc)} ended with the lock taken, holds unknown"
    else:
        outcome = f"{rc.contended:,} of {plural(rc.acquisitions, 'acquisition')} waited"
    summary = (
        f"lock contention on {what}: {fmt_duration(w.total)} of waiting in "
        f"{plural(n_waits, 'wait')}, worst {fmt_duration(w.max)}; {outcome}"
        + (f", {rc.gave_up:,} gave up" if rc.gave_up else "")
        + (f"; convoys of up to {rc.longest_run}" if rc.convoys else "")
    )
    events = [e for e in (rc.worst_wait, rc.worst_wait_end, rc.longest_hold) if e >= 0]
    assert rc.severity is not None
    return Finding(
        kind="lock-contention",
        severity=rc.severity,
        summary=summary,
        identity=(ref.key(),),
        units=tuple(unit_ref(trace, u) for u in units),
        resources=(ref,),
        events=tuple(str(trace.event_id(e)) for e in sorted(set(events))),
        explanation=tuple(steps),
        extra=(("contention", _stats_json(trace, rc)),),
    )


def _only_unseen(rc: ResourceContention) -> bool:
    """Were all its acquisitions unseen (Go's execution tracer): the waits are all we know."""
    return rc.acquired_unseen > 0 and rc.acquired_unseen == rc.acquisitions


def _acquisitions_step(rc: ResourceContention) -> str:
    if _only_unseen(rc):
        # a share of acquisitions that waited would be 100 % by construction: not said
        n_waits = rc.contended + rc.gave_up + rc.still_waiting
        return (
            f"{plural(n_waits, 'wait')} by {plural(rc.waiters, 'unit')}, {_taken(rc)} ended "
            "with the lock taken (acquisitions that did not wait are not recorded)"
        )
    line = (
        f"{plural(rc.acquisitions, 'acquisition')} by {plural(rc.holders, 'unit')}; "
        f"{rc.contended:,} had to wait ({_pct(rc.contended, rc.acquisitions)})"
    )
    if rc.acquired_unseen:
        line += f", {rc.acquired_unseen:,} of them taken with no acquisition recorded"
    return line


def _taken(rc: ResourceContention) -> str:
    """How many of the waits got the lock, as words: "each", or their number."""
    return f"{rc.contended:,}" if rc.gave_up or rc.still_waiting else "each"


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "-"


def finding_of(trace: Trace, rc: ResourceContention) -> str | None:
    """The id of the resource's finding, None if it has none."""
    if rc.severity is None:
        return None
    return finding_id("lock-contention", (resource_ref(trace, rc.resource).key(),))


def section(trace: Trace, table: tuple[ResourceContention, ...]) -> list[dict[str, Any]]:
    """The document's ``contention`` section: one entry per reported resource, by total
    wait; ``finding`` is the id of its ``lock-contention`` finding, or null."""
    out = []
    for rc in table:
        ref = resource_ref(trace, rc.resource)
        proc = trace.processes[trace.resources[rc.resource].proc]
        entry: dict[str, Any] = {
            "resource": {"kind": ref.kind, "name": ref.name, "where": ref.where},
            "process": proc.id,
            "service": proc.service,
            "pid": proc.pid,
        }
        entry.update(_stats_json(trace, rc))
        entry["finding"] = finding_of(trace, rc)
        entry["severity"] = rc.severity
        out.append(entry)
    return out


def _stats_json(trace: Trace, rc: ResourceContention) -> dict[str, Any]:
    w, h = rc.wait_ns, rc.hold_ns
    worst = None
    if rc.worst_wait >= 0:
        worst = {
            "unit": str(trace.unit_id(int(trace.events.unit[rc.worst_wait]))),
            "event": str(trace.event_id(rc.worst_wait)),
            "where": event_where(trace, rc.worst_wait),
            "wait_ns": w.max,
        }
    return {
        "acquisitions": rc.acquisitions,
        "contended": rc.contended,
        "acquired_unseen": rc.acquired_unseen,
        "gave_up": rc.gave_up,
        "still_waiting": rc.still_waiting,
        "wait_ns": {"total": w.total, "p50": w.p50, "p99": w.p99, "max": w.max},
        "hold_ns": None
        if h is None
        else {"total": h.total, "p50": h.p50, "p99": h.p99, "max": h.max},
        "held_at_end": rc.held_at_end,
        "holders": rc.holders,
        "waiters": rc.waiters,
        "units": [
            {
                "id": str(trace.unit_id(s.unit)),
                "name": trace.units[s.unit].name,
                "acquisitions": s.acquisitions,
                "waits": s.waits,
                "wait_ns": s.wait_ns,
                "hold_ns": s.hold_ns,
            }
            for s in rc.units
        ],
        "convoys": rc.convoys,
        "longest_run": rc.longest_run,
        "max_queue": rc.max_queue,
        "worst_wait": worst,
        "span_ns": rc.span_ns,
        "share_of_span": round(rc.share, 4),
    }
