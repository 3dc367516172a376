"""Server-side level of detail: what one screen of the viewer needs, computed from columns.

The browser asks for a time window ``[t0, t1)`` in one mode, a range of lanes and its width
in pixels; the answer never grows with the trace, only with the screen:

- **cells**: per lane, the run-length encoding of one state per pixel — the highest-priority
  state (``model.STATES``) of any interval touching that pixel — and the pixels where the
  unit held a lock. A block of 3 µs inside a 40 ms run still shows as one blocked pixel.
  Computed with difference arrays (one per state: +1 where an interval starts, -1 past
  where it ends, then a cumulative sum), so the cost is one pass over the intervals in the
  visible lanes plus one over the pixels.
- **events**: when few enough events fall in the window (``MAX_EVENTS``), each one as a
  tick, so a zoomed-in view shows individual events; above that, none (the cells say it).
- **edges**: the causal edges with an end on a visible lane and a span that meets the
  window; at most ``MAX_EDGES``, cross-process ones first, the rest thinned evenly, and
  the answer says how many were left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.causality.graph import EdgeKind
from willowisp.view.model import HOLD, MODES, ViewData

MAX_PX = 8192
MAX_LANES = 2000  # lanes per request
MAX_EVENTS = 4000
MAX_EDGES = 3000
_CROSS = np.array([int(k) for k in EdgeKind if k.crosses_processes], dtype=np.uint8)


class Window:
    """A validated request: mode, [t0, t1), px, and the lanes shown (``lanes=3,4,9`` or
    ``lo``/``hi``), as sorted global lane indices."""

    def __init__(self, data: ViewData, query: dict[str, str]) -> None:
        self.mode = query.get("mode", "adjusted")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        total = len(data.meta["lanes"])
        # t0/t1 arrive relative to the mode's base (model._meta); kept absolute here.
        base = int(data.meta["base"][self.mode])
        self.rel0 = _int(query, "t0", data.meta["extent"][self.mode][0])
        self.rel1 = _int(query, "t1", data.meta["extent"][self.mode][1] + 1)
        if self.rel1 <= self.rel0:
            raise ValueError("t1 must be after t0")
        self.t0, self.t1 = base + self.rel0, base + self.rel1
        self.px = min(max(_int(query, "px", 1000), 1), MAX_PX)
        if query.get("lanes"):
            try:
                picked = [int(x) for x in query["lanes"].split(",")[: MAX_LANES + 1]]
            except ValueError:
                raise ValueError("lanes must be integers separated by commas") from None
            if len(picked) > MAX_LANES:
                raise ValueError(f"at most {MAX_LANES} lanes per request")
            if any(not 0 <= x < total for x in picked):
                raise ValueError("no such lane")
            self.lanes = np.unique(np.array(picked, dtype=np.int64))
        else:
            lo = min(max(_int(query, "lo", 0), 0), total)
            hi = min(max(_int(query, "hi", total), lo), total, lo + MAX_LANES)
            self.lanes = np.arange(lo, hi, dtype=np.int64)


def _int(query: dict[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if abs(value) > 2**62:
        raise ValueError(f"{name} is out of range")
    return value


def _pixel(t: npt.NDArray[np.int64], w: Window) -> npt.NDArray[np.int64]:
    """Pixel column of times (float math: a window can span 2^62 ns)."""
    scale = w.px / float(w.t1 - w.t0)
    out: npt.NDArray[np.int64] = np.floor((t - w.t0).astype(np.float64) * scale).astype(np.int64)
    return out


def _rows(bounds: npt.NDArray[np.int64], lanes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The rows ``bounds[l]:bounds[l + 1]`` of every lane in ``lanes``, concatenated."""
    starts, stops = bounds[lanes], bounds[lanes + 1]
    sizes = stops - starts
    if not sizes.sum():
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.r_[0, np.cumsum(sizes)[:-1]], sizes)
    out: npt.NDArray[np.int64] = np.arange(int(sizes.sum()), dtype=np.int64) + offsets
    return out


