"""``potential-deadlock``: lock-order inversions that can hang although they did not this time.

This is Goodlock (Havelund, 2000) with gate locks (Agarwal and Stoller) and cycles longer
than two (iGoodlock, Joshi et al., 2009). Every time a unit takes a lock while it already
holds others, that is a *dependency*: (unit, the locks it holds, the lock it takes). The
lock-order graph has an edge ``L1 -> L2`` for each dependency that takes L2 while holding
L1. A cycle ``L1 -> L2 -> ... -> L1`` made of dependencies d1..dk is reported when they could
all be pending at once, which is exactly a deadlock:

- **different units**: a unit cannot wait in two places;
- **no gate**: their held sets are disjoint. A lock that two of them hold (exclusively)
  means they can never be inside at the same time, so the cycle is guarded;
- **each would block**: a reader taking an rwlock's read side does not wait for another
  reader, so a step where both sides are readers breaks the cycle;
- **not ordered by structure**: if one acquisition must happen before another whatever the
  schedule, they cannot be pending together. Only program order, creating a unit and
  joining one (the ``spawn`` and ``join`` happens-before edges, and a Go WaitGroup's
  ``Wait`` after the ``Done`` calls, Go's join) count: a lock hand-off, a
  queue or an event orders them only in this schedule, and another schedule is the whole
  point of predicting. So two threads sequenced by an Event are reported; a lock order the
  main thread used before it started the thread that reverses it is not.

Inversions over the same set of locks as a deadlock of the wait-for sweep
(analysis/deadlock.py) are left to that finding: this one is for what did not hang.

Which locks: those with an owner whose every acquisition the agent sees (``lock``,
``rlock``, ``rwlock``, ``monitor``, and ``condition``, on which asyncio records its
condition's own lock), in any runtime. Locks belong to one process, so a cycle never crosses
processes; a lock held across an rpc call that waits on another process is the wait-for
sweep's job. Semaphores are left out: with a free permit an acquisition does not block.

Holds come from causality/waits.py: from the outermost acquire to the release that gives
the lock up, so an rlock re-entered while the unit holds something else adds no edge (it
cannot block). Holds are many and nesting is rare: a running maximum over each unit's holds
(sorted by acquisition) finds the nested ones in bulk, and only the runs of holds that
contain nesting are walked in Python. Dependencies are kept once per code path (unit, lock,
mode and the places of every acquisition; first and last occurrence, so a path used both
before and after a thread started is seen on both sides of the start), and each context
for at most as many units as a cycle can need.

Bounds: cycles of up to ``MAX_CYCLE`` locks, and at most ``MAX_CYCLES`` lock cycles examined
(enough for any program a person reads; a graph denser than that is reported that far).
Limits: an acquisition that succeeded only because it was a try-lock or had a timeout looks
the same as a blocking one, so such code (a deadlock-avoidance pattern) can be reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from willowisp.analysis.finding import Finding
from willowisp.analysis.naming import (
    event_where,
    join_words,
    plural,
    resource_name,
    resource_ref,
    unit_label,
    unit_names,
    unit_ref,
)
from willowisp.analysis.wait_graph import Via, find_cycles, wait_edges
from willowisp.causality.graph import EdgeKind
from willowisp.causality.link import Causality
from willowisp.causality.waits import OWNED_LOCKS, Holds, holds, waits
from willowisp.ingest.trace import Trace

ORDER_KINDS = (*OWNED_LOCKS, "condition")
MAX_CYCLE = 4  # locks in one cycle
MAX_CYCLES = 1_000  # lock cycles examined per trace
NEVER = np.iinfo(np.int64).max  # a release that never came, as an event position

# A code path: the lock taken (resource, shared, location of the acquire) and the holds
# then in place (resource, shared, location of each one's acquire).
Context = tuple[int, bool, int, tuple[tuple[int, bool, int], ...]]


@dataclass(frozen=True, slots=True)
class Held:
    """A lock a unit held when it took another: its hold's first and last event."""

    lock: int  # resource
    acquire: int  # event
    release: int  # event, NO_INDEX if still held when the trace ends
    shared: bool  # the read side of an rwlock


