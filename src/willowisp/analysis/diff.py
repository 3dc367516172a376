"""``willowisp diff A B``: what changed between two runs of the same system.

Three kinds of difference, each keyed by what survives a re-run (service names, resource
names and creation places, request names, source locations -- never pids, unit numbers,
trace ids or times), so the same thing in two runs has the same key:

- **structural**: logical operations and hops that appear in one run only, or whose count
  changed. An operation's key is what started it: the service and the request or message
  its root is (``orders → POST /checkout``; a child process by its command line with
  paths cut to base names and numbers folded, ``shop → inventory N N``, since ports and
  temporary folders change per run), else the service and the root unit's name with its
  numbers folded (``worker-N``).
- **duration**: per operation key, the p50 and p90 of the operations' durations (from the
  root to the operation's last event, in adjusted time) in each run, and the ratio; sorted
  by how much the p50 grew relative to itself (differences under 100 µs last). Each
  operation's time is split by service and unit kind (the union of its units' spans there:
  nested or simultaneous units count once), and
  by critical-path segment (``analysis/critical_path.py``: service, kind of interval --
  running, lock-blocked, peer, queue, structural, ... -- resource and code place; the mean
  per operation), so the segment that grew is named.
- **interleaving**: for each lock and data resource taken by several units, which of two
  code locations took it first, turn by turn (the k-th acquisition at one against the k-th
  at the other): a pair whose usual order (at least two thirds of its turns, and two turns)
  flipped between the runs is reported with the counts. A flip is where a race or an
  order-dependent bug hides even when both runs passed.
- **run**: what needs no operation (a trace without W3C trace context has none): the
  makespan, per lock its waits to acquire, per unit key (service, kind, name with numbers
  folded) the units' lifetimes and blocked time; the keys whose figures changed.

Both runs are linked and analyzed the usual way; nothing here reads raw timestamps across
processes.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.analysis.engine import Analysis
from willowisp.analysis.naming import command_key, resource_ref
from willowisp.causality.operations import NO_OPERATION
from willowisp.causality.waits import waits
from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

SCHEMA = "willowisp.diff/1"
FLIP_SHARE = 2 / 3  # a usual order: at least this share of the pair's turns
MIN_PAIRS = 2  # turns of a pair needed in each run before its order is called usual
NOISE_NS = 100_000  # p50 differences smaller than this are listed last
MAX_SEGMENTS = 10  # critical-path segments listed per operation key
HOP_KINDS = (K.MSG_SEND, K.MSG_RECV, K.PROC_SPAWN, K.PROC_START)
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class OperationStats:
    key: str
    durations: tuple[int, ...]  # ns, sorted
    # "service/unit kind" -> ns the operations had a unit there (per operation the union of
    # its units' spans, see _spans), summed over the operations
    where: dict[str, int]


def operation_stats(a: Analysis) -> dict[str, OperationStats]:
    """Per operation key, its operations' durations and where their time went."""
    trace, ops = a.trace, a.causality.operations
    adjusted = a.causality.clocks.adjusted
    ev = trace.events
    durations: dict[str, list[int]] = defaultdict(list)
    where: dict[str, Counter[str]] = defaultdict(Counter)
    if len(ev) == 0:
        return {}
    has_op = ops.op != NO_OPERATION
    idx = np.flatnonzero(has_op)
    if len(idx) == 0:
        return {}
    op_of = ops.op[idx]
    order = np.argsort(op_of, kind="stable")
    idx, op_of = idx[order], op_of[order]
    bounds = np.flatnonzero(np.diff(op_of)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(idx)]))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        members = idx[s:e]
        o = int(op_of[s])
        root = int(ops.root[o])
        if root == NO_INDEX:
            continue
        key = operation_key(trace, root)
        t = adjusted[members]
        durations[key].append(int(t.max() - adjusted[root]))
        for label, span in _spans(trace, members, t).items():
            where[key][label] += span
    return {
        k: OperationStats(k, tuple(sorted(v)), dict(where[k])) for k, v in sorted(durations.items())
    }


