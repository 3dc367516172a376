"""``dropped-context``, ``broken-link``, ``orphan-unit``: where the trace is not whole.

Every other analysis trusts the links the causality layer proved: a request paired with its
server side through the span id that crossed the wire, a thread with the unit that created
it. This module reports where those links are missing although the trace says they should
exist, so nobody takes "no finding" as "no problem" on a path the trace cannot follow.

- **dropped-context** is about a *hop*, never a single request. The client recorded the
  context it put on the wire, and the server recorded none arriving (it started a new root
  trace); or the reverse, the server received context the client does not show sending.
  The two unlinked sides are put together by what identifies a hop without time: the
  client's method, path and peer address, and the server process's method and path. Who
  listens at that peer is learned from linked requests of the same client process to the
  same peer (proof); failing that, the server side must be the only process that received
  that method and path without context (the rows would otherwise be ambiguous, and we say
  nothing). Counts are per hop: (client service, server service, method, path).
- **broken-link**: a reference to something not in the trace. A server-side request whose
  parent span is in no loaded process while its trace id has other spans here; a child
  process's inherited span that its loaded parent never recorded; a ``unit.create`` or
  ``join.done`` naming a unit number no record defines. Each says why, as far as the trace
  knows: a lost or damaged chunk, events the agent dropped, or simply not recorded (a
  process missing from the run, a library the agent does not hook).
- **orphan-unit**: a unit with no known parent in a process that has a root, and no
  happens-before edge in or out: nothing orders its events against the rest. Reported only
  then (conservative: a parentless thread that takes a lock or gets a queue item is ordered
  enough, and is not reported), and never for a unit with no parent by nature (the main
  thread; a thread its runtime starts itself: tokio's workers, the JVM's service threads),
  one that created units of its own (a tree's root), or one that only started and was
  scheduled (nothing in it rests on time).

Trade-off: all three work on the hop table and the graph that link() already built; the only
Python loops are over unlinked hop rows, a few event kinds (unit.create, join.done) and
parentless units, never over all events.
"""

from __future__ import annotations

import re

import numpy as np

from willowisp.analysis.agent_health import dropped_per_process
from willowisp.analysis.finding import Finding, ResourceRef
from willowisp.analysis.naming import (
    event_where,
    join_words,
    plural,
    possessive,
    resource_ref,
    unit_label,
    unit_ref,
)
from willowisp.analysis.stuck import runtime_units
from willowisp.causality.graph import EdgeKind
from willowisp.causality.hops import ContextDrop, HopKind, Unlinked, dropped_context
from willowisp.causality.link import Causality
from willowisp.causality.program_order import BOOKKEEPING
from willowisp.causality.provenance import Provenance, attr_str
from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

MAX_LINES = 10  # items listed per finding; the rest are counted


def find(c: Causality) -> list[Finding]:
    dropped, used_servers = _dropped_context(c)
    return dropped + _dropped_message_context(c) + _broken_links(c, used_servers) + _orphans(c)


# -- dropped-context ---------------------------------------------------------------------


def _dropped_context(c: Causality) -> tuple[list[Finding], set[int]]:
    """Findings, and the server rows they explain (not reported again as broken links).
    The pairing is the causality layer's (hops.dropped_context), which the hop groups
    read too, so the hops table and these findings always tell the same hop."""
    out: list[Finding] = []
    used: set[int] = set()
    for drop in dropped_context(c.trace, c.hops):
        used |= drop.server_rows
        out.append(_dropped_finding(c, drop))
    return out, used