@dataclass(frozen=True, slots=True)
class Dependency:
    """Unit ``unit`` took ``lock`` (hold ``acquire``..``release``) while holding ``held``."""

    unit: int
    lock: int
    acquire: int
    release: int
    shared: bool
    held: tuple[Held, ...]  # in the order they were taken

    def holding(self, lock: int) -> Held | None:
        return next((h for h in self.held if h.lock == lock), None)


@dataclass(frozen=True, slots=True)
class Inversion:
    """A predicted deadlock: ``deps[i]`` holds ``locks[i]`` and takes ``locks[i + 1]``."""

    locks: tuple[int, ...]
    deps: tuple[Dependency, ...]


def find(c: Causality) -> list[Finding]:
    trace = c.trace
    inversions = inversions_of(trace, dependencies(trace, holds(trace, ORDER_KINDS)), c)
    if not inversions:
        return []
    hung = _deadlocked_lock_sets(c)
    return [_finding(trace, inv) for inv in inversions if frozenset(inv.locks) not in hung]


# --- dependencies ------------------------------------------------------------------------------


def dependencies(trace: Trace, h: Holds) -> list[Dependency]:
    """Every acquisition made while holding other locks, once per code path (module doc)."""
    n = len(h)
    if n < 2:
        return []
    order = np.lexsort((h.acquire, h.unit))
    unit, acq, rel = h.unit[order], h.acquire[order], h.release[order]
    end = np.where(rel >= 0, rel, len(trace.events))
    # A hold is nested when an earlier hold of its unit has not ended by its acquire: a
    # running maximum of the ends, restarted per unit (each unit's range is shifted above
    # the previous one's so one accumulate serves all).
    new_unit = np.ones(n, dtype=bool)
    new_unit[1:] = unit[1:] != unit[:-1]
    shift = np.cumsum(new_unit).astype(np.int64) * (len(trace.events) + 2)
    running = np.maximum.accumulate(end + shift)
    before = np.full(n, -1, dtype=np.int64)
    before[1:] = running[:-1]
    nested = (before - shift > acq) & ~new_unit
    if not nested.any():
        return []
    # Runs of holds that begin un-nested and carry on nested: only those are walked.
    run = np.cumsum(~nested)
    walk = np.isin(run, np.unique(run[nested]))
    rows = np.flatnonzero(walk)
    loc = trace.events.loc
    res, shared = h.res[order], h.shared[order]
    # (unit, context) -> first and last occurrence: (row, rows of the holds then held)
    kept: dict[tuple[int, Context], list[tuple[int, tuple[int, ...]]]] = {}
    active: list[int] = []
    r_unit, r_acq, r_end = unit.tolist(), acq.tolist(), end.tolist()
    r_res, r_shared, r_nested = res.tolist(), shared.tolist(), nested.tolist()
    r_loc = loc[acq].tolist()
    for i in rows.tolist():
        if not r_nested[i]:
            active = [i]
            continue
        a = r_acq[i]
        active = [j for j in active if r_end[j] > a]
        if active:
            context = (
                r_res[i],
                r_shared[i],
                r_loc[i],
                tuple((r_res[j], r_shared[j], r_loc[j]) for j in active),
            )
            key = (r_unit[i], context)
            seen = kept.get(key)
            if seen is None:
                kept[key] = [(i, tuple(active))]
            elif len(seen) == 1:
                seen.append((i, tuple(active)))
            else:
                seen[1] = (i, tuple(active))
        active.append(i)

    def dep(i: int, held: tuple[int, ...]) -> Dependency:
        return Dependency(
            r_unit[i],
            r_res[i],
            r_acq[i],
            int(rel[i]),
            r_shared[i],
            tuple(Held(r_res[j], r_acq[j], int(rel[j]), r_shared[j]) for j in held),
        )

    # At most MAX_CYCLE units per context (the same code path in many threads): a cycle
    # needs distinct units, never more than it has locks.
    units_of: dict[Context, set[int]] = {}
    out: list[Dependency] = []
    for (u, context), occurrences in kept.items():
        units = units_of.setdefault(context, set())
        if u not in units and len(units) >= MAX_CYCLE:
            continue
        units.add(u)
        out += [dep(i, held) for i, held in occurrences]
    return out


