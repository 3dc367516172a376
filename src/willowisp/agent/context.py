"""The trace context the current unit works under (a ContextVar, so asyncio tasks inherit it).

A server hook sets it from the inbound request; a client hook reads it to continue the
trace (or starts a new one at a root, deciding sampling there, once). Threads started from
a unit inherit it through the Thread hook. Work handed to a thread pool runs under the
context of the unit that submitted it (``capture`` at submit, ``enter``/``leave`` around the
work item, futures.py), never under the one its worker thread was started in: a pool worker
is started by whichever request first needed it and outlives it.
"""

from __future__ import annotations

import contextvars
import os
import random

from willowisp.wire.traceparent import TraceContext, new_span_id, new_trace_id, parse

_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "willowisp_trace_context", default=None
)
# The boundary instance the current unit works inside (agent/boundaries.py), None outside
# every boundary. Also the agent's gate in hops mode: see boundaries.gate.
boundary: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "willowisp_boundary", default=None
)
_process_root: TraceContext | None = parse(os.environ.get("TRACEPARENT"))
trace_ratio = 1.0


def current() -> TraceContext | None:
    return _current.get() or _process_root


def restore(ctx: TraceContext | None) -> None:
    if ctx is not None:
        _current.set(ctx)


def set_current(ctx: TraceContext | None) -> contextvars.Token[TraceContext | None]:
    return _current.set(ctx)


def reset(token: contextvars.Token[TraceContext | None]) -> None:
    _current.reset(token)


# What a unit's work carries to another thread: its trace context and its boundary.
Captured = tuple[TraceContext | None, object | None]
_Tokens = tuple[contextvars.Token[TraceContext | None], contextvars.Token[object | None]]


def capture() -> Captured:
    """The calling unit's own context (not the process root: that is everyone's anyway)."""
    return (_current.get(), boundary.get())


def enter(captured: Captured) -> _Tokens:
    """Work under ``captured`` until ``leave`` (on the same thread, in the same context)."""
    return (_current.set(captured[0]), boundary.set(captured[1]))


def leave(tokens: _Tokens) -> None:
    _current.reset(tokens[0])
    boundary.reset(tokens[1])


def root_flags() -> int:
    """The trace flags of a new logical operation: sampled with the configured ratio, decided
    here once and then carried by traceparent to every runtime."""
    return 1 if trace_ratio >= 1.0 or random.random() < trace_ratio else 0  # noqa: S311


def outgoing() -> TraceContext:
    """The context to put on the wire for a new outgoing hop: a child of the current one,
    or the root of a new trace (sampled with the configured ratio)."""
    cur = _current.get() or _process_root
    if cur is not None:
        # tuple.__new__ directly: half the cost of calling the NamedTuple (every hop out)
        return _tuple_new(TraceContext, (cur.trace_id, new_span_id(), cur.flags))
    return TraceContext(new_trace_id(), new_span_id(), root_flags())


_tuple_new = tuple.__new__


def reload_from_env() -> None:
    """After a fork or at start: the context inherited through TRACEPARENT."""
    global _process_root
    _process_root = parse(os.environ.get("TRACEPARENT"))
