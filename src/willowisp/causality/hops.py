"""Hops: matching the two sides of each cross-process interaction through propagated context.

A client writes one ``rpc`` (or ``message``) resource per request carrying the trace id and
the span id it injected on the wire; the server writes one per request received carrying the
extracted trace id and that span id as ``parent_span_id``. A child process's ``proc.start``
resource carries the ``parent_span_id`` its parent's ``proc.spawn`` resource put in
TRACEPARENT. Sides are matched on ``(trace_id, client span_id == server parent_span_id)``
and nothing else: timestamps, peers and ports are never evidence of a link. What cannot be
matched stays in the table, unlinked, with the reason (a client whose call ended in an
error, with no server side, is a failed call rather than a missing receiver). One-way
``message`` resources are matched by :mod:`willowisp.causality.messages` (span id, else
message id); every row says how it was linked and how surely
(:mod:`willowisp.causality.provenance`).

Rows whose context was dropped on the way (the client sent context, the server got none, or
the reverse) are unlinked by that rule, but :func:`dropped_context` puts their two sides
together per hop by what identifies a hop without time (method, path, proven listener);
the ``dropped-context`` finding and the hop groups both read that one pairing.

The table is columnar (one row per request, linked or not) because a busy service makes
tens of thousands of requests; the matching itself is a dictionary pass over the rpc
resources, which is per request, not per event. The four events of a request/reply hop
(send, recv, reply, response) are found for all resources at once with ``np.unique``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from willowisp.causality.clock_domains import group_processes
from willowisp.causality.messages import DESTINATION, match_messages
from willowisp.causality.provenance import (
    CERTAIN,
    DEFAULT_HEADER,
    Provenance,
    Unlinked,
    attr_str,
    header_format,
)
from willowisp.ingest.tables import NO_INDEX, Resource
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

__all__ = [
    "EdgeWhich",
    "HopEdges",
    "HopGroup",
    "HopKind",
    "Hops",
    "Side",
    "Unlinked",
    "first_event_of",
    "hop_edge_columns",
    "hop_edges",
    "match",
    "summarize",
]

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F32 = npt.NDArray[np.float32]


SPAN_END_CONFIDENCE = 0.5  # see Hops.reply_confidence


class HopKind(enum.IntEnum):
    RPC = 1  # a request and its reply
    MESSAGE = 2  # a one-way message
    SPAWN = 3  # a child process started with the parent's context


@dataclass(frozen=True, slots=True)
class Hops:
    """One row per request, message or spawn. Event and resource columns: NO_INDEX if absent.

    For SPAWN rows ``send`` is the ``proc.spawn`` and ``recv`` the child's ``proc.start``.
    For MESSAGE rows the client is the producer and the server the consumer; one row per
    delivery, so a producer whose message several consumers received has several rows.
    """

    kind: npt.NDArray[np.uint8]
    reason: npt.NDArray[np.uint8]  # Unlinked
    client: I32  # client-side resource
    server: I32  # server-side resource
    # How the two sides were linked (Provenance; NONE when unlinked) and how surely:
    # 1.0 for an exact identifier, below 1 for a message id reused in the trace, 0.0 unlinked.
    provenance: npt.NDArray[np.uint8]
    confidence: F32
    # Whether the reply edge is known: LINKED, or REPLY_UNATTRIBUTED when the client's unit
    # received a reply it could not tie to one of its requests (multiplexed connection).
    reply_reason: npt.NDArray[np.uint8]
    send: I64
    recv: I64
    reply: I64
    response: I64
    # How surely the reply edge (reply -> response) holds, when it is less sure than the
    # link itself: an imported server span's reply is placed at the span's end, but a server
    # may end its span after the client already has the answer (None: as ``confidence``).
    reply_confidence: F32 | None = None

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def linked(self) -> npt.NDArray[np.bool_]:
        linked: npt.NDArray[np.bool_] = self.reason == Unlinked.LINKED
        return linked

    def server_of_client(self) -> dict[int, int]:
        """Client resource -> row, for linked rows (what a waiting client waits for)."""
        rows = np.flatnonzero(self.linked & (self.client >= 0))
        return dict(zip(self.client[rows].tolist(), rows.tolist(), strict=True))


def first_event_of(trace: Trace, kind: int) -> I64:
    """Per resource: the index of its first event of ``kind``, NO_INDEX if none."""
    ev = trace.events
    out = np.full(len(trace.resources), NO_INDEX, dtype=np.int64)
    idx = np.flatnonzero((ev.kind == kind) & (ev.res >= 0))
    if len(idx):
        res, first = np.unique(ev.res[idx], return_index=True)
        out[res] = idx[first]
    return out


def match(trace: Trace) -> Hops:
    """Pair client and server sides (see the module doc; messages: causality/messages.py)."""
    send, recv = first_event_of(trace, K.MSG_SEND), first_event_of(trace, K.MSG_RECV)
    reply, resp = first_event_of(trace, K.RPC_REPLY), first_event_of(trace, K.RPC_RESPONSE)
    spawn, start = first_event_of(trace, K.PROC_SPAWN), first_event_of(trace, K.PROC_START)
    # kind, reason, client, server, provenance; confidence beside it (a float)
    rows: list[tuple[int, int, int, int, int]] = []
    confidence: list[float] = []

    def add(kind: int, reason: Unlinked, c: int, s: int, prov: Provenance, conf: float) -> None:
        rows.append((kind, reason, c, s, prov))
        confidence.append(conf)

    servers: dict[tuple[str, str], list[int]] = {}
    is_client = (spawn >= 0) | (send >= 0) | (resp >= 0)
    is_server = ~is_client & ((start >= 0) | (recv >= 0) | (reply >= 0))
    is_message = np.isin(trace.resource_kind, ["message"]) & (spawn < 0) & (start < 0)
    is_start = (start >= 0).tolist()
    clients = np.flatnonzero(is_client & ~is_message).tolist()
    for i in np.flatnonzero(is_server & ~is_message).tolist():
        r = trace.resources[i]
        if r.trace_id and r.parent_span_id:
            servers.setdefault((r.trace_id, r.parent_span_id), []).append(i)
        else:
            kind = _kind(r.kind, is_start[i])
            add(kind, Unlinked.NO_TRACEPARENT, NO_INDEX, i, Provenance.NONE, 0.0)
    is_spawn = (spawn >= 0).tolist()
    failed = _failed_calls(trace, resp)
    for c in clients:
        cres = trace.resources[c]
        kind = _kind(cres.kind, is_spawn[c])
        if not (cres.trace_id and cres.span_id):
            add(kind, Unlinked.NO_CONTEXT, c, NO_INDEX, Provenance.NONE, 0.0)
            continue
        waiting = servers.get((cres.trace_id, cres.span_id))
        if waiting:
            add(kind, Unlinked.LINKED, c, waiting.pop(0), Provenance.WIRE_HEADER, CERTAIN)
        elif kind == HopKind.RPC and failed[c]:
            add(kind, Unlinked.FAILED_TO_CONNECT, c, NO_INDEX, Provenance.NONE, 0.0)
        else:
            add(kind, Unlinked.NO_SERVER_SIDE, c, NO_INDEX, Provenance.NONE, 0.0)
    for left in servers.values():
        for s in left:
            sres = trace.resources[s]
            kind = _kind(sres.kind, is_start[s])
            why = (
                Unlinked.CALLER_NOT_SAMPLED
                if ("caller_sampled", 0) in sres.attrs
                else Unlinked.NO_CLIENT_SIDE
            )
            add(kind, why, NO_INDEX, s, Provenance.NONE, 0.0)
    producers = np.flatnonzero(is_message & (send >= 0)).tolist()
    consumers = np.flatnonzero(is_message & (send < 0) & (recv >= 0)).tolist()
    for m in match_messages(trace, producers, consumers):
        add(HopKind.MESSAGE, m.reason, m.producer, m.consumer, m.provenance, m.confidence)
    table = np.array(rows, dtype=np.int64).reshape(-1, 5)
    client, server = table[:, 2], table[:, 3]
    spawn_row = table[:, 0] == HopKind.SPAWN
    rpc_row = table[:, 0] == HopKind.RPC

    def pick(col: I64, res: I64) -> I64:
        return np.where(res >= 0, col[np.maximum(res, 0)], NO_INDEX) if len(col) else res

    send_ev, response = pick(send, client), pick(resp, client)
    unknown_reply = rpc_row & (send_ev >= 0) & (response < 0) & _unattributed(trace, send_ev)
    return Hops(
        kind=table[:, 0].astype(np.uint8),
        reason=table[:, 1].astype(np.uint8),
        client=client.astype(np.int32),
        server=server.astype(np.int32),
        provenance=table[:, 4].astype(np.uint8),
        confidence=np.asarray(confidence, dtype=np.float32),
        reply_reason=np.where(unknown_reply, Unlinked.REPLY_UNATTRIBUTED, Unlinked.LINKED).astype(
            np.uint8
        ),
        send=np.where(spawn_row, pick(spawn, client), send_ev),
        recv=np.where(spawn_row, pick(start, server), pick(recv, server)),
        reply=np.where(spawn_row, NO_INDEX, pick(reply, server)),
        response=np.where(spawn_row, NO_INDEX, response),
        reply_confidence=_reply_confidence(trace, server, np.asarray(confidence, np.float32)),
    )


def _failed_calls(trace: Trace, resp: I64) -> list[bool]:
    """Per resource: did its call end in an error (an ``rpc.response`` status below 0)?

    With no server side, such a call is a failed call (FAILED_TO_CONNECT), not a receiver
    missing from the recording: a refused or unresolved connection sends nothing. A call
    with no ``rpc.response`` at all (still waiting, or its process killed) proves nothing
    either way and stays NO_SERVER_SIDE.
    """
    answered = resp >= 0
    status = trace.events.arg[np.maximum(resp, 0)] if len(trace.events) else resp
    failed: list[bool] = (answered & (status < 0)).tolist()
    return failed


def _reply_confidence(trace: Trace, server: I64, confidence: F32) -> F32 | None:
    """Rows whose server side says its reply time is only its span's end (imported spans,
    ``reply_at=span-end``) get a reply edge below certainty: it orders, it does not bound
    clocks."""
    out: F32 | None = None
    for row, s in enumerate(server.tolist()):
        if s >= 0 and ("reply_at", "span-end") in trace.resources[s].attrs:
            if out is None:
                out = confidence.copy()
            out[row] = min(float(out[row]), SPAN_END_CONFIDENCE)
    return out


def _unattributed(trace: Trace, send: I64) -> npt.NDArray[np.bool_]:
    """Per request row: did the sending unit receive a reply naming no request after it?

    An agent that sees a reply on a multiplexed connection but cannot tell which of the
    unit's outstanding requests it answers writes ``rpc.response`` with no resource. The
    requests of that unit still waiting for their own ``rpc.response`` then have a reply
    that may be that one: unknown, not "no reply".
    """
    ev = trace.events
    out = np.zeros(len(send), dtype=bool)
    loose = np.flatnonzero((ev.kind == K.RPC_RESPONSE) & (ev.res < 0))
    if not len(loose) or not len(send):
        return out
    # The last loose reply per unit: any request sent before it may be the one it answers.
    units, last = np.unique(ev.unit[loose][::-1], return_index=True)
    last_ev = loose[::-1][last]
    has = send >= 0
    sender = ev.unit[np.maximum(send, 0)]
    at = np.clip(np.searchsorted(units, sender), 0, len(units) - 1)
    out = has & (units[at] == sender) & (last_ev[at] > send)
    return np.asarray(out, dtype=bool)


def _kind(resource_kind: str, spawn: bool) -> int:
    if spawn or resource_kind == "spawn":
        return HopKind.SPAWN
    return HopKind.RPC if resource_kind == "rpc" else HopKind.MESSAGE


class EdgeWhich(enum.IntEnum):
    """Which of a hop's edges (``hop_edges``' third column)."""

    REQUEST = 0  # client msg.send -> server msg.recv
    REPLY = 1  # server rpc.reply -> client rpc.response
    SPAWN = 2  # proc.spawn -> proc.start
    MESSAGE = 3  # producer msg.send -> consumer msg.recv


@dataclass(frozen=True, slots=True)
class HopEdges:
    """Cross-process happens-before edges of linked rows, with their evidence."""

    src: I64
    dst: I64
    which: npt.NDArray[np.uint8]  # EdgeWhich
    provenance: npt.NDArray[np.uint8]  # Provenance of the row the edge comes from
    confidence: F32

    # Reply edges of certain links whose reply time is only a span's end (imported spans):
    # not facts, but hints for placing an offset the facts bound on one side only
    span_end: npt.NDArray[np.bool_] | None = None

    @property
    def certain(self) -> npt.NDArray[np.bool_]:
        """Edges that may be used as facts (clock alignment): confidence 1.0."""
        certain: npt.NDArray[np.bool_] = self.confidence >= CERTAIN
        return certain

    @property
    def hints(self) -> npt.NDArray[np.bool_]:
        """Edges clock alignment may use as hints, not facts (see ``span_end``)."""
        if self.span_end is None:
            return np.zeros(len(self.src), dtype=np.bool_)
        return self.span_end


def hop_edge_columns(hops: Hops) -> HopEdges:
    """The edges of linked rows that have both events: a request (or message, or spawn) row
    gives send -> recv, a request whose reply was received also reply -> response."""
    req = (hops.send >= 0) & (hops.recv >= 0) & hops.linked
    rep = (hops.reply >= 0) & (hops.response >= 0) & hops.linked
    kind_req = hops.kind[req]
    which_req = np.where(
        kind_req == HopKind.SPAWN,
        EdgeWhich.SPAWN,
        np.where(kind_req == HopKind.MESSAGE, EdgeWhich.MESSAGE, EdgeWhich.REQUEST),
    )
    span_end = None
    if hops.reply_confidence is not None:
        lowered = (hops.confidence[rep] >= CERTAIN) & (hops.reply_confidence[rep] < CERTAIN)
        span_end = np.concatenate([np.zeros(int(req.sum()), dtype=np.bool_), lowered])
    return HopEdges(
        span_end=span_end,
        src=np.concatenate([hops.send[req], hops.reply[rep]]).astype(np.int64),
        dst=np.concatenate([hops.recv[req], hops.response[rep]]).astype(np.int64),
        which=np.concatenate([which_req, np.full(int(rep.sum()), EdgeWhich.REPLY)]).astype(
            np.uint8
        ),
        provenance=np.concatenate([hops.provenance[req], hops.provenance[rep]]).astype(np.uint8),
        confidence=np.concatenate(
            [
                hops.confidence[req],
                (hops.reply_confidence if hops.reply_confidence is not None else hops.confidence)[
                    rep
                ],
            ]
        ).astype(np.float32),
    )


def hop_edges(hops: Hops) -> tuple[I64, I64, npt.NDArray[np.uint8]]:
    """(src event, dst event, which) of :func:`hop_edge_columns`; ``which`` is EdgeWhich:
    0 request, 1 reply, 2 spawn, 3 message."""
    e = hop_edge_columns(hops)
    return e.src, e.dst, e.which


# -- the contract's ``hops`` section -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Side:
    """One end of a hop group; service and runtime are None when that side is not traced."""

    service: str | None
    runtime: str | None
    peer: str | None = None  # host:port the client called, when the server is unknown
    destination: str | None = None  # the queue or topic, when a message's other end is unknown


@dataclass(frozen=True, slots=True)
class HopGroup:
    """Requests (or messages, or spawns) between two services over one protocol."""

    source: Side
    target: Side
    protocol: str
    libraries: tuple[str, ...]  # client (producer) side's, then server (consumer) side's
    count: int
    linked: int
    provenance: dict[str, int]  # how links were established: {"traceparent": n, "message-id": m}
    unlinked: dict[str, int]  # reason -> rows (and reply-unattributed -> linked requests)
    # rpc: send -> response on the client's own clock; message: send -> receive, only for
    # deliveries whose two ends share a clock domain (never a cross-domain raw difference).
    latency_p50_ns: int | None
    latency_p99_ns: int | None
    # Links made with confidence below 1, by why: {"message-id-reused": n}.
    low_confidence: dict[str, int] = field(default_factory=dict)
    # Linked deliveries whose latency is not reported: their ends are in different clock
    # domains, and alignment cannot make a one-way latency exact.
    latency_omitted: int = 0


# -- dropped context: pairing the unlinked halves of one hop ---------------------------------

DROPPED_CONTEXT = "dropped-context"  # the hop groups' reason for rows paired below


@dataclass
class ContextDrop:
    """The unlinked rows of one hop whose context was lost between its sides, both sides."""

    sent_context: bool  # True: the client sent context, the server got none; else the reverse
    client_service: str
    server_service: str
    method: str
    path: str
    client_rows: list[int] = field(default_factory=list)
    server_rows: set[int] = field(default_factory=set)
    server_proc: int = -1
    peers: set[str] = field(default_factory=set)
    proven: bool = False  # the listener at the peer is known from linked requests

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.client_service, self.server_service, self.method, self.path)


def request_path(target: str) -> str:
    """The path alone: no scheme, host, port or query (they vary between runs)."""
    if "://" in target:
        return urlsplit(target).path or "/"
    return target.split("?", 1)[0].split("#", 1)[0]


def dropped_context(
    trace: Trace,
    hops: Hops,
    known_parents: frozenset[tuple[str, str]] = frozenset(),
    ambiguous: set[int] | None = None,
) -> list[ContextDrop]:
    """The hops whose requests lost (or gained) their context between client and server.

    Forward: client rows that sent context and found no server side (NO_SERVER_SIDE) with
    server rows that got none (NO_TRACEPARENT); reverse: client rows with no context
    (NO_CONTEXT) with server rows whose parent span no loaded process has (NO_CLIENT_SIDE).
    The halves are matched by the client's method, path and peer and the server's method
    and path, never by time. Who listens at the peer is proven by linked requests of the
    same client process to it; failing that the server must be the only process that got
    that method and path unlinked, else nothing is paired (ambiguity is not guessed away:
    ``ambiguous``, when given, receives those client rows). Server rows whose (trace id,
    parent span id) is in ``known_parents`` (callers expected outside the recording:
    ``validate --replay-against``) are paired with nothing. Sorted by direction (forward
    first), then key. ``willowisp analyze`` and ``validate`` both pair with this."""
    res = trace.resources
    reasons, kinds = hops.reason.tolist(), hops.kind.tolist()
    clients, servers = hops.client.tolist(), hops.server.tolist()
    owner: dict[tuple[int, str], set[int]] = {}  # (client process, peer) -> listeners
    for row in np.flatnonzero(hops.linked).tolist():
        if kinds[row] != HopKind.SPAWN and res[clients[row]].peer:
            peer_key = (res[clients[row]].proc, res[clients[row]].peer)
            owner.setdefault(peer_key, set()).add(res[servers[row]].proc)
    out: list[ContextDrop] = []
    for sent_context, client_reason, server_reason in (
        (True, Unlinked.NO_SERVER_SIDE, Unlinked.NO_TRACEPARENT),
        (False, Unlinked.NO_CONTEXT, Unlinked.NO_CLIENT_SIDE),
    ):
        by_endpoint: dict[tuple[int, str, str], set[int]] = {}  # (proc, method, path) -> rows
        for row, reason in enumerate(reasons):
            if reason == server_reason and kinds[row] != HopKind.SPAWN:
                r = res[servers[row]]
                if (r.trace_id, r.parent_span_id) in known_parents:
                    continue
                by_endpoint.setdefault((r.proc, r.method, request_path(r.target)), set()).add(row)
        found: dict[tuple[str, str, str, str], ContextDrop] = {}
        for row, reason in enumerate(reasons):
            if reason != client_reason or kinds[row] == HopKind.SPAWN:
                continue
            cr = res[clients[row]]
            method, path = cr.method, request_path(cr.target)
            listeners = owner.get((cr.proc, cr.peer), set()) if cr.peer else set()
            candidates = {p for (p, m, t) in by_endpoint if m == method and t == path}
            if listeners:
                candidates &= listeners
            if len(candidates) != 1:
                if len(candidates) > 1 and ambiguous is not None:
                    ambiguous.add(row)
                continue  # nobody, or ambiguous: say nothing rather than guess
            sproc = candidates.pop()
            cservice, sservice = trace.processes[cr.proc].service, trace.processes[sproc].service
            key = (cservice, sservice, method, path)
            drop = found.setdefault(
                key, ContextDrop(sent_context, cservice, sservice, method, path, server_proc=sproc)
            )
            drop.client_rows.append(row)
            drop.server_rows |= by_endpoint[(sproc, method, path)]
            drop.proven = drop.proven or bool(listeners)
            if cr.peer:
                drop.peers.add(cr.peer)
        out += [found[k] for k in sorted(found)]
    return out


def _paired_halves(trace: Trace, hops: Hops) -> tuple[dict[int, Side], dict[int, Side]]:
    """For the rows :func:`dropped_context` pairs forward (context sent, none received):
    client row -> the server's side, and server row -> the client's side (what each half
    is missing in the hops table). A reverse pair keeps its halves: its client recorded no
    context, so a request without context and a server that got some are both what each
    side saw, and only the finding says that something in between added it."""
    to_server: dict[int, Side] = {}
    to_client: dict[int, Side] = {}
    for drop in dropped_context(trace, hops):
        if not drop.sent_context:
            continue
        cproc = trace.resources[int(hops.client[drop.client_rows[0]])].proc
        client = Side(trace.processes[cproc].service, trace.processes[cproc].runtime)
        server = Side(
            trace.processes[drop.server_proc].service, trace.processes[drop.server_proc].runtime
        )
        to_server.update(dict.fromkeys(drop.client_rows, server))
        to_client.update(dict.fromkeys(drop.server_rows, client))
    return to_server, to_client


def summarize(trace: Trace, hops: Hops) -> list[HopGroup]:
    """Group rows by (from, to, protocol).

    Unlinked client rows are put with the service that answered linked requests to the same
    peer, when there is one (learned, not guessed: a linked request to that host:port proved
    who listens there). Unlinked message rows likewise go with the one service that linked
    messages of the same process, protocol and destination proved to be the other end.

    The two halves of a hop whose context was dropped on the way (:func:`dropped_context`,
    forward: the client sent context, the server got none) are one
    group, named after both services, their rows counted as ``dropped-context``: its client
    rows are its requests; its server rows add their library, not to the count (each is the
    arrival of one of those requests).
    """
    res = trace.resources
    sides = [Side(p.service, p.runtime) for p in trace.processes]

    def side_of(r: int) -> Side:
        return sides[res[r].proc]

    peer_owner: dict[tuple[int, str], Side] = {}
    ends: dict[tuple[bool, int, str, str], set[Side]] = {}  # (producer?, proc, proto, dest)
    clients, servers = hops.client.tolist(), hops.server.tolist()
    kinds = hops.kind.tolist()
    for row in np.flatnonzero(hops.linked).tolist():
        c, s = res[clients[row]], res[servers[row]]
        if kinds[row] == HopKind.MESSAGE:
            dest = attr_str(c, DESTINATION)
            ends.setdefault((True, c.proc, c.protocol, dest), set()).add(side_of(s.index))
            ends.setdefault((False, s.proc, s.protocol, dest), set()).add(side_of(c.index))
        elif c.peer:
            peer_owner[(c.proc, c.peer)] = side_of(servers[row])

    def other_end(producer: bool, r: int) -> Side:
        x = res[r]
        dest = attr_str(x, DESTINATION)
        known = ends.get((producer, x.proc, x.protocol, dest), set())
        return next(iter(known)) if len(known) == 1 else Side(None, None, destination=dest)

    acc: dict[tuple[Side, Side, str], _Acc] = {}
    latency = _latencies(trace, hops)
    to_server, to_client = _paired_halves(trace, hops)
    for row, (c, s, kind_code, reason_code) in enumerate(
        zip(clients, servers, kinds, hops.reason.tolist(), strict=True)
    ):
        kind = HopKind(kind_code)
        cr = res[c] if c >= 0 else None
        sr = res[s] if s >= 0 else None
        if kind == HopKind.MESSAGE:
            src = side_of(c) if cr is not None else other_end(False, s)
            dst = side_of(s) if sr is not None else other_end(True, c)
        elif cr is not None:
            src = side_of(c)
            dst = (
                side_of(s)
                if sr is not None
                else peer_owner.get((cr.proc, cr.peer), Side(None, None, cr.peer or None))
            )
        else:
            src, dst = Side(None, None), side_of(s)
        arrival = row in to_client  # the server half of a dropped-context hop
        if row in to_server:
            dst = to_server[row]
        elif arrival:
            src = to_client[row]
        protocol = (
            "process"
            if kind == HopKind.SPAWN
            else ((cr.protocol if cr else "") or (sr.protocol if sr else "") or "unknown")
        )
        a = acc.setdefault((src, dst, protocol), _Acc())
        if cr is not None and cr.library:
            a.client_libs.add(cr.library)
        if sr is not None and sr.library:
            a.server_libs.add(sr.library)
        if arrival:
            continue
        a.count += 1
        if row in to_server:
            a.add_unlinked(DROPPED_CONTEXT)
        elif reason_code == Unlinked.LINKED:
            a.linked += 1
            prov = Provenance(int(hops.provenance[row]))
            label = _provenance_label(prov, sr if sr is not None else cr)
            a.provenance[label] = a.provenance.get(label, 0) + 1
            if hops.confidence[row] < CERTAIN:
                why = f"{prov.label}-reused"
                a.low_confidence[why] = a.low_confidence.get(why, 0) + 1
        else:
            a.add_unlinked(Unlinked(reason_code).label)
        if hops.reply_reason[row] != Unlinked.LINKED:
            a.add_unlinked(Unlinked(int(hops.reply_reason[row])).label)
        lat = int(latency[row])
        if lat >= 0:
            a.latencies.append(lat)
        elif lat == _CROSS_DOMAIN:
            a.latency_omitted += 1
    groups = [a.group(src, dst, protocol) for (src, dst, protocol), a in acc.items()]
    groups.sort(
        key=lambda g: (-g.count, g.source.service or "~", g.target.service or "~", g.protocol)
    )
    return groups


_NO_LATENCY = -1
_CROSS_DOMAIN = -2  # linked, both events present, ends in different clock domains


def _latencies(trace: Trace, hops: Hops) -> I64:
    """Per row: the hop's latency in ns, _NO_LATENCY, or _CROSS_DOMAIN (see HopGroup).

    An rpc is measured send -> response on the client's own monotonic clock (not one that
    failed to connect: it never reached the service whose latency this is). A message is
    measured send -> receive only when producer and consumer share a clock domain (one
    process: monotonic times; several: raw times, which agree within the domain's 50 us);
    across domains the aligned difference would carry the offset's whole uncertainty, so
    it is not reported as a latency.
    """
    ev = trace.events
    out = np.full(len(hops), _NO_LATENCY, dtype=np.int64)
    if not len(ev) or not len(hops):
        return out
    send, resp, recv = np.maximum(hops.send, 0), np.maximum(hops.response, 0), hops.recv
    rpc = (hops.kind == HopKind.RPC) & (hops.send >= 0) & (hops.response >= 0)
    # a call that never reached a server (refused) would pass its microseconds off as the
    # service's latency: the hop's percentiles are of requests some server could answer
    rpc &= hops.reason != Unlinked.FAILED_TO_CONNECT
    out[rpc] = ev.time[resp[rpc]] - ev.time[send[rpc]]
    msg = (hops.kind == HopKind.MESSAGE) & hops.linked & (hops.send >= 0) & (recv >= 0)
    if msg.any():
        dom = np.zeros(len(trace.processes), dtype=np.int64)
        for d, members in enumerate(group_processes(trace)):
            dom[members] = d
        s, r = send[msg], recv[msg]
        ps, pr = ev.proc[s], ev.proc[r]
        same = dom[ps] == dom[pr]
        lat = np.where(ps == pr, ev.time[r] - ev.time[s], ev.raw[r] - ev.raw[s])
        out[msg] = np.where(same, np.maximum(lat, 0), _CROSS_DOMAIN)
    return out


def _provenance_label(prov: Provenance, receiver: Resource | None) -> str:
    """The key of a link in a group's ``provenance`` counts: the header format's name for
    wire-header links (``traceparent``, as the contract shows), else the provenance's."""
    if prov == Provenance.WIRE_HEADER:
        return header_format(receiver) if receiver is not None else DEFAULT_HEADER
    return prov.label


class _Acc:
    __slots__ = (
        "client_libs",
        "count",
        "latencies",
        "latency_omitted",
        "linked",
        "low_confidence",
        "provenance",
        "server_libs",
        "unlinked",
    )

    def __init__(self) -> None:
        self.count = 0
        self.linked = 0
        self.unlinked: dict[str, int] = {}
        self.provenance: dict[str, int] = {}
        self.low_confidence: dict[str, int] = {}
        self.client_libs: set[str] = set()
        self.server_libs: set[str] = set()
        self.latencies: list[int] = []
        self.latency_omitted = 0

    def add_unlinked(self, label: str) -> None:
        self.unlinked[label] = self.unlinked.get(label, 0) + 1

    def group(self, src: Side, dst: Side, protocol: str) -> HopGroup:
        libs = sorted(self.client_libs) + sorted(self.server_libs - self.client_libs)
        p50 = p99 = None
        if self.latencies:
            lat = np.asarray(self.latencies, dtype=np.float64)
            p50, p99 = (round(float(v)) for v in np.percentile(lat, [50, 99]))
        return HopGroup(
            src,
            dst,
            protocol,
            tuple(libs),
            self.count,
            self.linked,
            dict(sorted(self.provenance.items())),
            dict(sorted(self.unlinked.items())),
            p50,
            p99,
            dict(sorted(self.low_confidence.items())),
            self.latency_omitted,
        )