def _dropped_message_context(c: Causality) -> list[Finding]:
    """Messages linked only by their message id although the producer put trace context on
    them: the context was lost on the way (a broker, a bridge or a consumer library that
    drops headers). One finding per (producer service, consumer service, destination)."""
    trace, hops = c.trace, c.hops
    res = trace.resources
    rows = np.flatnonzero(
        (hops.kind == HopKind.MESSAGE) & hops.linked & (hops.provenance == Provenance.MESSAGE_ID)
    ).tolist()
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for row in rows:
        prod, cons = res[int(hops.client[row])], res[int(hops.server[row])]
        if not prod.span_id or attr_str(cons, "parent_span_id"):
            continue  # the producer sent none, or the consumer did get one
        key = (
            trace.processes[prod.proc].service,
            trace.processes[cons.proc].service,
            prod.protocol,
            attr_str(prod, "destination"),
        )
        groups.setdefault(key, []).append(row)
    out: list[Finding] = []
    for (psvc, csvc, protocol, dest), hop_rows in sorted(groups.items()):
        prods = [int(hops.client[r]) for r in hop_rows]
        conss = [int(hops.server[r]) for r in hop_rows]
        _, prt, plib = _side(trace, prods)
        _, crt, clib = _side(trace, conss)
        n = len(hop_rows)
        out.append(
            Finding(
                kind="dropped-context",
                severity="warning",
                summary=(
                    f"dropped-context: {psvc} → {csvc} {protocol} {dest}: "
                    f"{plural(n, 'message')} sent with trace context arrived without it"
                ),
                identity=(
                    "direction|message",
                    f"client|{psvc}",
                    f"server|{csvc}",
                    f"request|{protocol} {dest}",
                ),
                resources=_unique_refs([resource_ref(trace, r) for r in (*prods, *conss)]),
                explanation=(
                    f"{psvc} ({prt}, {plib}) sent {plural(n, 'message')} to {protocol} {dest} "
                    "carrying trace context (headers or attributes)"
                    f"{_at_paren(_first_where(trace, prods))}",
                    f"{csvc} ({crt}, {clib}) received them with no trace context"
                    f"{_at_paren(_first_where(trace, conss))}",
                    "they are still linked, by the message id both sides recorded (provenance "
                    "message-id), not by time: the headers were lost between producer and consumer "
                    "(a broker or bridge that drops them, or a consumer that does not read them)",
                ),
                extra=(
                    (
                        "hop",
                        {
                            "from": {"service": psvc, "runtime": prt},
                            "to": {"service": csvc, "runtime": crt},
                            "protocol": protocol,
                            "destination": dest,
                        },
                    ),
                    ("count", n),
                ),
            )
        )
    return out


def _side(trace: Trace, rs: list[int]) -> tuple[str, str, str]:
    """service, runtimes and libraries of some resources, for a sentence."""
    procs = sorted({trace.resources[r].proc for r in rs})
    service = trace.processes[procs[0]].service or "?"
    runtimes = ", ".join(sorted({trace.processes[p].runtime or "?" for p in procs}))
    libs = ", ".join(sorted({trace.resources[r].library or "?" for r in rs}))
    return service, runtimes, libs


