"""What the viewer draws, built once from an analysis: lanes, state intervals, causal edges,
and every event's position in each of the three time modes.

**Lanes.** One per execution unit, grouped runtime → process → unit (the order the lanes
are listed in), never merged: two units that ran at the same time are two lanes.

**Intervals.** Per unit, what it was doing, as ``(lane, start event, end event, state,
resource)`` rows: its lifetime (``alive``: first to last event), its polls or time slices
where the runtime reports them (``running``: ``unit.run`` to the next yield, block or end;
``idle`` from a yield to the next run), every wait (``blocked`` on a named resource,
``peer`` when it waits for a reply or a message, ``sleep`` for sleeps and I/O; a wait still
open when the trace ends runs to the end), and the locks it held (``hold``, drawn as a
stripe of their own). Rows keep event indices, not times, so one table serves every mode.

**Time modes.** ``raw``: each process's own clock mapped to wall time through its anchors,
as recorded. ``adjusted``: the analysis's placement of every clock domain on the reference
line, with each domain's uncertainty (the half-width of the offsets the causal constraints
allow) kept per lane so the viewer can draw it. ``causal``: no time at all — each event's
longest happens-before chain from the start (program order within a unit plus every edge of
the causal graph), so the layout shows exactly the order causality fixes and nothing more.
The adjusted line respects every certain edge by construction of the offsets; the causal
levels are computed to respect every edge, so switching modes never reorders what the
graph fixes.

The trade-off: the trace itself is dropped after the build; the server keeps only these
columns (tens of bytes per event), which also makes them cheap to cache beside the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.analysis.engine import Analysis
from willowisp.analysis.naming import event_where, fmt_wall, resource_name
from willowisp.analysis.stuck import runtime_units
from willowisp.causality.graph import EdgeKind
from willowisp.causality.provenance import Provenance
from willowisp.causality.waits import holds, waits
from willowisp.display import clip
from willowisp.ingest.tables import NO_INDEX, Resource
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K, Reason
from willowisp.view import story

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]

MODES = ("raw", "adjusted", "causal")

# Interval states, numbered by drawing priority: where several fall into one pixel the
# highest wins (a short block inside a long run still shows).
ALIVE, IDLE, SLEEP, RUNNING, PEER, BLOCKED = 1, 2, 3, 4, 5, 6
STATES = {ALIVE: "alive", IDLE: "idle", SLEEP: "sleep", RUNNING: "running", PEER: "peer",
          BLOCKED: "blocked"}  # fmt: skip
HOLD = 7  # the hold layer's single state
_PEER_REASONS = (int(Reason.RPC), int(Reason.MESSAGE))
_SLEEP_REASONS = (int(Reason.SLEEP), int(Reason.IO))
_RUN_ENDS = (int(K.UNIT_YIELD), int(K.UNIT_BLOCK), int(K.UNIT_END), int(K.UNIT_RUN))
MAX_LABEL = 600  # characters of a trace string sent to the browser (as the HTML report)
MAX_SEARCH = 20_000  # characters of a name kept for search (a longer one matches by its head)


@dataclass
class ViewData:
    """Columns the server answers from. Event-indexed arrays are per event of the trace."""

    meta: dict[str, Any]  # lanes, groups, findings, clocks, summary: sent once as JSON
    lane_of_event: I32  # NO_INDEX for events of no unit
    kind: U8  # per event
    res: I32  # per event
    times: dict[str, I64]  # mode -> per event
    iv_lane: I32  # intervals, sorted by (lane, start event)
    iv_start: I64  # event index
    iv_end: I64  # event index; for a wait or hold still open, the process's last event
    iv_open: U8  # 1: still open when the process's recording ended
    iv_state: U8
    iv_res: I32
    edge_src: I64  # causal edges, event indices
    edge_dst: I64
    edge_kind: U8
    edge_prov: U8
    edge_conf: npt.NDArray[np.float32]
    ev_order: I64  # events of units, sorted by (lane, event index)
    proc: I32  # per event: process index (event ids are process id + seq)
    seq: I64
    loc: I32  # per event: location index or NO_INDEX
    arg: I64
    strings: dict[str, list[str]] = field(default_factory=dict)  # resources, event ids
    memo: dict[str, Any] = field(default_factory=dict)  # answers computed once (details.py)

    # -- derived, per request ---------------------------------------------------------

    def lane_bounds(self, lanes: int) -> I64:
        """Intervals of lane l are rows ``b[l]:b[l + 1]``."""
        return np.searchsorted(self.iv_lane, np.arange(lanes + 1)).astype(np.int64)


def _cut(text: str) -> str:
    """A trace string as the HTML report shortens it: control characters spelled out
    (bidi overrides included), and at most about 600 characters, head and tail kept."""
    return clip(text, MAX_LABEL)


def build(a: Analysis, document: dict[str, Any]) -> ViewData:
    """The viewer's columns for one analysis (``document``: its JSON document)."""
    trace = a.trace
    ev = trace.events
    n = len(ev)
    lane_of_unit, lanes, groups = _lanes(a)
    lane_search = [lane.pop("search") for lane in lanes]
    lane_of_event = np.full(n, NO_INDEX, dtype=np.int32)
    has_unit = ev.unit >= 0
    lane_of_event[has_unit] = lane_of_unit[ev.unit[has_unit]]
    times = {
        "raw": ev.raw.astype(np.int64),
        "adjusted": a.causality.clocks.adjusted.astype(np.int64),
    }
    g = a.causality.graph
    times["causal"] = causal_levels(ev.unit, times["adjusted"], g.src, g.dst)
    iv = _intervals(a, lane_of_event)
    order = np.lexsort((iv[1], iv[0]))
    ev_rows = np.flatnonzero(has_unit)
    ev_order = ev_rows[np.argsort(lane_of_event[ev_rows], kind="stable")].astype(np.int64)
    meta = _meta(a, document, lanes, groups, lane_of_event, times)
    return ViewData(
        meta=meta,
        lane_of_event=lane_of_event,
        kind=ev.kind.astype(np.uint8),
        res=ev.res.astype(np.int32),
        times=times,
        iv_lane=iv[0][order].astype(np.int32),
        iv_start=iv[1][order],
        iv_end=iv[2][order],
        iv_open=iv[5][order].astype(np.uint8),
        iv_state=iv[3][order].astype(np.uint8),
        iv_res=iv[4][order].astype(np.int32),
        edge_src=g.src.astype(np.int64),
        edge_dst=g.dst.astype(np.int64),
        edge_kind=g.kind.astype(np.uint8),
        edge_prov=g.provenance.astype(np.uint8),
        edge_conf=g.confidence.astype(np.float32),
        ev_order=ev_order,
        proc=ev.proc.astype(np.int32),
        seq=ev.seq.astype(np.int64),
        loc=ev.loc.astype(np.int32),
        arg=ev.arg.astype(np.int64),
        strings={
            "processes": [p.id for p in trace.processes],
            "locations": [_cut(f"{x.where()} {x.func}".strip()) for x in trace.locations],
            "resources": [
                _cut(f"{r.kind} {resource_name(trace, r.index)}") for r in trace.resources
            ],
            # what search matches: whole names (the meta's are shortened) and every
            # naming field of a resource (its kind, protocol, library, method, target)
            "lane_search": lane_search,
            "resource_search": [_resource_search(r) for r in trace.resources],
            "kinds": [_kind_name(k) for k in range(256)],
            "edge_kinds": [_edge_kind(k) for k in range(16)],
            "provenance": [_prov(k) for k in range(16)],
        },
    )


