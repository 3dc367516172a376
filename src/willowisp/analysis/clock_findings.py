"""``clock-skew`` and ``false-causality``: what clock alignment found, as findings.

clock-skew: a domain whose offset interval (from causal constraints alone) excludes
[-1 ms, +1 ms] provably disagrees with the reference clock by more than a millisecond. The
finding cites the tightest direct constraints (the request and reply that bracket the
offset), and says when the skew was simulated (``WILLOWISP_CLOCK_OFFSET_NS``).

false-causality: a happens-before edge between domains whose raw timestamps run backwards
(the receive stamped before the send). Any tool that sorts by wall clock would show the
effect before its cause. One finding per pair of domains, with the count, the worst case
told with both events, and how many remain backwards after alignment (normally none: the
offsets are chosen inside the interval the same edges allow).

Where a story shows an event's time it also says how far into its logical operation the
event was (``+95.0 ms into the operation``: adjusted time since the operation's root, see
:mod:`willowisp.causality.operations`), and a drifting clock's line says what was applied.
The same module shapes the per-domain adjustment detail and the per-event times of the JSON
document (:func:`clock_detail`, :func:`event_times`), so every adjusted time can be traced
to its offset, its drift and the causal edges they came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from willowisp.analysis.finding import Finding
from willowisp.analysis.naming import (
    event_where,
    fmt_duration,
    fmt_wall,
    plural,
    possessive,
    resource_name,
    services_of,
)
from willowisp.causality.clock_domains import ClockDomain, Link
from willowisp.causality.graph import EdgeKind
from willowisp.causality.link import Causality
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

SKEW_NS = 1_000_000  # contract: clock-skew when the interval excludes +/-1 ms


def find(c: Causality) -> list[Finding]:
    return _skew(c) + _false_causality(c)


def signed(ns: int, digits: int = 1) -> str:
    return ("+" if ns > 0 else "-" if ns < 0 else "") + fmt_duration(abs(ns), digits)


def fmt_rate(ns_per_s: int) -> str:
    """A drift rate: ``+50.0 µs/s (50 ppm)``."""
    return f"{signed(ns_per_s)}/s ({ns_per_s / 1000:+g} ppm)"


def into_operation(c: Causality, i: int) -> str:
    """How far event i was into its logical operation: ``+95.0 ms into the operation``
    (or, for an event in none, since its unit tree began: ``+1.5 ms after MainThread began``)."""
    trace, ops = c.trace, c.operations
    rel = signed(int(ops.root_rel_ns[i])) or "0 ns"
    root = ops.root_of(trace, i)
    if ops.trace_id_of(i) is not None:
        return "the operation's first event" if root == i else f"{rel} into the operation"
    u = int(trace.events.unit[root])
    began = f"{trace.units[u].name} began" if u >= 0 else "its process's trace began"
    return f"{rel} after {began}"


def event_times(c: Causality, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per event id: raw and adjusted time, time since its operation's root, its trace id,
    the root event and its clock domain (the JSON document's ``event_times``)."""
    trace, clocks, ops = c.trace, c.clocks, c.operations
    ev = trace.events
    out: dict[str, dict[str, Any]] = {}
    for eid, i in trace.event_indices(ids).items():
        out[eid] = {
            "raw_ns": int(ev.raw[i]),
            "adjusted_ns": int(clocks.adjusted[i]),
            "root_rel_ns": int(ops.root_rel_ns[i]),
            "trace_id": ops.trace_id_of(i),
            "root": str(trace.event_id(ops.root_of(trace, i))),
            "clock_domain": clocks.domains[int(clocks.domain_of_proc[int(ev.proc[i])])].id,
        }
    return out


def clock_detail(c: Causality, d: ClockDomain) -> dict[str, Any]:
    """The clocks entry's fields beyond the contract's: how the domain's adjusted time is
    made, and from which evidence (see docs/analysis.md, "Drift")."""
    trace = c.trace

    def links(chain: tuple[Link, ...]) -> list[dict[str, Any]]:
        return [
            {
                "cause": str(trace.event_id(k.cause)),
                "effect": str(trace.event_id(k.effect)),
                "bound_ns": k.bound_ns,
            }
            for k in chain
        ]

    found = d.drift_evidence
    windows = (
        None
        if found is None
        else [
            {"at_ns": at, "offset_min_ns": iv.lo, "offset_max_ns": iv.hi}
            for at, iv in ((found.early_at_ns, found.early), (found.late_at_ns, found.late))
        ]
    )
    allowed = d.drift_allowed
    return {
        "drift_applied": d.drift_applied,
        "drift_ref_ns": d.drift_ref_ns,
        "drift_min_ns_per_s": allowed[0] if allowed else None,
        "drift_max_ns_per_s": allowed[1] if allowed else None,
        "adjustment": {
            "offset_ns": d.offset_ns,
            "drift_ns_per_s": d.drift_ns_per_s if d.drift_applied else 0,
            "ref_ns": d.drift_ref_ns,
            # each end = sum over its edges of (bound_ns + slack_ns); slack 0 when consistent
            "slack_ns": d.slack_ns,
            "lower": {"bound_ns": d.placed.lo, "edges": links(d.lower)},
            "upper": {"bound_ns": d.placed.hi, "edges": links(d.upper)},
            "drift_windows": windows,
        },
    }