def _dropped_finding(c: Causality, hop: ContextDrop) -> Finding:
    trace, hops = c.trace, c.hops
    client_service, server_service, method, path = hop.key
    sent_context = hop.sent_context
    cres = [int(hops.client[r]) for r in hop.client_rows]
    sres = [int(hops.server[r]) for r in sorted(hop.server_rows)]
    csvc, crt, clib = _side(trace, cres)
    ssvc, srt, slib = _side(trace, sres)
    what = f"{method} {path}".strip()
    peers = ", ".join(sorted(hop.peers)) or "its peer"
    n_sent, n_recv = len(cres), len(sres)
    csend = _first_where(trace, cres)
    srecv = _first_where(trace, sres)
    how = (
        f"linked requests from {csvc} to {peers} were answered by {ssvc}, so {ssvc} listens there"
        if hop.proven
        else f"{ssvc} is the only traced process that received {what} without a matching client"
    )
    if sent_context:
        summary = (
            f"dropped-context: {csvc} → {ssvc} {what}: "
            f"{plural(n_sent, 'request')} sent with trace context arrived without it"
        )
        steps = (
            f"{csvc} ({crt}, {clib}) sent {plural(n_sent, what + ' request')} to {peers} "
            f"with a traceparent{_at_paren(csend)}",
            f"{ssvc} ({srt}, {slib}) received {plural(n_recv, what + ' request')} with no "
            f"traceparent{_at_paren(srecv)} and started a new root trace for each",
            f"the context was lost between them: {possessive(ssvc)} work is not a child of "
            f"{possessive(csvc)} request (a proxy or header filter dropped it, or the "
            "client's bytes were rewritten after the context was put on them)",
            f"the hop is identified without timestamps: {how}",
        )
    else:
        summary = (
            f"dropped-context: {csvc} → {ssvc} {what}: "
            f"{plural(n_recv, 'request')} arrived with trace context the caller did not send"
        )
        steps = (
            f"{csvc} ({crt}, {clib}) sent {plural(n_sent, what + ' request')} to {peers} "
            f"and recorded no trace context for them{_at_paren(csend)}",
            f"{ssvc} ({srt}, {slib}) received {plural(n_recv, what + ' request')} carrying a "
            f"traceparent whose parent span is in no loaded process{_at_paren(srecv)}",
            "something between them injected context the caller does not show (a proxy or "
            "sidecar that starts its own spans, or an uninstrumented client library)",
            f"the hop is identified without timestamps: {how}",
        )
    refs = _unique_refs([resource_ref(trace, r) for r in (*cres, *sres)])
    identity = (
        f"direction|{'sent' if sent_context else 'received'}",
        f"client|{client_service}",
        f"server|{server_service}",
        f"request|{what}",
    )
    hop_json = {
        "from": {"service": csvc, "runtime": crt, "libraries": clib.split(", ")},
        "to": {"service": ssvc, "runtime": srt, "libraries": slib.split(", ")},
        "method": method,
        "target": path,
    }
    return Finding(
        kind="dropped-context",
        severity="warning",
        summary=summary,
        identity=identity,
        resources=refs,
        explanation=steps,
        extra=(("hop", hop_json), ("count", n_sent), ("received", n_recv)),
    )


def _first_where(trace: Trace, rs: list[int]) -> str:
    ev = trace.events
    hits = np.flatnonzero(np.isin(ev.res, rs) & (ev.loc >= 0))
    return event_where(trace, int(hits[0])) if len(hits) else ""


def _at_paren(where: str) -> str:
    return f" ({where})" if where else ""


def _unique_refs(refs: list[ResourceRef]) -> tuple[ResourceRef, ...]:
    return tuple(dict.fromkeys(refs))


# -- broken-link -------------------------------------------------------------------------


def _loss(trace: Trace, procs: list[int]) -> str:
    """Why events of these processes may be missing, as far as the trace knows; '' if not."""
    damaged = {u.path for u in trace.unreadable if u.partial}
    drops = dropped_per_process(trace)
    reasons: list[str] = []
    for p in sorted(set(procs)):
        proc = trace.processes[p]
        files = [f for f in trace.files if f.path in proc.files]
        if any(f.problems for f in files) or damaged & set(proc.files):
            reasons.append(f"a chunk of {proc.label()} was lost (damaged file)")
        elif any(f.truncated for f in files):
            reasons.append(f"{proc.label()} ended mid-write (its last chunk is lost)")
        if drops[p]:
            reasons.append(f"the agent in {proc.label()} dropped {plural(drops[p], 'event')}")
    return "; ".join(reasons)


def _broken_links(c: Causality, explained: set[int]) -> list[Finding]:
    return _broken_spans(c, explained) + _broken_spawns(c) + _broken_units(c.trace)


