"""Zipkin B3 propagation, single header (``b3``) and multi header (``X-B3-*``).

Single: ``b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]``, or ``b3: 0`` /
``1`` / ``d`` alone (a sampling decision without ids). Multi: ``X-B3-TraceId``,
``X-B3-SpanId``, ``X-B3-ParentSpanId``, ``X-B3-Sampled`` (``1``/``0``, leniently
``true``/``false``), ``X-B3-Flags: 1`` (debug).

Extraction follows OTel: single and multi are both read and a valid single header wins.
Trace ids may be 16 or 32 lowercase hex; 16 are left-padded with zeros to the 128-bit id
W3C uses, so the same trace keeps one id across formats. Debug implies sampled. Injection
writes one style, chosen at construction (single by default, as OTel does), and never
writes ``X-B3-ParentSpanId`` (OTel forbids it); the single header carries the parent when
the value has one.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from willowisp.wire.codec import Getter, Setter
from willowisp.wire.traceparent import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    SAMPLED,
    TraceContext,
)

B3 = "b3"
TRACE_ID = "x-b3-traceid"
SPAN_ID = "x-b3-spanid"
PARENT_SPAN_ID = "x-b3-parentspanid"
SAMPLED_HEADER = "x-b3-sampled"
FLAGS = "x-b3-flags"

_ID64 = re.compile(r"[0-9a-f]{16}")
_TRACE = re.compile(r"[0-9a-f]{16}(?:[0-9a-f]{16})?")


class Sampling(enum.Enum):
    """The upstream sampling decision; DEFER means none was made (field absent)."""

    DEFER = "defer"
    ACCEPT = "1"
    DENY = "0"
    DEBUG = "d"


@dataclass(frozen=True, slots=True)
class B3Context:
    """What B3 carries. ``context`` is None for a bare decision (``b3: 0``).

    Invariant: ``context.flags`` has SAMPLED set exactly when sampling is ACCEPT or DEBUG.
    """

    context: TraceContext | None
    sampling: Sampling = Sampling.DEFER
    parent_span_id: str | None = None

    @staticmethod
    def of(
        context: TraceContext, sampling: Sampling | None = None, parent_span_id: str | None = None
    ) -> B3Context:
        """A B3 value for ``context``; sampling defaults to the context's sampled flag."""
        if sampling is None:
            sampling = Sampling.ACCEPT if context.sampled else Sampling.DENY
        return B3Context(_with_sampling(context, sampling), sampling, parent_span_id)


def _with_sampling(ctx: TraceContext, sampling: Sampling) -> TraceContext:
    sampled = sampling in (Sampling.ACCEPT, Sampling.DEBUG)
    flags = (ctx.flags | SAMPLED) if sampled else (ctx.flags & ~SAMPLED)
    return ctx if flags == ctx.flags else TraceContext(ctx.trace_id, ctx.span_id, flags)


def _trace_id(s: str) -> str | None:
    if _TRACE.fullmatch(s) is None:
        return None
    s = s.rjust(32, "0")
    return None if s == INVALID_TRACE_ID else s


def _span_id(s: str) -> str | None:
    return s if _ID64.fullmatch(s) is not None and s != INVALID_SPAN_ID else None


def _build(trace: str, span: str, sampling: Sampling, parent: str | None) -> B3Context | None:
    trace_id, span_id = _trace_id(trace), _span_id(span)
    if trace_id is None or span_id is None:
        return None
    ctx = TraceContext(trace_id, span_id, 0)
    return B3Context(_with_sampling(ctx, sampling), sampling, parent)


_SINGLE_SAMPLING = {"1": Sampling.ACCEPT, "0": Sampling.DENY, "d": Sampling.DEBUG}
_MULTI_SAMPLED = {"1": True, "0": False, "true": True, "false": False}


def parse_single(value: str) -> B3Context | None:
    """The B3 value in one ``b3`` header value, or None if malformed."""
    v = value.strip()
    if len(v) > 128:
        return None
    if v in _SINGLE_SAMPLING:
        return B3Context(None, _SINGLE_SAMPLING[v])
    parts = v.split("-")
    if len(parts) < 2 or len(parts) > 4:
        return None
    sampling = Sampling.DEFER
    if len(parts) >= 3:
        s = _SINGLE_SAMPLING.get(parts[2])
        if s is None:
            return None
        sampling = s
    parent = None
    if len(parts) == 4:
        parent = _span_id(parts[3])
        if parent is None:
            return None
    return _build(parts[0], parts[1], sampling, parent)


def _one(carrier: Getter, name: str) -> str | None:
    values = carrier.get(name)
    return values[0].strip() if len(values) == 1 else None


def parse_multi(carrier: Getter) -> B3Context | None:
    """The B3 value in the ``X-B3-*`` headers, or None if absent or malformed."""
    sampling = Sampling.DEFER
    if _one(carrier, FLAGS) == "1":
        sampling = Sampling.DEBUG
    else:
        sampled = _one(carrier, SAMPLED_HEADER)
        if sampled is not None:
            decided = _MULTI_SAMPLED.get(sampled.lower())
            if decided is not None:
                sampling = Sampling.ACCEPT if decided else Sampling.DENY
    trace, span = _one(carrier, TRACE_ID), _one(carrier, SPAN_ID)
    if trace is None and span is None:
        return None if sampling is Sampling.DEFER else B3Context(None, sampling)
    if trace is None or span is None:
        return None
    parent_raw = _one(carrier, PARENT_SPAN_ID)
    parent = _span_id(parent_raw) if parent_raw is not None else None
    return _build(trace, span, sampling, parent)


class B3Codec:
    """B3 propagation; ``single`` chooses the style injected (both are always extracted)."""

    fields = (B3, TRACE_ID, SPAN_ID, PARENT_SPAN_ID, SAMPLED_HEADER, FLAGS)

    def __init__(self, *, single: bool = True) -> None:
        self.single = single  # fixed at construction: which style inject writes

    def inject(self, value: B3Context, carrier: Setter) -> None:
        """Write ``value`` in the configured style; a bare decision writes only the flag."""
        ctx, sampling = value.context, value.sampling
        if self.single:
            parts = [ctx.trace_id, ctx.span_id] if ctx is not None else []
            if sampling is not Sampling.DEFER:
                parts.append(sampling.value)
                if ctx is not None and value.parent_span_id is not None:
                    parts.append(value.parent_span_id)
            if parts:
                carrier.set(B3, "-".join(parts))
            return
        if ctx is not None:
            carrier.set(TRACE_ID, ctx.trace_id)
            carrier.set(SPAN_ID, ctx.span_id)
        if sampling is Sampling.DEBUG:
            carrier.set(FLAGS, "1")
        elif sampling is not Sampling.DEFER:
            carrier.set(SAMPLED_HEADER, sampling.value)

    def extract(self, carrier: Getter) -> B3Context | None:
        """The single header's value if valid, else the multi headers', else None."""
        singles = carrier.get(B3)
        if len(singles) == 1:
            found = parse_single(singles[0])
            if found is not None:
                return found
        return parse_multi(carrier)


B3_SINGLE = B3Codec(single=True)
B3_MULTI = B3Codec(single=False)
