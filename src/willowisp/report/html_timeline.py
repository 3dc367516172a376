"""The per-finding timeline of the HTML report: one lane per unit, drawn as inline SVG.

Two halves. :class:`Timelines` reads a linked trace (:class:`~willowisp.causality.link.
Causality`) and turns the units a finding names into :class:`Timeline` values — each
unit's states over adjusted time (running, blocked on a named resource, waiting on a peer,
suspended between task steps), the finding's own events as marks, the happens-before edges
between the drawn units, and "waits for" links from a blocked unit to the unit holding the
lock it wants. :func:`svg` draws one such value. Keeping the two apart keeps the drawing
free of numpy and the extraction free of markup.

States come from the events alone, the way docs/format.md defines a wait: a ``unit.block``
lasts until the unit's next event that is not bookkeeping (task steps, GC, agent
metadata); a task between ``unit.yield`` and ``unit.run`` is suspended; a unit with no
``unit.end`` is drawn to the end of its process's trace and marked as still in its state.

Bounded: at most :data:`MAX_LANES` lanes, :data:`MAX_SEGMENTS` non-running segments per
lane (the longest; running is the lane's background bar), :data:`MAX_MARKS` marks and
:data:`MAX_ARROWS` arrows per finding. What was left out is counted and said under the
drawing, so a finding over a million-event trace stays a page, not a hang.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.causality.graph import EdgeKind
from willowisp.causality.link import Causality
from willowisp.causality.program_order import unit_order
from willowisp.causality.provenance import CERTAIN, Provenance
from willowisp.ingest.tables import NO_INDEX
from willowisp.model.spec import KIND_BY_CODE, K, Reason
from willowisp.report.html_markup import LABEL_LIMIT, attr, text

I64 = npt.NDArray[np.int64]

MAX_LANES = 12
MAX_SEGMENTS = 300
MAX_MARKS = 60
MAX_ARROWS = 60
MAX_EVENT_ROWS = 40  # rows of a finding's event table (html_report)

RUNNING, BLOCKED, WAITING, SUSPENDED = "running", "blocked", "waiting", "suspended"
# A wait on a peer (its reply, its message, its end) rather than on a shared resource.
_PEER_REASONS = {int(Reason.RPC), int(Reason.MESSAGE), int(Reason.JOIN)}
_SCHEDULING = {int(K.UNIT_RUN), int(K.UNIT_YIELD), int(K.GC_BEGIN), int(K.GC_END)}
_AGENT = {int(K.CLOCK_ANCHOR), int(K.AGENT_DROP), int(K.AGENT_FAULT), int(K.AGENT_FLUSH)}
_OWNED = ("lock", "rlock", "rwlock", "monitor")
_EDGE_WORDS = {
    EdgeKind.SPAWN: "spawn",
    EdgeKind.JOIN: "join",
    EdgeKind.LOCK: "lock hand-off",
    EdgeKind.QUEUE: "queue item",
    EdgeKind.NOTIFY: "wake",
    EdgeKind.REQUEST: "request",
    EdgeKind.REPLY: "reply",
    EdgeKind.PROCESS: "process spawn",
    EdgeKind.MESSAGE: "message",
}
WAITS_FOR = "waits for"


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of a lane in one state other than running (adjusted ns)."""

    start: int
    end: int
    state: str  # BLOCKED, WAITING or SUSPENDED
    what: str  # "lock checking_lock", "rpc POST /pay", "" when suspended
    still: bool  # still in this state when the trace ended


@dataclass(frozen=True, slots=True)
class Mark:
    """One of the finding's events on its unit's lane."""

    at: int
    number: int  # 1-based position in the finding's event list
    title: str


@dataclass(frozen=True, slots=True)
class Lane:
    unit_id: str
    name: str
    detail: str  # "thread · bank (pid 42) · python"
    start: int
    end: int
    ended: bool  # the unit's unit.end is in the trace
    segments: tuple[Segment, ...]
    marks: tuple[Mark, ...]
    segments_left_out: int


