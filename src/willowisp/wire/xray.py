"""AWS X-Ray trace header: ``X-Amzn-Trace-Id`` (HTTP) and ``AWSTraceHeader`` (SQS).

``Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1``. The Root
is ``1-{8 hex epoch seconds}-{24 hex}``; the W3C trace id is the two hex parts joined
(32 hex), so a trace keeps one id when it crosses between X-Ray and W3C services, and the
mapping back is the reverse split. Parent is the 16-hex span id and is required (a header
with only a Root names a trace but no span to link to). Sampled is ``1``, ``0`` or absent /
``?`` (deferred). Other fields (``Lineage=...``, ``Self=...``) are kept verbatim and written
back so that AWS services downstream see them.

Field names are case-sensitive as AWS writes them; hex is accepted in either case and
normalised to lowercase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from willowisp.wire.codec import Getter, Setter
from willowisp.wire.traceparent import INVALID_SPAN_ID, INVALID_TRACE_ID, SAMPLED, TraceContext

X_AMZN_TRACE_ID = "x-amzn-trace-id"
_ROOT = re.compile(r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})")
_PARENT = re.compile(r"[0-9a-fA-F]{16}")
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_EXTRA_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]{0,256}")  # printable, no ";"


@dataclass(frozen=True, slots=True)
class XRayContext:
    """An X-Ray header. ``sampled`` is None when the sender deferred the decision.

    Invariant: ``context.flags`` has SAMPLED set exactly when ``sampled`` is True.
    """

    context: TraceContext
    sampled: bool | None = True
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def root(self) -> str:
        """The X-Ray Root, ``1-{first 8 hex}-{last 24 hex}`` of the trace id."""
        t = self.context.trace_id
        return f"1-{t[:8]}-{t[8:]}"

    @staticmethod
    def of(context: TraceContext) -> XRayContext:
        """The X-Ray value for a W3C context (Sampled from its flags)."""
        return XRayContext(context, context.sampled)

    def header(self) -> str:
        """The header value, fields in AWS's order followed by the extras."""
        parts = [f"Root={self.root}", f"Parent={self.context.span_id}"]
        if self.sampled is not None:
            parts.append(f"Sampled={int(self.sampled)}")
        parts.extend(f"{k}={v}" for k, v in self.extra)
        return ";".join(parts)


def parse_xray(value: str) -> XRayContext | None:
    """The X-Ray context in one header value, or None without a valid Root and Parent."""
    if len(value) > 1024:
        return None
    trace_id = span_id = None
    sampled: bool | None = None
    extra: list[tuple[str, str]] = []
    for part in value.split(";"):
        key, eq, v = part.strip().partition("=")
        if not eq:
            if key:
                return None
            continue
        if key == "Root":
            m = _ROOT.fullmatch(v)
            if m is None or trace_id is not None:
                return None
            trace_id = (m.group(1) + m.group(2)).lower()
        elif key == "Parent":
            if _PARENT.fullmatch(v) is None or span_id is not None:
                return None
            span_id = v.lower()
        elif key == "Sampled":
            sampled = {"1": True, "0": False}.get(v)
        elif _FIELD.fullmatch(key) and _EXTRA_VALUE.fullmatch(v) and len(extra) < 8:
            extra.append((key, v))
    if trace_id is None or span_id is None:
        return None
    if trace_id == INVALID_TRACE_ID or span_id == INVALID_SPAN_ID:
        return None
    ctx = TraceContext(trace_id, span_id, SAMPLED if sampled else 0)
    return XRayContext(ctx, sampled, tuple(extra))


class XRayCodec:
    """``X-Amzn-Trace-Id`` (OTel's ``xray`` propagator)."""

    fields = (X_AMZN_TRACE_ID,)

    def inject(self, value: XRayContext, carrier: Setter) -> None:
        """Write the header."""
        carrier.set(X_AMZN_TRACE_ID, value.header())

    def extract(self, carrier: Getter) -> XRayContext | None:
        """The context, or None when the header is absent, repeated or malformed."""
        values = carrier.get(X_AMZN_TRACE_ID)
        if len(values) != 1:
            return None
        return parse_xray(values[0])


XRAY = XRayCodec()