def _interval_columns(data: ViewData, mode: str) -> tuple[npt.NDArray[np.int64], ...]:
    """Per mode, computed once: the intervals' start and end times, and per lane the running
    maximum of the end times in start order (``reach``). Within a lane starts ascend (a
    unit's events are in program order in every mode), and ``reach`` ascends by
    construction, so the rows of a lane that can meet ``[t0, t1)`` are one binary search on
    each: from the first row whose reach gets to t0, to the last that starts before t1."""
    key = f"intervals.{mode}"
    got = data.memo.get(key)
    if got is None:
        t = data.times[mode]
        start = t[data.iv_start]
        end = np.maximum(t[data.iv_end], start)
        # a cumulative maximum per lane: ranks keep lane * n + rank inside int64
        values, rank = np.unique(end, return_inverse=True)
        n = len(values) + 1
        lane = data.iv_lane.astype(np.int64)
        reach = values[np.maximum.accumulate(rank + lane * n) - lane * n]
        got = data.memo[key] = (start, end, reach)
    cols: tuple[npt.NDArray[np.int64], ...] = got
    return cols


def cells(data: ViewData, w: Window, bounds: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Per requested lane (in ``w.lanes`` order): ``[start px, length, state, ...]`` runs,
    and the runs of pixels where it held a lock."""
    starts, ends, reach = _interval_columns(data, w.mode)
    spans = []
    for lane in w.lanes.tolist():
        a, b = int(bounds[lane]), int(bounds[lane + 1])
        lo = a + int(np.searchsorted(reach[a:b], w.t0))
        hi = a + int(np.searchsorted(starts[a:b], w.t1))
        if hi > lo:
            spans.append((lo, hi))
    rows = np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.zeros(0, np.int64)
    lane = np.searchsorted(w.lanes, data.iv_lane[rows])  # position in the request
    start, end, state = starts[rows], ends[rows], data.iv_state[rows]
    seen = end >= w.t0
    lane, start, end, state = lane[seen], start[seen], end[seen], state[seen]
    ps = np.clip(_pixel(start, w), 0, w.px - 1)
    pe = np.clip(_pixel(end, w) + 1, ps + 1, w.px)  # at least the pixel it starts in
    nl = len(w.lanes)
    width = w.px + 1
    top = np.zeros((nl, w.px), dtype=np.uint8)
    hold = np.zeros((nl, w.px), dtype=bool)
    size = nl * width
    for s in np.unique(state).tolist():
        m = state == s
        diff = np.bincount(lane[m] * width + ps[m], minlength=size) - np.bincount(
            lane[m] * width + pe[m], minlength=size
        )
        covered = np.cumsum(diff[:size].reshape(nl, width), axis=1)[:, : w.px] > 0
        if s == HOLD:
            hold |= covered
        else:
            top[covered & (top < s)] = s
    return {
        "lanes": w.lanes.tolist(),
        "runs": _runs(top),
        "holds": _runs(hold.astype(np.uint8)),
    }


def _runs(grid: npt.NDArray[np.uint8]) -> list[list[int]]:
    """Per row of ``grid`` (lanes by pixels), the run-length encoding ``[start, length,
    value, ...]`` of its non-zero pixels: one vectorised pass over the whole grid."""
    rows, width = grid.shape
    if not rows or not width:
        return [[] for _ in range(rows)]
    flat = grid.reshape(-1)
    starts = np.ones(flat.shape, dtype=bool)
    starts[1:] = flat[1:] != flat[:-1]
    starts[::width] = True  # every row starts a run
    change = np.flatnonzero(starts)
    length = np.diff(np.r_[change, len(flat)])
    value = flat[change]
    keep = value != 0
    change, length, value = change[keep], length[keep], value[keep]
    row_of = change // width
    out = np.empty((len(change), 3), dtype=np.int64)
    out[:, 0], out[:, 1], out[:, 2] = change - row_of * width, length, value
    bounds = np.searchsorted(row_of, np.arange(rows + 1)).tolist()
    flat_out: list[int] = out.reshape(-1).tolist()
    return [flat_out[3 * bounds[i] : 3 * bounds[i + 1]] for i in range(rows)]


def event_bounds(data: ViewData) -> npt.NDArray[np.int64]:
    """Events of lane l are ``data.ev_order[b[l]:b[l + 1]]`` (computed once)."""
    got = data.memo.get("event_bounds")
    if got is None:
        lane_of = data.lane_of_event[data.ev_order]
        lanes = np.arange(len(data.meta["lanes"]) + 1)
        got = data.memo["event_bounds"] = np.searchsorted(lane_of, lanes).astype(np.int64)
    bounds: npt.NDArray[np.int64] = got
    return bounds


def _event_times(data: ViewData, mode: str) -> npt.NDArray[np.int64]:
    """Per mode, the times of ``data.ev_order``: ascending within each lane (a unit's
    events are in program order, and every mode keeps program order)."""
    key = f"event_times.{mode}"
    got = data.memo.get(key)
    if got is None:
        got = data.memo[key] = data.times[mode][data.ev_order]
    times: npt.NDArray[np.int64] = got
    return times


def events(data: ViewData, w: Window) -> dict[str, Any]:
    """Event ticks ``[lane, px, kind, event row, ...]`` (global lane indices) when few
    enough are visible; otherwise only their count. Two binary searches per lane."""
    bounds = event_bounds(data)
    times = _event_times(data, w.mode)
    spans = []
    count = 0
    for lane in w.lanes.tolist():
        a, b = int(bounds[lane]), int(bounds[lane + 1])
        lo, hi = np.searchsorted(times[a:b], [w.t0, w.t1]).tolist()
        spans.append((a + lo, a + hi))
        count += hi - lo
    if count > MAX_EVENTS:
        return {"ticks": [], "count": count}
    pos = np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.zeros(0, int)
    rows = data.ev_order[pos]
    out = np.empty(4 * len(rows), dtype=np.int64)
    out[0::4] = data.lane_of_event[rows]
    out[1::4] = _pixel(times[pos], w)
    out[2::4] = data.kind[rows]
    out[3::4] = rows
    ticks: list[int] = out.tolist()
    return {"ticks": ticks, "count": count}


def _edge_columns(data: ViewData, mode: str) -> tuple[npt.NDArray[Any], ...]:
    """Per mode: edge source/destination lanes and times (computed once)."""
    key = f"edges.{mode}"
    got = data.memo.get(key)
    if got is None:
        t = data.times[mode]
        got = data.memo[key] = (
            data.lane_of_event[data.edge_src],
            data.lane_of_event[data.edge_dst],
            t[data.edge_src],
            t[data.edge_dst],
        )
    cols: tuple[npt.NDArray[Any], ...] = got
    return cols


def edges(data: ViewData, w: Window) -> dict[str, Any]:
    """Edges ``[src lane, src px, dst lane, dst px, kind, provenance, edge row, ...]``
    (global lane indices) with an end on a requested lane, meeting the window."""
    src_lane, dst_lane, ts, td = _edge_columns(data, w.mode)
    shown = np.zeros(len(data.meta["lanes"]) + 1, dtype=bool)  # [-1] (no lane) stays False
    shown[w.lanes] = True
    visible = (shown[src_lane] | shown[dst_lane]) & (src_lane >= 0) & (dst_lane >= 0)
    meets = (np.minimum(ts, td) < w.t1) & (np.maximum(ts, td) >= w.t0)
    rows = np.flatnonzero(visible & meets)
    total = len(rows)
    if total > MAX_EDGES:
        cross = np.isin(data.edge_kind[rows], _CROSS)
        first = rows[cross][:MAX_EDGES]
        room = MAX_EDGES - len(first)
        rest = rows[~cross]
        if room > 0 and len(rest):
            pick = np.linspace(0, len(rest) - 1, num=min(room, len(rest))).astype(np.int64)
            first = np.concatenate([first, rest[pick]])
        rows = np.sort(first)
    out = np.empty(7 * len(rows), dtype=np.int64)
    out[0::7] = src_lane[rows]
    out[1::7] = _pixel(ts[rows], w)
    out[2::7] = dst_lane[rows]
    out[3::7] = _pixel(td[rows], w)
    out[4::7] = data.edge_kind[rows]
    out[5::7] = data.edge_prov[rows]
    out[6::7] = rows
    flat: list[int] = out.tolist()
    return {"edges": flat, "total": int(total), "shown": len(rows)}
