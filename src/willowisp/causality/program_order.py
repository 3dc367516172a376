"""Program order: each unit's events in the order it did them, the implicit happens-before.

The loader sorts events by (process, time, sequence), and a unit lives in one process, so a
*stable* argsort by unit lists every unit's events in program order, back to back. From
that one permutation come the per-unit navigation arrays analyses need: a unit's first
event of a kind (its start, its end) and, for each event, the unit's next event.

"Next" skips bookkeeping events (task steps, GC pauses, agent metadata): a ``unit.block``
lasts until the unit's next *meaningful* event, and an asyncio task that blocks on a lock
writes ``unit.yield`` and later ``unit.run`` around the wait before ``lock.acquired``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

I64 = npt.NDArray[np.int64]

BOOKKEEPING = np.array(
    [
        K.UNIT_RUN,
        K.UNIT_YIELD,
        K.GC_BEGIN,
        K.GC_END,
        K.CLOCK_ANCHOR,
        K.AGENT_DROP,
        K.AGENT_FAULT,
        K.AGENT_FLUSH,
    ],
    dtype=np.uint8,
)


def unit_order(trace: Trace, *, meaningful_only: bool = False) -> tuple[I64, I64]:
    """(order, ptr): unit u's events are ``order[ptr[u]:ptr[u + 1]]``, in program order."""
    ev = trace.events
    keep = ev.unit >= 0
    if meaningful_only:
        keep &= ~np.isin(ev.kind, BOOKKEEPING)
    idx = np.flatnonzero(keep)
    order = idx[np.argsort(ev.unit[idx], kind="stable")].astype(np.int64)
    units = np.arange(len(trace.units) + 1, dtype=np.int64)
    ptr = np.searchsorted(ev.unit[order], units).astype(np.int64)
    return order, ptr


def next_in_unit(trace: Trace) -> I64:
    """Per event: the same unit's next meaningful event, NO_INDEX if none (see module doc)."""
    order, _ = unit_order(trace, meaningful_only=True)
    nxt = np.full(len(trace.events), NO_INDEX, dtype=np.int64)
    if len(order) > 1:
        unit = trace.events.unit[order]
        same = unit[1:] == unit[:-1]
        nxt[order[:-1][same]] = order[1:][same]
    return nxt


def first_per_unit(trace: Trace, kind: int) -> I64:
    """Per unit: the index of its first event of ``kind``, NO_INDEX if it has none."""
    ev = trace.events
    out = np.full(len(trace.units), NO_INDEX, dtype=np.int64)
    idx = np.flatnonzero((ev.kind == kind) & (ev.unit >= 0))
    if len(idx):
        units, first = np.unique(ev.unit[idx], return_index=True)
        out[units] = idx[first]
    return out
