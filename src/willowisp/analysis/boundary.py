"""Boundaries in analysis: which events lie inside a declared boundary.

The spec itself (parsing, matching an inbound hop) lives in :mod:`willowisp.model.boundary`,
shared with the agent. Here a boundary becomes *instances* in a recorded trace:

1. an **entry** is a ``msg.recv`` whose server-side resource matches the boundary's entry
   (protocol, method and path, full gRPC method, or destination), in a process whose runtime
   the boundary allows;
2. the instance covers the entry's unit from the ``msg.recv`` to its ``rpc.reply`` on the
   same resource (for a message, to the unit's next ``msg.recv``; without either, to the
   unit's last event) -- or, with an exit other than ``reply``, to the answer of the first
   call matching the exit;
3. it extends along what the unit did meanwhile, by causality, not by time: a request it
   sent (``msg.send``) whose linked receiver runs in an allowed runtime opens an interval
   there (recv to reply), a message it produced the consumer's handling, a process it
   spawned the child's starting unit, a unit it created that whole unit, and an item it
   put on a queue (``queue.put`` with a token: a task handed to an executor's pool, a
   work item) the taker's handling of it: from that ``queue.get`` to the taker's next
   ``queue.get`` on the same queue (its next task), else its next ``msg.recv``, else its
   last event.

An event is *inside* when some instance covers it. ``analyze`` then suppresses findings none
of whose events is inside (a finding that names no event: none of whose resources, else
units, has an inside event), unless they are failures (severity ``error``);
``--no-suppress`` shows everything. Findings about the recording itself (``clock-skew``,
``buffer-drop``, ``agent-fault``) are never suppressed. Findings about no event at all (clock
domains, agent health) are never suppressed.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.analysis.finding import Finding
from willowisp.analysis.naming import resource_ref
from willowisp.causality.graph import HBGraph, queue_pairs
from willowisp.causality.hops import Hops
from willowisp.errors import UsageError
from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.boundary import Boundary, merge_boundaries, parse_boundary
from willowisp.model.spec import K

__all__ = [
    "Boundary",
    "Inside",
    "inside",
    "merge_boundaries",
    "parse_boundary",
    "recorded",
    "suppress",
]

Bools = npt.NDArray[np.bool_]
# Findings about how far the recording itself can be trusted: never suppressed.
ABOUT_THE_RECORDING = frozenset(("clock-skew", "buffer-drop", "agent-fault"))
_ONWARD = np.array([K.MSG_SEND, K.PROC_SPAWN, K.UNIT_CREATE, K.QUEUE_PUT], dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Instances:
    """What one boundary covers in the trace."""

    boundary: Boundary
    entries: int  # matching msg.recv events
    events: int  # events inside its instances
    units: int  # units with an inside event
    latency_ns: tuple[int, ...]  # per entry: recv to reply (or exit) on its unit, -1 if none


@dataclass(frozen=True, slots=True)
class Inside:
    mask: Bools  # per event
    unit_mask: Bools  # per unit: has an inside event
    per_boundary: tuple[Instances, ...]


class _UnitOrder:
    """Each unit's events in program order, as positions into one unit-sorted array."""

    def __init__(self, trace: Trace) -> None:
        unit = trace.events.unit
        self.order = np.argsort(unit, kind="stable")
        sorted_units = unit[self.order]
        n_units = len(trace.units)
        self.start = np.searchsorted(sorted_units, np.arange(n_units), side="left")
        self.stop = np.searchsorted(sorted_units, np.arange(n_units), side="right")

    def events(self, u: int) -> npt.NDArray[np.int64]:
        return self.order[self.start[u] : self.stop[u]]


