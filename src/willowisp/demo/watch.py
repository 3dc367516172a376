"""Waiting on a recording: has a unit of some process blocked on a named resource?

The demo and the tests use this as their signal that a deadlock has formed (the trace is
durable within 100 ms), instead of sleeping and hoping.
"""

from __future__ import annotations

import glob
import os
import time

from willowisp.errors import TraceFormatError
from willowisp.model.spec import K
from willowisp.wtrace.reader import read_file

_SCHEDULING = {
    int(K.UNIT_RUN),
    int(K.UNIT_YIELD),
    int(K.GC_BEGIN),
    int(K.GC_END),
    int(K.AGENT_FLUSH),
    int(K.CLOCK_ANCHOR),
    int(K.AGENT_DROP),
    int(K.AGENT_FAULT),
}


def units_blocked_on(folder: str, name: str) -> int:
    """How many units of the run's processes now wait on resources named ``name``."""
    by_process: dict[str, list[str]] = {}
    for path in glob.glob(os.path.join(folder, "*.wtrace")):
        base = os.path.basename(path)
        key = base.rsplit("-", 1)[0]
        by_process.setdefault(key, []).append(path)
    total = 0
    for paths in by_process.values():
        rids: set[int] = set()
        last: dict[int, tuple[int, int, int]] = {}
        for path in sorted(paths):
            try:
                tf = read_file(path)
            except (OSError, TraceFormatError):
                continue
            for chunk in tf.chunks:
                for rec in chunk.records:
                    if rec.rtype == 3 and rec.get("name") == name:
                        rids.add(rec.id)
                ev = chunk.events
                if ev is None:
                    continue
                order = ev.time.argsort(kind="stable")
                for i in order.tolist():
                    k = int(ev.kind[i])
                    if k in _SCHEDULING:
                        continue
                    last[int(ev.unit[i])] = (k, int(ev.res[i]), int(ev.time[i]))
        total += sum(1 for k, r, _ in last.values() if k == K.UNIT_BLOCK and r in rids)
    return total


def wait_until_blocked(folder: str, name: str, count: int = 1, timeout_s: float = 60.0) -> bool:
    """Poll the run until ``count`` units wait on ``name``; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if units_blocked_on(folder, name) >= count:
            return True
        time.sleep(0.05)
    return False