def _spans(
    trace: Trace, members: npt.NDArray[np.int64], t: npt.NDArray[np.int64]
) -> dict[str, int]:
    """Per (service, unit kind): how long the operation had a unit there, counted once.

    Each unit's part is the span of the operation's events on it (first to last); a place's
    time is the union of its units' parts, not their sum: a server span and the client span
    nested in it (or two threads of one service working at once) are one stretch of the
    operation's time, and a sum would give a place more time than the operation took.
    """
    ev = trace.events
    units = ev.unit[members]
    parts: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for u in np.unique(units[units >= 0]).tolist():
        mask = units == u
        unit = trace.units[u]
        label = f"{trace.processes[unit.proc].service}/{unit.kind}"
        parts[label].append((int(t[mask].min()), int(t[mask].max())))
    return {label: _union_ns(spans) for label, spans in parts.items()}


def _union_ns(spans: list[tuple[int, int]]) -> int:
    """Total length of the union of closed intervals."""
    total = 0
    end = None
    for lo, hi in sorted(spans):
        if end is None or lo > end:
            total += hi - lo
            end = hi
        elif hi > end:
            total += hi - end
            end = hi
    return total


def operation_key(trace: Trace, root: int) -> str:
    ev = trace.events
    p = trace.processes[int(ev.proc[root])]
    r = int(ev.res[root])
    if int(ev.kind[root]) in HOP_KINDS and r >= 0:
        res = trace.resources[r]
        arrow = "→" if int(ev.kind[root]) in (K.MSG_SEND, K.PROC_SPAWN) else "←"
        # A child by its program, not its argv: ports and temporary paths change per run.
        name = command_key(res.name) if res.kind == "spawn" else res.name
        return f"{p.service} {arrow} {name}"
    u = int(ev.unit[root])
    name = _DIGITS.sub("N", trace.units[u].name) if u >= 0 else "?"
    return f"{p.service} {name}"