def _search_text(text: str) -> str:
    return text[:MAX_SEARCH].lower()


def _resource_search(r: Resource) -> str:
    fields = (r.kind, r.name, r.protocol, r.library, r.method, r.target)
    return _search_text(" ".join(x for x in fields if x))


def _kind_name(code: int) -> str:
    try:
        return K(code).name.lower().replace("_", ".", 1)
    except ValueError:
        return f"kind {code}"


def _edge_kind(code: int) -> str:
    try:
        return EdgeKind(code).name.lower()
    except ValueError:
        return ""


def _prov(code: int) -> str:
    try:
        return Provenance(code).label
    except ValueError:
        return ""


def _lanes(a: Analysis) -> tuple[I32, list[dict[str, Any]], list[dict[str, Any]]]:
    """Lane per unit (runtime → process → unit order), the lanes' and groups' JSON."""
    trace = a.trace
    procs = trace.processes
    clocks = a.causality.clocks
    internal: set[int] = set()  # a runtime's own units (Go's GC workers...): last, dimmed
    for p in procs:
        internal |= runtime_units(trace, p.index)
    order = sorted(
        range(len(trace.units)),
        key=lambda u: (
            procs[trace.units[u].proc].runtime,
            trace.units[u].proc,
            u in internal,
            u,
        ),
    )
    lane_of_unit = np.full(len(trace.units), NO_INDEX, dtype=np.int32)
    lanes: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    group_of_proc: dict[int, int] = {}
    for lane, u in enumerate(order):
        unit = trace.units[u]
        lane_of_unit[u] = lane
        p = procs[unit.proc]
        if unit.proc not in group_of_proc:
            dom = clocks.domains[int(clocks.domain_of_proc[p.index])]
            group_of_proc[unit.proc] = len(groups)
            groups.append(
                {
                    "runtime": _cut(p.runtime or "?"),
                    "service": _cut(p.service or "?"),
                    "pid": p.pid,
                    "host": _cut(p.host or "?"),
                    "process": p.id,
                    "domain": dom.id,
                    "simulated": dom.simulated,
                    "offset_ns": dom.offset_ns,
                    "uncertainty_ns": dom.uncertainty_ns,
                    "first_lane": lane,
                }
            )
        lanes.append(
            {
                "id": str(unit.id(p)),
                "group": group_of_proc[unit.proc],
                "kind": _cut(unit.kind),
                "name": _cut(unit.name or f"{unit.kind} {unit.number}"),
                "search": _search_text(unit.name or f"{unit.kind} {unit.number}"),
                "internal": u in internal,
            }
        )
    return lane_of_unit, lanes, groups


