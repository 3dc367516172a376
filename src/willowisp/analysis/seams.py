"""Seams: where the latency of each cross-process hop goes, per hop group.

For every linked request (or message) whose events on both sides are in the trace, the
latency the caller sees is split into parts that add up to it:

=============  ===============================================================================
marshal        the caller's own time from its ``msg.send`` to the ``unit.block`` that starts
               its wait for the reply (building and writing the request), on its own clock;
               absent when the caller wrote no block (then ``transit`` holds it)
transit        the rest of ``msg.send`` -> the callee's ``msg.recv``: the network, the
               callee's accept and read (and, for a message, the broker), in adjusted time,
               with the two clock domains' uncertainty (0 within one domain)
structural     messages only: the part of the produce -> consume wait that the consumer's
               rhythm explains (:mod:`willowisp.analysis.structural`); the queue delay that
               is not slowness
handler        the callee's ``msg.recv`` -> its ``rpc.reply`` on its own clock; for a message,
               ``msg.recv`` -> the operation's end when the operation ends in that consumer
reply          the callee's ``rpc.reply`` -> the caller's ``rpc.response``, adjusted, with the
               same uncertainty as transit
=============  ===============================================================================

so that marshal + transit + handler + reply is the caller's send -> response time (and
transit + structural the message's produce -> consume time). Transit and reply alone are
only as exact as the clock alignment; their sum is exact whatever the offsets. Each part is
summarised per hop group (the ``hops`` section's from, to and protocol) by its p50 and p99
(nearest rank) over the rows that have it. Spawns are not split (a process's start is not a
seam).

This module also assembles :class:`Timing`, what the document's timing views share (the
consumer rhythms, the walk's index, the slowest operations' critical paths and the seams),
so that it is computed once per analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.analysis import critical_path, structural
from willowisp.analysis.critical_path import CriticalPath, PathIndex
from willowisp.analysis.structural import Structure
from willowisp.causality.hops import HopKind, Side
from willowisp.causality.link import Causality
from willowisp.model.spec import K

I64 = npt.NDArray[np.int64]
NONE = np.iinfo(np.int64).min  # "this row has no such part"
GroupKey = tuple[Side, Side, str]


@dataclass(frozen=True, slots=True)
class Part:
    """One part's distribution over a group's rows."""

    count: int  # rows that have this part
    p50_ns: int
    p99_ns: int
    uncertainty_ns: int | None  # the largest over the rows (None: an unbounded clock)

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50": self.p50_ns,
            "p99": self.p99_ns,
            "uncertainty_ns": self.uncertainty_ns,
        }


PARTS = ("marshal", "transit", "structural", "handler", "reply")


@dataclass(frozen=True, slots=True)
class Seams:
    """A hop group's split (see the module doc); a part no row has is None."""

    measured: int  # linked rows with both sides' events
    parts: dict[str, Part | None]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"measured": self.measured}
        for name in PARTS:
            part = self.parts.get(name)
            out[f"{name}_ns"] = part.to_json() if part is not None else None
        return out


def by_group(ix: PathIndex, structure: Structure) -> dict[GroupKey, Seams]:
    """Seams per hop group, keyed like ``hops.summarize``'s groups of linked rows."""
    c = ix.c
    trace, hops = c.trace, c.hops
    ev = trace.events
    adj = ix.adj
    rows = np.flatnonzero(
        hops.linked
        & np.isin(hops.kind, (HopKind.RPC, HopKind.MESSAGE))
        & (hops.client >= 0)
        & (hops.server >= 0)
        & (hops.send >= 0)
        & (hops.recv >= 0)
    )
    if not len(rows):
        return {}
    send, recv = hops.send[rows], hops.recv[rows]
    reply, response = hops.reply[rows], hops.response[rows]
    is_rpc = hops.kind[rows] == HopKind.RPC
    unc = _uncertainty(c, send, recv)
    # marshal: the caller's block on this request right after its send
    nxt = _next_event(ix, send)
    blocked = (nxt >= 0) & is_rpc
    blocked[blocked] = (ev.kind[nxt[blocked]] == K.UNIT_BLOCK) & (
        ev.res[nxt[blocked]] == ev.res[send[blocked]]
    )
    marshal = np.where(blocked, ev.time[np.maximum(nxt, 0)] - ev.time[send], NONE)
    marshal = np.where(blocked, np.maximum(marshal, 0), NONE)
    out_way = adj[recv] - adj[send]
    # The caller may still be writing (its block comes later) when the callee already read
    # the request: within one clock domain the part of marshal after the callee's receive
    # is not the caller's alone, so marshal stops there and transit is never negative
    # (the demo's urllib -> Go hop read "transit -1.1 ms").
    overlap = blocked & (unc == 0) & (marshal > np.maximum(out_way, 0))
    marshal = np.where(overlap, np.maximum(out_way, 0), marshal)
    structural_ns = _structural(structure, ev.unit[recv], adj[send], adj[recv])
    rhythm = np.isin(ev.unit[recv], list(structure.gaps))
    structural_ns = np.where(is_rpc | ~rhythm, NONE, structural_ns)
    transit = (
        out_way - np.where(blocked, marshal, 0) - np.where(structural_ns == NONE, 0, structural_ns)
    )
    answered = is_rpc & (reply >= 0) & (response >= 0)
    r_, p_ = np.maximum(reply, 0), np.maximum(response, 0)
    handler = np.where(answered, ev.time[r_] - ev.time[recv], NONE)
    back = np.where(answered, adj[p_] - adj[r_], NONE)
    # a message's handling: up to its operation's end, when that end is in the consumer
    op = c.operations.op[recv]
    if len(ix.ends):
        end = np.where(op >= 0, ix.ends[np.maximum(op, 0)], -1)
    else:  # no operations at all (no resource carries a trace id): nothing ends one
        end = np.full(len(op), -1, dtype=np.int64)
    in_consumer = ~is_rpc & (end >= 0)
    in_consumer[in_consumer] = ev.unit[end[in_consumer]] == ev.unit[recv[in_consumer]]
    handler = np.where(in_consumer, ev.time[np.maximum(end, 0)] - ev.time[recv], handler)
    columns = {
        "marshal": (marshal, None),
        "transit": (transit, unc),
        "structural": (structural_ns, None),
        "handler": (handler, None),
        "reply": (back, unc),
    }
    groups = _group_keys(c, rows)
    out: dict[GroupKey, Seams] = {}
    for key, members in groups.items():
        m = np.asarray(members, dtype=np.int64)
        parts = {
            name: _part(col[m], None if u is None else u[m]) for name, (col, u) in columns.items()
        }
        out[key] = Seams(len(m), parts)
    return out


