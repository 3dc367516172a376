"""B3 single and multi: single wins, debug implies sampled, b3: 0, 64-bit ids padded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.wire.strategies import contexts, span_ids

from willowisp.wire.b3 import B3_MULTI, B3_SINGLE, B3Codec, B3Context, Sampling
from willowisp.wire.carriers import HttpHeaders
from willowisp.wire.traceparent import TraceContext

TID, SID, PID = "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "0020000000000001"


def _x(headers: dict[str, str]) -> B3Context | None:
    return B3_SINGLE.extract(HttpHeaders(headers))


@given(contexts, st.sampled_from(Sampling), st.none() | span_ids, st.booleans())
def test_round_trip(ctx: TraceContext, s: Sampling, parent: str | None, single: bool) -> None:
    """Context and sampling survive both styles; the parent survives single with a decision."""
    ctx = TraceContext(ctx.trace_id, ctx.span_id, ctx.flags & 1)  # B3 carries only this bit
    value = B3Context.of(ctx, s, parent)
    headers: dict[str, str] = {}
    codec = B3Codec(single=single)
    codec.inject(value, HttpHeaders(headers))
    got = codec.extract(HttpHeaders(headers))
    keeps_parent = single and s is not Sampling.DEFER
    assert got == B3Context(value.context, s, parent if keeps_parent else None)
    assert "x-b3-parentspanid" not in headers


def test_single_full() -> None:
    """The README's single header, with parent, is read."""
    got = _x({"b3": f"{TID}-{SID}-1-{PID}"})
    assert got == B3Context(TraceContext(TID, SID, 1), Sampling.ACCEPT, PID)


def test_64_bit_trace_id_left_padded() -> None:
    """A 16-hex trace id becomes the 32-hex id with zeros on the left."""
    got = _x({"b3": f"{TID[16:]}-{SID}"})
    assert got is not None and got.context is not None
    assert got.context.trace_id == "0" * 16 + TID[16:]
    assert got.sampling is Sampling.DEFER and not got.context.sampled


def test_debug_implies_sampled() -> None:
    """'d' and X-B3-Flags: 1 both mean sampled."""
    for headers in (
        {"b3": f"{TID}-{SID}-d"},
        {"X-B3-TraceId": TID, "X-B3-SpanId": SID, "X-B3-Flags": "1", "X-B3-Sampled": "0"},
    ):
        got = _x(headers)
        assert got is not None and got.context is not None
        assert got.sampling is Sampling.DEBUG and got.context.sampled


def test_bare_deny() -> None:
    """b3: 0 alone is a decision without ids."""
    assert _x({"b3": "0"}) == B3Context(None, Sampling.DENY)
    headers: dict[str, str] = {}
    B3_SINGLE.inject(B3Context(None, Sampling.DENY), HttpHeaders(headers))
    assert headers == {"b3": "0"}


def test_single_wins_over_multi() -> None:
    """When both are present and valid, the single header is used."""
    got = _x({"b3": f"{TID}-{SID}-0", "X-B3-TraceId": "1" * 32, "X-B3-SpanId": "2" * 16})
    assert got is not None and got.context is not None and got.context.trace_id == TID


def test_invalid_single_falls_back_to_multi() -> None:
    """A malformed single header does not hide valid multi headers."""
    got = _x({"b3": "nonsense", "X-B3-TraceId": TID, "X-B3-SpanId": SID, "X-B3-Sampled": "true"})
    assert got is not None and got.sampling is Sampling.ACCEPT


def test_multi_style_inject() -> None:
    """Multi style writes TraceId, SpanId and Sampled, never ParentSpanId."""
    headers: dict[str, str] = {}
    B3_MULTI.inject(B3Context.of(TraceContext(TID, SID, 1), None, PID), HttpHeaders(headers))
    assert headers == {"x-b3-traceid": TID, "x-b3-spanid": SID, "x-b3-sampled": "1"}


@pytest.mark.parametrize(
    "value",
    [
        f"{TID.upper()}-{SID}",
        f"{'0' * 32}-{SID}",
        f"{TID}-{'0' * 16}",
        f"{TID}-{SID}-2",
        f"{TID}-{SID}-1-{'0' * 16}",
        f"{TID}-{SID}-1-{PID}-x",
        f"{TID[:20]}-{SID}",
        TID,
        "",
    ],
)
def test_malformed_single_ignored(value: str) -> None:
    """Uppercase, zero ids, bad sampling, bad parent, odd lengths: None."""
    assert _x({"b3": value}) is None


def test_multi_needs_both_ids() -> None:
    """A trace id without a span id is not a context."""
    assert _x({"X-B3-TraceId": TID}) is None
