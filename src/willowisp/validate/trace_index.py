"""One row per trace (W3C trace id): when it started, where it entered, ``--last N``.

A trace here is a logical operation as the causality layer keys it: every hop resource
(request, message, spawn) carrying the same trace id. Its **start** is the earliest raw
time of an event on one of those resources — the root's start when the root was recorded,
else the earliest part that was (an incomplete trace still has a start, never a crash).
Raw time, not aligned time: ordering whole traces by when they began needs no clock
alignment (their starts are milliseconds apart, far more than the skew within a host), and
skipping alignment keeps the gate fast. Its **entry** is the earliest server-side receive
of the trace (the request the system under test got first), else its earliest send.

Cost: one pass over the resources and one masked ``minimum.at`` over the events that have a
resource; nothing per event in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.causality.hops import Hops
from willowisp.ingest.trace import Trace

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
NO_TRACE = -1
_NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True)
class TraceIndex:
    ids: tuple[str, ...]  # trace number -> W3C trace id
    of_resource: I32  # per resource: its trace number, NO_TRACE if it carries none
    start_ns: I64  # per trace: earliest raw time on its resources (see the module doc)
    entry: tuple[int, ...]  # per trace: its entry resource, -1 if none was found

    def number(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.ids)}

    def last(self, n: int) -> set[str]:
        """The ``n`` trace ids that started last (all of them when n >= the count)."""
        order = np.argsort(self.start_ns, kind="stable")
        return {self.ids[i] for i in order[max(len(order) - n, 0) :].tolist()}


def index_traces(trace: Trace, hops: Hops) -> TraceIndex:
    tids = [r.trace_id for r in trace.resources]
    ids = tuple(t for t in dict.fromkeys(tids) if t)
    number = {t: i for i, t in enumerate(ids)}
    number[""] = NO_TRACE
    of_resource = np.fromiter(map(number.__getitem__, tids), np.int32, len(tids))
    ev = trace.events
    start = np.full(len(ids), _NEVER, dtype=np.int64)
    rows = np.flatnonzero(ev.res >= 0)
    if len(rows) and ids:
        tr = of_resource[ev.res[rows]]
        keep = tr >= 0
        np.minimum.at(start, tr[keep], ev.raw[rows[keep]])
    start[start == _NEVER] = 0
    entry = [-1] * len(ids)
    # Servers first (the request the system got first); clients only where no server was.
    for side, event in ((hops.server, hops.recv), (hops.client, hops.send)):
        found = [-1] * len(ids)
        found_at = [_NEVER] * len(ids)
        for r, e in zip(side.tolist(), event.tolist(), strict=True):
            t = int(of_resource[r]) if r >= 0 and e >= 0 else NO_TRACE
            if t != NO_TRACE and entry[t] < 0 and int(ev.raw[e]) < found_at[t]:
                found[t], found_at[t] = r, int(ev.raw[e])
        entry = [x if x >= 0 else f for x, f in zip(entry, found, strict=True)]
    return TraceIndex(ids, of_resource, start, tuple(entry))


def entry_label(trace: Trace, r: int) -> str:
    """``POST /checkout at gateway``: how a checked trace is listed in the JUnit report."""
    if r < 0:
        return "(no hop recorded)"
    res = trace.resources[r]
    what = f"{res.method} {res.target.split('?', 1)[0]}".strip() or res.name
    service = trace.processes[res.proc].service or "?"
    return f"{what} at {service}"
