"""Replay commands — what ``--script FILE`` runs one per line and what the terminal UI's
keys call — and the text of a cut.

Commands (``#`` starts a comment; blank lines are skipped):

    next [N]            N steps forward (default 1)
    prev [N]            N steps back
    goto STEP|start|end
    goto finding ID     the step where the finding's story closes (its last event; for a
                        deadlock or leak, once each of its units has done its last)
    unit NAME           select the first unit NAME names, by ``--delay unit:NAME``'s rule:
                        exactly NAME first (case-sensitive), else a glob if NAME has
                        * ? [, else the first whose name contains it; ~TEXT: contains
    next-unit           the selected unit's next step
    follow              to the other end of the current event's causal edge
    back                to where the last jump came from
    break resource=NAME | unit=NAME | finding=ID | kind=KIND
    clear               remove every breakpoint
    continue            to the next step a breakpoint selects
    state               print the cut: every unit's state, locks held, requests in flight
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from willowisp.analysis.naming import fmt_duration, resource_name
from willowisp.causality.hops import HopKind
from willowisp.errors import UsageError
from willowisp.model.spec import K
from willowisp.replay.steps import Stepper
from willowisp.replay.targets import match_units

MAX_UNITS_SHOWN = 200
HANGS = ("deadlock", "leak")  # findings whose story ends with its units' last events


@dataclass
class Session:
    """A stepper, the unit selected and the breakpoints set."""

    stepper: Stepper
    unit: int | None = None
    breaks: list[tuple[str, str, npt.NDArray[np.bool_]]] = field(default_factory=list)

    def run(self, line: str) -> list[str]:
        """Run one command; the lines it prints. Raises UsageError for a bad command."""
        words = line.split("#", 1)[0].split()
        if not words:
            return []
        cmd, args = words[0].lower(), words[1:]
        s = self.stepper
        if cmd in ("next", "n", "prev", "p"):
            count = _count(args)
            sign = 1 if cmd in ("next", "n") else -1
            s.goto(s.cut.step + sign * count)
            return self.position()
        if cmd == "goto":
            return self._goto(args)
        if cmd == "unit":
            self.unit = self._find_unit(" ".join(args))
            return [f"unit: {s.unit_name(self.unit)}"]
        if cmd == "next-unit":
            if self.unit is None:
                raise UsageError("next-unit: select a unit first (unit NAME)")
            step = s.next_on_unit(self.unit)
            if step is None:
                return [f"{s.unit_name(self.unit)} has no later step"]
            s.goto(step)
            return self.position()
        if cmd == "follow":
            step = s.follow()
            if step is None:
                return ["no causal edge at this step"]
            s.goto(step)
            return self.position()
        if cmd == "back":
            s.back()
            return self.position()
        if cmd == "break":
            return self._break(" ".join(args))
        if cmd == "clear":
            self.breaks.clear()
            return ["breakpoints cleared"]
        if cmd in ("continue", "c"):
            return self._continue()
        if cmd == "state":
            return self.position() + state_lines(s)
        raise UsageError(f"unknown command {cmd!r} (see willowisp replay --help)")

    def position(self) -> list[str]:
        s = self.stepper
        k = s.cut.step
        lines = [f"step {k + 1}/{len(s)}: {s.describe()}"]
        warning = s.drift_warning()
        if warning:
            lines.append("  " + warning)
        return lines

    def _goto(self, args: list[str]) -> list[str]:
        s = self.stepper
        if args[:1] == ["finding"] and len(args) == 2:
            f = _finding(s, args[1])
            rows = list(s.a.trace.event_indices(f.events).values())
            if f.kind in HANGS:  # the cycle is closed once each of its units has its last event
                ids = {u.id for u in f.units}
                ev = s.a.trace.events
                units = [u.index for u in s.a.trace.units if str(s.a.trace.unit_id(u.index)) in ids]
                for u in units:
                    mine = np.flatnonzero(ev.unit == u)
                    if len(mine):
                        rows.append(int(mine[-1]))
            if not rows:
                raise UsageError(f"finding {args[1]} names no recorded event")
            s.goto(int(s.position[np.array(rows)].max()))
            return [f"finding {f.id}: {f.summary}", *self.position()]
        if len(args) != 1:
            raise UsageError("goto STEP | start | end | finding ID")
        target = {"start": 0, "end": len(s) - 1}.get(args[0])
        if target is None:
            try:
                target = int(args[0]) - 1
            except ValueError:
                raise UsageError(f"goto {args[0]!r}: not a step number") from None
        s.goto(target)
        return self.position()

    def _find_unit(self, name: str) -> int:
        """The unit ``unit NAME`` selects: the first that ``--delay unit:NAME`` would
        delay, so a script and a what-if given the same name mean the same unit (``A`` is
        the task A, not MainThread, which comes first and contains an "a")."""
        hits, _ = match_units(self.stepper.a, name)
        if not hits:
            raise UsageError(f"no unit named like {name!r}")
        return hits[0]

    def _break(self, spec: str) -> list[str]:
        what, _, value = spec.partition("=")
        what, value = what.strip(), value.strip()
        if not value:
            raise UsageError("break resource=NAME | unit=NAME | finding=ID | kind=KIND")
        trace = self.stepper.a.trace
        ev = trace.events
        if what == "resource":
            names = np.array(
                [value.lower() in resource_name(trace, r.index).lower() for r in trace.resources]
                + [False]
            )
            mask = names[np.where(ev.res >= 0, ev.res, len(trace.resources))]
        elif what == "unit":
            units = np.array(
                [value.lower() in (u.name or "").lower() for u in trace.units] + [False]
            )
            mask = units[np.where(ev.unit >= 0, ev.unit, len(trace.units))]
        elif what == "finding":
            f = _finding(self.stepper, value)
            mask = np.zeros(len(ev), dtype=bool)
            mask[list(trace.event_indices(f.events).values())] = True
        elif what == "kind":
            try:
                code = K[value.upper().replace(".", "_")]
            except KeyError:
                raise UsageError(f"break kind={value}: no such event kind") from None
            mask = ev.kind == code
        else:
            raise UsageError(f"break {what}=...: resource, unit, finding or kind")
        if not mask.any():
            raise UsageError(f"break {spec}: matches no event of this recording")
        self.breaks.append((what, value, mask))
        return [f"breakpoint {len(self.breaks)}: {what}={value} ({int(mask.sum())} events)"]

    def _continue(self) -> list[str]:
        if not self.breaks:
            raise UsageError("continue: no breakpoint set (break ...)")
        mask = np.logical_or.reduce([m for _, _, m in self.breaks])
        step = self.stepper.first_match(mask)
        if step is None:
            self.stepper.goto(len(self.stepper) - 1)
            return ["no breakpoint hit before the end", *self.position()]
        self.stepper.goto(step)
        i = self.stepper.event()
        hit = [f"{w}={v}" for w, v, m in self.breaks if m[i]]
        return [f"breakpoint {', '.join(hit)}", *self.position()]


def _count(args: list[str]) -> int:
    if not args:
        return 1
    try:
        n = int(args[0])
    except ValueError:
        raise UsageError(f"{args[0]!r}: not a number of steps") from None
    if n < 0:
        raise UsageError("a number of steps is not negative")
    return n


def _finding(s: Stepper, fid: str):  # type: ignore[no-untyped-def]
    for f in s.a.findings:
        if f.id == fid or f.id.startswith(fid):
            return f
    raise UsageError(f"no finding {fid!r} (this recording has: {_ids(s)})")


def _ids(s: Stepper) -> str:
    return ", ".join(f.id for f in s.a.findings[:20]) or "none"


def _server_unit(s: Stepper, r: int) -> int | None:
    """The unit serving request resource ``r`` (linked hops only)."""
    servers = s.a.causality.hops.server_of_client()
    row = servers.get(r) if r >= 0 else None
    if row is None:
        return None
    recv = int(s.a.causality.hops.recv[row])
    unit = int(s.a.trace.events.unit[recv]) if recv >= 0 else -1
    return unit if unit >= 0 else None


def state_lines(s: Stepper) -> list[str]:
    """The cut after the current step, for people."""
    trace = s.a.trace
    cut = s.cut
    lines = ["units:"]
    units = sorted(cut.units.items(), key=lambda kv: (kv[1].status != "blocked", kv[0]))
    for u, st in units[:MAX_UNITS_SHOWN]:
        text = st.status
        if st.status == "blocked":
            r = st.resource
            on = f"{trace.resources[r].kind} {resource_name(trace, r)}" if r >= 0 else "?"
            text = f"blocked on {on} ({st.reason})"
            holders = [h for h in cut.holds.get(r, {}) if h != u]
            if holders:
                text += ", held by " + ", ".join(s.unit_name(h) for h in holders)
            server = _server_unit(s, r)
            if server is not None:
                text += f", served by {s.unit_name(server)}"
        lines.append(f"  {s.unit_name(u)}: {text} since step {st.since + 1}")
    if len(units) > MAX_UNITS_SHOWN:
        lines.append(f"  ... and {len(units) - MAX_UNITS_SHOWN} more units")
    waiting = len(trace.units) - len(cut.units)
    if waiting:
        lines.append(f"  ({waiting} units not started yet)")
    lines.append("locks held:" if cut.holds else "locks held: none")
    for r, held in sorted(cut.holds.items()):
        who = ", ".join(
            s.unit_name(u) + (f" x{d}" if d > 1 else "") for u, d in sorted(held.items())
        )
        lines.append(f"  {trace.resources[r].kind} {resource_name(trace, r)}: {who}")
    lines.append("requests in flight:" if cut.inflight else "requests in flight: none")
    hops = s.a.causality.hops
    adjusted = s.a.causality.clocks.adjusted
    now = int(adjusted[s.event()]) if s.event() >= 0 else 0
    for row, since in sorted(cut.inflight.items(), key=lambda kv: kv[1]):
        send = int(hops.send[row])
        name = _flight_name(s, row)
        who = s.unit_name(int(trace.events.unit[send])) if trace.events.unit[send] >= 0 else "?"
        age = fmt_duration(max(now - int(adjusted[send]), 0))
        lines.append(f"  {name} from {who}, sent at step {since + 1} ({age} before)")
    return lines


def _flight_name(s: Stepper, row: int) -> str:
    """What an in-flight hop row is called: a request or message by its resource; a spawn
    (until its child starts) by the child it starts, ``spawn of ledger (java)`` when the
    child is traced, else by its program's name (a command line is long and, recorded
    cut, ends mid-word)."""
    trace, hops = s.a.trace, s.a.causality.hops
    client = int(hops.client[row])
    if int(hops.kind[row]) != HopKind.SPAWN:
        return resource_name(trace, client) if client >= 0 else "?"
    server = int(hops.server[row])
    if server >= 0:
        child = trace.processes[trace.resources[server].proc]
        return f"spawn of {child.service} ({child.runtime})"
    command = trace.resources[client].name if client >= 0 else ""
    program = command.split(maxsplit=1)[0].rsplit("/", 1)[-1] if command.strip() else "?"
    return f"spawn of {program} (not traced)"
