"""A loaded trace: every event of every process as numpy columns, plus the small tables.

The columns are what analyses work on in bulk (numpy masks, sorts and gathers, never a
Python object per event). Row ``i`` of every column is event ``i``; events are sorted by
(process, monotonic time, sequence number), so one process's events are contiguous and in
the order its clock saw them, and a unit's events are in program order.

The trade-off: one global sort at load time (O(n log n) once) buys contiguous per-process
slices and cheap per-unit program order (a stable argsort by unit) for every analysis.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from willowisp.ingest.anchors import Anchors, anchors_of
from willowisp.ingest.tables import (
    NO_INDEX,
    Fault,
    FileReport,
    Location,
    Process,
    Resource,
    Unit,
    Unreadable,
)
from willowisp.model.ids import EventId, UnitId, event_id

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Events:
    """Event columns; all of length n. Indices are global (see ingest.tables)."""

    proc: I32  # process index
    unit: I32  # unit index, NO_INDEX for agent metadata done by no unit
    kind: U8  # spec.K code
    time: I64  # the process's monotonic ns
    raw: I64  # wall ns through the process's anchors (never adjusted)
    res: I32  # resource index or NO_INDEX
    arg: I64
    loc: I32  # location index or NO_INDEX
    seq: I64  # sequence number within the process

    def __len__(self) -> int:
        return len(self.kind)

    @staticmethod
    def empty() -> Events:
        i32, i64 = np.zeros(0, np.int32), np.zeros(0, np.int64)
        return Events(i32, i32, np.zeros(0, np.uint8), i64, i64, i32, i64, i32, i64)


@dataclass
class Trace:
    """Everything ``load`` found. Tables are read-only once built.

    Not slotted: the derived arrays below are computed on first use and cached.

    Invariant: ``units[i].index == i`` (same for resources and locations), and rows are
    ordered by (process, number), so ``unit_key`` below is sorted.
    """

    events: Events
    processes: list[Process]
    units: list[Unit]
    resources: list[Resource]
    locations: list[Location]
    faults: list[Fault]
    files: list[FileReport]
    unreadable: list[Unreadable]
    notes: list[str] = field(default_factory=list)  # truncated tails and the like
    unknown_kinds: int = 0  # events of kinds this reader does not know, skipped

    # -- identities -------------------------------------------------------------------

    def event_id(self, i: int) -> EventId:
        ev = self.events
        return event_id(self.processes[int(ev.proc[i])].id, int(ev.seq[i]))

    def event_indices(self, ids: Iterable[str]) -> dict[str, int]:
        """Rows of the events with these ids (``<process id>:<seq>``); ids that name no
        loaded event are left out. One pass over each named process's sequence numbers."""
        by_proc: dict[int, dict[int, str]] = {}
        for eid in ids:
            pid, _, seq = eid.rpartition(":")
            p = self.process_index.get(pid)
            if p is not None and seq.isdigit():
                by_proc.setdefault(p, {})[int(seq)] = eid
        out: dict[str, int] = {}
        for p, wanted in by_proc.items():
            lo, hi = int(self.proc_bounds[p]), int(self.proc_bounds[p + 1])
            seqs = self.events.seq[lo:hi]
            rows = np.flatnonzero(np.isin(seqs, np.fromiter(wanted, np.int64, len(wanted))))
            for r in rows.tolist():
                out.setdefault(wanted[int(seqs[r])], lo + r)
        return out

    def unit_id(self, u: int) -> UnitId:
        unit = self.units[u]
        return unit.id(self.processes[unit.proc])

    def unit_index(self, proc: npt.NDArray[np.integer], number: npt.NDArray[np.integer]) -> I32:
        """Global unit indices for (process, unit number) pairs; NO_INDEX where undefined."""
        return _lookup(self.unit_key, proc, number)

    # -- small arrays over the tables, built once ------------------------------------

    @cached_property
    def unit_key(self) -> I64:
        """(process << 32 | number) per unit, sorted: the key of ``unit_index``."""
        return np.array([(u.proc << 32) | u.number for u in self.units], dtype=np.int64)

    @cached_property
    def first_located_event(self) -> I64:
        """Per resource: its first event (lowest row) that has a source location,
        NO_INDEX if none — where a request was sent from, say."""
        ev = self.events
        out = np.full(len(self.resources), NO_INDEX, dtype=np.int64)
        rows = np.flatnonzero((ev.res >= 0) & (ev.loc >= 0))
        if len(rows):
            res, first = np.unique(ev.res[rows], return_index=True)
            out[res] = rows[first]
        return out

    @cached_property
    def process_index(self) -> dict[str, int]:
        """Process id -> process index."""
        return {p.id: p.index for p in self.processes}

    @cached_property
    def unit_proc(self) -> I32:
        return np.array([u.proc for u in self.units], dtype=np.int32)

    @cached_property
    def resource_kind(self) -> npt.NDArray[np.str_]:
        """Per resource: its kind, as an array to gather from by event."""
        return np.array([r.kind for r in self.resources], dtype=str)

    def resource_kind_mask(self, *kinds: str) -> npt.NDArray[np.bool_]:
        """Per event: does its resource have one of ``kinds``? (False where res is none.)"""
        per_res = np.isin(self.resource_kind, kinds) if self.resources else np.zeros(0, bool)
        res = self.events.res
        out = np.zeros(len(res), dtype=bool)
        has = res >= 0
        out[has] = per_res[res[has]]
        return out

    @cached_property
    def proc_bounds(self) -> I64:
        """Process p's events are rows ``proc_bounds[p]:proc_bounds[p + 1]``."""
        idx = np.arange(len(self.processes) + 1, dtype=np.int32)
        return np.searchsorted(self.events.proc, idx).astype(np.int64)

    def anchors(self, p: int) -> Anchors:
        """Process p's clock anchors."""
        lo, hi = int(self.proc_bounds[p]), int(self.proc_bounds[p + 1])
        ev = self.events
        return anchors_of(ev.kind[lo:hi], ev.time[lo:hi], ev.arg[lo:hi])

    @cached_property
    def runtimes(self) -> list[str]:
        return sorted({p.runtime for p in self.processes if p.runtime})


def _lookup(keys: I64, proc: npt.NDArray[np.integer], number: npt.NDArray[np.integer]) -> I32:
    want = (proc.astype(np.int64) << 32) | number.astype(np.int64)
    if len(keys) == 0:
        return np.full(len(want), NO_INDEX, dtype=np.int32)
    pos = np.searchsorted(keys, want)
    pos_c = np.minimum(pos, len(keys) - 1)
    found = keys[pos_c] == want
    return np.where(found, pos_c, NO_INDEX).astype(np.int32)
