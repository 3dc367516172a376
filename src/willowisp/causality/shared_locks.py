"""Locks held across processes: a database's write lock, ordered by name and time.

A lock resource is local to its process, so the happens-before graph orders only the holds
of one process (:mod:`willowisp.causality.graph`). Some locks are not the program's but a
store's: SQLite lets one connection write at a time, whichever process it is in. Agents
model such a lock as a ``lock`` resource with ``shared=1`` and a name for the store
(``sqlite:/srv/shop.db``), one per process; this module draws the edges between processes:
``lock.release`` -> the next ``lock.acquired`` of a lock with the same name, among the
processes of one clock domain.

Why time is evidence here, when nowhere else it is: processes of one clock domain read one
monotonic clock (same boot, same time namespace: that is what the domain proves), and the
agents write a release before the store's lock is given up and an acquire after it is
obtained (docs/format.md), so monotonic time orders the holds exactly as the store did.
Across domains nothing is drawn: two machines do not share a SQLite file's lock.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from willowisp.causality.graph import latest_before
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


def is_shared(attrs: tuple[tuple[str, object], ...]) -> bool:
    return any(k == "shared" and v == 1 for k, v in attrs)


def shared_lock_edges(trace: Trace, domain_of_proc: I32) -> tuple[I64, I64]:
    """(src, dst) event indices: each acquire of a shared lock after the latest release of
    a lock of the same name in the same clock domain (any process, any unit)."""
    empty = np.zeros(0, np.int64)
    groups: dict[tuple[int, str], int] = {}
    group_of = np.full(len(trace.resources), -1, dtype=np.int64)
    kinds = trace.resource_kind
    for i in np.flatnonzero(kinds == "lock").tolist() if len(kinds) else ():
        r = trace.resources[i]
        if is_shared(r.attrs) and r.name:
            key = (int(domain_of_proc[r.proc]), r.name)
            group_of[r.index] = groups.setdefault(key, len(groups))
    if not groups:
        return empty, empty
    ev = trace.events
    idx = np.flatnonzero(np.isin(ev.kind, (K.LOCK_ACQUIRED, K.LOCK_RELEASE)) & (ev.res >= 0))
    idx = idx[group_of[ev.res[idx]] >= 0].astype(np.int64)
    group = group_of[ev.res[idx]]
    # one monotonic clock per domain: (group, time) is the store's order; the index breaks
    # ties within a process (its events are in its own order)
    order = np.lexsort((idx, ev.time[idx], group))
    idx, group = idx[order], group[order]
    kind = ev.kind[idx]
    prev = latest_before(group, kind == K.LOCK_RELEASE)
    rows = np.flatnonzero((kind == K.LOCK_ACQUIRED) & (prev >= 0))
    return idx[prev[rows]], idx[rows]