def _broken_spans(c: Causality, explained: set[int]) -> list[Finding]:
    """Server-side requests naming a parent span no loaded process has, in a trace that
    does have other spans here (so the trace is known, one span of it is missing)."""
    trace, hops = c.trace, c.hops
    res = trace.resources
    procs_of_trace: dict[str, set[int]] = {}
    for r in res:
        if r.trace_id:
            procs_of_trace.setdefault(r.trace_id, set()).add(r.proc)
    span_count: dict[str, int] = {}
    for r in res:
        if r.trace_id:
            span_count[r.trace_id] = span_count.get(r.trace_id, 0) + 1
    groups: dict[tuple[int, str], list[int]] = {}
    for row in np.flatnonzero(hops.reason == Unlinked.NO_CLIENT_SIDE).tolist():
        if row in explained or hops.kind[row] == HopKind.SPAWN:
            continue
        s = res[int(hops.server[row])]
        if span_count.get(s.trace_id, 0) > 1:
            groups.setdefault((s.proc, resource_ref(trace, s.index).name), []).append(row)
    out: list[Finding] = []
    for (proc, name), rows in sorted(groups.items()):
        p = trace.processes[proc]
        first = res[int(hops.server[rows[0]])]
        holders = sorted(procs_of_trace[first.trace_id] - {proc}) or [proc]
        loss = _loss(trace, holders)
        why = (
            f"likely cause: {loss}"
            if loss
            else "not recorded: the sender is not among the loaded processes (a missing "
            "process), or something between them (a proxy) started its own span"
        )
        spans = ", ".join(sorted({res[int(hops.server[r])].parent_span_id for r in rows}))
        out.append(
            Finding(
                kind="broken-link",
                severity="warning",
                summary=(
                    f"broken-link: {plural(len(rows), name + ' request')} received by "
                    f"{p.label()} {_verb(len(rows), 'names', 'name')} a parent span that is "
                    "not in the trace"
                ),
                identity=(f"span|{p.service}", f"request|{name}"),
                resources=(resource_ref(trace, first.index),),
                explanation=(
                    f"{p.label()} received {plural(len(rows), name + ' request')}"
                    f"{_at_paren(_first_where(trace, [int(hops.server[r]) for r in rows]))} "
                    f"with parent span {_clip(spans)}",
                    f"trace {first.trace_id} has other spans here (in "
                    f"{', '.join(trace.processes[h].label() for h in holders)}), "
                    "but no client request with that span id",
                    why,
                ),
                extra=(("count", len(rows)),),
            )
        )
    return out


