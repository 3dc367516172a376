"""Hops: matching the two sides of each cross-process interaction through propagated context.

A client writes one ``rpc`` (or ``message``) resource per request carrying the trace id and
the span id it injected on the wire; the server writes one per request received carrying
the extracted trace id and that span id as ``parent_span_id``. A child process's ``proc.start``
resource carries the ``parent_span_id`` its parent's ``proc.spawn`` resource put in
TRACEPARENT. Sides are matched on ``(trace_id, client span_id == server parent_span_id)``
and nothing else: timestamps, peers and ports are never evidence of a link. What cannot be
matched stays in the table, unlinked, with the reason.

The table is columnar (one row per request, linked or not) because a busy service makes
tens of thousands of requests; the matching itself is a dictionary pass over the rpc
resources, which is per request, not per event. The four events of a request/reply hop
(send, recv, reply, response) are found for all resources at once with ``np.unique``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


class HopKind(enum.IntEnum):
    RPC = 1  # a request and its reply
    MESSAGE = 2  # a one-way message
    SPAWN = 3  # a child process started with the parent's context


class Unlinked(enum.IntEnum):
    """Why a row has only one side (its ``reason``); LINKED when it has both."""

    LINKED = 0
    NO_SERVER_SIDE = 1  # the receiver is not in the trace (not traced, or its events lost)
    NO_CLIENT_SIDE = 2  # the sender is not in the trace
    NO_CONTEXT = 3  # the sender recorded no context to put on the wire
    NO_TRACEPARENT = 4  # the receiver got no context from the wire

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class Hops:
    """One row per request, message or spawn. Event and resource columns: NO_INDEX if absent.

    For SPAWN rows ``send`` is the ``proc.spawn`` and ``recv`` the child's ``proc.start``.
    """

    kind: npt.NDArray[np.uint8]
    reason: npt.NDArray[np.uint8]  # Unlinked
    client: I32  # client-side resource
    server: I32  # server-side resource
    send: I64
    recv: I64
    reply: I64
    response: I64

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
    """Pair client and server sides (see the module doc)."""
    send, recv = first_event_of(trace, K.MSG_SEND), first_event_of(trace, K.MSG_RECV)
    reply, resp = first_event_of(trace, K.RPC_REPLY), first_event_of(trace, K.RPC_RESPONSE)
    spawn, start = first_event_of(trace, K.PROC_SPAWN), first_event_of(trace, K.PROC_START)
    rows: list[tuple[int, int, int, int]] = []  # kind, reason, client, server
    servers: dict[tuple[str, str], list[int]] = {}
    is_client = (spawn >= 0) | (send >= 0) | (resp >= 0)
    is_server = ~is_client & ((start >= 0) | (recv >= 0) | (reply >= 0))
    is_start = (start >= 0).tolist()
    clients = np.flatnonzero(is_client).tolist()
    for i in np.flatnonzero(is_server).tolist():
        r = trace.resources[i]
        if r.trace_id and r.parent_span_id:
            servers.setdefault((r.trace_id, r.parent_span_id), []).append(i)
        else:
            rows.append((_kind(r.kind, is_start[i]), Unlinked.NO_TRACEPARENT, NO_INDEX, i))
    is_spawn = (spawn >= 0).tolist()
    for c in clients:
        cres = trace.resources[c]
        kind = _kind(cres.kind, is_spawn[c])
        if not (cres.trace_id and cres.span_id):
            rows.append((kind, Unlinked.NO_CONTEXT, c, NO_INDEX))
            continue
        waiting = servers.get((cres.trace_id, cres.span_id))
        if waiting:
            rows.append((kind, Unlinked.LINKED, c, waiting.pop(0)))
        else:
            rows.append((kind, Unlinked.NO_SERVER_SIDE, c, NO_INDEX))
    for left in servers.values():
        for s in left:
            kind = _kind(trace.resources[s].kind, is_start[s])
            rows.append((kind, Unlinked.NO_CLIENT_SIDE, NO_INDEX, s))
    table = np.array(rows, dtype=np.int64).reshape(-1, 4)
    client, server = table[:, 2], table[:, 3]
    spawn_row = table[:, 0] == HopKind.SPAWN

    def pick(col: I64, res: I64) -> I64:
        return np.where(res >= 0, col[np.maximum(res, 0)], NO_INDEX) if len(col) else res

    return Hops(
        kind=table[:, 0].astype(np.uint8),
        reason=table[:, 1].astype(np.uint8),
        client=client.astype(np.int32),
        server=server.astype(np.int32),
        send=np.where(spawn_row, pick(spawn, client), pick(send, client)),
        recv=np.where(spawn_row, pick(start, server), pick(recv, server)),
        reply=np.where(spawn_row, NO_INDEX, pick(reply, server)),
        response=np.where(spawn_row, NO_INDEX, pick(resp, client)),
    )


def _kind(resource_kind: str, spawn: bool) -> int:
    if spawn or resource_kind == "spawn":
        return HopKind.SPAWN
    return HopKind.RPC if resource_kind == "rpc" else HopKind.MESSAGE


def hop_edges(hops: Hops) -> tuple[I64, I64, npt.NDArray[np.uint8]]:
    """Cross-process happens-before edges of linked rows: (src event, dst event, which).

    ``which`` is 0 for a request (send -> recv), 1 for a reply (reply -> response) and 2 for
    a spawn (proc.spawn -> proc.start); only pairs with both events present.
    """
    req = (hops.send >= 0) & (hops.recv >= 0) & hops.linked
    rep = (hops.reply >= 0) & (hops.response >= 0) & hops.linked
    src = np.concatenate([hops.send[req], hops.reply[rep]])
    dst = np.concatenate([hops.recv[req], hops.response[rep]])
    which = np.concatenate(
        [np.where(hops.kind[req] == HopKind.SPAWN, 2, 0), np.ones(int(rep.sum()), np.int64)]
    ).astype(np.uint8)
    return src.astype(np.int64), dst.astype(np.int64), which


# -- the contract's ``hops`` section -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Side:
    """One end of a hop group; service and runtime are None when that side is not traced."""

    service: str | None
    runtime: str | None
    peer: str | None = None  # host:port the client called, when the server is unknown


@dataclass(frozen=True, slots=True)
class HopGroup:
    """Requests between two services over one protocol."""

    source: Side
    target: Side
    protocol: str
    libraries: tuple[str, ...]  # client side's, then server side's
    count: int
    linked: int
    provenance: dict[str, int]  # how links were established: {"traceparent": n}
    unlinked: dict[str, int]  # reason -> rows
    latency_p50_ns: int | None  # send -> response on the client's own clock
    latency_p99_ns: int | None


def summarize(trace: Trace, hops: Hops) -> list[HopGroup]:
    """Group rows by (from, to, protocol). Unlinked client rows are put with the service that
    answered linked requests to the same peer, when there is one (learned, not guessed: a
    linked request to that host:port proved who listens there)."""
    res = trace.resources

    sides = [Side(p.service, p.runtime) for p in trace.processes]

    def side_of(r: int) -> Side:
        return sides[res[r].proc]

    peer_owner: dict[tuple[int, str], Side] = {}
    clients, servers = hops.client.tolist(), hops.server.tolist()
    for row in np.flatnonzero(hops.linked).tolist():
        linked_client = res[clients[row]]
        if linked_client.peer:
            key = (linked_client.proc, linked_client.peer)
            peer_owner[key] = side_of(servers[row])
    acc: dict[tuple[Side, Side, str], _Acc] = {}
    ev_time = trace.events.time
    latency = (
        np.where(
            (hops.send >= 0) & (hops.response >= 0),
            ev_time[np.maximum(hops.response, 0)] - ev_time[np.maximum(hops.send, 0)],
            -1,
        )
        if len(ev_time)
        else np.full(len(hops), -1)
    )
    for c, s, kind_code, reason_code, lat in zip(
        clients, servers, hops.kind.tolist(), hops.reason.tolist(), latency.tolist(), strict=True
    ):
        kind = HopKind(kind_code)
        cr = res[c] if c >= 0 else None
        sr = res[s] if s >= 0 else None
        if cr is not None:
            src = side_of(c)
            dst = (
                side_of(s)
                if sr is not None
                else peer_owner.get((cr.proc, cr.peer), Side(None, None, cr.peer or None))
            )
        else:
            src, dst = Side(None, None), side_of(s)
        protocol = (
            "process"
            if kind == HopKind.SPAWN
            else ((cr.protocol if cr else "") or (sr.protocol if sr else "") or "unknown")
        )
        a = acc.setdefault((src, dst, protocol), _Acc())
        a.count += 1
        if cr is not None and cr.library:
            a.client_libs.add(cr.library)
        if sr is not None and sr.library:
            a.server_libs.add(sr.library)
        if reason_code == Unlinked.LINKED:
            a.linked += 1
        else:
            label = Unlinked(reason_code).label
            a.unlinked[label] = a.unlinked.get(label, 0) + 1
        if kind != HopKind.SPAWN and lat >= 0:
            a.latencies.append(lat)
    groups = [a.group(src, dst, protocol) for (src, dst, protocol), a in acc.items()]
    groups.sort(
        key=lambda g: (-g.count, g.source.service or "~", g.target.service or "~", g.protocol)
    )
    return groups


class _Acc:
    __slots__ = ("client_libs", "count", "latencies", "linked", "server_libs", "unlinked")

    def __init__(self) -> None:
        self.count = 0
        self.linked = 0
        self.unlinked: dict[str, int] = {}
        self.client_libs: set[str] = set()
        self.server_libs: set[str] = set()
        self.latencies: list[int] = []

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
            {"traceparent": self.linked} if self.linked else {},
            dict(sorted(self.unlinked.items())),
            p50,
            p99,
        )
