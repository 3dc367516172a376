"""The same context through W3C, B3, Jaeger and X-Ray keeps its trace id and span id."""

from __future__ import annotations

from hypothesis import given
from tests.wire.strategies import contexts

from willowisp.wire.b3 import B3_MULTI, B3_SINGLE, B3Context
from willowisp.wire.carriers import HttpHeaders
from willowisp.wire.jaeger import JAEGER, JaegerContext
from willowisp.wire.tracecontext import TRACECONTEXT, W3CContext
from willowisp.wire.traceparent import TraceContext
from willowisp.wire.xray import XRAY, XRayContext


@given(contexts)
def test_ids_and_sampled_agree_across_formats(ctx: TraceContext) -> None:
    """One context injected in every format extracts to the same ids and sampled bit."""
    headers: dict[str, str] = {}
    carrier = HttpHeaders(headers)
    TRACECONTEXT.inject(W3CContext(ctx), carrier)
    B3_SINGLE.inject(B3Context.of(ctx), carrier)
    B3_MULTI.inject(B3Context.of(ctx), carrier)
    JAEGER.inject(JaegerContext(ctx, ctx.flags & 1), carrier)
    XRAY.inject(XRayContext.of(ctx), carrier)
    w3c, b3, jaeger, xray = (
        TRACECONTEXT.extract(carrier),
        B3_SINGLE.extract(carrier),
        JAEGER.extract(carrier),
        XRAY.extract(carrier),
    )
    assert w3c is not None and b3 is not None and jaeger is not None and xray is not None
    assert b3.context is not None
    got = {(c.trace_id, c.span_id, c.sampled) for c in (b3.context, jaeger.context, xray.context)}
    assert got == {(ctx.trace_id, ctx.span_id, ctx.sampled)}
    assert w3c.context == ctx


def test_xray_root_is_w3c_trace_id() -> None:
    """The documented X-Ray Root and the W3C trace id are the same 32 hex digits."""
    tp = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
    headers = {"traceparent": tp}
    w3c = TRACECONTEXT.extract(HttpHeaders(headers))
    assert w3c is not None
    assert XRayContext.of(w3c.context).header() == (
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    )


def test_b3_64_bit_id_reaches_w3c_padded() -> None:
    """A 64-bit B3 trace id continues in W3C as the zero-padded 128-bit id."""
    b3 = B3_SINGLE.extract(HttpHeaders({"b3": "48485a3953bb6124-a2fb4a1d1a96d312-1"}))
    assert b3 is not None and b3.context is not None
    headers: dict[str, str] = {}
    TRACECONTEXT.inject(W3CContext(b3.context), HttpHeaders(headers))
    assert headers["traceparent"] == "00-000000000000000048485a3953bb6124-a2fb4a1d1a96d312-01"