# --- cycles ------------------------------------------------------------------------------------


def inversions_of(
    trace: Trace, deps: list[Dependency], c: Causality | None = None
) -> list[Inversion]:
    """Cycles of the lock-order graph whose dependencies could all be pending at once.

    ``c`` gives the fork/join edges; without it no two acquisitions count as ordered.
    One inversion per lock cycle, with the first valid choice of dependencies in an order
    of their source places (so the same code reports the same paths in every run).
    """
    if not deps:
        return []
    places = _Places(trace)
    edges: dict[int, dict[int, list[Dependency]]] = {}
    for d in deps:
        for held in d.held:
            if held.lock != d.lock:
                edges.setdefault(held.lock, {}).setdefault(d.lock, []).append(d)
    for succ in edges.values():
        for lst in succ.values():
            lst.sort(key=places.of)
    order = _ForkJoin(c) if c is not None else None
    found: list[Inversion] = []
    for cycle in lock_cycles(edges):
        choice = _choose(cycle, edges, order)
        if choice is not None:
            found.append(_rotate(trace, Inversion(cycle, choice)))
    return found


def lock_cycles(edges: dict[int, dict[int, list[Dependency]]]) -> Iterator[tuple[int, ...]]:
    """Simple cycles of 2..MAX_CYCLE locks, each once (it starts at its smallest lock),
    shortest first, at most MAX_CYCLES; only inside strongly connected components."""
    comp = _components({a: set(b) for a, b in edges.items()})
    succ = {
        a: sorted(b for b in bs if b in comp and comp[b] == comp[a])
        for a, bs in edges.items()
        if a in comp
    }
    budget = MAX_CYCLES
    for length in range(2, MAX_CYCLE + 1):
        for start in sorted(succ):
            stack: list[tuple[int, ...]] = [(start,)]
            while stack:
                path = stack.pop()
                # reversed: the stack then pops paths in ascending order
                for nxt in reversed(succ.get(path[-1], ())):
                    if nxt == start and len(path) == length:
                        yield path
                        budget -= 1
                        if budget <= 0:
                            return
                    elif nxt > start and nxt not in path and len(path) < length:
                        stack.append((*path, nxt))


def _components(succ: dict[int, set[int]]) -> dict[int, int]:
    """Strongly connected component per node (Kosaraju, iterative), for components of two
    or more nodes only."""
    nodes = sorted(set(succ) | {b for bs in succ.values() for b in bs})
    pred: dict[int, list[int]] = {}
    for a, bs in succ.items():
        for b in bs:
            pred.setdefault(b, []).append(a)
    seen: set[int] = set()
    finished: list[int] = []
    for root in nodes:
        if root in seen:
            continue
        seen.add(root)
        work = [(root, iter(sorted(succ.get(root, ()))))]
        while work:
            node, it = work[-1]
            nxt = next((x for x in it if x not in seen), None)
            if nxt is None:
                work.pop()
                finished.append(node)
            else:
                seen.add(nxt)
                work.append((nxt, iter(sorted(succ.get(nxt, ())))))
    comp: dict[int, int] = {}
    for root in reversed(finished):
        if root in comp:
            continue
        members, stack = [root], [root]
        comp[root] = root
        while stack:
            for p in pred.get(stack.pop(), ()):
                if p not in comp:
                    comp[p] = root
                    members.append(p)
                    stack.append(p)
        if len(members) == 1:
            del comp[root]
    return comp


