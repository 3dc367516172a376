"""``deadlock`` and ``leak``: a process whose every unit is asleep when its trace ends
(goroutines of an imported or agent-recorded Go trace; tokio tasks of a Rust program whose
agent proved the trace complete).

The wait-for graph (:mod:`willowisp.analysis.deadlock`) needs to know who holds what; a Go
execution trace does not say which channel a goroutine waits on, so a channel deadlock
leaves no cycle to find. What the trace does prove is the Go runtime's own rule ("fatal
error: all goroutines are asleep - deadlock!"): if, when the trace ends, every unit of a
process that has not ended is blocked on something only another unit of the program could
release (a channel, a select, a condition, a mutex, a wait group), then nothing in the
process can ever wake any of them. Two or more such units are one ``deadlock``; a single
one is a ``leak``.

This is sound only where the data proves completeness: the process record must say
``complete`` (every unit is in the trace and the trace ran to an orderly stop; the Go
importer sets it) and name its ``runtime_units`` — the runtime's own goroutines (GC workers,
the sweeper, finalizers), the tracer's, and the one that was running ``trace.Stop`` — which
are set aside. A process recorded by an agent that was simply killed has no such claim and
is never judged here. Any unit running, runnable, sleeping or in network I/O at the end
could still wake the others, so its presence clears the process.

One thing the trace cannot show is a pending timer: a goroutine blocked on ``<-time.After(d)``
or in a ``select`` with a timer case looks like any other channel wait. The explanation
says so; Go's own detector counts timers, a trace does not record them.

The id is derived from the waits' resources (kind, name, place) and the source places of
the blocks, never from goroutine numbers or times, so the same hang has the same id in
every run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from willowisp.analysis.finding import Finding, ResourceRef
from willowisp.analysis.naming import (
    at,
    event_where,
    join_words,
    plural,
    resource_ref,
    unit_label,
    unit_names,
    unit_ref,
)
from willowisp.causality.link import Causality
from willowisp.causality.waits import waits
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

# Waits only another unit of the program can end.
STUCK_KINDS = frozenset(
    {"channel", "select", "condition", "lock", "rwlock", "waitgroup", "semaphore"}
)
_NOUN = {
    "channel": "channels",
    "select": "selects",
    "condition": "conditions",
    "lock": "mutexes",
    "rwlock": "read/write mutexes",
    "waitgroup": "wait groups",
    "semaphore": "semaphores",
}


def asleep(c: Causality) -> list[tuple[int, list[int]]]:
    """(process, the block events of its live program units) for every process whose
    program is entirely asleep when its trace ends, in process order."""
    trace = c.trace
    procs = [p.index for p in trace.processes if _attr(p.attrs, "complete") == 1]
    if not procs:
        return []
    w = waits(trace)
    still = np.flatnonzero(w.end < 0)
    open_wait = {int(w.unit[i]): int(w.block[i]) for i in still}  # unit -> its last block
    ended = set(np.unique(trace.events.unit[trace.events.kind == K.UNIT_END]).tolist())
    out: list[tuple[int, list[int]]] = []
    for p in procs:
        stuck = _asleep(trace, p, open_wait, ended)
        if stuck:
            out.append((p, stuck))
    return out


def find(c: Causality) -> list[Finding]:
    """One ``deadlock`` or ``leak`` finding per process whose program is entirely asleep.
    (:func:`willowisp.analysis.deadlock.find` calls :func:`asleep` itself, so that a hang a
    wait-for cycle already explains is told once, in the cycle's finding.)"""
    return [finding(c, p, blocks) for p, blocks in asleep(c)]


def _attr(attrs: tuple[tuple[str, object], ...], key: str) -> object:
    return next((v for k, v in attrs if k == key), None)


def runtime_units(trace: Trace, p: int) -> set[int]:
    """The units a process record names as the runtime's own (Go's GC workers, the tracer,
    the goroutine that stopped the trace): not the program's, so not the program's to judge."""
    text = _attr(trace.processes[p].attrs, "runtime_units")
    numbers = [int(x) for x in str(text or "").split(",") if x.strip().isdigit()]
    if not numbers:
        return set()
    idx = trace.unit_index(np.full(len(numbers), p), np.array(numbers))
    return {int(i) for i in idx if i >= 0}


def runtime_units_of(trace: Trace) -> set[int]:
    """:func:`runtime_units` of every process."""
    return {u for p in range(len(trace.processes)) for u in runtime_units(trace, p)}


def _asleep(trace: Trace, p: int, open_wait: dict[int, int], ended: set[int]) -> list[int]:
    """The block events of process p's live program units when every one of them waits on a
    resource only the program could release; [] when any of them could still go on."""
    ignore = runtime_units(trace, p)
    blocks: list[int] = []
    for unit in trace.units:
        if unit.proc != p or unit.index in ended or unit.index in ignore:
            continue
        b = open_wait.get(unit.index)
        if b is None:
            return []  # running, runnable, or never started: it could wake the others
        r = int(trace.events.res[b])
        if r < 0 or trace.resources[r].kind not in STUCK_KINDS:
            return []  # sleeping, in I/O, or a runtime wait: it will go on by itself
        blocks.append(b)
    return blocks


def finding(c: Causality, p: int, blocks: list[int]) -> Finding:
    trace = c.trace
    ev, adj = trace.events, c.clocks.adjusted
    blocks = sorted(blocks, key=lambda b: (int(adj[b]), int(ev.seq[b])))
    units = [int(ev.unit[b]) for b in blocks]
    short = unit_names(trace, units)
    refs = [resource_ref(trace, int(ev.res[b])) for b in blocks]
    places = sorted({event_where(trace, b) for b in blocks} - {""})
    kinds = sorted({r.kind for r in refs})
    service = trace.processes[p].service or "?"
    lines = []
    for b, u, ref in zip(blocks, units, refs, strict=True):
        lines.append(_wait_line(trace, b, unit_label(trace, u), ref))
    deadlock = len(blocks) >= 2
    noun = _noun(trace, units)
    lines += _conclusion(trace, p, noun, [short[u] for u in units])
    what = join_words([_NOUN.get(k, k) for k in kinds])
    if deadlock:
        summary = (
            f"deadlock: every {noun} of {service} is asleep: "
            f"{plural(len(blocks), noun)} wait on {what} that nothing left can release"
        )
    else:
        summary = (
            f"leak: {short[units[0]]} waits forever on {refs[0].kind} ({refs[0].name})"
            f"{at(event_where(trace, blocks[0]) or refs[0].where)}: no other {noun} of "
            f"{service} is left to wake it"
        )
    unique_refs = list(dict.fromkeys(refs))
    return Finding(
        kind="deadlock" if deadlock else "leak",
        severity="error" if deadlock else "warning",
        summary=summary,
        identity=("all-asleep", *(r.key() for r in unique_refs), *places),
        units=tuple(unit_ref(trace, u) for u in units),
        resources=tuple(unique_refs),
        events=tuple(str(trace.event_id(b)) for b in blocks),
        explanation=tuple(lines),
        extra=(("rule", "all-asleep"),),
    )


def _wait_line(trace: Trace, b: int, who: str, ref: ResourceRef) -> str:
    """``who waits on lock (Mutex#2) at main.go:18``: the place is where the unit waits (its
    block's location), not where the resource was first seen, which may be another line."""
    where = event_where(trace, b) or ref.where
    return f"{who} waits on {ref.kind} ({ref.name}){at(where)}"


def _noun(trace: Trace, units: list[int]) -> str:
    kinds = {trace.units[u].kind for u in units}
    return kinds.pop() if len(kinds) == 1 else "unit"


def _conclusion(trace: Trace, p: int, noun: str, names: list[str]) -> list[str]:
    service = trace.processes[p].service or "?"
    go = trace.processes[p].runtime == "go"
    timers = "time.After, a Ticker, time.AfterFunc" if go else "a sleep or interval elsewhere"
    return [
        f"the trace ends with every other {noun} of {service} ended or the runtime's own: "
        "nothing left could wake "
        + join_words(names)
        + (" (the Go runtime's own deadlock rule: every goroutine asleep)" if go else ""),
        f"unless a timer the trace does not record ({timers}) was due to fire after the "
        "trace stopped",
    ]


def fold_into(
    c: Causality, cycle: Finding, p: int, blocks: list[int], covered: set[int]
) -> Finding:
    """The all-asleep rule told inside the finding of a wait-for cycle that already explains
    part of the hang (``covered``: the cycle's units), instead of as a second deadlock.

    The units the cycle does not cover (main waiting on a WaitGroup its deadlocked goroutines
    would have marked done) are added, with where each waits, and the rule's conclusion is
    the last lines of the story. The cycle's id is kept: the cycle is the problem."""
    trace, ev = c.trace, c.trace.events
    adj = c.clocks.adjusted
    blocks = sorted(blocks, key=lambda b: (int(adj[b]), int(ev.seq[b])))
    others = [b for b in blocks if int(ev.unit[b]) not in covered]
    all_units = [int(ev.unit[b]) for b in blocks]
    short = unit_names(trace, all_units)
    noun = _noun(trace, all_units)
    lines = [
        _wait_line(
            trace, b, unit_label(trace, int(ev.unit[b])), resource_ref(trace, int(ev.res[b]))
        )
        + " too"
        for b in others
    ]
    lines += _conclusion(trace, p, noun, [short[u] for u in all_units])
    have_units = {u.id for u in cycle.units}
    have_events = set(cycle.events)
    units = [unit_ref(trace, int(ev.unit[b])) for b in others]
    refs = [resource_ref(trace, int(ev.res[b])) for b in others]
    return replace(
        cycle,
        units=cycle.units + tuple(u for u in units if u.id not in have_units),
        resources=tuple(dict.fromkeys((*cycle.resources, *refs))),
        events=cycle.events
        + tuple(e for e in (str(trace.event_id(b)) for b in others) if e not in have_events),
        explanation=cycle.explanation + tuple(lines),
        extra=(*cycle.extra, ("all_asleep", True)),
    )
