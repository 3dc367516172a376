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
"""

from __future__ import annotations

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
from willowisp.causality.clock_domains import ClockDomain
from willowisp.causality.graph import EdgeKind
from willowisp.causality.link import Causality
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

SKEW_NS = 1_000_000  # contract: clock-skew when the interval excludes +/-1 ms


def find(c: Causality) -> list[Finding]:
    return _skew(c) + _false_causality(c)


def signed(ns: int, digits: int = 1) -> str:
    return ("+" if ns > 0 else "-" if ns < 0 else "") + fmt_duration(abs(ns), digits)


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
    amount = (
        f"{fmt_duration(abs(d.offset_ns))} ± {fmt_duration(unc)}"
        if unc is not None
        else f"at least {fmt_duration(abs(d.offset_ns))}"
    )
    summary = (
        f"clock-skew: {possessive(names)} clock ({d.id}) is {amount} {direction} "
        f"{possessive(ref_names)}"
    )
    if d.simulated:
        summary += " (simulated)"
    labels = ", ".join(trace.processes[p].label() for p in d.processes)
    lines = [
        f"reference clock {ref.id}: "
        + ", ".join(trace.processes[p].label() for p in ref.processes),
        f"{d.id} ({labels}) is {amount} {direction} it: the causal order allows offsets "
        f"from {_bound(d.interval.lo)} to {_bound(d.interval.hi)}; {signed(d.offset_ns, 3)} "
        "is used to align it",
    ]
    events: list[int] = []
    for key, side in (((d.index, ref.index), "at most"), ((ref.index, d.index), "at least")):
        ev = clocks.evidence.get(key)
        if ev is None:
            continue
        src, dst, bound = ev
        events += [src, dst]
        offset = bound if side == "at most" else -bound
        lines.append(
            f"{describe_event(trace, src)} at {fmt_wall(int(trace.events.raw[src]))} and "
            f"{describe_event(trace, dst)} at {fmt_wall(int(trace.events.raw[dst]))} "
            f"(raw): so the offset is {side} {signed(offset, 3)}"
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
        lines = [
            f"{describe_event(trace, s)} at {fmt_wall(int(ev.raw[s]))} (raw, {d_src.id})",
            f"{describe_event(trace, t)} at {fmt_wall(int(ev.raw[t]))} (raw, {d_dst.id}): "
            f"{fmt_duration(int(gap[worst]))} before its cause by raw timestamps",
            f"{n} of {plural(total, 'causal edge')} between {na} and {nb} run backwards in "
            "raw time: a timeline sorted by wall clock shows these effects before their causes",
            f"after aligning the clocks by the causal order ({non_ref.id} offset "
            f"{signed(non_ref.offset_ns)}), "
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
