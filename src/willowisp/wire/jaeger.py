"""Jaeger ``uber-trace-id`` and ``uberctx-*`` baggage (deprecated in OTel, still in the wild).

``uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}``. The whole value is
URL-decoded first (the Jaeger Java client sends ``%3A`` for ``:``). Ids are variable-length
hex (trace id up to 32 digits, span id up to 16), left-padded with zeros; an id of zero is
invalid. Upper-case hex is accepted (Jaeger clients parse with base-16 integer parsing) and
normalised to lowercase. The parent span id is deprecated: it is read, checked and
discarded, and ``0`` is written. Flags are one byte in hex: ``0x01`` sampled, ``0x02`` debug.

Baggage travels as one header per item, ``uberctx-{key}: {url-encoded value}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from willowisp.wire.codec import Getter, Setter
from willowisp.wire.traceparent import INVALID_SPAN_ID, INVALID_TRACE_ID, SAMPLED, TraceContext

UBER_TRACE_ID = "uber-trace-id"
BAGGAGE_PREFIX = "uberctx-"
DEBUG = 0x02
_MAX_BAGGAGE = 64

_VALUE = re.compile(
    r"([0-9a-fA-F]{1,32}):([0-9a-fA-F]{1,16}):([0-9a-fA-F]{1,16}):([0-9a-fA-F]{1,2})"
)
_BAGGAGE_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")


@dataclass(frozen=True, slots=True)
class JaegerContext:
    """A Jaeger span context. ``flags`` is Jaeger's byte (0x02 = debug); ``context.flags``
    carries only the sampled bit. ``baggage`` is (key, decoded value), keys lowercase."""

    context: TraceContext
    flags: int = SAMPLED
    baggage: tuple[tuple[str, str], ...] = ()

    @property
    def debug(self) -> bool:
        """True if the sender forced sampling for debugging."""
        return bool(self.flags & DEBUG)


def parse_uber_trace_id(value: str) -> tuple[TraceContext, int] | None:
    """The context and Jaeger flags in one ``uber-trace-id`` value, or None if malformed."""
    if len(value) > 256:
        return None
    m = _VALUE.fullmatch(unquote(value.strip()).strip())
    if m is None:
        return None
    trace, span, _parent, flags_hex = m.groups()
    trace_id = trace.lower().rjust(32, "0")
    span_id = span.lower().rjust(16, "0")
    if trace_id == INVALID_TRACE_ID or span_id == INVALID_SPAN_ID:
        return None
    flags = int(flags_hex, 16)
    return TraceContext(trace_id, span_id, flags & SAMPLED), flags


class JaegerCodec:
    """``uber-trace-id`` plus ``uberctx-*`` baggage (OTel's ``jaeger`` propagator)."""

    fields = (UBER_TRACE_ID, BAGGAGE_PREFIX)

    def inject(self, value: JaegerContext, carrier: Setter) -> None:
        """Write ``uber-trace-id`` (parent ``0``) and one ``uberctx-`` header per item."""
        ctx = value.context
        flags = (value.flags & ~SAMPLED & 0xFF) | (ctx.flags & SAMPLED)
        carrier.set(UBER_TRACE_ID, f"{ctx.trace_id}:{ctx.span_id}:0:{flags:x}")
        for key, item in value.baggage:
            if _BAGGAGE_KEY.fullmatch(key):
                carrier.set(BAGGAGE_PREFIX + key, quote(item, safe=""))

    def extract(self, carrier: Getter) -> JaegerContext | None:
        """The context, or None when ``uber-trace-id`` is absent, repeated or malformed.

        Baggage items with malformed keys are dropped; at most 64 are kept.
        """
        values = carrier.get(UBER_TRACE_ID)
        if len(values) != 1:
            return None
        parsed = parse_uber_trace_id(values[0])
        if parsed is None:
            return None
        ctx, flags = parsed
        baggage: list[tuple[str, str]] = []
        for name in carrier.names():
            if not name.startswith(BAGGAGE_PREFIX) or len(baggage) == _MAX_BAGGAGE:
                continue
            key = name[len(BAGGAGE_PREFIX) :]
            items = carrier.get(name)
            if _BAGGAGE_KEY.fullmatch(key) and len(items) == 1:
                baggage.append((key, unquote(items[0], errors="replace")))
        return JaegerContext(ctx, flags, tuple(baggage))


JAEGER = JaegerCodec()
