"""The per-hop and per-recording checks of the gate: hop table and trace in, problems out.

Per hop (rows of ``causality.hops.match``; nothing here uses timestamps):

- **dropped-context**: a request or message that left with trace context and whose
  receiver got none (it started a new trace), paired without time by the function
  ``analyze`` uses (``causality.hops.dropped_context``): the client's method, path and
  peer against the server process's method and path, the listener at the peer *proven*
  by linked requests from the same client process, else the only process that received
  that method and path without context; a message by its (protocol, destination) and the
  one consumer service that received such messages without context, or by a link made
  only through the message id. Ambiguity is never guessed away: the row is then a
  missing-span. The problem names both ends (service, runtime, library) and lists the
  client's trace and the new traces the receiver started. The reverse too: a request
  that left with no context and arrived with some (a sidecar or an uninstrumented client
  library injected it), paired the same way.
- **missing-span**: a request or message that carried context and whose other side is
  not in the recording at all (not traced, or its events lost). A request whose client
  recorded an error (``rpc.response`` -1) and that no server received is a failed call
  (``failed-to-connect``: a refused connection, a retry before the server listens), not
  evidence that a receiver is missing, and is not reported.
- **broken-link**: a receiver whose parent span is in no loaded process while other parts
  of its trace, not downstream of it, are: a span in the middle is missing. A receiver
  whose whole trace is downstream of it was called from outside the recording (a browser,
  a load generator, ``--replay-against``) and is an entry, not a problem.

Per recording: unreadable or damaged files, the agents' drops and faults (the findings of
``analysis/agent_health.py``, same ids), and units that events name but no record defines.
A torn end of a file whose writer is still alive is work in progress, not damage
(``live_segments.py``).

Trade-off: dictionaries over the hop rows (one per request, not per event), which keeps a
50,000-span check well under the time it takes to load the spans.
"""

from __future__ import annotations

import os
import re
from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from willowisp.analysis import agent_health
from willowisp.analysis.finding import finding_id
from willowisp.causality.hops import HopKind, Hops, dropped_context
from willowisp.causality.provenance import Provenance, Unlinked, attr_str, header_format
from willowisp.ingest.tables import Resource
from willowisp.ingest.trace import Trace
from willowisp.validate.problems import Hop, Problem
from willowisp.validate.trace_index import TraceIndex

DESTINATION = "destination"


def hop_of(trace: Trace, client: int, server: int) -> Hop:
    """Name a hop from its client and/or server resource (-1 for a side not recorded)."""
    res = trace.resources
    c = res[client] if client >= 0 else None
    s = res[server] if server >= 0 else None
    one = c if c is not None else s
    if one is None:
        raise ValueError("a hop needs at least one side")
    protocol = (c.protocol if c is not None else "") or (s.protocol if s is not None else "")
    where = file = ""
    if c is not None:
        e = int(trace.first_located_event[client])
        loc = int(trace.events.loc[e]) if e >= 0 else -1
        if loc >= 0:
            where, file = trace.locations[loc].where(), trace.locations[loc].file
    fs, fr, fl = _end(trace, c)
    ts, tr, tl = _end(trace, s)
    return Hop(protocol or "unknown", _what(one), fs, fr, fl, ts, tr, tl, where, file)


def _end(trace: Trace, r: Resource | None) -> tuple[str, str, str]:
    """service, runtime, library of one side ('' each when it is not recorded)."""
    if r is None:
        return "", "", ""
    p = trace.processes[r.proc]
    return p.service or "?", p.runtime, r.library


def _what(r: Resource) -> str:
    if r.kind == "message":
        return attr_str(r, DESTINATION) or r.target or r.name
    if r.kind == "spawn" or not (r.method or r.target):
        return r.name
    return f"{r.method} {r.target.split('?', 1)[0]}".strip()


@dataclass
class _Acc:
    """Rows of one problem while the rows are walked."""

    kind: str
    hop: Hop
    identity: tuple[str, ...]
    traces: set[str] = field(default_factory=set)
    detail: tuple[str, ...] = ()
    summary: str = ""
    count: int = 0


