"""W3C Trace Context codec: ``traceparent`` plus ``tracestate``, read and written together.

Builds on :mod:`willowisp.wire.traceparent` (which keeps the id rules and the single-value
parser the agent uses). What this module adds is the carrier side: more than one
``traceparent`` value is ambiguous and ignored (the spec's test suite starts a new trace),
``tracestate`` values are combined per RFC 9110 before parsing, and ``tracestate`` is not
read at all when ``traceparent`` is invalid, as the spec requires.
"""

from __future__ import annotations

from typing import NamedTuple

from willowisp.wire.codec import Getter, Setter
from willowisp.wire.traceparent import TraceContext, parse
from willowisp.wire.tracestate import EMPTY, TraceState, parse_tracestate

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"


class W3CContext(NamedTuple):
    """A traceparent's context and the tracestate that came with it (EMPTY if none).
    A NamedTuple for the same reason as TraceContext: built on every hop."""

    context: TraceContext
    tracestate: TraceState = EMPTY


class TraceContextCodec:
    """``traceparent`` / ``tracestate`` (OTel's ``tracecontext`` propagator)."""

    fields = (TRACEPARENT, TRACESTATE)

    def inject(self, value: W3CContext, carrier: Setter) -> None:
        """Write ``traceparent`` always (as version 00) and ``tracestate`` when not empty."""
        carrier.set(TRACEPARENT, value.context.header())
        state = value.tracestate
        if state is not EMPTY and state.entries:
            carrier.set(TRACESTATE, state.header())

    def extract(self, carrier: Getter) -> W3CContext | None:
        """The context, or None when ``traceparent`` is absent, repeated or invalid."""
        parents = carrier.get(TRACEPARENT)
        if len(parents) != 1:
            return None
        ctx = parse(parents[0])
        if ctx is None:
            return None
        states = carrier.get(TRACESTATE)
        state = parse_tracestate(states) if states else EMPTY
        return _tuple_new(W3CContext, (ctx, state))  # the NamedTuple without its __new__


_tuple_new = tuple.__new__
TRACECONTEXT = TraceContextCodec()