def inside(
    trace: Trace, hops: Hops, boundaries: tuple[Boundary, ...], graph: HBGraph | None = None
) -> Inside:
    n = len(trace.events)
    mask = np.zeros(n, dtype=bool)
    ev = trace.events
    if not boundaries or n == 0:
        return Inside(mask, np.zeros(len(trace.units), dtype=bool), ())
    units = _UnitOrder(trace)
    recv_of_send = _receivers(hops)
    if graph is not None:  # queue hand-offs: put -> the get that took the item, also on
        # one unit (a periodic task handing itself its next run)
        puts, gets = queue_pairs(trace)
        for s_, d_ in zip(puts.tolist(), gets.tolist(), strict=True):
            recv_of_send.setdefault(s_, []).append(d_)
    runtime_of = [p.runtime for p in trace.processes]
    recv_idx = np.flatnonzero((ev.kind == K.MSG_RECV) & (ev.res >= 0))
    per: list[Instances] = []
    for b in boundaries:
        bmask = np.zeros(n, dtype=bool)
        entries: list[int] = []
        for i in recv_idx.tolist():
            r = trace.resources[int(ev.res[i])]
            what = r.target if r.protocol in ("http", "grpc") else _destination(r.attrs)
            if b.allows(runtime_of[int(ev.proc[i])]) and b.matches(r.protocol, r.method, what):
                entries.append(i)
        latencies = []
        queue: deque[int] = deque(entries)
        seen: set[int] = set(entries)
        while queue:
            i = queue.popleft()
            lo, hi, reply = _interval(trace, units, i)
            if i in entries and not b.exit_is_reply:
                hi, reply = _exit(trace, units, b, i, hi)
            if i in entries:
                latencies.append(int(ev.time[reply] - ev.time[i]) if reply >= 0 else -1)
            covered = units.events(int(ev.unit[i]))
            covered = covered[(covered >= lo) & (covered <= hi)]
            bmask[covered] = True
            onward = covered[np.isin(ev.kind[covered], _ONWARD)]
            for j in onward.tolist():
                for nxt in _next_hops(trace, units, recv_of_send, j):
                    if nxt not in seen and b.allows(runtime_of[int(ev.proc[nxt])]):
                        seen.add(nxt)
                        queue.append(nxt)
        unit_hit = np.zeros(len(trace.units), dtype=bool)
        hit_units = ev.unit[bmask]
        unit_hit[hit_units[hit_units >= 0]] = True
        per.append(
            Instances(
                b, len(entries), int(bmask.sum()), int(unit_hit.sum()), tuple(sorted(latencies))
            )
        )
        mask |= bmask
    unit_mask = np.zeros(len(trace.units), dtype=bool)
    hit = ev.unit[mask]
    unit_mask[hit[hit >= 0]] = True
    return Inside(mask, unit_mask, tuple(per))


def _destination(attrs: tuple[tuple[str, object], ...]) -> str:
    for k, v in attrs:
        if k == "destination":
            return str(v)
    return ""


def _receivers(hops: Hops) -> dict[int, list[int]]:
    """Sending event -> the linked receiving events (several for a fanned-out message)."""
    out: dict[int, list[int]] = {}
    rows = np.flatnonzero(hops.linked & (hops.send >= 0) & (hops.recv >= 0))
    for s, r in zip(hops.send[rows].tolist(), hops.recv[rows].tolist(), strict=True):
        out.setdefault(s, []).append(r)
    return out


def _interval(trace: Trace, units: _UnitOrder, i: int) -> tuple[int, int, int]:
    """The event range [lo, hi] an instance starting at event ``i`` covers on its unit, and
    the reply event (NO_INDEX when there is none)."""
    ev = trace.events
    u = int(ev.unit[i])
    if u < 0:
        return i, i, NO_INDEX
    mine = units.events(u)
    after = mine[mine > i]
    if int(ev.kind[i]) == K.QUEUE_GET:  # a handed-off item: until the next one is taken
        nxt = after[(ev.kind[after] == K.QUEUE_GET) & (ev.res[after] == ev.res[i])]
        if not len(nxt):
            nxt = after[ev.kind[after] == K.MSG_RECV]
        if len(nxt):
            return i, int(nxt[0]) - 1, NO_INDEX
    if int(ev.kind[i]) == K.MSG_RECV:
        res = int(ev.res[i])
        replies = after[(ev.kind[after] == K.RPC_REPLY) & (ev.res[after] == res)]
        if len(replies):
            return i, int(replies[0]), int(replies[0])
        if trace.resources[res].kind != "rpc":  # a message: until the next one is taken
            nxt = after[ev.kind[after] == K.MSG_RECV]
            if len(nxt):
                return i, int(nxt[0]) - 1, NO_INDEX
    return i, int(after[-1]) if len(after) else i, NO_INDEX