def _intervals(a: Analysis, lane_of_event: I32) -> tuple[I64, I64, I64, I64, I64, I64]:
    """(lane, start, end, state, res, open) columns, unsorted (see the module doc). An
    interval still open ends at the last event its process recorded (an anchor or a
    flush): as far as the recording knows, it lasted until then."""
    trace = a.trace
    ev = trace.events
    parts: list[tuple[I64, I64, I64, I64, I64]] = []

    def add(start: I64, end: I64, state: I64 | int, res: I64 | int) -> None:
        m = len(start)
        if not m:
            return
        parts.append(
            (
                lane_of_event[start].astype(np.int64),
                start.astype(np.int64),
                end.astype(np.int64),
                np.broadcast_to(np.asarray(state, dtype=np.int64), (m,)).copy(),
                np.broadcast_to(np.asarray(res, dtype=np.int64), (m,)).copy(),
            )
        )

    rows = np.flatnonzero(ev.unit >= 0)
    by_unit = rows[np.argsort(ev.unit[rows], kind="stable")]
    units = ev.unit[by_unit]
    if len(by_unit):
        # lifetime: first to last event of each unit
        first = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
        last = np.r_[first[1:] - 1, len(units) - 1]
        # a unit with no unit.end was still alive when its process's recording ended
        ended = ev.kind[by_unit[last]] == K.UNIT_END
        add(by_unit[first], np.where(ended, by_unit[last], NO_INDEX), ALIVE, NO_INDEX)
        # polls / slices: unit.run to the unit's next run, yield, block or end
        kinds = ev.kind[by_unit]
        closer = np.isin(kinds, _RUN_ENDS)
        pos = np.arange(len(by_unit))
        big = len(by_unit)
        nxt = np.minimum.accumulate(np.where(closer, pos, big)[::-1])[::-1]
        after = np.r_[nxt[1:], big]  # the first closer strictly after each position
        runs = np.flatnonzero(kinds == K.UNIT_RUN)
        ends = after[runs]
        ok = ends < big
        ok[ok] = units[ends[ok]] == units[runs[ok]]
        add(by_unit[runs[ok]], by_unit[ends[ok]], RUNNING, NO_INDEX)
        yields = np.flatnonzero(kinds == K.UNIT_YIELD)
        ends = after[yields]
        ok = ends < big
        ok[ok] = (units[ends[ok]] == units[yields[ok]]) & (kinds[ends[ok]] == K.UNIT_RUN)
        add(by_unit[yields[ok]], by_unit[ends[ok]], IDLE, NO_INDEX)
    w = waits(trace)
    if len(w):
        reason = w.reason
        state = np.where(
            np.isin(reason, _PEER_REASONS),
            PEER,
            np.where(np.isin(reason, _SLEEP_REASONS), SLEEP, BLOCKED),
        )
        add(w.block, w.end, state.astype(np.int64), w.res.astype(np.int64))
    h = holds(trace)
    if len(h):
        add(h.acquire, h.release, HOLD, h.res.astype(np.int64))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty, empty, empty
    cols = [np.concatenate([p[i] for p in parts]) for i in range(5)]
    keep = cols[0] >= 0
    cols = [c[keep] for c in cols]
    still = cols[2] < 0
    last_of_proc = trace.proc_bounds[1:] - 1
    cols[2][still] = last_of_proc[ev.proc[cols[1][still]]]
    return cols[0], cols[1], cols[2], cols[3], cols[4], still.astype(np.int64)