def _choose(
    cycle: tuple[int, ...],
    edges: dict[int, dict[int, list[Dependency]]],
    order: _ForkJoin | None,
) -> tuple[Dependency, ...] | None:
    """The first dependencies d0..dk-1 (di holds cycle[i], takes cycle[i+1]) that could all
    be pending at once (module doc), by backtracking; None if no choice can."""
    k = len(cycle)
    options = [edges[cycle[i]][cycle[(i + 1) % k]] for i in range(k)]
    chosen: list[Dependency] = []

    def fits(d: Dependency) -> bool:
        i = len(chosen)
        for j, e in enumerate(chosen):
            if e.unit == d.unit or _gated(e, d):
                return False
            if order is not None and (
                order.before(e.acquire, d.acquire) or order.before(d.acquire, e.acquire)
            ):
                return False
            if j == i - 1 and not _blocks(e, d):
                return False
        return i < k - 1 or _blocks(d, chosen[0])

    def extend() -> bool:
        if len(chosen) == k:
            return True
        for d in options[len(chosen)]:
            if fits(d):
                chosen.append(d)
                if extend():
                    return True
                chosen.pop()
        return False

    return tuple(chosen) if extend() else None


def _gated(a: Dependency, b: Dependency) -> bool:
    """Do a and b both hold some lock, not both on its shared side? Then they exclude
    each other (a gate lock) and cannot be pending together."""
    for h in a.held:
        other = b.holding(h.lock)
        if other is not None and not (h.shared and other.shared):
            return True
    return False


def _blocks(taker: Dependency, holder: Dependency) -> bool:
    """Would ``taker``'s acquisition wait for ``holder``'s hold of that lock? Not if both
    are on the read side of an rwlock."""
    held = holder.holding(taker.lock)
    return held is not None and not (taker.shared and held.shared)


JOIN_LIKE = ("waitgroup", "join")


class _ForkJoin:
    """Must one event happen before another whatever the schedule? Program order plus the
    spawn and join edges: a unit cannot start before it is created, nor a join return
    before the joined unit ends. Answered by a search from the first event's unit, keeping
    the earliest event reached in each unit (few questions are asked: one per candidate)."""

    def __init__(self, c: Causality) -> None:
        g = c.graph
        pick = g.of_kind(EdgeKind.SPAWN, EdgeKind.JOIN)
        # a join by another name: a Go sync.WaitGroup's Wait returns only after every Done
        # (the notify edge into the waiter's wake on the waitgroup), whatever the schedule
        ev = c.trace.events
        notify = np.flatnonzero(g.of_kind(EdgeKind.NOTIFY))
        if len(notify) and len(c.trace.resources):
            res = ev.res[g.dst[notify]]
            known = res >= 0
            kinds = c.trace.resource_kind[np.where(known, res, 0)]
            pick[notify[known & np.isin(kinds, JOIN_LIKE)]] = True
        self.unit = c.trace.events.unit
        src, dst = g.src[pick], g.dst[pick]
        src_unit = self.unit[src]
        order = np.lexsort((src, src_unit))
        self.src, self.dst = src[order], dst[order]
        self.ptr = np.searchsorted(src_unit[order], np.arange(len(c.trace.units) + 1))
        self.memo: dict[tuple[int, int], bool] = {}

    def before(self, a: int, b: int) -> bool:
        key = (a, b)
        if key not in self.memo:
            self.memo[key] = self._search(a, b)
        return self.memo[key]

    def _search(self, a: int, b: int) -> bool:
        unit = self.unit
        target = int(unit[b])
        reached = {int(unit[a]): a}
        stack = [int(unit[a])]
        while stack:
            u = stack.pop()
            lo, hi = int(self.ptr[u]), int(self.ptr[u + 1])
            first = lo + int(np.searchsorted(self.src[lo:hi], reached[u], side="right"))
            for d in self.dst[first:hi].tolist():
                v = int(unit[d])
                if d < reached.get(v, NEVER):
                    reached[v] = d
                    stack.append(v)
        return reached.get(target, NEVER) <= b


def _deadlocked_lock_sets(c: Causality) -> set[frozenset[int]]:
    """The lock sets of the deadlocks the wait-for sweep finds (deadlock.py reports them)."""
    cycles = find_cycles(wait_edges(c, waits(c.trace), holds(c.trace)))
    return {frozenset(e.resource for e in cy.edges if e.via == Via.LOCK) for cy in cycles}