def _exit(trace: Trace, units: _UnitOrder, b: Boundary, i: int, hi: int) -> tuple[int, int]:
    """For an exit other than ``reply``: the instance ends at the answer to the first call the
    entry's unit makes that matches the exit (at the call itself if it got none). Without
    such a call the instance keeps its reply-bounded end and has no exit event."""
    ev = trace.events
    mine = units.events(int(ev.unit[i]))
    span = mine[(mine > i) & (mine <= hi)]
    for j in span[ev.kind[span] == K.MSG_SEND].tolist():
        r = trace.resources[int(ev.res[j])]
        what = r.target if r.protocol in ("http", "grpc") else _destination(r.attrs)
        if b.exits_at(r.protocol, r.method, what):
            later = span[span > j]
            answers = later[(ev.kind[later] == K.RPC_RESPONSE) & (ev.res[later] == ev.res[j])]
            end = int(answers[0]) if len(answers) else j
            return end, end
    return hi, NO_INDEX


def _next_hops(
    trace: Trace, units: _UnitOrder, recv_of_send: dict[int, list[int]], j: int
) -> list[int]:
    """Where the work of event ``j`` continues: linked receivers, the taker of a queued
    item, a created unit's first event."""
    ev = trace.events
    kind = int(ev.kind[j])
    if kind in (K.MSG_SEND, K.PROC_SPAWN, K.QUEUE_PUT):
        return recv_of_send.get(j, [])
    if kind == K.UNIT_CREATE:
        child = trace.unit_index(ev.proc[j : j + 1], ev.arg[j : j + 1])
        c = int(child[0])
        if c >= 0:
            first = units.events(c)
            if len(first):
                return [int(first[0])]
    return []


def recorded(trace: Trace) -> tuple[Boundary, ...]:
    """The boundaries the agents were given (their process records) or were switched on
    with ``willowisp ctl`` (their cost records), parsed, one per entry; a spec that does not
    parse is skipped (the agent reported it as a fault)."""
    specs: list[str] = []
    for p in trace.processes:
        for k, v in p.attrs:
            if k == "boundaries" and isinstance(v, str):
                specs += v.split("|")
        # boundaries switched on with `willowisp ctl` appear in the agent's cost record only
        try:
            costs = json.loads(p.stats.by_boundary) if p.stats.by_boundary else {}
        except (ValueError, RecursionError):  # nested too deep for the parser is bad too
            costs = {}
        if isinstance(costs, dict):
            specs += [str(c.get("spec", "")) for c in costs.values() if isinstance(c, dict)]
    out: list[Boundary] = []
    for spec in specs:
        if not spec.strip():
            continue
        try:
            out.append(parse_boundary(spec, source="recorded boundary"))
        except UsageError:
            continue
    return merge_boundaries(tuple(out))


def suppress(findings: Sequence[Finding], trace: Trace, ins: Inside) -> tuple[list[Finding], int]:
    """Findings to show (see the module doc) and how many were suppressed."""
    inside_seq: dict[str, npt.NDArray[np.int64]] = {}
    ev = trace.events
    for p in trace.processes:
        lo, hi = int(trace.proc_bounds[p.index]), int(trace.proc_bounds[p.index + 1])
        inside_seq[p.id] = np.sort(ev.seq[lo:hi][ins.mask[lo:hi]])
    inside_units = {str(trace.unit_id(u)) for u in np.flatnonzero(ins.unit_mask).tolist()}
    res = ev.res[ins.mask]
    inside_res = {resource_ref(trace, int(r)).key() for r in np.unique(res[res >= 0]).tolist()}
    kept: list[Finding] = []
    dropped = 0
    for f in findings:
        if f.severity == "error" or f.kind in ABOUT_THE_RECORDING:
            kept.append(f)
            continue
        if not (f.events or f.resources or f.units):
            kept.append(f)
            continue
        # by its events when it names some (a thread serves requests inside and outside),
        # else by its resources, else by its units
        if f.events:
            keep = any(_has(inside_seq, e) for e in f.events)
        elif f.resources:
            keep = any(r.key() in inside_res for r in f.resources)
        else:
            keep = any(u.id in inside_units for u in f.units)
        if keep:
            kept.append(f)
        else:
            dropped += 1
    return kept, dropped


def _has(inside_seq: dict[str, npt.NDArray[np.int64]], event: str) -> bool:
    proc, _, seq = event.rpartition(":")
    arr = inside_seq.get(proc)
    if arr is None or not seq.isdigit():
        return False
    i = int(np.searchsorted(arr, int(seq)))
    return i < len(arr) and int(arr[i]) == int(seq)