def causal_levels(unit: I32, adjusted: I64, src: I64, dst: I64, max_passes: int = 200) -> I64:
    """Per event: a position in causal order (the module doc's ``causal`` mode).

    Starts from the rank of the adjusted time (a linear extension of the order almost
    everywhere), then relaxes until every edge and every unit's program order goes strictly
    forward: ``level[dst] > level[src]`` and each unit's events strictly increase. The
    levels are then compacted to 0, 1, 2, ... keeping their order. Events of no unit keep
    their rank. ``max_passes`` bounds the work on a graph with a cycle (which a consistent
    trace never has); it then stops and the cycle's events stay where they are.
    """
    n = len(unit)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(adjusted, kind="stable")
    level = np.empty(n, dtype=np.int64)
    level[order] = np.arange(n, dtype=np.int64)
    rows = np.flatnonzero(unit >= 0)
    by_unit = rows[np.lexsort((rows, unit[rows]))]  # program order per unit
    seg = np.r_[0, np.cumsum(unit[by_unit][1:] != unit[by_unit][:-1])].astype(np.int64)
    pos = np.arange(len(by_unit), dtype=np.int64)
    for _ in range(max_passes):
        before = level.copy()
        if len(by_unit):
            # within a unit: level[k] >= level[j] + (k - j) for every earlier j
            span = 4 * (n + len(src) + 1) * max_passes
            v = level[by_unit] - pos + seg * span
            level[by_unit] = np.maximum.accumulate(v) - seg * span + pos
        if len(src):
            np.maximum.at(level, dst, level[src] + 1)
        if np.array_equal(before, level):
            break
    _, dense = np.unique(level, return_inverse=True)
    return dense.astype(np.int64)


