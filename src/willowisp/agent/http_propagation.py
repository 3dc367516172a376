"""What the HTTP hooks share: putting the trace context on an outgoing request, taking it off
an incoming one, the shapes kept of a request (its target, its allowlisted headers), and,
for the third-party libraries (httpx, aiohttp), defining the two sides' ``rpc`` resources
and locating their events at the program's own line.

Outgoing: the current context continues with a new span id (``context.outgoing``), written
as W3C ``traceparent``, with the ``tracestate`` that arrived with the current trace when
there was one. A request that already carries ``traceparent`` (the program or another
tracer set it) keeps it and is recorded with that context. Incoming: W3C first, else B3
(single or multi header), else X-Ray, the first one present and valid winning, as OTel's
composite propagator reads them. The server resource's ``propagation`` attribute says
which one it was.

The events are located at the innermost frame that is neither the standard library, the
agent nor the hooked library (``program_key``): the line that made the request, not the
library's internals. Walking the stack costs a few µs per request, small beside a request.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii as _quote
from typing import Any
from urllib.parse import urlsplit

from willowisp.agent import boundaries, context, data_access, redact, rows
from willowisp.agent import recorder as _r
from willowisp.model.spec import K
from willowisp.wire.b3 import B3_SINGLE, Sampling
from willowisp.wire.codec import Getter, Setter
from willowisp.wire.tracecontext import TRACECONTEXT, W3CContext
from willowisp.wire.traceparent import TraceContext, new_span_id, new_trace_id, parse
from willowisp.wire.tracestate import EMPTY, TraceState
from willowisp.wire.xray import XRAY

# The tracestate of the inbound request being handled, with its trace id, so that outgoing
# calls of the same trace carry it on. Set by a server hook for its handler; a ContextVar,
# so tasks the handler starts inherit it.
_inbound_state: contextvars.ContextVar[tuple[str, TraceState] | None] = contextvars.ContextVar(
    "willowisp_tracestate", default=None
)

# Every header name the inbound formats read, each format's apart: most requests carry none
# of them, and a request that carries no name of a format need not be parsed for it.
_W3C_NAMES = frozenset(TRACECONTEXT.fields)
_B3_NAMES = frozenset(B3_SINGLE.fields)
_XRAY_NAMES = frozenset(XRAY.fields)
PROPAGATION_NAMES = _W3C_NAMES | _B3_NAMES | _XRAY_NAMES

# A location key no frame has: the server resource is made by the runtime, not a program line.
NO_LOCATION = -1

Tokens = tuple[
    contextvars.Token[TraceContext | None],
    contextvars.Token[tuple[str, TraceState] | None],
    "boundaries.Token | None",
]


_TARGETS_MAX = 1024  # request targets remembered before the cache starts over
_TARGET_CACHED_LEN = 512  # longer targets (rare, often unique) are split every time
_targets: dict[tuple[str, bool], str] = {}


def elided_target(url: str) -> str:
    """The path of a request target, query values elided (``/a?x=1&y=2`` -> ``/a?x=&y=``).

    Remembered per (target, redaction): a service sees the same few targets again and
    again, and splitting one costs a µs or so, every hop."""
    keep_values = redact.ACTIVE.query_values
    if len(url) > _TARGET_CACHED_LEN:
        return _split_target(url, keep_values)
    found = _targets.get((url, keep_values))
    if found is None:
        found = _split_target(url, keep_values)
        if len(_targets) >= _TARGETS_MAX:
            _targets.clear()
        _targets[(url, keep_values)] = found
    return found


def _split_target(url: str, keep_values: bool) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "?"
    path = parts.path or "/"
    if parts.query and keep_values:
        path += "?" + parts.query
    elif parts.query:
        keys = [kv.split("=", 1)[0] for kv in parts.query.split("&")]
        path += "?" + "&".join(f"{k}=" for k in keys)
    return path[:512]


def entry_headers_json(pairs: Any) -> str:
    """The allowlisted headers among ``pairs`` (name, value) as a JSON object: names
    lowercase, repeated values joined with ", ", each value cut to 512 characters."""
    kept: dict[str, str] = {}
    allowed = redact.ACTIVE.headers
    for name, value in pairs:
        key = str(name).lower()
        if key in allowed:
            text = str(value)[:512]
            kept[key] = f"{kept[key]}, {text}" if key in kept else text
    # what json.dumps(kept, sort_keys=True, separators=(",", ":")) writes, without the
    # encoder it builds per call (2 µs, most of this function's cost, every recorded request)
    return "{" + ",".join([_quote(k) + ":" + _quote(v) for k, v in sorted(kept.items())]) + "}"


class ItemSetter:
    """A Setter over a case-insensitive multidict whose item assignment replaces every
    value under the name (httpx ``Headers``, multidict ``CIMultiDict``)."""

    def __init__(self, headers: Any) -> None:
        self.headers = headers  # the request's own headers, written in place

    def set(self, name: str, value: str) -> None:
        """Replace the values under ``name`` with ``value``."""
        self.headers[name] = value


def outgoing_context(existing: str | None, carrier: Setter) -> TraceContext:
    """The context of a new outgoing request: ``existing`` (a traceparent already on it) if
    valid, else a child of the current context, injected into ``carrier``."""
    found = parse(existing) if existing else None
    if found is not None:
        return found
    ctx = context.outgoing()
    held = _inbound_state.get()
    state = held[1] if held is not None and held[0] == ctx.trace_id else EMPTY
    member = boundaries.outgoing_member()
    if member:  # a boundary's full fidelity travels with the request
        state = state.with_entry(boundaries.STATE_KEY, member)
    TRACECONTEXT.inject(W3CContext(ctx, state), carrier)
    return ctx


def incoming_context(headers: Getter) -> tuple[TraceContext | None, TraceState, str]:
    """The context an inbound request carries, its tracestate, and the format it came in
    (``w3c``, ``b3``, ``xray``; ``''`` and None when there was none).

    A format none of whose headers is among ``headers.names()`` is not asked (it would find
    nothing): one pass over the names instead of a scan per name each format reads."""
    present = PROPAGATION_NAMES.intersection(headers.names())
    if not present:
        return None, EMPTY, ""
    w3c = TRACECONTEXT.extract(headers) if not _W3C_NAMES.isdisjoint(present) else None
    if w3c is not None:
        return w3c.context, w3c.tracestate, "w3c"
    b3 = B3_SINGLE.extract(headers) if not _B3_NAMES.isdisjoint(present) else None
    if b3 is not None and b3.context is not None:
        ctx = b3.context
        if b3.sampling is Sampling.DEFER:  # no decision upstream: take it here, at the root
            ctx = TraceContext(ctx.trace_id, ctx.span_id, context.root_flags())
        return ctx, EMPTY, "b3"
    xray = XRAY.extract(headers) if not _XRAY_NAMES.isdisjoint(present) else None
    if xray is not None:
        ctx = xray.context
        if xray.sampled is None:
            ctx = TraceContext(ctx.trace_id, ctx.span_id, context.root_flags())
        return ctx, EMPTY, "xray"
    return None, EMPTY, ""


def program_key(rec: _r.Recorder, libraries: frozenset[str]) -> int:
    """The location key of the innermost frame outside the standard library, the agent and
    the modules under ``libraries`` (top-level names); 0 if there is none in the running
    thread or, in an asyncio task, in the running step (the loop's own caller, the
    ``asyncio.run`` line, is nobody's request)."""
    f = sys._getframe(1)
    while f is not None:
        code = f.f_code
        name = f.f_globals.get("__name__")
        if name == "asyncio.events":
            return 0  # the start of a task step: below it is the loop, not this task's caller
        top = name.partition(".")[0] if type(name) is str else ""
        if not rec.is_internal(code.co_filename) and top not in libraries:
            rows.CODE_IDS[id(code)] = code
            return (id(code) << 16) | (f.f_lasti & 0xFFFF)
        f = f.f_back  # type: ignore[assignment]
    return 0


def emit_at(rec: _r.Recorder, kind: int, rid: int, arg: int, key: int) -> None:
    """Record one event for the current unit at location ``key``."""
    st = _r.state()
    rec.emit_for(st, st.unit, kind, rid, arg, key)


def client_send(
    rec: _r.Recorder,
    ctx: TraceContext,
    *,
    library: str,
    method: str,
    url: str,
    peer: str,
    key: int,
) -> int:
    """Define the client-side rpc resource of one request and write its ``msg.send``.
    Returns the resource, or 0 when the request is not recorded (hops mode, unsampled)."""
    if not ctx.sampled and rec.config.mode == "hops":
        return 0  # always-on mode records sampled operations only; the flag still travels
    target = elided_target(url)
    rid = rec.new_resource(
        "rpc",
        0,
        name=f"{method} {target}",
        key=key,
        trace_id=ctx.trace_id,
        span_id=ctx.span_id,
        sampled=1 if ctx.sampled else 0,
        protocol="http",
        library=library,
        method=method,
        target=target,
        peer=peer,
    )
    emit_at(rec, int(K.MSG_SEND), rid, 0, key)
    return rid


def server_receive(
    rec: _r.Recorder,
    headers: Getter,
    pairs: Iterable[tuple[Any, Any]],
    *,
    library: str,
    method: str,
    url: str,
    peer: str,
) -> tuple[int, Tokens]:
    """Extract the inbound context, make it current (with this server's own span id), and,
    unless unsampled in hops mode, define the server-side rpc resource and write its
    ``msg.recv``. Returns the resource (0 if not recorded) and the tokens for ``leave``."""
    parent, state, how = incoming_context(headers)
    own = new_span_id()
    trace_id = parent.trace_id if parent is not None else new_trace_id()
    flags = parent.flags if parent is not None else context.root_flags()
    bnd = boundaries.enter("http", method, url, state.get(boundaries.STATE_KEY) or "")
    forced: dict[str, Any] = {}
    if bnd is not None:
        forced = boundaries.forced_attrs(flags)
        flags |= 1  # a declared boundary is recorded whatever the trace ratio
    tokens = (
        context.set_current(TraceContext(trace_id, own, flags)),
        _inbound_state.set((trace_id, state) if state.entries else None),
        bnd,
    )
    if not flags & 1 and rec.config.mode == "hops":
        return 0, tokens  # not sampled: propagate the decision, record nothing
    target = elided_target(url)
    rid = rec.new_resource(
        "rpc",
        0,
        name=f"{method} {target}",
        key=NO_LOCATION,
        trace_id=trace_id,
        span_id=own,
        parent_span_id=parent.span_id if parent is not None else "",
        sampled=flags & 1,
        protocol="http",
        library=library,
        method=method,
        target=target,
        peer=peer,
        propagation=how,
        headers=entry_headers_json(pairs),
        **forced,
    )
    emit_at(rec, int(K.MSG_RECV), rid, 0, 0)
    # the request as a read or write of what its URL names (agent/data_access.py)
    data_access.http_request(rec, method, (headers.get("host") or ["?"])[0], target, 0)
    return rid, tokens


def leave(tokens: Tokens) -> None:
    """Restore the context that was current before ``server_receive`` (same task only)."""
    boundaries.leave(tokens[2])
    try:
        _inbound_state.reset(tokens[1])
        context.reset(tokens[0])
    except ValueError:  # reset from another context: nothing of ours is current there
        pass