def segment_means(a: Analysis) -> dict[str, dict[tuple[str, str, str, str], int]]:
    """Per operation key, per critical-path segment key (service, kind, resource, place):
    the mean time per operation spent in such segments. Empty without critical paths."""
    if a.timing is None:
        return {}
    trace = a.trace
    sums: dict[str, Counter[tuple[str, str, str, str]]] = defaultdict(Counter)
    counts: Counter[str] = Counter()
    for path in a.timing.all_paths():
        if path.root < 0:
            continue
        key = operation_key(trace, path.root)
        counts[key] += 1
        for k, seg in path.keyed(trace):
            sums[key][(k.service, k.kind, k.resource, k.where)] += seg.duration_ns
    return {
        key: {seg: total // counts[key] for seg, total in per.items()} for key, per in sums.items()
    }


def hop_counts(a: Analysis) -> dict[str, tuple[int, int]]:
    """Per hop group key: (count, p50 latency ns or -1)."""
    out: dict[str, tuple[int, int]] = {}
    for g in a.hops:
        key = f"{g.source.service or '?'} → {g.target.service or '?'} {g.protocol}"
        p50 = g.latency_p50_ns if g.latency_p50_ns is not None else -1
        prev = out.get(key, (0, -1))
        out[key] = (prev[0] + g.count, p50 if p50 >= 0 else prev[1])
    return out


def interleavings(a: Analysis) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(resource key, location x, location y) -> (turns x went first, turns y went first).

    Per lock or data resource, the acquisitions (accesses) at each code location in adjusted
    time order; the k-th at x is paired with the k-th at y (the k-th turn of each), for the
    turns both had, and each pair counts for whichever went first. Locations are the up to
    ``MAX_LOCATIONS`` busiest of the resource.
    """
    trace = a.trace
    ev = trace.events
    adjusted = a.causality.clocks.adjusted
    take = np.flatnonzero(
        (ev.res >= 0) & ((ev.kind == K.LOCK_ACQUIRED) | (ev.kind == _DATA_ACCESS))
    )
    out: dict[tuple[str, str, str], tuple[int, int]] = {}
    if len(take) == 0:
        return out
    res = ev.res[take]
    order = np.lexsort((adjusted[take], res))
    take, res = take[order], res[order]
    bounds = np.flatnonzero(np.diff(res)) + 1
    for group in np.split(take, bounds):
        if len(np.unique(ev.unit[group])) < 2:
            continue  # one unit: program order, the same in every run
        by_loc: dict[str, list[int]] = defaultdict(list)
        for i in group.tolist():
            by_loc[_where(trace, i)].append(int(adjusted[i]))
        busiest = sorted(by_loc, key=lambda w: -len(by_loc[w]))[:MAX_LOCATIONS]
        key = resource_ref(trace, int(ev.res[group[0]])).key()
        for x_i, x in enumerate(sorted(busiest)):
            for y in sorted(busiest)[x_i + 1 :]:
                tx, ty = by_loc[x], by_loc[y]
                n = min(len(tx), len(ty))
                x_first = sum(1 for k in range(n) if tx[k] < ty[k])
                out[(key, x, y)] = (x_first, n - x_first)
    return out


MAX_LOCATIONS = 20
_DATA_ACCESS = 17  # data.access, when the trace has it (older traces: none)


def _where(trace: Trace, i: int) -> str:
    loc = int(trace.events.loc[i])
    if loc < 0:
        return "?"
    location = trace.locations[loc]
    return f"{location.file.rsplit('/', 1)[-1]}:{location.line}"


def _pct(values: tuple[int, ...], q: float) -> int:
    if not values:
        return -1
    return int(np.percentile(np.array(values, dtype=np.int64), q, method="nearest"))


def diff(a: Analysis, b: Analysis) -> dict[str, Any]:
    """The diff document (``willowisp.diff/1``)."""
    ops_a, ops_b = operation_stats(a), operation_stats(b)
    hops_a, hops_b = hop_counts(a), hop_counts(b)
    structural_ops = []
    for key in sorted(set(ops_a) | set(ops_b)):
        na = len(ops_a[key].durations) if key in ops_a else 0
        nb = len(ops_b[key].durations) if key in ops_b else 0
        if na != nb:
            change = "appeared" if na == 0 else "vanished" if nb == 0 else "count"
            structural_ops.append({"key": key, "a": na, "b": nb, "change": change})
    structural_hops = []
    for key in sorted(set(hops_a) | set(hops_b)):
        na = hops_a.get(key, (0, -1))[0]
        nb = hops_b.get(key, (0, -1))[0]
        if na != nb:
            change = "appeared" if na == 0 else "vanished" if nb == 0 else "count"
            structural_hops.append({"key": key, "a": na, "b": nb, "change": change})
    seg_a, seg_b = segment_means(a), segment_means(b)
    durations: list[dict[str, Any]] = []
    for key in sorted(set(ops_a) & set(ops_b)):
        da, db = ops_a[key].durations, ops_b[key].durations
        a50, b50 = _pct(da, 50), _pct(db, 50)
        grew: list[dict[str, Any]] = []
        wa, wb = ops_a[key].where, ops_b[key].where
        for label in sorted(set(wa) | set(wb)):
            per_a = wa.get(label, 0) // max(len(da), 1)
            per_b = wb.get(label, 0) // max(len(db), 1)
            grew.append({"where": label, "a_ns": per_a, "b_ns": per_b, "delta_ns": per_b - per_a})
        grew.sort(key=lambda g: -abs(int(g["delta_ns"])))
        durations.append(
            {
                "key": key,
                "a": {"count": len(da), "p50_ns": a50, "p90_ns": _pct(da, 90)},
                "b": {"count": len(db), "p50_ns": b50, "p90_ns": _pct(db, 90)},
                "delta_p50_ns": b50 - a50,
                "ratio_p50": round(b50 / a50, 3) if a50 > 0 else None,
                "by_place": grew,
                "segments": _segment_deltas(seg_a.get(key, {}), seg_b.get(key, {})),
            }
        )
    # what grew most relative to itself first; differences under NOISE_NS after the rest
    durations.sort(
        key=lambda d: (
            abs(int(d["delta_p50_ns"])) < NOISE_NS,
            -(d["ratio_p50"] or 0.0),
            -int(d["delta_p50_ns"]),
        )
    )
    return {
        "schema": SCHEMA,
        "a": _summary(a),
        "b": _summary(b),
        "structural": {"operations": structural_ops, "hops": structural_hops},
        "duration": {"operations": durations},
        "interleaving": _flips(interleavings(a), interleavings(b)),
        "run": run_deltas(run_figures(a), run_figures(b)),
    }


def _segment_deltas(
    sa: dict[tuple[str, str, str, str], int], sb: dict[tuple[str, str, str, str], int]
) -> list[dict[str, Any]]:
    """Critical-path segments by how much their mean time per operation changed (largest
    first; at most ``MAX_SEGMENTS``)."""
    out: list[dict[str, Any]] = []
    for k in set(sa) | set(sb):
        service, kind, resource, where = k
        a_ns, b_ns = sa.get(k, 0), sb.get(k, 0)
        out.append(
            {
                "service": service,
                "kind": kind,
                "resource": resource,
                "where": where,
                "a_ns": a_ns,
                "b_ns": b_ns,
                "delta_ns": b_ns - a_ns,
            }
        )
    out.sort(key=lambda d: (-abs(int(d["delta_ns"])), str(d["service"]), str(d["where"])))
    return out[:MAX_SEGMENTS]


def _flips(
    ia: dict[tuple[str, str, str], tuple[int, int]],
    ib: dict[tuple[str, str, str], tuple[int, int]],
) -> list[dict[str, Any]]:
    out = []
    for res, x, y in sorted(set(ia) & set(ib)):
        a_xy, a_yx = ia[(res, x, y)]
        b_xy, b_yx = ib[(res, x, y)]
        usual_a = _usual(a_xy, a_yx)
        usual_b = _usual(b_xy, b_yx)
        if usual_a and usual_b and usual_a != usual_b:
            kind, name, where = res.split("|", 2)
            out.append(
                {
                    "resource": {"kind": kind, "name": name, "where": where},
                    "first": x,
                    "second": y,
                    "a": {"first_then_second": a_xy, "second_then_first": a_yx},
                    "b": {"first_then_second": b_xy, "second_then_first": b_yx},
                }
            )
    return out


def _usual(xy: int, yx: int) -> str:
    total = xy + yx
    if total < MIN_PAIRS:
        return ""
    if xy >= FLIP_SHARE * total:
        return "xy"
    if yx >= FLIP_SHARE * total:
        return "yx"
    return ""


def _summary(a: Analysis) -> dict[str, Any]:
    t = a.trace
    return {
        "files": len(t.files),
        "events": len(t.events),
        "processes": len(t.processes),
        "services": sorted({p.service for p in t.processes}),
        "operations": len(a.causality.operations.trace_ids),
        "findings": len(a.findings),
    }


# -- the runs as a whole ---------------------------------------------------------------
#
# What can be compared without operations: a Go execution trace, a JFR recording or a
# Chrome trace carries no W3C trace context, so it has no operations to key durations by,
# yet its makespan, its lock waits and its units' blocked time still say whether the run
# changed. Computed for every diff, since they are as true with operations as without.


@dataclass(frozen=True, slots=True)
class LockFigures:
    """One lock key's waits to acquire (analysis/contention.py's reported resources)."""

    waits: int  # contended, given up and still open at the end
    wait_ns: int  # total of the timed waits
    max_wait_ns: int


@dataclass(frozen=True, slots=True)
class UnitFigures:
    """The units sharing one unit key, summed."""

    count: int
    alive_ns: int  # each unit's first to last event
    blocked_ns: int  # each unit's ended waits, of any kind (locks, joins, replies, sleeps)


@dataclass(frozen=True, slots=True)
class RunFigures:
    makespan_ns: int  # first to last event of the run, in adjusted time
    locks: dict[str, LockFigures]  # by resource key (ResourceRef.key)
    units: dict[str, UnitFigures]  # by "service kind name", numbers in the name folded


def run_figures(a: Analysis) -> RunFigures:
    """The run-level figures of one analyzed run."""
    trace = a.trace
    adjusted = a.causality.clocks.adjusted
    makespan = int(adjusted.max() - adjusted.min()) if len(adjusted) else 0
    return RunFigures(makespan, _lock_figures(a), _unit_figures(trace))


def _lock_figures(a: Analysis) -> dict[str, LockFigures]:
    # the same lock in several processes (one program run twice) shares a key: summed
    out: dict[str, LockFigures] = {}
    for rc in a.contention:
        key = resource_ref(a.trace, rc.resource).key()
        prev = out.get(key, LockFigures(0, 0, 0))
        out[key] = LockFigures(
            prev.waits + rc.contended + rc.gave_up + rc.still_waiting,
            prev.wait_ns + rc.wait_ns.total,
            max(prev.max_wait_ns, rc.wait_ns.max),
        )
    return out


def _unit_figures(trace: Trace) -> dict[str, UnitFigures]:
    ev = trace.events
    n = len(trace.units)
    if n == 0 or len(ev) == 0:
        return {}
    # Unit times are differences of the unit's own process clock: no alignment involved.
    has = ev.unit >= 0
    unit, time = ev.unit[has].astype(np.int64), ev.time[has]
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    last = np.full(n, np.iinfo(np.int64).min, np.int64)
    np.minimum.at(first, unit, time)
    np.maximum.at(last, unit, time)
    w = waits(trace)
    end = np.maximum(w.end, 0)
    # a wait the unit ended in (or never left) measures when the recording stopped
    ended = (w.end >= 0) & (ev.kind[end] != K.UNIT_END)
    blocked = np.bincount(
        w.unit[ended].astype(np.int64),
        weights=ev.time[end[ended]] - ev.time[w.block[ended]],
        minlength=n,
    ).astype(np.int64)
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for u in np.flatnonzero(last >= first).tolist():
        unit_ = trace.units[u]
        service = trace.processes[unit_.proc].service or "?"
        row = sums[f"{service} {unit_.kind} {_DIGITS.sub('N', unit_.name)}"]
        row[0] += 1
        row[1] += int(last[u] - first[u])
        row[2] += int(blocked[u])
    return {k: UnitFigures(*v) for k, v in sorted(sums.items())}


def run_deltas(fa: RunFigures, fb: RunFigures) -> dict[str, Any]:
    """The ``run`` section: the makespan, and the lock and unit keys whose figures changed
    (a count, or a time by at least ``NOISE_NS``), largest change first; ``same`` is true
    when nothing did."""
    no_lock, no_units = LockFigures(0, 0, 0), UnitFigures(0, 0, 0)
    locks = [
        d
        for k in sorted(set(fa.locks) | set(fb.locks))
        if (d := _lock_delta(k, fa.locks.get(k, no_lock), fb.locks.get(k, no_lock)))
    ]
    locks.sort(key=lambda d: -abs(int(d["delta_wait_ns"])))
    units = [
        d
        for k in sorted(set(fa.units) | set(fb.units))
        if (d := _unit_delta(k, fa.units.get(k, no_units), fb.units.get(k, no_units)))
    ]
    units.sort(key=lambda d: (-abs(int(d["delta_blocked_ns"])), -abs(int(d["delta_alive_ns"]))))
    delta = fb.makespan_ns - fa.makespan_ns
    return {
        "makespan": {"a_ns": fa.makespan_ns, "b_ns": fb.makespan_ns, "delta_ns": delta},
        "locks": locks,
        "units": units,
        "same": abs(delta) < NOISE_NS and not locks and not units,
    }


def _lock_delta(key: str, a: LockFigures, b: LockFigures) -> dict[str, Any] | None:
    if (
        a.waits == b.waits
        and abs(b.wait_ns - a.wait_ns) < NOISE_NS
        and abs(b.max_wait_ns - a.max_wait_ns) < NOISE_NS
    ):
        return None
    kind, name, where = key.split("|", 2)
    return {
        "resource": {"kind": kind, "name": name, "where": where},
        "a": {"waits": a.waits, "wait_ns": a.wait_ns, "max_wait_ns": a.max_wait_ns},
        "b": {"waits": b.waits, "wait_ns": b.wait_ns, "max_wait_ns": b.max_wait_ns},
        "delta_wait_ns": b.wait_ns - a.wait_ns,
    }


def _unit_delta(key: str, a: UnitFigures, b: UnitFigures) -> dict[str, Any] | None:
    if (
        a.count == b.count
        and abs(b.alive_ns - a.alive_ns) < NOISE_NS
        and abs(b.blocked_ns - a.blocked_ns) < NOISE_NS
    ):
        return None
    return {
        "key": key,
        "a": {"count": a.count, "alive_ns": a.alive_ns, "blocked_ns": a.blocked_ns},
        "b": {"count": b.count, "alive_ns": b.alive_ns, "blocked_ns": b.blocked_ns},
        "delta_alive_ns": b.alive_ns - a.alive_ns,
        "delta_blocked_ns": b.blocked_ns - a.blocked_ns,
    }