def _next_event(ix: PathIndex, events: I64) -> I64:
    """Each event's unit's next event in program order (any kind), NO_INDEX at the end."""
    ev = ix.c.trace.events
    unit = ev.unit
    pos = ix.pos[events]
    order = ix.order
    nxt = np.where(pos + 1 < len(order), order[np.minimum(pos + 1, len(order) - 1)], -1)
    same = (nxt >= 0) & (unit[np.maximum(nxt, 0)] == unit[events])
    return np.where(same, nxt, -1)


def _uncertainty(c: Causality, a: I64, b: I64) -> I64:
    """Per pair of events: 0 within a clock domain, else the two domains' uncertainties
    summed (-1: unbounded)."""
    ev = c.trace.events
    dom = c.clocks.domain_of_proc
    unc = np.array(
        [
            -1 if d.uncertainty_ns is None else (0 if d.reference else d.uncertainty_ns)
            for d in c.clocks.domains
        ],
        dtype=np.int64,
    )
    da, db = dom[ev.proc[a]], dom[ev.proc[b]]
    ua, ub = unc[da], unc[db]
    both = np.where((ua < 0) | (ub < 0), -1, ua + ub)
    return np.where(da == db, 0, both)


def _structural(structure: Structure, unit: npt.NDArray[np.int32], a: I64, b: I64) -> I64:
    """Per interval [a, b] of a receiving unit: ns of it inside that unit's gaps."""
    out = np.zeros(len(a), dtype=np.int64)
    for u, (starts, ends) in structure.gaps.items():
        rows = np.flatnonzero(unit == u)
        for i in rows.tolist():
            lo = int(np.searchsorted(ends, a[i], side="right"))
            hi = int(np.searchsorted(starts, b[i], side="left"))
            inside = np.minimum(ends[lo:hi], b[i]) - np.maximum(starts[lo:hi], a[i])
            out[i] = int(np.clip(inside, 0, None).sum())
    return out


def _part(values: I64, unc: I64 | None) -> Part | None:
    have = values != NONE
    if not have.any():
        return None
    v = values[have]
    p50, p99 = (int(x) for x in np.percentile(v, [50, 99], method="nearest"))
    u: int | None = 0
    if unc is not None:
        uu = unc[have]
        u = None if (uu < 0).any() else int(uu.max())
    return Part(int(have.sum()), p50, p99, u)


def _group_keys(c: Causality, rows: I64) -> dict[GroupKey, list[int]]:
    """Row positions (into ``rows``) per (from, to, protocol), as ``summarize`` keys
    linked rows."""
    trace, hops = c.trace, c.hops
    res = trace.resources
    sides = [Side(p.service, p.runtime) for p in trace.processes]
    out: dict[GroupKey, list[int]] = {}
    clients, servers = hops.client[rows].tolist(), hops.server[rows].tolist()
    for i, (cl, sv) in enumerate(zip(clients, servers, strict=True)):
        cr, sr = res[cl], res[sv]
        protocol = cr.protocol or sr.protocol or "unknown"
        out.setdefault((sides[cr.proc], sides[sr.proc], protocol), []).append(i)
    return out


# -- what the timing views share -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timing:
    """Computed once per analysis: the consumer rhythms, the walk's index, the slowest
    operations' critical paths and the seams per hop group."""

    structure: Structure
    index: PathIndex
    slowest: tuple[CriticalPath, ...]
    seams: dict[GroupKey, Seams]

    def all_paths(self) -> list[CriticalPath]:
        """Every operation's critical path, in operation order, classified with the rhythms
        found (what ``diff`` compares segment by segment, through ``CriticalPath.keyed``)."""
        ops = range(len(self.index.c.operations.trace_ids))
        return [p for o in ops if (p := critical_path.critical_path(self.index, o)) is not None]

    def critical_paths_json(self) -> dict[str, Any]:
        return critical_path.section(self.index, self.slowest)

    def seams_json(self, key: GroupKey) -> dict[str, Any] | None:
        s = self.seams.get(key)
        return s.to_json() if s is not None else None


def timing(c: Causality, limit: int = critical_path.SHOWN_PATHS) -> Timing:
    structure = structural.detect(c)
    ix = critical_path.build_index(c, structure.gaps)
    return Timing(structure, ix, tuple(critical_path.slowest(ix, limit)), by_group(ix, structure))
