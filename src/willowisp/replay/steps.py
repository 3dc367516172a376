"""Stepping through a recording in causal order, and the consistent cut at every step.

**Order.** Step k is one event. The order is a linear extension of happens-before: events
sorted by their causal level (``view.model.causal_levels``: longer happens-before chains
come later; every edge and every unit's program order go strictly forward) and, among
events of one level, by adjusted time. So every step sees everything that causally
precedes it, whatever the clocks said; what the order does *not* fix — two events with no
path between them — is shown in adjusted-time order, and when their clocks are too
uncertain to say even that, the step says so (a drift warning) instead of pretending.

**Cut.** After step k: each unit's state (not started, running, blocked on a resource for a
reason, ended), which owned locks each unit holds (reentrant depth counted), and which
requests are in flight: a request from its send to its response (or, without one, the
server's reply), a message from its send to its receipt (once a consumer got it, it is
no longer travelling, whatever it did next), a spawn from the parent's spawn to the
child's start (then it is a running process, shown as its units). Computed by applying
events forward from the nearest checkpoint (one every ``CHECKPOINT`` steps), so any step
is reached in at most that many applications, forwards or backwards.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from willowisp.analysis.engine import Analysis
from willowisp.analysis.naming import event_where, fmt_duration, resource_name
from willowisp.causality.hops import HopKind, Hops
from willowisp.causality.waits import OWNED_LOCKS, waits
from willowisp.model.spec import K, Reason
from willowisp.view.model import causal_levels

CHECKPOINT = 2000
I64 = npt.NDArray[np.int64]


@dataclass
class UnitState:
    status: str = "not started"  # not started | running | blocked | ended
    resource: int = -1  # what it is blocked on
    reason: str = ""
    since: int = -1  # the step at which this state began


@dataclass
class Cut:
    """The state after some step (see the module doc)."""

    step: int = -1
    units: dict[int, UnitState] = field(default_factory=dict)
    holds: dict[int, dict[int, int]] = field(default_factory=dict)  # lock -> unit -> depth
    inflight: dict[int, int] = field(default_factory=dict)  # hop row -> step it was sent


class Stepper:
    """Causal order, navigation and the cut at each step for one analysis."""

    def __init__(self, a: Analysis) -> None:
        self.a = a
        trace = a.trace
        ev = trace.events
        adjusted = a.causality.clocks.adjusted
        g = a.causality.graph
        level = causal_levels(ev.unit, adjusted, g.src, g.dst)
        self.order: I64 = np.lexsort((np.arange(len(ev)), adjusted, level)).astype(np.int64)
        self.position: I64 = np.empty(len(ev), dtype=np.int64)
        self.position[self.order] = np.arange(len(ev), dtype=np.int64)
        self.level = level
        w = waits(trace)
        self.wait_end = dict(zip(w.block.tolist(), w.end.tolist(), strict=True))
        self.block_of_end = {e: b for b, e in self.wait_end.items() if e >= 0}
        h = a.causality.hops
        self.hop_of_send = {s: r for r, s in enumerate(h.send.tolist()) if s >= 0}
        # Invariant: every row listed under an event is in flight from its send to that event.
        self.hop_end: dict[int, list[int]] = {}
        for r in range(len(h)):
            end = _hop_end(h, r)
            if end >= 0:
                self.hop_end.setdefault(end, []).append(r)
        self.owned = set(np.flatnonzero(np.isin(trace.resource_kind, OWNED_LOCKS)).tolist())
        self.rlock = set(np.flatnonzero(trace.resource_kind == "rlock").tolist())
        self._checkpoints: list[Cut] = [Cut()]
        self.cut = Cut()
        self.history: list[int] = []

    def __len__(self) -> int:
        return len(self.order)

    # -- the cut -------------------------------------------------------------------------

    def goto(self, step: int, remember: bool = True) -> Cut:
        """Move to ``step`` (clamped to the recording) and return the cut after it."""
        step = max(-1, min(step, len(self.order) - 1))
        if remember and step != self.cut.step:
            self.history.append(self.cut.step)
        base = self.cut if self.cut.step <= step else None
        if base is None or step - base.step > CHECKPOINT:
            idx = min((step + 1) // CHECKPOINT, len(self._checkpoints) - 1)
            base = self._checkpoints[idx]
        cut = copy.deepcopy(base)
        for k in range(cut.step + 1, step + 1):
            self._apply(cut, k)
            if (k + 1) % CHECKPOINT == 0 and (k + 1) // CHECKPOINT == len(self._checkpoints):
                self._checkpoints.append(copy.deepcopy(cut))
        self.cut = cut
        return cut

    def _apply(self, cut: Cut, k: int) -> None:
        ev = self.a.trace.events
        i = int(self.order[k])
        cut.step = k
        u, kind, res, arg = int(ev.unit[i]), int(ev.kind[i]), int(ev.res[i]), int(ev.arg[i])
        if i in self.hop_of_send:
            cut.inflight[self.hop_of_send[i]] = k
        for row in self.hop_end.get(i, ()):
            cut.inflight.pop(row, None)
        if u < 0:
            return
        st = cut.units.setdefault(u, UnitState())
        if kind == K.UNIT_END:
            cut.units[u] = UnitState("ended", since=k)
            return
        if kind == K.UNIT_BLOCK:
            cut.units[u] = UnitState("blocked", res, _reason(arg), k)
        elif st.status != "running" and (st.status != "blocked" or i in self.block_of_end):
            cut.units[u] = UnitState("running", since=k)
        if res in self.owned:
            held = cut.holds.setdefault(res, {})
            if kind == K.LOCK_ACQUIRED:
                held[u] = max(arg, 1) if res in self.rlock else 1
            elif kind == K.LOCK_RELEASE:
                if res in self.rlock and arg > 0:
                    held[u] = arg
                else:
                    held.pop(u, None)
                if not held:
                    cut.holds.pop(res, None)

    # -- navigation ------------------------------------------------------------------------

    def event(self, step: int | None = None) -> int:
        k = self.cut.step if step is None else step
        return int(self.order[k]) if 0 <= k < len(self.order) else -1

    def next_on_unit(self, unit: int) -> int | None:
        """The next step of ``unit`` after the current one, None if it has none."""
        ev = self.a.trace.events
        rows = np.flatnonzero(ev.unit == unit)
        later = self.position[rows]
        later = later[later > self.cut.step]
        return int(later.min()) if len(later) else None

    def follow(self) -> int | None:
        """The step at the other end of a causal edge of the current event: where it leads
        (its first outgoing edge), else where it came from (its incoming edge)."""
        i = self.event()
        if i < 0:
            return None
        g = self.a.causality.graph
        out = np.flatnonzero(g.src == i)
        if len(out):
            return int(self.position[g.dst[out]].min())
        inc = g.incoming(i)
        if len(inc):
            return int(self.position[g.src[inc]].max())
        return None

    def back(self) -> Cut:
        step = self.history.pop() if self.history else -1
        return self.goto(step, remember=False)

    def first_match(self, mask: npt.NDArray[np.bool_]) -> int | None:
        """The first step after the current one whose event ``mask`` selects."""
        hits = self.position[np.flatnonzero(mask)]
        hits = hits[hits > self.cut.step]
        return int(hits.min()) if len(hits) else None

    # -- words -------------------------------------------------------------------------------

    def describe(self, step: int | None = None) -> str:
        """One line for the event at ``step``: who did what, on what, where."""
        i = self.event(step)
        if i < 0:
            return "(before the first event)"
        trace = self.a.trace
        ev = trace.events
        u, res = int(ev.unit[i]), int(ev.res[i])
        who = self.unit_name(u) if u >= 0 else trace.processes[int(ev.proc[i])].label()
        what = _kind_name(int(ev.kind[i]))
        if int(ev.kind[i]) == K.UNIT_BLOCK:
            what += f" ({_reason(int(ev.arg[i]))})"
        on = f" {trace.resources[res].kind} {resource_name(trace, res)}" if res >= 0 else ""
        where = event_where(trace, i)
        return f"{who}: {what}{on}" + (f" at {where}" if where else "")

    def unit_name(self, u: int) -> str:
        trace = self.a.trace
        unit = trace.units[u]
        p = trace.processes[unit.proc]
        where = " ".join(x for x in (p.service or "?", p.pid_text) if x)
        return f"{unit.name or unit.kind} ({', '.join(x for x in (where, p.runtime) if x)})"

    def drift_warning(self, step: int | None = None) -> str:
        """Non-empty when the order between this step and the previous one is fixed by
        neither causality nor the clocks: different clock domains, no edge between the two
        events, and an adjusted gap smaller than the domains' combined uncertainty."""
        k = self.cut.step if step is None else step
        if k < 1:
            return ""
        i, p = int(self.order[k]), int(self.order[k - 1])
        clocks = self.a.causality.clocks
        ev = self.a.trace.events
        di = clocks.domains[int(clocks.domain_of_proc[int(ev.proc[i])])]
        dp = clocks.domains[int(clocks.domain_of_proc[int(ev.proc[p])])]
        if di.index == dp.index or _edge(self.a, p, i):
            return ""
        ui, up = di.uncertainty_ns, dp.uncertainty_ns
        gap = int(clocks.adjusted[i]) - int(clocks.adjusted[p])
        if ui is not None and up is not None and abs(gap) >= ui + up:
            return ""
        bound = "unbounded" if ui is None or up is None else f"±{fmt_duration(ui + up)}"
        return (
            f"drift warning: nothing orders this step after the previous one ({dp.id} → "
            f"{di.id}); their clocks are uncertain by {bound}, more than the "
            f"{fmt_duration(abs(gap))} between them"
        )


def _edge(a: Analysis, src: int, dst: int) -> bool:
    g = a.causality.graph
    inc = g.incoming(dst)
    return bool(len(inc) and (g.src[inc] == src).any())


def _reason(arg: int) -> str:
    try:
        return Reason(arg).name.lower().replace("_", " ")
    except ValueError:
        return f"reason {arg}"


def _kind_name(code: int) -> str:
    try:
        return K(code).name.lower().replace("_", ".", 1)
    except ValueError:
        return f"kind {code}"


def _hop_end(h: Hops, r: int) -> int:
    """The event that ends hop row r's flight (NO_INDEX while it has none): a request's
    response, else its reply; a message's receipt; a spawn's start of the child."""
    if int(h.kind[r]) == HopKind.RPC:
        return int(h.response[r]) if h.response[r] >= 0 else int(h.reply[r])
    return int(h.recv[r])