class _Places:
    """A dependency's source places, as a sort key (cached: each location is looked up once)."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.cache: dict[int, str] = {}

    def where(self, event: int) -> str:
        if event not in self.cache:
            self.cache[event] = event_where(self.trace, event)
        return self.cache[event]

    def of(self, d: Dependency) -> tuple[str, ...]:
        return (self.where(d.acquire), *(self.where(h.acquire) for h in d.held), str(d.unit))


def _rotate(trace: Trace, inv: Inversion) -> Inversion:
    """Start the cycle at the lock whose (kind, name, place) sorts first: a stable order."""
    keys = [resource_ref(trace, r).key() for r in inv.locks]
    i = keys.index(min(keys))
    return Inversion(inv.locks[i:] + inv.locks[:i], inv.deps[i:] + inv.deps[:i])


# --- the finding -------------------------------------------------------------------------------


def _finding(trace: Trace, inv: Inversion) -> Finding:
    k = len(inv.locks)
    units = [d.unit for d in inv.deps]
    short = unit_names(trace, units)
    kinds = {trace.units[u].kind for u in units}
    noun = "thread" if kinds == {"thread"} else "task" if kinds == {"task"} else "unit"
    names = [resource_name(trace, r) for r in inv.locks]
    refs = [resource_ref(trace, r) for r in inv.locks]
    steps: list[str] = []
    paths: list[dict[str, object]] = []
    places: list[str] = []
    events: list[int] = []
    for i, d in enumerate(inv.deps):
        first = d.holding(inv.locks[i])
        assert first is not None  # _choose picked d for holding it
        took, then = event_where(trace, first.acquire), event_where(trace, d.acquire)
        places += [took, then]
        events += [first.acquire, d.acquire]
        others = [resource_name(trace, h.lock) for h in d.held if h.lock != first.lock]
        also = f" (also holding {join_words(others)})" if others else ""
        kind_a, kind_b = refs[i].kind, refs[(i + 1) % k].kind
        steps.append(
            f"{unit_label(trace, d.unit)} took {kind_a} {names[i]}{_at(took)}, then "
            f"{kind_b} {names[(i + 1) % k]}{_at(then)} while holding it{also}"
        )
        paths.append(
            {
                "unit": str(trace.unit_id(d.unit)),
                "holds": {"lock": names[i], "at": took},
                "takes": {"lock": names[(i + 1) % k], "at": then},
                "also_held": others,
            }
        )
    if k == 2:
        a, b = inv.deps
        steps.append(
            f"if {short[a.unit]} holds {names[0]} while {short[b.unit]} holds {names[1]}, "
            f"each waits forever for the other's lock"
        )
    else:
        steps.append(
            f"if each of the {k} {noun}s holds its first lock at once, each waits forever "
            f"for the next one's: a cycle"
        )
    overlapped = _overlapped(inv)
    steps.append(
        (
            "this time their holds overlapped, but not in the order that hangs"
            if overlapped
            else "this time they did not overlap, so nothing hung"
        )
        + "; no lock held by both guards them, and no start or join of a unit orders them"
    )
    order = "opposite orders" if k == 2 else "a cyclic order"
    wheres = [p for p in places[1::2] if p]
    summary = (
        f"potential deadlock: locks {join_words(names)} taken in {order} by "
        f"{plural(k, noun)}" + (f" ({join_words(wheres)})" if wheres else "")
    )
    return Finding(
        kind="potential-deadlock",
        severity="warning",
        summary=summary,
        identity=tuple(r.key() for r in refs) + tuple(p for p in places if p),
        units=tuple(unit_ref(trace, u) for u in units),
        resources=tuple(refs),
        events=tuple(str(trace.event_id(e)) for e in sorted(set(events))),
        explanation=tuple(steps),
        extra=(("paths", paths), ("overlapped", overlapped)),
    )


def _at(where: str) -> str:
    return f" at {where}" if where else ""


def _overlapped(inv: Inversion) -> bool:
    """Were the holds of every cycle step's first lock ever all in place at once? (One
    process: event order is time order.)"""
    spans = []
    for i, d in enumerate(inv.deps):
        h = d.holding(inv.locks[i])
        assert h is not None
        spans.append((h.acquire, h.release if h.release >= 0 else NEVER))
    return max(s for s, _ in spans) < min(e for _, e in spans)