def _verb(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _broken_spawns(c: Causality) -> list[Finding]:
    """A child process whose inherited span its loaded parent never recorded spawning."""
    trace, hops = c.trace, c.hops
    by_id = {str(p.id): p for p in trace.processes}
    out: list[Finding] = []
    rows = np.flatnonzero((hops.reason == Unlinked.NO_CLIENT_SIDE) & (hops.kind == HopKind.SPAWN))
    for row in rows.tolist():
        s = trace.resources[int(hops.server[row])]
        child = trace.processes[s.proc]
        parent = by_id.get(child.parent_process_id)
        if parent is None:
            continue  # the parent is not loaded: a root of this run, not a broken link
        loss = _loss(trace, [parent.index])
        out.append(
            Finding(
                kind="broken-link",
                severity="warning",
                summary=(
                    f"broken-link: {child.label()} started with parent span "
                    f"{s.parent_span_id}, which its parent {parent.label()} did not record"
                ),
                identity=(f"spawn|{parent.service}", f"child|{child.service}"),
                resources=(resource_ref(trace, s.index),),
                explanation=(
                    f"{child.label()} inherited traceparent span {s.parent_span_id} "
                    f"(trace {s.trace_id}) from {parent.label()}",
                    f"{parent.label()} is loaded but has no proc.spawn with that span",
                    f"likely cause: {loss}"
                    if loss
                    else "not recorded: the parent started it in a way the agent does not hook "
                    "(os.posix_spawn, a shell wrapper), or passed on a context it received",
                ),
            )
        )
    return out


def _broken_units(trace: Trace) -> list[Finding]:
    """``unit.create`` / ``join.done`` naming a unit number that no record defines."""
    ev = trace.events
    idx = np.flatnonzero((ev.kind == K.UNIT_CREATE) | (ev.kind == K.JOIN_DONE))
    target = trace.unit_index(ev.proc[idx], ev.arg[idx])
    groups: dict[tuple[int, int, str], list[int]] = {}  # (proc, kind, where) -> events
    for i, t in zip(idx.tolist(), target.tolist(), strict=True):
        if t != NO_INDEX and trace.units[t].kind != "unknown":
            continue
        groups.setdefault((int(ev.proc[i]), int(ev.kind[i]), event_where(trace, i)), []).append(i)
    out: list[Finding] = []
    for (proc, kind, where), events in sorted(groups.items()):
        p = trace.processes[proc]
        verb = "created" if kind == K.UNIT_CREATE else "joined"
        name = "unit.create" if kind == K.UNIT_CREATE else "join.done"
        numbers = sorted({int(ev.arg[i]) for i in events})
        actors = {int(ev.unit[i]) for i in events if int(ev.unit[i]) >= 0}
        who = join_words([unit_label(trace, u) for u in sorted(actors)][:3]) or "a unit"
        loss = _loss(trace, [proc])
        out.append(
            Finding(
                kind="broken-link",
                severity="warning",
                summary=(
                    f"broken-link: {plural(len(events), name + ' event')} in {p.label()} "
                    f"{_verb(len(events), 'names a unit', 'name units')} with no record"
                ),
                identity=(f"unit|{p.service}", f"event|{name}", f"where|{where}"),
                units=tuple(unit_ref(trace, u) for u in sorted(actors)),
                events=tuple(str(trace.event_id(i)) for i in events[:MAX_LINES]),
                explanation=(
                    f"{who} {verb} unit "
                    f"{', '.join(map(str, numbers[:MAX_LINES]))}{_at_paren(where)}",
                    f"{p.label()} has no unit record for "
                    f"{'it' if len(numbers) == 1 else 'them'}: "
                    "no name, kind or parent, and nothing it did can be linked",
                    f"likely cause: {loss}"
                    if loss
                    else "not recorded: the agent wrote the event but never the unit's record",
                ),
                extra=(("count", len(events)),),
            )
        )
    return out


# -- orphan-unit -------------------------------------------------------------------------

_DIGITS = re.compile(r"\d+")

# Events that say only that a unit exists and is scheduled: a unit with nothing else did
# nothing any finding could be about, so whether it is ordered against the rest is moot.
_BOOKKEEPING = np.concatenate([BOOKKEEPING, np.array([K.UNIT_START, K.UNIT_END], np.uint8)])
# A process's main thread (Java's and Rust's ``main``, Python's ``MainThread``, Go's
# goroutine 1 ``main.main``): the runtime starts it, nothing in the program does, so having
# no parent is what it should have.
_MAIN_THREAD = re.compile(r"^(main|MainThread|main\.main( #1)?)$")
# Threads a runtime starts for itself, never from a line of the program: tokio's workers
# and blocking pool, the JVM's service threads.
_RUNTIME_THREAD = re.compile(
    r"^(tokio-(rt|runtime)-(worker|blocking)\b.*|Signal Dispatcher|Reference Handler"
    r"|Finalizer|Common-Cleaner|Attach Listener|Notification Thread|Service Thread"
    r"|C[12] CompilerThread\d*|JFR .*|Monitor Deflation Thread)$"
)


def _born_of_runtime(trace: Trace, u: int) -> bool:
    """A process's main thread or a thread its runtime starts itself: parentless by nature."""
    unit = trace.units[u]
    return unit.kind in ("thread", "goroutine") and bool(
        _MAIN_THREAD.match(unit.name) or _RUNTIME_THREAD.match(unit.name)
    )


def _orphans(c: Causality) -> list[Finding]:
    trace, graph = c.trace, c.graph
    ev = trace.events
    if not trace.units or not len(ev):
        return []
    n_units = len(trace.units)
    touched = np.zeros(n_units, dtype=bool)
    for col in (graph.src, graph.dst):
        ends = ev.unit[col]
        touched[ends[ends >= 0]] = True
    spawned = np.zeros(n_units, dtype=bool)
    sp = graph.dst[graph.kind == EdgeKind.SPAWN]
    spawned[ev.unit[sp][ev.unit[sp] >= 0]] = True
    has_unit = ev.unit >= 0
    units_col = ev.unit[has_unit]
    n_events = np.bincount(units_col, minlength=n_units)
    doing = has_unit & ~np.isin(ev.kind, _BOOKKEEPING)
    does_something = np.bincount(ev.unit[doing], minlength=n_units) > 0
    first = np.full(n_units, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, units_col, ev.time[has_unit])
    # A unit.start naming its creator is a parent link too.
    starts = np.flatnonzero((ev.kind == K.UNIT_START) & (ev.arg != 0) & has_unit)
    named_parent = np.zeros(n_units, dtype=bool)
    named_parent[ev.unit[starts]] = True
    # Any shared resource is an interaction, even one that drew no edge (a wait on a join
    # resource, a lock taken by two units): such a unit is not "clearly" orphaned.
    shares = np.zeros(n_units, dtype=bool)
    on_res = np.flatnonzero(has_unit & (ev.res >= 0))
    pairs = np.unique(np.stack([ev.res[on_res], ev.unit[on_res]]), axis=1)
    users = np.bincount(pairs[0], minlength=len(trace.resources)) if pairs.size else pairs[0]
    hop_or_join = np.isin(trace.resource_kind, ["rpc", "message", "spawn", "join", "future"])
    if pairs.size:
        shared = (users[pairs[0]] > 1) | hop_or_join[pairs[0]]
        shares[pairs[1][shared]] = True
    for r in trace.resources:
        if r.unit >= 0:
            shares[r.unit] = True  # someone may wait for it to end
    creators = set(ev.unit[(ev.kind == K.UNIT_CREATE) & has_unit].tolist())
    by_proc: dict[int, list[int]] = {}
    for unit in trace.units:
        if unit.parent == NO_INDEX and not named_parent[unit.index] and n_events[unit.index]:
            by_proc.setdefault(unit.proc, []).append(unit.index)
    out: list[Finding] = []
    for proc, parentless in sorted(by_proc.items()):
        runtime_own = runtime_units(trace, proc)  # a Go runtime's goroutines: no creator shown
        # The root is the first parentless unit that created others; without one the
        # process has no tree to be orphaned from, and nothing is said.
        roots = sorted((int(first[u]), u) for u in parentless if u in creators)
        if not roots:
            continue
        # Named as the root: the main thread if there is one (the JVM's Signal Dispatcher
        # creates threads too, and is no tree of the program's).
        mains = sorted((int(first[u]), u) for u in parentless if _born_of_runtime(trace, u))
        mains = [m for m in mains if _MAIN_THREAD.match(trace.units[m[1]].name)]
        root = (mains or roots)[0][1]
        for u in parentless:
            if (
                u != root
                and u not in creators  # the root of a tree of its own
                and does_something[u]
                and not _born_of_runtime(trace, u)
                and u not in runtime_own
                and trace.units[u].kind not in ("unknown", "span")
                and not (touched[u] or spawned[u] or shares[u])
            ):
                out.append(_orphan_finding(trace, u, root, int(n_events[u])))
    return out


def _orphan_finding(trace: Trace, u: int, root: int, n_events: int) -> Finding:
    unit = trace.units[u]
    p = trace.processes[unit.proc]
    where = trace.locations[unit.loc].where() if unit.loc >= 0 else ""
    return Finding(
        kind="orphan-unit",
        severity="info",
        summary=(
            f"orphan-unit: {unit.kind} '{unit.name}' in {p.label()} has no known parent "
            "and no happens-before link to any other unit"
        ),
        identity=(
            f"service|{p.service}",
            f"unit|{unit.kind}|{_DIGITS.sub('N', unit.name)}",
            f"where|{where}",
        ),
        units=(unit_ref(trace, u),),
        explanation=(
            f"{unit_label(trace, u)} has no parent: its record names none and its "
            "unit.start names no creator, and no unit.create in the trace names it",
            f"the process has a root, {unit_label(trace, root)}, which it is not",
            f"none of its {plural(n_events, 'event')} is ordered against another unit "
            "(no lock hand-off, queue item, notify, join or request)",
            "its events can be placed against the rest only by timestamps: findings "
            "about it rest on time alone (created by a library the agent does not hook?)",
        ),
    )