@dataclass(frozen=True, slots=True)
class Arrow:
    """A causal edge (or a "waits for" link) between two drawn lanes."""

    src_lane: int
    src_at: int
    dst_lane: int
    dst_at: int
    kind: str  # an _EDGE_WORDS value or WAITS_FOR
    title: str
    certain: bool


@dataclass(frozen=True, slots=True)
class Timeline:
    t0: int  # the drawn window (adjusted ns): the story, see _window
    t1: int
    first: int  # the lanes' whole span, which the window may cut
    last: int
    lanes: tuple[Lane, ...]
    arrows: tuple[Arrow, ...]
    lanes_left_out: int
    marks_left_out: int
    arrows_left_out: int
    not_in_trace: tuple[str, ...]  # unit ids the finding names that the trace lacks


@dataclass(frozen=True, slots=True)
class EventRow:
    """One of a finding's events, for the table under its timeline."""

    number: int
    event_id: str
    unit: str
    what: str  # "unit.block on lock checking_lock"
    where: str  # "bank_threads.py:15 in to_savings" or ""
    at: int  # adjusted ns
    raw: int  # the process's own wall clock, ns (what a raw-time tool would show)


class Timelines:
    """Lanes for findings over one linked trace. Per-unit program order is sorted once."""

    def __init__(self, c: Causality) -> None:
        self._c = c
        self._trace = c.trace
        self._adjusted = c.clocks.adjusted
        self._order, self._ptr = unit_order(c.trace)
        ev = c.trace.events
        # Per process: its last adjusted time, where a lane with no end stops.
        ends = np.full(len(c.trace.processes), 0, dtype=np.int64)
        if len(ev):
            np.maximum.at(ends, ev.proc, self._adjusted)
        self._proc_end = ends
        # Per event: is its resource an owned lock? Built on the first "waits for" question.
        self._owned: npt.NDArray[np.bool_] | None = None
        self._unit_of_id: dict[str, int] = {
            str(c.trace.unit_id(u.index)): int(u.index) for u in c.trace.units
        }

    # -- extraction -------------------------------------------------------------------

    def event_rows(self, finding: Mapping[str, Any]) -> tuple[list[EventRow], int]:
        """The finding's events in its own order (at most MAX_EVENT_ROWS) and how many more."""
        ids = [str(e) for e in finding.get("events", [])]
        found = self._trace.event_indices(ids)
        rows = [
            self._row(n, eid, found[eid])
            for n, eid in enumerate(ids[:MAX_EVENT_ROWS], 1)
            if eid in found
        ]
        return rows, max(0, len(ids) - MAX_EVENT_ROWS)

    def timeline(self, finding: Mapping[str, Any]) -> Timeline | None:
        """The lanes of the finding's units (for a finding that names none, such as a
        false-causality pair, the units of its events); None if there are none to draw."""
        named = [str(u["id"]) for u in finding.get("units", [])]
        units = [self._unit_of_id[u] for u in named if u in self._unit_of_id]
        missing = tuple(u for u in named if u not in self._unit_of_id)
        ids = [str(e) for e in finding.get("events", [])]
        rows = self._trace.event_indices(ids)
        if not named:
            doers = (int(self._trace.events.unit[rows[e]]) for e in ids if e in rows)
            units = [u for u in doers if u >= 0]
        if not units:
            return None
        drawn = list(dict.fromkeys(units))[:MAX_LANES]
        lane_of = {u: i for i, u in enumerate(drawn)}
        marks: dict[int, list[Mark]] = {u: [] for u in drawn}
        shown = 0
        for n, eid in enumerate(ids, 1):
            i = rows.get(eid)
            if i is None or int(self._trace.events.unit[i]) not in lane_of or shown >= MAX_MARKS:
                continue
            shown += 1
            r = self._row(n, eid, i)
            title = f"{n}. {r.what}" + (f" at {r.where}" if r.where else "") + f" ({eid})"
            marks[int(self._trace.events.unit[i])].append(Mark(r.at, n, title))
        lanes = [self._lane(u, tuple(marks[u])) for u in drawn]
        arrows, arrows_left_out = self._arrows(drawn, lane_of, lanes, set(rows.values()))
        t0 = min(lane.start for lane in lanes)
        t1 = max(*(lane.end for lane in lanes), t0 + 1)
        # The story: the finding's events, and where each unit entered the state it was
        # still in when the trace ended (a deadlock's last waits).
        story = [m.at for lane in lanes for m in lane.marks]
        story += [s.start for lane in lanes for s in lane.segments if s.still]
        v0, v1 = _window(t0, t1, story)
        return Timeline(
            v0,
            v1,
            t0,
            t1,
            tuple(lanes),
            tuple(arrows),
            len(dict.fromkeys(units)) - len(drawn),
            sum(1 for e in ids if e in rows) - shown,
            arrows_left_out,
            missing,
        )

    def _events_of(self, u: int) -> npt.NDArray[np.int64]:
        events: npt.NDArray[np.int64] = self._order[int(self._ptr[u]) : int(self._ptr[u + 1])]
        return events

    def _resource(self, r: int) -> str:
        if r < 0:
            return ""
        res = self._trace.resources[r]
        return f"{res.kind} {res.name}".strip()

    def _row(self, number: int, eid: str, i: int) -> EventRow:
        trace, ev = self._trace, self._trace.events
        kind = KIND_BY_CODE.get(int(ev.kind[i]))
        what = kind.name if kind is not None else f"kind {int(ev.kind[i])}"
        res = self._resource(int(ev.res[i]))
        if res:
            what += f" on {res}" if int(ev.kind[i]) == K.UNIT_BLOCK else f" {res}"
        where = ""
        loc = int(ev.loc[i])
        if loc != NO_INDEX:
            location = trace.locations[loc]
            where = location.where() + (f" in {location.func}" if location.func else "")
        u = int(ev.unit[i])
        unit = trace.units[u].name if u >= 0 else "(agent)"
        return EventRow(number, eid, unit, what, where, int(self._adjusted[i]), int(ev.raw[i]))

    def _lane(self, u: int, marks: tuple[Mark, ...]) -> Lane:
        trace, ev = self._trace, self._trace.events
        unit = trace.units[u]
        proc = trace.processes[unit.proc]
        events = self._events_of(u)
        end_of_trace = int(self._proc_end[unit.proc])
        start = int(self._adjusted[events[0]]) if len(events) else end_of_trace
        events = _state_changes(ev.kind[events], events)
        kinds = ev.kind[events].tolist()
        times = self._adjusted[events].tolist()
        res = ev.res[events].tolist()
        args = ev.arg[events].tolist()
        segments: list[Segment] = []
        state, since, what = RUNNING, start, ""
        ended = False
        end = end_of_trace
        for k, t, r, a in zip(kinds, times, res, args, strict=True):
            if k in _AGENT:
                continue
            new: tuple[str, str] | None = None
            if k == K.UNIT_BLOCK:
                new = (WAITING if a in _PEER_REASONS else BLOCKED, self._resource(r))
            elif k == K.UNIT_YIELD:
                new = (SUSPENDED, "") if state == RUNNING else None
            elif k == K.UNIT_RUN:
                new = (RUNNING, "") if state == SUSPENDED else None
            elif k in _SCHEDULING:
                new = None
            elif state != RUNNING:
                new = (RUNNING, "")
            if k == K.UNIT_END:
                ended, end = True, t
                break
            if new is not None and new != (state, what):
                if state != RUNNING:
                    segments.append(Segment(since, t, state, what, False))
                state, what = new
                since = t
        if state != RUNNING:
            segments.append(Segment(since, max(end, since), state, what, not ended))
        left_out = 0
        if len(segments) > MAX_SEGMENTS:
            keep = sorted(segments, key=lambda s: s.start - s.end)[:MAX_SEGMENTS]
            left_out = len(segments) - len(keep)
            segments = sorted(keep, key=lambda s: s.start)
        detail = f"{unit.kind} · {proc.label()} · {proc.runtime or '?'}"
        return Lane(
            str(trace.unit_id(u)),
            unit.name or f"unit {unit.number}",
            detail,
            start,
            max(end, start),
            ended,
            tuple(segments),
            marks,
            left_out,
        )

    def _arrows(
        self,
        drawn: Sequence[int],
        lane_of: Mapping[int, int],
        lanes: Sequence[Lane],
        story: set[int],
    ) -> tuple[list[Arrow], int]:
        """Happens-before edges between drawn units (those touching the finding's own
        events first, then in time order), plus "waits for" links, capped."""
        g, ev = self._c.graph, self._trace.events
        units = np.array(drawn, dtype=np.int32)
        keep = np.isin(ev.unit[g.src], units) & np.isin(ev.unit[g.dst], units)
        rows = np.flatnonzero(keep)
        touches = np.isin(g.src[rows], list(story)) | np.isin(g.dst[rows], list(story))
        rows = rows[np.lexsort((self._adjusted[g.dst[rows]], ~touches))]
        out: list[Arrow] = self._waits_for(drawn, lane_of, lanes)
        total = len(rows) + len(out)
        for r in rows[: max(0, MAX_ARROWS - len(out))].tolist():
            s, d = int(g.src[r]), int(g.dst[r])
            kind = _EDGE_WORDS.get(EdgeKind(int(g.kind[r])), "edge")
            prov = Provenance(int(g.provenance[r])).label
            sure = float(g.confidence[r]) >= CERTAIN
            title = (
                f"{kind}: {self._trace.event_id(s)} → {self._trace.event_id(d)} "
                f"(evidence: {prov}{'' if sure else f', confidence {float(g.confidence[r]):.2f}'})"
            )
            out.append(
                Arrow(
                    lane_of[int(ev.unit[s])],
                    int(self._adjusted[s]),
                    lane_of[int(ev.unit[d])],
                    int(self._adjusted[d]),
                    kind,
                    title,
                    sure,
                )
            )
        return out, total - len(out)

    def _waits_for(
        self, drawn: Sequence[int], lane_of: Mapping[int, int], lanes: Sequence[Lane]
    ) -> list[Arrow]:
        """For each lane's wait on an owned lock: the drawn unit that held it then (its
        latest acquire of that lock with no release in between) — the deadlock's picture."""
        ev = self._trace.events
        if self._owned is None:
            self._owned = self._trace.resource_kind_mask(*_OWNED)
        held: dict[int, list[tuple[int, int, int]]] = {}  # res -> (acquire t, release t, unit)
        blocks: list[tuple[int, int, int]] = []  # (unit, res, t)
        for u in drawn:
            events = self._events_of(u)
            events = events[self._owned[events]]  # lock events only, in bulk
            open_at: dict[int, int] = {}
            for i in events.tolist():
                k, r, t = int(ev.kind[i]), int(ev.res[i]), int(self._adjusted[i])
                if k == K.LOCK_ACQUIRED:
                    open_at.setdefault(r, t)
                elif k == K.LOCK_RELEASE and r in open_at:
                    held.setdefault(r, []).append((open_at.pop(r), t, u))
                elif k == K.UNIT_BLOCK:
                    blocks.append((u, r, t))
            for r, t in open_at.items():
                held.setdefault(r, []).append((t, np.iinfo(np.int64).max, u))
        out: list[Arrow] = []
        for u, r, t in blocks:
            for since, until, holder in held.get(r, []):
                if holder != u and since <= t < until:
                    name = self._resource(r)
                    out.append(
                        Arrow(
                            lane_of[u],
                            t,
                            lane_of[holder],
                            t,
                            WAITS_FOR,
                            f"{lanes[lane_of[u]].name} waits for {name}, "
                            f"held by {lanes[lane_of[holder]].name}",
                            True,
                        )
                    )
        return out[:MAX_ARROWS]