def check_hops(
    trace: Trace,
    hops: Hops,
    index: TraceIndex,
    known_parents: frozenset[tuple[str, str]],
    named: dict[int, Hop] | None = None,
) -> list[Problem]:
    """Problems of every hop row (see the module doc). ``known_parents``: (trace id, span
    id) pairs of callers outside the recording that are expected (``--replay-against``).
    ``named``, when given, receives client resource -> the hop as paired here, for rows
    whose receiver was found although the context was lost (contracts name it so)."""
    res = trace.resources
    procs = trace.processes
    kinds, reasons = hops.kind.tolist(), hops.reason.tolist()
    clients, servers = hops.client.tolist(), hops.server.tolist()
    provenance = hops.provenance.tolist()
    # Consumers that got neither context nor id, by (protocol, destination).
    bare_consumers: dict[tuple[str, str], list[int]] = {}
    for row, reason in enumerate(reasons):
        s = servers[row]
        if s >= 0 and kinds[row] == HopKind.MESSAGE and reason == Unlinked.NO_CONTEXT_AND_NO_ID:
            r = res[s]
            bare_consumers.setdefault((r.protocol, attr_str(r, DESTINATION)), []).append(row)
    acc: dict[str, _Acc] = {}
    graph: _TraceGraph | None = None

    def tid(r: int) -> str:
        return index.ids[int(index.of_resource[r])] if r >= 0 and index.of_resource[r] >= 0 else ""

    def add(kind: str, hop: Hop, identity: tuple[str, ...], traces: Iterable[str]) -> _Acc:
        pid = finding_id(kind, identity)
        a = acc.setdefault(pid, _Acc(kind, hop, identity))
        a.traces.update(t for t in traces if t)
        a.count += 1
        return a

    ident: tuple[str, ...]
    # Requests whose context was lost (or gained) on the way, paired as analyze pairs them.
    ambiguous: set[int] = set()
    explained: set[int] = set()  # receivers a reverse drop explains
    paired: set[int] = set()  # senders a forward drop found the receivers of
    for drop in dropped_context(trace, hops, known_parents, ambiguous):
        first = drop.client_rows[0]
        srows = sorted(drop.server_rows)
        hop = hop_of(trace, clients[first], servers[srows[0]])
        cr = res[clients[first]]
        what = f"{drop.method} {drop.path}".strip()
        ident = (
            f"direction|{'sent' if drop.sent_context else 'received'}",
            f"client|{drop.client_service}",
            f"server|{drop.server_service}",
            f"request|{what}",
        )
        traces = [tid(servers[x]) for x in srows]
        if not drop.sent_context:
            explained.update(srows)
            a = add("dropped-context", hop, ident, traces)
            a.summary = f"{hop.label()}: arrived with trace context the caller did not send"
            a.detail = (
                f"{hop.from_service} ({hop.from_runtime}, {hop.from_library}) sent {what} and "
                "recorded no trace context for it",
                f"{hop.to_service} received it as a child of a span no loaded process has",
                "something between them injected context the caller does not show (a proxy "
                "or sidecar starting its own spans, or an uninstrumented client library)",
            )
            continue
        paired.update(drop.client_rows)
        a = add(
            "dropped-context", hop, ident, [*(tid(clients[x]) for x in drop.client_rows), *traces]
        )
        if named is not None:
            named.update((clients[x], hop) for x in drop.client_rows)
        how = (
            f"linked requests from {hop.from_service} to {cr.peer} were answered by "
            f"{hop.to_service}, so {hop.to_service} listens there"
            if drop.proven
            else f"{hop.to_service} is the only traced process that received {what} without context"
        )
        a.summary = f"{hop.label()}: trace context sent, not received"
        a.detail = (
            f"{hop.from_service} ({hop.from_runtime}, {hop.from_library}) sent {what} "
            f"with a {header_format(cr)}" + (f" at {hop.where}" if hop.where else ""),
            f"{hop.to_service} ({hop.to_runtime}, {hop.to_library}) received it with "
            "no trace context and started a new trace",
            "something between them dropped the header (a proxy, a header filter, "
            "or a client rewriting its request after the context was put on it)",
            f"the hop is identified without timestamps: {how}",
        )

    for row, reason in enumerate(reasons):
        kind, c, s = kinds[row], clients[row], servers[row]
        if kind == HopKind.RPC and reason == Unlinked.NO_SERVER_SIDE and row not in paired:
            cr = res[c]
            hop = hop_of(trace, c, -1)
            ident = (
                f"client|{procs[cr.proc].service}",
                f"protocol|{hop.protocol}",
                f"request|{hop.what}",
                "missing|server",
            )
            a = add("missing-span", hop, ident, [tid(c)])
            a.summary = (
                f"{hop.label()}: sent with trace context to {cr.peer or 'its peer'}; "
                "the receiver is not in the recording"
            )
            a.detail = (
                "the receiving service is not traced, or its events were lost"
                + (" (several processes could be it: not guessed)" if row in ambiguous else ""),
            )
        elif kind == HopKind.MESSAGE and reason == Unlinked.NO_CONSUMER:
            pr = res[c]
            dest = attr_str(pr, DESTINATION)
            bare = bare_consumers.get((pr.protocol, dest), [])
            consumer_services = {procs[res[servers[x]].proc].service for x in bare}
            if pr.trace_id and len(consumer_services) == 1:
                hop = hop_of(trace, c, servers[bare[0]])
                ident = (
                    "direction|sent",
                    f"producer|{procs[pr.proc].service}",
                    f"consumer|{hop.to_service}",
                    f"message|{pr.protocol} {dest}",
                )
                a = add("dropped-context", hop, ident, [tid(c), *(tid(servers[x]) for x in bare)])
                if named is not None:
                    named[c] = hop
                a.summary = f"{hop.label()}: trace context sent with the message, not received"
                a.detail = (
                    f"{hop.from_service} published to {dest} with trace context",
                    f"{hop.to_service} ({hop.to_runtime}, {hop.to_library}) received messages "
                    f"from {dest} with neither context nor a message id",
                )
            else:
                hop = hop_of(trace, c, -1)
                ident = (f"producer|{procs[pr.proc].service}", f"message|{pr.protocol} {dest}")
                a = add("missing-span", hop, ident, [tid(c)])
                a.summary = f"{hop.label()}: no consumer of the message is in the recording"
                a.detail = ("still queued, its consumer not traced, or its id lost on a retry",)
        elif (
            kind == HopKind.MESSAGE
            and reason == Unlinked.LINKED
            and provenance[row] == Provenance.MESSAGE_ID
            and res[c].trace_id
            and not res[s].parent_span_id
        ):
            hop = hop_of(trace, c, s)
            ident = (
                "direction|sent",
                f"producer|{hop.from_service}",
                f"consumer|{hop.to_service}",
                f"message|{hop.protocol} {hop.what}",
            )
            a = add("dropped-context", hop, ident, [tid(c), tid(s)])
            a.summary = f"{hop.label()}: linked only by message id; the trace context was lost"
            a.detail = ("the producer put trace context on the message; the consumer got none",)
        elif reason in (Unlinked.NO_CLIENT_SIDE, Unlinked.NO_PRODUCER) and s >= 0:
            sr = res[s]
            if row in explained or (sr.trace_id, sr.parent_span_id) in known_parents:
                continue
            if graph is None:
                graph = _TraceGraph(trace, hops, index)
            t = int(index.of_resource[s])
            if t < 0 or not graph.upstream_elsewhere(t, sr.proc):
                continue  # called from outside the recording: an entry
            hop = hop_of(trace, -1, s)
            ident = (
                f"server|{procs[sr.proc].service}",
                f"protocol|{hop.protocol}",
                f"request|{hop.what}",
                "missing|parent",
            )
            a = add("broken-link", hop, ident, [tid(s)])
            a.summary = (
                f"{hop.label()}: received with a parent span that is not in the recording, "
                "while the rest of its trace is"
            )
            a.detail = (
                f"{hop.to_service} ({hop.to_runtime}, {hop.to_library}) received {hop.what} "
                f"as a child of span {sr.parent_span_id}",
                "no loaded process sent it: a process missing from the run, a proxy's own "
                "span, or a lost chunk",
            )
    return [
        Problem(pid, a.kind, a.summary, tuple(sorted(a.traces)), a.hop, a.detail)
        for pid, a in sorted(acc.items())
    ]


