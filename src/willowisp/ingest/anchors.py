"""Clock anchors: mapping a process's monotonic time to wall time ("raw time").

Each ``clock.anchor`` event pairs a monotonic reading (its time) with a wall reading (its
arg). The raw time of an event is its monotonic time plus the wall - monotonic difference
of the nearest *preceding* anchor (the first anchor for events before it). Piecewise
constant offsets follow the wall clock's steps and slews with at most one anchor interval
(a second) of lag, and cost one ``searchsorted`` over all of a process's events.

A process with no anchor at all keeps its monotonic time as raw time; the loader notes it,
and clock-domain merging never puts such a process with another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.model.spec import K

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Anchors:
    """One process's anchors, sorted by monotonic time."""

    mono: I64
    wall: I64

    @property
    def offset(self) -> I64:
        """wall - monotonic at each anchor."""
        return self.wall - self.mono

    def __len__(self) -> int:
        return len(self.mono)

    def offset_at(self, mono: I64) -> I64:
        """The wall - monotonic offset in force at each monotonic time (see module doc)."""
        if len(self.mono) == 0:
            return np.zeros(len(mono), dtype=np.int64)
        i = np.searchsorted(self.mono, mono, side="right") - 1
        return self.offset[np.maximum(i, 0)]


def anchors_of(kind: npt.NDArray[np.uint8], time: I64, arg: I64) -> Anchors:
    """The anchors among one process's events (any order)."""
    is_anchor = kind == K.CLOCK_ANCHOR
    mono, wall = time[is_anchor], arg[is_anchor]
    order = np.argsort(mono, kind="stable")
    return Anchors(mono[order].astype(np.int64), wall[order].astype(np.int64))


def raw_times(anchors: Anchors, time: I64) -> I64:
    """Raw (wall) time of each event of the process the anchors belong to."""
    return time + anchors.offset_at(time)


def drift_ns_per_s(anchors: list[Anchors]) -> float:
    """How fast wall time runs against monotonic time, in ns per second (0 if unknown).

    A least-squares line through (monotonic, wall) of all anchors given (they must share
    one monotonic clock, i.e. one clock domain). Slewing NTP shows up here; a step of the
    wall clock shows up as a large value, which is the honest reading.
    """
    mono = np.concatenate([a.mono for a in anchors]) if anchors else np.zeros(0, np.int64)
    wall = np.concatenate([a.wall for a in anchors]) if anchors else np.zeros(0, np.int64)
    if len(mono) < 2 or int(mono.max() - mono.min()) <= 0:
        return 0.0
    x = (mono - mono.min()).astype(np.float64)
    y = (wall - wall.min()).astype(np.float64)
    xm, ym = x.mean(), y.mean()
    denom = float(((x - xm) ** 2).sum())
    if denom == 0.0:
        return 0.0
    slope = float(((x - xm) * (y - ym)).sum()) / denom
    return (slope - 1.0) * 1e9
