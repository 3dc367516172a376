"""Jaeger uber-trace-id: URL-decoding, variable-length ids, zero invalid, uberctx- baggage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.wire.strategies import contexts

from willowisp.wire.carriers import HttpHeaders
from willowisp.wire.jaeger import JAEGER, JaegerContext
from willowisp.wire.traceparent import TraceContext


def _x(headers: dict[str, str]) -> JaegerContext | None:
    return JAEGER.extract(HttpHeaders(headers))


@given(
    contexts,
    st.integers(0, 255),
    st.dictionaries(st.text("abc-_", min_size=1, max_size=5), st.text(max_size=20), max_size=4),
)
def test_round_trip(ctx: TraceContext, flags: int, bag: dict[str, str]) -> None:
    """Context, flag byte and baggage (any text) survive inject + extract."""
    ctx = TraceContext(ctx.trace_id, ctx.span_id, flags & 1)
    value = JaegerContext(ctx, flags, tuple(bag.items()))
    headers: dict[str, str] = {}
    JAEGER.inject(value, HttpHeaders(headers))
    got = _x(headers)
    assert got is not None
    assert (got.context, got.flags, dict(got.baggage)) == (ctx, flags, bag)


def test_url_encoded_and_short_ids() -> None:
    """%3A-encoded colons are decoded; short ids are left-padded."""
    got = _x({"Uber-Trace-Id": "abc%3A1f%3A0%3A3", "uberctx-user": "al%20ice"})
    assert got is not None
    assert got.context == TraceContext("0" * 29 + "abc", "0" * 14 + "1f", 1)
    assert got.debug and got.baggage == (("user", "al ice"),)


def test_uppercase_normalised() -> None:
    """Upper-case hex is accepted and written back lowercase."""
    got = _x({"uber-trace-id": "ABC:DEF:0:1"})
    assert got is not None and got.context.trace_id.endswith("abc")


@pytest.mark.parametrize(
    "value",
    ["0:1:0:1", "1:0:0:1", "1:1:0", "1:1:0:1:5", "x:1:0:1", "1:1:0:100", "1" * 33 + ":1:0:1", ""],
)
def test_malformed_ignored(value: str) -> None:
    """Zero ids, wrong field counts, non-hex, oversized ids or flags: None."""
    assert _x({"uber-trace-id": value}) is None