class _TraceGraph:
    """Per trace: the processes that sent something in it, and its linked hops as process
    edges; built once, on the first receiver that needs it."""

    def __init__(self, trace: Trace, hops: Hops, index: TraceIndex) -> None:
        res = trace.resources
        self.senders: dict[int, set[int]] = {}
        self.edges: dict[int, dict[int, set[int]]] = {}
        linked = hops.linked.tolist()
        for row, (c, s) in enumerate(zip(hops.client.tolist(), hops.server.tolist(), strict=True)):
            t = int(index.of_resource[c]) if c >= 0 else -1
            if t < 0:
                continue
            self.senders.setdefault(t, set()).add(res[c].proc)
            if linked[row] and s >= 0:
                self.edges.setdefault(t, {}).setdefault(res[c].proc, set()).add(res[s].proc)

    def upstream_elsewhere(self, t: int, proc: int) -> bool:
        """Does trace ``t`` have a sender in a process that ``proc`` does not reach through
        the trace's linked hops? Then the receiver's caller should have been recorded."""
        edges = self.edges.get(t, {})
        reached, frontier = {proc}, [proc]
        while frontier:
            for q in edges.get(frontier.pop(), ()):
                if q not in reached:
                    reached.add(q)
                    frontier.append(q)
        return bool(self.senders.get(t, set()) - reached)