_STATE_KINDS = np.array([K.UNIT_BLOCK, K.UNIT_YIELD, K.UNIT_RUN, K.UNIT_END], dtype=np.uint8)
_QUIET = np.array(sorted(_SCHEDULING | _AGENT), dtype=np.uint8)


def _state_changes(kinds: npt.NDArray[np.uint8], events: npt.NDArray[np.int64]) -> I64:
    """Of a unit's events in program order, those that can change its lane's state: blocks,
    task steps, its end, and the first event that is not bookkeeping after each block or
    yield (it ends the wait). A hot loop of uncontended locks is thousands of events that
    change nothing; this keeps the per-event Python loop to the few that do."""
    keep = np.isin(kinds, _STATE_KINDS)
    meaningful = np.flatnonzero(~np.isin(kinds, _QUIET))
    waits = np.flatnonzero((kinds == K.UNIT_BLOCK) | (kinds == K.UNIT_YIELD))
    after = np.searchsorted(meaningful, waits, side="right")
    keep[meaningful[after[after < len(meaningful)]]] = True
    kept: I64 = events[keep]
    return kept


def _window(first: int, last: int, story: Sequence[int]) -> tuple[int, int]:
    """The stretch of time to draw: the story's moments with a margin either side,
    unless the lanes' whole span is not much longer. A deadlock forms in microseconds and
    then stays for seconds; drawn to scale over the whole span, its story would be a
    sliver at the left edge."""
    if not story:
        return first, last
    lo, hi = min(story), max(story)
    pad = max((hi - lo) // 6, 20_000)
    v0, v1 = max(first, lo - pad), min(last, hi + pad)
    if v1 <= v0:
        v1 = v0 + 1
    if (last - first) * 2 <= (v1 - v0) * 3:
        return first, last
    return v0, v1


# -- drawing ----------------------------------------------------------------------------

WIDTH = 1000
LABEL_W = 250
RIGHT_PAD = 24
AXIS_H = 34
LANE_H = 30
BAR_H = 12
PLOT_X0 = LABEL_W + 10
PLOT_W = WIDTH - PLOT_X0 - RIGHT_PAD
TICKS = 5
EDGE_COLOUR = "#1f4e9c"  # the arrowheads' fills; the lines' strokes are in the page's CSS
WAITS_COLOUR = "#b3261e"


def svg(t: Timeline, label: str, key: str) -> str:
    """The timeline as one ``<svg>`` element; ``label`` is its accessible name, ``key`` an
    id-safe string unique in the page (the arrowhead markers' ids are made from it)."""
    height = AXIS_H + LANE_H * len(t.lanes) + 10
    span = t.t1 - t.t0

    def x(at: int) -> float:
        return PLOT_X0 + PLOT_W * (min(max(at, t.t0), t.t1) - t.t0) / span

    def y(lane: int) -> float:
        return AXIS_H + LANE_H * lane + LANE_H / 2

    out = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{attr(label)}">',
        f"<title>{text(label)}</title>",
        "<defs>",
        *(
            f'<marker id="{key}-{name}" viewBox="0 0 10 10" refX="9" refY="5" '
            'markerWidth="7" markerHeight="7" orient="auto">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
            for name, colour in (("edge", EDGE_COLOUR), ("waits", WAITS_COLOUR))
        ),
        "</defs>",
    ]
    for k in range(TICKS + 1):
        at = t.t0 + span * k // TICKS
        tx = x(at)
        out.append(
            f'<line class="tick" x1="{tx:.1f}" y1="{AXIS_H - 6}" x2="{tx:.1f}" '
            f'y2="{height - 6}"/>'
            f'<text class="ticklabel" x="{tx:.1f}" y="{AXIS_H - 10}" '
            f'text-anchor="{"start" if k == 0 else "end" if k == TICKS else "middle"}">'
            f"{text(signed_duration(at - t.t0))}</text>"
        )
    for n, lane in enumerate(t.lanes):
        ly = y(n)
        out.append(
            f'<g class="lane" data-unit="{attr(lane.unit_id)}">'
            f"<title>{text(lane.name)} — {text(lane.detail)} — {text(lane.unit_id)}</title>"
            f'<text class="lanelabel" x="6" y="{ly - 2:.1f}">{text(lane.name, LABEL_LIMIT)}</text>'
            f'<text class="lanedetail" x="6" y="{ly + 10:.1f}">'
            f"{text(lane.detail, LABEL_LIMIT + 14)}</text>"
            f'<rect class="running" x="{x(lane.start):.1f}" y="{ly - BAR_H / 2:.1f}" '
            f'width="{max(x(lane.end) - x(lane.start), 1.0):.1f}" height="{BAR_H}"/>'
        )
        for s in lane.segments:
            if s.end < t.t0 or s.start > t.t1:
                continue
            still = " (still when the trace ended)" if s.still else ""
            what = f" on {s.what}" if s.what else ""
            tip = f"{s.state}{what}{still}, {duration(s.end - s.start)}"
            out.append(
                f'<rect class="{s.state}" x="{x(s.start):.1f}" y="{ly - BAR_H / 2:.1f}" '
                f'width="{max(x(s.end) - x(s.start), 1.5):.1f}" height="{BAR_H}">'
                f"<title>{text(tip)}</title></rect>"
            )
        if lane.end > t.t1:
            out.append(
                f'<text class="still" x="{x(t.t1) + 2:.1f}" y="{ly + 4:.1f}">&#8250;<title>goes on '
                f"to {text(signed_duration(lane.end - t.t0))}"
                f"{'' if lane.ended else ', still alive when the trace stopped'}</title></text>"
            )
        elif not lane.ended:
            out.append(
                f'<text class="still" x="{x(lane.end) + 2:.1f}" y="{ly + 4:.1f}">…<title>no end '
                "in the trace: still alive when it stopped</title></text>"
            )
        if lane.start < t.t0:
            out.append(
                f'<text class="still" x="{PLOT_X0 - 9}" y="{ly + 4:.1f}">&#8249;<title>began '
                f"{text(duration(t.t0 - lane.start))} earlier</title></text>"
            )
        out.append("</g>")
    for a in t.arrows:
        if max(a.src_at, a.dst_at) < t.t0 or min(a.src_at, a.dst_at) > t.t1:
            continue
        x1, y1, x2, y2 = x(a.src_at), y(a.src_lane), x(a.dst_at), y(a.dst_lane)
        # Leave the bars visible: start and stop at the bars' edges.
        dy = BAR_H / 2 + 1
        y1 += dy if y2 > y1 else -dy
        y2 += -dy if y2 > y1 else dy
        cls = "waits" if a.kind == WAITS_FOR else "edge" if a.certain else "edge uncertain"
        out.append(
            f'<line class="{cls}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'marker-end="url(#{key}-{"waits" if a.kind == WAITS_FOR else "edge"})">'
            f"<title>{text(a.title)}</title></line>"
        )
    for n, lane in enumerate(t.lanes):
        for m in lane.marks:
            mx, my = x(m.at), y(n)
            out.append(
                f'<g class="mark"><circle cx="{mx:.1f}" cy="{my:.1f}" r="7"/>'
                f'<text x="{mx:.1f}" y="{my + 3.5:.1f}" text-anchor="middle">{m.number}</text>'
                f"<title>{text(m.title)}</title></g>"
            )
    out.append("</svg>")
    return "".join(out)


def duration(ns: int) -> str:
    """850 ns, 12.5 µs, 3.2 ms, 2.0 s."""
    a = abs(ns)
    if a < 1_000:
        return f"{ns} ns"
    if a < 1_000_000:
        return f"{ns / 1e3:.1f} µs"
    if a < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.1f} s"


def signed_duration(ns: int) -> str:
    return ("+" if ns >= 0 else "") + duration(ns)


def wall(ns: int) -> str:
    """An adjusted time as UTC, to the microsecond."""
    when = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S") + f".{ns % 1_000_000_000 // 1000:06d} UTC"
