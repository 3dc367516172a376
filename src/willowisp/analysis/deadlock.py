"""``deadlock``: units waiting for each other in a cycle, across any mix of runtimes.

The cycle search is :mod:`willowisp.analysis.wait_graph`; this module turns each cycle into
a finding a person can act on: every unit and resource named, and the story told in causal
order, one line per step with its source place::

    Thread-1 (pid 4242, orders, python) acquired lock state_lock at bank.py:12
    Thread-1 sent POST /reserve to stock (client.py:30) and waits for the reply
    stock's thread 'Thread-3 (process_request_thread)' received POST /reserve
    ...
    ... waits for lock state_lock at app.py:21, held by Thread-1 → cycle

A cycle is reported whether the program stayed stuck until it was killed or the cycle was
later broken (a timeout gave up): a deadlock that a timeout papers over is still one.

The id is derived from the resources (kind, name, creation place) and the source places of
the waits and acquisitions, so the same deadlock has the same id in every run, whatever the
thread names, pids or times.
"""

from __future__ import annotations

from collections.abc import Iterable

from willowisp.analysis import stuck
from willowisp.analysis.finding import Finding
from willowisp.analysis.naming import (
    at,
    event_where,
    fmt_duration,
    join_words,
    plural,
    possessive,
    resource_name,
    resource_ref,
    unit_label,
    unit_names,
    unit_ref,
)
from willowisp.analysis.race import describe
from willowisp.analysis.wait_graph import Cycle, Via, WaitEdge, find_cycles, wait_edges
from willowisp.causality.link import Causality
from willowisp.causality.waits import STILL, Waits, holds, wait_outcome, waits
from willowisp.model.spec import K


def find(c: Causality) -> list[Finding]:
    """The wait-for cycles, then the processes whose whole program is asleep at the end
    (:mod:`willowisp.analysis.stuck`). One hang is one finding: a process asleep around a
    cycle that is still stuck is told in that cycle's finding (the units the cycle does not
    cover, such as main waiting for the deadlocked goroutines, are added to it); only a hang
    no cycle explains (goroutines deadlocked on channels) is a finding of its own."""
    w = waits(c.trace)
    edges = wait_edges(c, w, holds(c.trace))
    cycles = find_cycles(edges)
    server_rows = c.hops.server_of_client()
    found = [_Teller(c, w, cycle, server_rows, _behind(cycle, edges)).finding() for cycle in cycles]
    held = [
        {e.waiter for e in cycle.edges} if cycle.broken_at >= STILL else set() for cycle in cycles
    ]
    ev = c.trace.events
    for p, blocks in stuck.asleep(c):
        units = {int(ev.unit[b]) for b in blocks}
        hits = [i for i, us in enumerate(held) if us & units]
        if not hits:
            found.append(stuck.finding(c, p, blocks))
        else:  # told once, in the first cycle; other cycles there keep their own findings
            covered = set().union(*(held[i] for i in hits))
            found[hits[0]] = stuck.fold_into(c, found[hits[0]], p, blocks, covered)
    return found


BEHIND_SHOWN = 5  # units stuck behind a cycle named in its story; the rest counted


def _behind(cycle: Cycle, edges: list[WaitEdge]) -> list[WaitEdge]:
    """For a cycle still stuck at the end: the waits, open at the end too, of units outside
    it that wait for a unit of the cycle, or for one such unit, and so on (a caller whose
    request a deadlocked handler serves, in another process and runtime), nearest first."""
    if cycle.broken_at < STILL:
        return []
    stuck = {e.waiter for e in cycle.edges}
    open_by_target: dict[int, list[WaitEdge]] = {}
    for e in edges:
        if e.end >= STILL and e.waiter not in stuck:
            open_by_target.setdefault(e.target, []).append(e)
    out: list[WaitEdge] = []
    frontier = list(stuck)
    while frontier:
        nxt = []
        for target in frontier:
            for e in open_by_target.get(target, ()):
                if e.waiter not in stuck:
                    stuck.add(e.waiter)
                    out.append(e)
                    nxt.append(e.waiter)
        frontier = nxt
    return out


# A story step's role, which also orders steps that share a timestamp.
ACQUIRED, SENT, RECEIVED, WAITS = 0, 1, 2, 3


