"""W3C Trace Context ``traceparent``: ``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``.

Parsing follows the spec's rules for robustness: lowercase hex only, all-zero ids invalid,
version ``ff`` invalid, a higher version parsed by its fixed-offset prefix (length >= 55)
and re-emitted as ``00``. Anything invalid yields None, never an exception.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_V00 = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
SAMPLED = 0x01


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex: the span the sender put on the wire
    flags: int = SAMPLED

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def child(self) -> TraceContext:
        """A new span in the same trace (for the next hop out)."""
        return TraceContext(self.trace_id, new_span_id(), self.flags)


def new_span_id() -> str:
    while True:
        s = os.urandom(8).hex()
        if s != "0" * 16:
            return s


def new_trace_id() -> str:
    while True:
        s = os.urandom(16).hex()
        if s != "0" * 32:
            return s


def parse(value: str | None) -> TraceContext | None:
    """The context in a traceparent header value, or None if it is not a valid one."""
    if not value or len(value) > 512:
        return None
    v = value.strip()
    m = _V00.match(v)
    if not m:
        return None
    version, trace_id, span_id, flags, tail = m.groups()
    if version == "ff":
        return None
    if version == "00" and tail:
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceContext(trace_id, span_id, int(flags, 16))