def _finding(
    trace: Trace,
    f: dict[str, Any],
    lane_of_id: dict[str, int],
    lane_of_event: I32,
    times: dict[str, I64],
    base: dict[str, int],
) -> dict[str, Any]:
    """One finding as the browser gets it: its events in the document's order, each with
    what it is (kind, resource, place, lane), its story both as lines (``explanation``)
    and as parts with every trace name apart (``story``), the events of each story step
    (``steps``: indices into ``events``, see :mod:`willowisp.view.story`), and every lane
    its units or events are on."""
    rows = trace.event_indices(f.get("events", []))
    ids = [eid for eid in f.get("events", []) if eid in rows]
    found = [rows[eid] for eid in ids]
    events = [_event(trace, eid, rows[eid], lane_of_event, times, base) for eid in ids]
    lines = [str(line) for line in f.get("explanation", [])[:200]]
    known = story.known_names(f, _event_names(trace, found))
    lanes = {lane_of_id[u["id"]] for u in f.get("units", []) if u.get("id") in lane_of_id}
    lanes |= {e["lane"] for e in events if e["lane"] >= 0}
    places = [event_where(trace, i) for i in found]
    walls = [fmt_wall(int(trace.events.raw[i])) for i in found]
    return {
        "id": f["id"],
        "kind": f["kind"],
        "severity": f.get("severity", ""),
        "summary": _cut(f.get("summary", "")),
        "explanation": [_cut(line) for line in lines],
        "story": story.parted(lines, known),
        "lanes": sorted(lanes),
        "resources": [
            _cut(f"{r.get('kind', '')} {r.get('name', '')}".strip())
            + (f" ({_cut(r['where'])})" if r.get("where") else "")
            for r in f.get("resources", [])[:50]
        ],
        "events": events,
        "steps": story.step_events(f["kind"], lines, places, walls),
    }


def _event_names(trace: Trace, rows: list[int]) -> set[str]:
    """What the trace calls the units, processes, resources and places of these events:
    the names a story about them may mention."""
    ev = trace.events
    out: set[str] = set()
    for i in rows:
        u, res = int(ev.unit[i]), int(ev.res[i])
        p = trace.processes[int(ev.proc[i])]
        out.update((p.service, p.host, event_where(trace, i)))
        if u >= 0:
            out.add(trace.units[u].name)
        if res >= 0:
            out.add(resource_name(trace, res))
    out.discard("")
    return out


def _event(
    trace: Trace, eid: str, i: int, lane_of_event: I32, times: dict[str, I64], base: dict[str, int]
) -> dict[str, Any]:
    ev = trace.events
    res, loc = int(ev.res[i]), int(ev.loc[i])
    return {
        "id": eid,
        "lane": int(lane_of_event[i]),
        "kind": _kind_name(int(ev.kind[i])),
        "resource": _cut(f"{trace.resources[res].kind} {resource_name(trace, res)}")
        if res >= 0
        else "",
        "where": _cut(trace.locations[loc].where()) if loc >= 0 else "",
        "t": {mode: int(times[mode][i]) - base[mode] for mode in MODES},
    }


def _meta(
    a: Analysis,
    document: dict[str, Any],
    lanes: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    lane_of_event: I32,
    times: dict[str, I64],
) -> dict[str, Any]:
    """What the browser gets once: lanes, groups, findings with lanes and event positions,
    clocks, hops, the trace summary and each mode's extent."""
    trace = a.trace
    lane_of_id = {lane["id"]: i for i, lane in enumerate(lanes)}
    drawn = np.isin(trace.events.proc, np.unique(trace.events.proc[lane_of_event >= 0]))
    # Times go to the browser relative to each mode's first drawn event (``base``): wall
    # nanoseconds since 1970 do not fit a JavaScript number exactly.
    base: dict[str, int] = {}
    extent: dict[str, list[int]] = {}
    for mode, t in times.items():
        tt = t[drawn] if drawn.any() else t
        lo, hi = (int(tt.min()), int(tt.max())) if len(tt) else (0, 1)
        base[mode] = lo
        extent[mode] = [0, max(hi - lo, 1)]
    findings = [_finding(trace, f, lane_of_id, lane_of_event, times, base) for f in
                document.get("findings", [])]  # fmt: skip
    return {
        "schema": "willowisp.view/1",
        "lanes": lanes,
        "groups": groups,
        "findings": findings,
        "clocks": document.get("clocks", []),
        "hops": document.get("hops", []),
        "trace": document.get("trace", {}),
        "extent": extent,
        "base": base,
        "kinds": [_kind_name(k) for k in range(64)],
        "provenance": [_prov(k) for k in range(16)],
        "states": {str(k): v for k, v in STATES.items()} | {str(HOLD): "hold"},
        "edge_kinds": [k.name.lower() for k in EdgeKind],
    }