class _Teller:
    """Tells one cycle's story; names each unit in full the first time, briefly after."""

    def __init__(
        self,
        c: Causality,
        w: Waits,
        cycle: Cycle,
        server_rows: dict[int, int],
        behind: list[WaitEdge] | None = None,
    ) -> None:
        self.c, self.trace, self.w, self.cycle = c, c.trace, w, cycle
        self.behind = behind or []
        self.units = _unique(e.waiter for e in cycle.edges)
        self.short = unit_names(self.trace, self.units)
        self.mentioned: dict[int, None] = {}  # units named so far, in order (a set that keeps it)
        self.server_rows = server_rows  # client rpc resource -> hop row

    def finding(self) -> Finding:
        trace, cycle = self.trace, self.cycle
        steps = self.steps()
        units = _unique([*self.mentioned, *self.units])  # in the order the story names them
        refs = [resource_ref(trace, r) for r in _unique(e.resource for e in cycle.edges)]
        places = {event_where(trace, self.block(e)) for e in cycle.edges}
        places |= {event_where(trace, e.cause) for e in cycle.edges if e.via == Via.LOCK}
        identity = tuple(r.key() for r in refs) + tuple(sorted(p for p in places if p))
        broken = cycle.broken_at < STILL
        extra: dict[str, object] = {"broken": broken}
        if broken:
            extra["stuck_ns"] = cycle.broken_at - cycle.formed_at
            extra["resolved"] = not self.torn_down()
        if cycle.repeats > 1:
            extra["occurrences"] = cycle.repeats
        return Finding(
            kind="deadlock",
            severity="error",
            summary=self.summary(broken),
            identity=identity,
            units=tuple(unit_ref(trace, u) for u in units),
            resources=tuple(refs),
            events=tuple(str(trace.event_id(i)) for i in _unique(i for i, _ in steps)),
            explanation=(*(text for _, text in steps), *self.behind_lines(), self.ending()),
            extra=tuple(extra.items()),
        )

    def block(self, e: WaitEdge) -> int:
        return int(self.w.block[e.wait])

    def send(self, e: WaitEdge) -> int:
        row = self.server_rows.get(e.resource)
        return int(self.c.hops.send[row]) if row is not None else -1

    def name(self, u: int) -> str:
        if u in self.mentioned:
            return self.short.get(u, self.trace.units[u].name)
        self.mentioned[u] = None
        return unit_label(self.trace, u)

    def steps(self) -> list[tuple[int, str]]:
        """(event, line) for every step, in causal (adjusted-time) order."""
        ev, adj = self.trace.events, self.c.clocks.adjusted
        raw: list[tuple[int, int, WaitEdge]] = []  # event, role, edge
        for e in self.cycle.edges:
            if e.via == Via.LOCK:
                raw.append((e.cause, ACQUIRED, e))
            elif e.via == Via.RPC and self.send(e) >= 0:
                raw.append((self.send(e), SENT, e))
                raw.append((e.cause, RECEIVED, e))
                continue  # "sent ... and waits for the reply" is the wait
            raw.append((self.block(e), WAITS, e))
        raw.sort(key=lambda s: (int(adj[s[0]]), int(ev.proc[s[0]]), int(ev.seq[s[0]]), s[1]))
        out: list[tuple[int, str]] = []
        seen: set[tuple[int, int]] = set()
        for i, role, e in raw:
            if (i, role) not in seen:
                seen.add((i, role))
                out.append((i, self.line(e, role, i)))
        if out:
            out[-1] = (out[-1][0], out[-1][1] + " → cycle")
        return out

    def line(self, e: WaitEdge, role: int, i: int) -> str:
        trace = self.trace
        res = trace.resources[e.resource]
        rname = resource_name(trace, e.resource)
        where = event_where(trace, i)
        if role == ACQUIRED:
            return f"{self.name(e.target)} acquired {res.kind} {rname}{at(where)}"
        if role == SENT:
            server = trace.processes[trace.units[e.target].proc].service or "?"
            place = f" ({where})" if where else ""
            return f"{self.name(e.waiter)} sent {rname} to {server}{place} and waits for the reply"
        if role == RECEIVED:
            unit = trace.units[e.target]
            p = trace.processes[unit.proc]
            if e.target in self.mentioned:
                who = self.name(e.target)
            else:
                self.mentioned[e.target] = None
                who = (
                    f"{possessive(p.service or '?')} {unit.kind} '{unit.name}' "
                    f"(pid {p.pid}, {p.runtime or '?'})"
                )
            return f"{who} received {rname}{at(where)}"
        waiter = self.name(e.waiter)
        if e.via == Via.LOCK:
            holder = "itself" if e.target == e.waiter else self.name(e.target)
            return f"{waiter} waits for {res.kind} {rname}{at(where)}, held by {holder}"
        if e.via == Via.JOIN:
            return f"{waiter} waits{at(where)} for {self.name(e.target)} to end"
        return f"{waiter} waits for the reply to {rname}{at(where)}"

    def behind_lines(self) -> list[str]:
        """One line for the units stuck behind the cycle (waiting on it, directly or through
        others), if any: what each waits for, on whom."""
        if not self.behind:
            return []
        shown = []
        for e in self.behind[:BEHIND_SHOWN]:
            what = resource_name(self.trace, e.resource)
            waits_for = (
                f"the reply to {what}"
                if e.via == Via.RPC
                else f"{self.name(e.target)} to end"
                if e.via == Via.JOIN
                else f"{self.trace.resources[e.resource].kind} {what}"
            )
            shown.append(f"{self.name(e.waiter)} waits for {waits_for}")
        more = len(self.behind) - len(shown)
        tail = f"; and {plural(more, 'unit')} more" if more > 0 else ""
        return [f"stuck behind it: {'; '.join(shown)}{tail}"]

    def torn_down(self) -> bool:
        """Broken only by a call that failed (its connection dropped) while no waiter of the
        cycle ever got what it waited for: the cycle did not resolve, a peer went away (most
        often the run being stopped, which ends the processes of a hung system one by one)."""
        first = min(self.cycle.edges, key=lambda e: e.end)
        end = int(self.w.end[first.wait])
        if end < 0 or wait_outcome(self.trace, end) != "failed (no reply)":
            return False
        return not any(self.granted(int(self.w.end[e.wait])) for e in self.cycle.edges)

    def granted(self, end: int) -> bool:
        """Did the wait that ``end`` ended get what it waited for?"""
        if end < 0:
            return False
        kind, arg = int(self.trace.events.kind[end]), int(self.trace.events.arg[end])
        return kind in (K.LOCK_ACQUIRED, K.JOIN_DONE, K.QUEUE_GET) or (
            kind == K.RPC_RESPONSE and arg >= 0
        )

    def ending(self) -> str:
        cycle = self.cycle
        if cycle.broken_at >= STILL:
            return "still stuck when the trace ends (the program hung or was killed)"
        first = min(cycle.edges, key=lambda e: e.end)
        stuck = fmt_duration(cycle.broken_at - cycle.formed_at)
        if self.torn_down():
            what = resource_name(self.trace, first.resource)
            return (
                f"never resolved: after {stuck} {possessive(self.name(first.waiter))} call"
                f" {what} failed (its connection dropped: a peer stopped, or the run was"
                " being stopped), and no unit in the cycle ever got what it waited for"
            )
        wait_end = int(self.w.end[first.wait])
        if wait_end >= 0 and int(self.c.clocks.adjusted[wait_end]) == first.end:
            outcome = wait_outcome(self.trace, wait_end)
            what = resource_name(self.trace, first.resource)
            who = possessive(self.name(first.waiter))
            if outcome.startswith("was abandoned"):
                return (
                    f"after {stuck} {who} wait for {what} {outcome}: it never got {what},"
                    " and no lock in the cycle was released"
                )
            if outcome == "went on":  # ended by no event that says how: say what came next
                outcome = f"ended when it {describe(self.trace, wait_end)}"
            return f"broken after {stuck}: {who} wait for {what} {outcome}"
        return f"broken after {stuck}, when {self.name(first.target)} went on"

    def summary(self, broken: bool) -> str:
        trace, units = self.trace, self.units
        kinds = {trace.units[u].kind for u in units}
        noun = next(iter(kinds)) if len(kinds) == 1 else "unit"  # "2 goroutines", "2 tasks"
        noun = "unit" if noun == "unknown" else noun
        procs = {trace.units[u].proc for u in units}
        edges = self.cycle.edges
        # One name per lock, not per distinct name: two locks created on one line share a
        # name, and "on lock x" would read as one lock.
        lock_res = _unique(e.resource for e in edges if e.via == Via.LOCK)
        locks = sorted(resource_name(trace, r) for r in lock_res)
        parts = []
        if locks:
            parts.append(("lock " if len(locks) == 1 else "locks ") + join_words(locks))
        calls: dict[str, int] = {}
        for e in edges:
            if e.via == Via.RPC:
                proto = (trace.resources[e.resource].protocol or "rpc").upper()
                calls[proto] = calls.get(proto, 0) + 1
        parts += [plural(n, f"{p} call") for p, n in sorted(calls.items())]
        joins = sum(1 for e in edges if e.via == Via.JOIN)
        if joins:
            parts.append(plural(joins, "join"))
        n_procs = plural(len(procs), "process", "processes")
        line = f"deadlock: {plural(len(units), noun)} in {n_procs} wait in a cycle on "
        return line + join_words(parts) + (f"; {self.breaker()}" if broken else "")

    def breaker(self) -> str:
        """What broke the cycle, as far as the trace knows: the first wait to end, by how it
        ended (a cancellation, such as Ctrl-C in asyncio, is not a timeout)."""
        if self.torn_down():
            return "it never resolved (a call failed as a peer stopped)"
        first = min(self.cycle.edges, key=lambda e: e.end)
        wait_end = int(self.w.end[first.wait])
        if wait_end >= 0 and int(self.c.clocks.adjusted[wait_end]) == first.end:
            outcome = wait_outcome(self.trace, wait_end)
            if outcome == "timed out":
                return "a timeout broke it"
            if outcome == "cancelled":
                return "a cancellation broke it"
            if outcome == "failed":
                return "an error broke it"
            if outcome == "failed (no reply)":
                return "a failed call broke it"
            if outcome.startswith("was abandoned"):
                # an async flow or task given up while it waited: nothing was released, so
                # the others in the cycle may wait still
                return "a waiter was abandoned (nothing was released)"
        return "it broke later"


def _unique(items: Iterable[int]) -> list[int]:
    out: list[int] = []
    for x in items:
        if x not in out:
            out.append(x)
    return out