def describe_event(trace: Trace, i: int) -> str:
    """What an event on a hop did, from its process's side: "orders sent POST /reserve"."""
    ev = trace.events
    p = trace.processes[int(ev.proc[i])]
    who = p.service or f"pid {p.pid}"
    r = int(ev.res[i])
    what = resource_name(trace, r) if r >= 0 else "a request"
    kind = int(ev.kind[i])
    verbs: dict[int, str] = {
        K.MSG_SEND: f"{who} sent {what}",
        K.MSG_RECV: f"{who} received {what}",
        K.RPC_REPLY: f"{who} replied to {what}",
        K.RPC_RESPONSE: f"{who} got the reply to {what}",
        K.PROC_SPAWN: f"{who} started a child process",
        K.PROC_START: f"{who} started",
    }
    text = verbs.get(kind, f"{who} did {kind}")
    where = event_where(trace, i)
    return f"{text} ({where})" if where else text


def _skew(c: Causality) -> list[Finding]:
    clocks = c.clocks
    out: list[Finding] = []
    if not clocks.domains:
        return out
    ref = clocks.domains[clocks.reference]
    for d in clocks.domains:
        lo, hi = d.interval.lo, d.interval.hi
        if d.reference or not (
            (lo is not None and lo > SKEW_NS) or (hi is not None and hi < -SKEW_NS)
        ):
            continue
        out.append(_skew_finding(c, d, ref))
    return out


def _skew_finding(c: Causality, d: ClockDomain, ref: ClockDomain) -> Finding:
    trace, clocks = c.trace, c.clocks
    names, ref_names = services_of(trace, d.processes), services_of(trace, ref.processes)
    direction = "ahead of" if d.offset_ns < 0 else "behind"
    unc = d.uncertainty_ns
    # one-sided: what the causal order proves is the bound, not the offset used to align
    # (which lies beyond it): "at least" the bound
    bound = d.interval.lo if d.offset_ns >= 0 else d.interval.hi
    amount = (
        f"{fmt_duration(abs(d.offset_ns))} ± {fmt_duration(unc)}"
        if unc is not None
        else f"at least {fmt_duration(abs(bound if bound is not None else d.offset_ns))}"
    )
    summary = (
        f"clock-skew: {possessive(names)} clock ({d.id}) is {amount} {direction} "
        f"{possessive(ref_names)}"
    )
    if d.simulated:
        summary += " (simulated)"
    labels = ", ".join(trace.processes[p].label() for p in d.processes)
    when = f" at {fmt_wall(d.drift_ref_ns)}" if d.drift_ref_ns is not None else ""
    lines = [
        f"reference clock {ref.id}: "
        + ", ".join(trace.processes[p].label() for p in ref.processes),
        f"{d.id} ({labels}) is {amount} {direction} it{when}: the causal order allows "
        f"offsets from {_bound(d.interval.lo)} to {_bound(d.interval.hi)}; "
        f"{signed(d.offset_ns, 3)} is used to align it",
    ]
    if d.drift_applied:
        lines.append(_drift_line(d, ref))
    corrected = " after drift correction" if d.drift_applied else ""
    events: list[int] = []
    for key, side in (((d.index, ref.index), "at most"), ((ref.index, d.index), "at least")):
        ev = clocks.evidence.get(key)
        if ev is None:
            continue
        src, dst, bound = ev
        events += [src, dst]
        offset = bound if side == "at most" else -bound
        lines.append(
            f"{describe_event(trace, src)} at {fmt_wall(int(trace.events.raw[src]))} raw, "
            f"{into_operation(c, src)}, and {describe_event(trace, dst)} at "
            f"{fmt_wall(int(trace.events.raw[dst]))} raw, {into_operation(c, dst)}: so the "
            f"offset{when} is {side} {signed(offset, 3)}{corrected}"
        )
    for p in d.processes:
        proc = trace.processes[p]
        if proc.simulated_offset_ns:
            lines.append(
                f"simulated: {proc.label()} ran with WILLOWISP_CLOCK_OFFSET_NS="
                f"{proc.simulated_offset_ns} ({signed(proc.simulated_offset_ns)}); "
                "the skew was injected on purpose, for a demo or a test"
            )
    if d.slack_ns:
        lines.append(
            f"the causal constraints disagree by up to {fmt_duration(d.slack_ns)} "
            "(a clock stepped or drifted during the run); the interval is widened "
            "by that much"
        )
    return Finding(
        kind="clock-skew",
        severity="warning",
        summary=summary,
        identity=(f"domain|{names}", f"reference|{ref_names}"),
        events=tuple(str(trace.event_id(i)) for i in events),
        explanation=tuple(lines),
        extra=(
            ("clock_domain", d.id),
            ("offset_ns", d.offset_ns),
            ("offset_min_ns", d.interval.lo),
            ("offset_max_ns", d.interval.hi),
            ("simulated", d.simulated),
        ),
    )