# -- the recording as a whole -----------------------------------------------------------


# A segment's name, <service>-<pid>-<process id prefix>-<n>.wtrace, and an embedded
# stream's suffix " (embedded stream N, FORMAT)": what changes from run to run
_SEGMENT = re.compile(r"-\d+-[0-9a-f]{8}-\d+\.wtrace")
_STREAM = re.compile(r"\(embedded stream \d+, ")


def stable_file_key(name: str) -> str:
    """What an unreadable file's finding id is made of: its name without the pid, process
    id, segment and stream numbers (``ledger.wtrace (embedded stream, go-exectrace)``), so
    a baseline can accept the same damage of the same service in every run."""
    return _STREAM.sub("(embedded stream, ", _SEGMENT.sub(".wtrace", name))


def check_recording(trace: Trace, in_progress: Container[str] = ()) -> list[Problem]:
    """Unreadable, damaged or cut-short files, agent drops and faults, units no record
    defines. ``in_progress``: paths (files, embedded streams) whose torn end a live writer
    explains (``live_segments``): not problems."""
    out: list[Problem] = []
    for bad in trace.unreadable:
        if bad.path in in_progress:
            continue
        name = os.path.basename(bad.path.rstrip("/")) or bad.path
        what = "damaged (its good chunks were used)" if bad.partial else "unreadable"
        out.append(
            Problem(
                finding_id("unreadable-file", (f"file|{stable_file_key(name)}",)),
                "unreadable-file",
                f"{bad.path}: {what}: {bad.message}",
                detail=(bad.message,),
                file=bad.path,
            )
        )
    for rep in trace.files:
        if not rep.truncated or rep.path in in_progress:
            continue
        # A torn last chunk is data lost (the writer was killed mid-write): analyze keeps
        # the complete chunks and notes it, but a gate that vouches for whole traces fails.
        name = os.path.basename(rep.path)
        out.append(
            Problem(
                finding_id("unreadable-file", (f"file|{stable_file_key(name)}", "truncated")),
                "unreadable-file",
                f"{rep.path}: cut short, its last chunk lost: {rep.truncated}; "
                "the complete chunks before it were checked",
                detail=(rep.truncated,),
                file=rep.path,
            )
        )
    for f in agent_health.find(trace):
        out.append(
            Problem(f.id, f.kind, f.summary.partition(": ")[2] or f.summary, detail=f.explanation)
        )
    unknown: dict[int, int] = {}
    for u in trace.units:
        if u.kind == "unknown":
            unknown[u.proc] = unknown.get(u.proc, 0) + 1
    for p, n in sorted(unknown.items()):
        proc = trace.processes[p]
        out.append(
            Problem(
                finding_id("missing-unit", (f"service|{proc.service}",)),
                "missing-unit",
                f"{proc.label()}: events name {n} unit(s) that no record defines",
                detail=("a lost or damaged chunk, or records the agent dropped",),
            )
        )
    return out
