"""Waits and lock holds: the intervals the wait-for graph is made of.

A **wait** is a ``unit.block`` and the unit's next meaningful event, which says how it
ended (``lock.acquired``, ``rpc.response``, ``join.done``, or ``unit.wake`` with an
outcome); a block with no next event was still waiting when the trace ended. Waits are few
(contended operations only), so later stages may loop over them.

A **hold** is an owned lock from the acquire that takes it to the release that gives it up.
Holds are many (every uncontended acquisition), so they are computed in bulk: lock events
sorted by (lock, unit, time); a hold starts at an acquire whose previous event of that unit
on that lock ended a hold (or that has none), and ends at the next release that ends one
(for an rlock, the release back to depth 0). Only lock kinds with an owner are tracked
(lock, rlock, rwlock, monitor): a semaphore may be released by any unit, so "who holds it"
is not a fact the events give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.causality.program_order import next_in_unit
from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.spec import EndStatus, K, Outcome, Reason

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
OWNED_LOCKS = ("lock", "rlock", "rwlock", "monitor")
STILL = np.iinfo(np.int64).max  # "has not ended when the trace ends", as a time


@dataclass(frozen=True, slots=True)
class Waits:
    """One row per ``unit.block``, in event order."""

    block: I64  # the unit.block event
    end: I64  # the event that ended the wait, NO_INDEX if it had not ended
    unit: I32
    res: I32
    reason: I64  # spec.Reason

    def __len__(self) -> int:
        return len(self.block)


@dataclass(frozen=True, slots=True)
class Holds:
    """One row per hold of an owned lock, sorted by (lock, acquire event)."""

    acquire: I64
    release: I64  # NO_INDEX: still held when the trace ends
    unit: I32
    res: I32
    shared: npt.NDArray[np.bool_]  # the read side of an rwlock

    def __len__(self) -> int:
        return len(self.acquire)

    def of(self, res: int) -> slice:
        """Rows of one lock."""
        lo, hi = np.searchsorted(self.res, [res, res + 1])
        return slice(int(lo), int(hi))


# What ends a wait for a reply: the reply itself (rpc.response), a wake of that same
# request (a timeout or a failure), or the unit's end. A runtime may record its own work on
# the waiting unit while the request is out — Go's net/http Transport starts connection
# goroutines and wakes them, tokio wakes the task for hyper's connection and then parks it
# on an internal channel — and none of that ends the wait.


def waits(trace: Trace, nxt: I64 | None = None) -> Waits:
    ev = trace.events
    nxt = next_in_unit(trace) if nxt is None else nxt
    block = np.flatnonzero((ev.kind == K.UNIT_BLOCK) & (ev.unit >= 0)).astype(np.int64)
    end = nxt[block]
    rpc = ev.arg[block] == Reason.RPC
    if rpc.any():
        end = end.copy()
        rows = block[rpc]
        own = _next_of(trace, rows, (K.RPC_RESPONSE, K.UNIT_WAKE), same_res=True)
        over = _next_of(trace, rows, (K.UNIT_END,), same_res=False)
        end[rpc] = np.where((own >= 0) & ((over < 0) | (own < over)), own, over)
    return Waits(block, end, ev.unit[block], ev.res[block], ev.arg[block])


def _next_of(trace: Trace, rows: I64, kinds: tuple[int, ...], *, same_res: bool) -> I64:
    """Per row: the same unit's next event (in program order: by row) of one of ``kinds``
    — on the same resource too when ``same_res`` — NO_INDEX if none."""
    ev = trace.events
    cand = np.flatnonzero(np.isin(ev.kind, kinds) & (ev.unit >= 0)).astype(np.int64)
    if not len(cand) or not len(rows):
        return np.full(len(rows), NO_INDEX, np.int64)
    n = np.int64(len(ev) + 1)

    def key(i: I64) -> I64:
        k = ev.unit[i].astype(np.int64)
        if same_res:
            k = k * np.int64(len(trace.resources) + 1) + (ev.res[i].astype(np.int64) + 1)
        return k * n + i

    keys = key(cand)
    order = np.argsort(keys, kind="stable")
    keys, cand = keys[order], cand[order]
    want = key(rows)
    pos = np.searchsorted(keys, want, side="right")
    found = pos < len(keys)
    hit = np.where(found, cand[np.minimum(pos, len(cand) - 1)], NO_INDEX)
    same = found.copy()
    same[same] = ev.unit[hit[same]] == ev.unit[rows[same]]
    if same_res:
        same[same] = ev.res[hit[same]] == ev.res[rows[same]]
    return np.where(same, hit, NO_INDEX).astype(np.int64)


_WAKE_WORDS: dict[int, str] = {
    Outcome.OK: "woken",
    Outcome.TIMEOUT: "timed out",
    Outcome.CANCELLED: "cancelled",
    Outcome.ERROR: "failed",
}
_END_WORDS: dict[int, str] = {
    K.LOCK_ACQUIRED: "acquired",
    K.RPC_RESPONSE: "got the reply",
    K.JOIN_DONE: "joined",
    K.QUEUE_GET: "got an item",
    K.QUEUE_PUT: "put the item",
    K.UNIT_END: "ended",
}


def wait_outcome(trace: Trace, end: int) -> str:
    """How a wait ended, in words: "acquired", "timed out", "still waiting", ..."""
    if end < 0:
        return "still waiting"
    kind, arg = int(trace.events.kind[end]), int(trace.events.arg[end])
    if kind == K.UNIT_WAKE:
        return _WAKE_WORDS.get(arg, "woken")
    if kind == K.RPC_RESPONSE and arg < 0:
        return "failed (no reply)"  # the connection was lost: the callee may have died
    if kind == K.UNIT_END:
        # an async flow or task ended (its request closed, its runtime shut down) while it
        # waited: it never got what it waited for, and gave nothing back
        return _ABANDONED.get(arg, "was abandoned")
    return _END_WORDS.get(kind, "went on")


_ABANDONED: dict[int, str] = {
    EndStatus.OK: "was abandoned (its unit ended while still waiting)",
    EndStatus.ERROR: "was abandoned (its unit failed while still waiting)",
    EndStatus.CANCELLED: "was abandoned (its unit was cancelled while still waiting)",
}


def holds(trace: Trace, kinds: tuple[str, ...] = OWNED_LOCKS) -> Holds:
    """The holds of the resources of ``kinds`` (default: the owned locks; the lock-order and
    contention analyses also pass ``condition``, whose own lock asyncio records on it, and
    ``semaphore``, where a hold is one unit's acquire to its own next release)."""
    ev = trace.events
    idx = np.flatnonzero(
        np.isin(ev.kind, (K.LOCK_ACQUIRED, K.LOCK_RELEASE))
        & (ev.res >= 0)
        & trace.resource_kind_mask(*kinds)
    )
    res, unit = ev.res[idx], ev.unit[idx]
    order = np.lexsort((unit, res))  # stable: time order kept within (lock, unit)
    idx, res, unit = idx[order], res[order], unit[order]
    kind, arg = ev.kind[idx], ev.arg[idx]
    rlock = trace.resource_kind_mask("rlock")[idx]
    ends = (kind == K.LOCK_RELEASE) & (~rlock | (arg == 0))
    n = len(idx)
    same_prev = np.zeros(n, dtype=bool)
    same_prev[1:] = (res[1:] == res[:-1]) & (unit[1:] == unit[:-1])
    prev_ends = np.zeros(n, dtype=bool)
    prev_ends[1:] = ends[:-1]
    starts = (kind == K.LOCK_ACQUIRED) & (~same_prev | prev_ends)
    # The first hold-ending release at or after each row, within the same (lock, unit).
    pos = np.arange(n, dtype=np.int64)
    nxt_end = np.minimum.accumulate(np.where(ends, pos, n)[::-1])[::-1] if n else pos
    group_end = _group_last(res, unit)
    rows = np.flatnonzero(starts)
    e = nxt_end[rows]
    release = np.where(e <= group_end[rows], idx[np.minimum(e, n - 1)], NO_INDEX)
    shared = trace.resource_kind_mask("rwlock")[idx[rows]] & (arg[rows] == 1)
    acquire = idx[rows]
    by_lock = np.lexsort((acquire, res[rows]))
    return Holds(
        acquire[by_lock].astype(np.int64),
        release[by_lock].astype(np.int64),
        unit[rows][by_lock],
        res[rows][by_lock],
        shared[by_lock],
    )


def _group_last(res: I32, unit: I32) -> I64:
    """For rows sorted by (res, unit): the row number of the last row of each one's group."""
    n = len(res)
    pos = np.arange(n, dtype=np.int64)
    last = np.ones(n, dtype=bool)
    last[:-1] = (res[1:] != res[:-1]) | (unit[1:] != unit[:-1])
    return np.minimum.accumulate(np.where(last, pos, n)[::-1])[::-1] if n else pos


def times_or_still(adjusted: I64, events: I64) -> I64:
    """Adjusted times of events; STILL where the event is NO_INDEX (has not happened)."""
    return (
        np.where(events >= 0, adjusted[np.maximum(events, 0)], STILL)
        if len(adjusted)
        else (np.full(len(events), STILL, dtype=np.int64))
    )
