"""The viewer's small questions: what is under the pointer, what an edge is, what matches a
search. Each answer is a few rows looked up in the columns of ``model.ViewData``."""

from __future__ import annotations

from typing import Any

import numpy as np

from willowisp.view.lod import event_bounds
from willowisp.view.model import HOLD, MODES, STATES, ViewData

MAX_MATCHES = 500


def event(data: ViewData, i: int) -> dict[str, Any]:
    """One event as the browser shows it."""
    if not 0 <= i < len(data.kind):
        raise ValueError("no such event")
    s = data.strings
    res, loc = int(data.res[i]), int(data.loc[i])
    return {
        "row": i,
        "id": f"{s['processes'][int(data.proc[i])]}:{int(data.seq[i])}",
        "kind": s["kinds"][int(data.kind[i])],
        "lane": int(data.lane_of_event[i]),
        "resource": s["resources"][res] if res >= 0 else "",
        "where": s["locations"][loc] if loc >= 0 else "",
        "arg": int(data.arg[i]),
        "t": {mode: int(data.times[mode][i]) - int(data.meta["base"][mode]) for mode in MODES},
    }


def at(data: ViewData, mode: str, lane: int, t: int, tol: int) -> dict[str, Any]:
    """The intervals of ``lane`` that cover time ``t`` and its events within ``tol``."""
    if mode not in MODES:
        raise ValueError("bad mode")
    lanes = len(data.meta["lanes"])
    if not 0 <= lane < lanes:
        raise ValueError("no such lane")
    times = data.times[mode]
    t += int(data.meta["base"][mode])  # the browser speaks relative times
    lo, hi = np.searchsorted(data.iv_lane, [lane, lane + 1])
    start = times[data.iv_start[lo:hi]]
    end = times[data.iv_end[lo:hi]]
    rows = lo + np.flatnonzero((start <= t + tol) & (end >= t - tol))
    out = []
    for r in rows[:50].tolist():
        state = int(data.iv_state[r])
        res = int(data.iv_res[r])
        e = int(data.iv_end[r])
        still = bool(data.iv_open[r])
        out.append(
            {
                "state": "hold" if state == HOLD else STATES.get(state, "?"),
                "resource": data.strings["resources"][res] if res >= 0 else "",
                "start": event(data, int(data.iv_start[r])),
                "end": None if still else event(data, e),
                "recorded_until": event(data, e) if still else None,
            }
        )
    eb = event_bounds(data)
    evrows = data.ev_order[int(eb[lane]) : int(eb[lane + 1])]
    et = times[evrows]
    near = evrows[np.abs(et - t) <= tol]
    return {
        "lane": data.meta["lanes"][lane],
        "intervals": out,
        "events": [event(data, int(i)) for i in near[:20].tolist()],
    }


def edge(data: ViewData, row: int) -> dict[str, Any]:
    """One causal edge with its provenance: why the viewer draws this arrow."""
    if not 0 <= row < len(data.edge_src):
        raise ValueError("no such edge")
    s = data.strings
    return {
        "kind": s["edge_kinds"][int(data.edge_kind[row])],
        "provenance": s["provenance"][int(data.edge_prov[row])],
        "confidence": round(float(data.edge_conf[row]), 3),
        "src": event(data, int(data.edge_src[row])),
        "dst": event(data, int(data.edge_dst[row])),
    }


def search(data: ViewData, query: str) -> dict[str, Any]:
    """Lanes matching ``query`` (case-insensitive) by runtime, service, host, unit name
    (whole, not the shortened one the page shows), kind or id, or by a resource the unit
    used (a lock, a queue, an operation's request) by its kind, name, protocol, library,
    method or target."""
    q = query.strip().lower()[:200]
    if not q:
        return {"lanes": [], "resources": []}
    meta = data.meta
    groups = meta["groups"]
    full = data.strings.get("lane_search") or [lane["name"].lower() for lane in meta["lanes"]]
    hits: set[int] = set()
    for i, lane in enumerate(meta["lanes"]):
        g = groups[lane["group"]]
        text = " ".join((lane["kind"], lane["id"], g["runtime"], g["service"], g["host"]))
        if q in text.lower() or q in full[i]:
            hits.add(i)
    searchable = data.strings.get("resource_search") or data.strings["resources"]
    names = [i for i, r in enumerate(searchable) if q in r.lower()]
    if names:
        pairs = _resource_lanes(data)
        want = np.isin(pairs[0], np.array(names, dtype=np.int64))
        hits.update(pairs[1][want].tolist())
    return {
        "lanes": sorted(hits)[:MAX_MATCHES],
        "more": max(len(hits) - MAX_MATCHES, 0),
        "resources": sorted({data.strings["resources"][i] for i in names})[:50],
    }


def _resource_lanes(data: ViewData) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Every (resource, lane) pair that some event joins, computed once per data set."""
    got = data.memo.get("resource_lanes")
    if got is None:
        m = (data.res >= 0) & (data.lane_of_event >= 0)
        lanes = max(len(data.meta["lanes"]), 1)
        key = np.unique(data.res[m].astype(np.int64) * lanes + data.lane_of_event[m])
        got = data.memo["resource_lanes"] = (key // lanes, key % lanes)
    pairs: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]] = got
    return pairs