def _bound(v: int | None) -> str:
    return "unbounded" if v is None else signed(v, 3)


def _drift_line(d: ClockDomain, ref: ClockDomain) -> str:
    """What the drift of a domain is, what showed it and how it is applied."""
    line = f"{d.id}'s clock drifts {fmt_rate(d.drift_ns_per_s)} against {ref.id}"
    found = d.drift_evidence
    if found is not None:
        line += (
            f": the hops around {fmt_wall(found.early_at_ns)} put the offset near "
            f"{signed(found.early.midpoint, 3)}, those around {fmt_wall(found.late_at_ns)} "
            f"near {signed(found.late.midpoint, 3)}, and no constant offset fits both"
        )
    allowed = d.drift_allowed
    if allowed is not None and None not in allowed:
        lo, hi = allowed
        assert lo is not None and hi is not None
        line += f"; rates from {signed(lo)}/s to {signed(hi)}/s fit every hop"
    return line + "; adjusted time follows the offset plus the drift since then"


def _false_causality(c: Causality) -> list[Finding]:
    trace, clocks, graph = c.trace, c.clocks, c.graph
    ev = trace.events
    # only certain edges: a message linked by a reused id must not accuse a clock
    cross = (
        graph.of_kind(EdgeKind.REQUEST, EdgeKind.REPLY, EdgeKind.PROCESS, EdgeKind.MESSAGE)
        & graph.certain
    )
    src, dst = graph.src[cross], graph.dst[cross]
    dom = clocks.domain_of_proc
    da, db = dom[ev.proc[src]], dom[ev.proc[dst]]
    differ = da != db
    src, dst, da, db = src[differ], dst[differ], da[differ], db[differ]
    lo, hi = np.minimum(da, db), np.maximum(da, db)
    gap = ev.raw[src] - ev.raw[dst]  # > 0: the effect is stamped before its cause
    adj = clocks.adjusted
    out: list[Finding] = []
    for a, b in sorted(set(zip(lo.tolist(), hi.tolist(), strict=True))):
        pair = (lo == a) & (hi == b)
        backwards = pair & (gap > 0)
        n = int(np.count_nonzero(backwards))
        if n == 0:
            continue
        total = int(np.count_nonzero(pair))
        worst = int(np.flatnonzero(backwards)[np.argmax(gap[backwards])])
        s, t = int(src[worst]), int(dst[worst])
        after = int(np.count_nonzero(pair & (adj[dst] < adj[src])))
        da_, db_ = clocks.domains[a], clocks.domains[b]
        na, nb = services_of(trace, da_.processes), services_of(trace, db_.processes)
        d_src = clocks.domains[int(dom[ev.proc[s]])]
        d_dst = clocks.domains[int(dom[ev.proc[t]])]
        non_ref = db_ if da_.reference else da_
        drifting = [x for x in (da_, db_) if x.drift_applied]
        applied = "".join(f", {x.id} drift {signed(x.drift_ns_per_s)}/s" for x in drifting)
        lines = [
            f"{describe_event(trace, s)} at {fmt_wall(int(ev.raw[s]))} (raw, {d_src.id}; "
            f"{into_operation(c, s)})",
            f"{describe_event(trace, t)} at {fmt_wall(int(ev.raw[t]))} (raw, {d_dst.id}; "
            f"{into_operation(c, t)}): "
            f"{fmt_duration(int(gap[worst]))} before its cause by raw timestamps",
            f"{n} of {plural(total, 'causal edge')} between {na} and {nb} run backwards in "
            "raw time: a timeline sorted by wall clock shows these effects before their causes",
            f"after aligning the clocks by the causal order ({non_ref.id} offset "
            f"{signed(non_ref.offset_ns)}{applied}), "
            + ("none does" if after == 0 else f"{after} still do (the clocks drifted?)"),
        ]
        out.append(
            Finding(
                kind="false-causality",
                severity="warning",
                summary=(
                    f"false-causality: raw timestamps put {n} of {total} cross-process "
                    f"events between {na} and {nb} before their causes "
                    f"(worst {fmt_duration(int(gap[worst]))})"
                ),
                identity=(f"between|{na}", f"between|{nb}"),  # sorted: order-free
                events=(str(trace.event_id(s)), str(trace.event_id(t))),
                explanation=tuple(lines),
                extra=(
                    ("count", n),
                    ("edges", total),
                    ("worst_ns", int(gap[worst])),
                    ("after_alignment", after),
                ),
            )
        )
    return out
