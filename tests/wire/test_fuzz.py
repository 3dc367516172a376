"""Hostile carriers: every extract over every carrier never raises, returns only valid values."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from willowisp.wire.b3 import B3_SINGLE, B3Context
from willowisp.wire.baggage import BAGGAGE_CODEC, MAX_BYTES, MAX_MEMBERS, Baggage
from willowisp.wire.carriers import (
    AmqpHeaders,
    GrpcMetadata,
    HeaderList,
    HttpHeaders,
    KafkaHeaders,
    SqsMessageAttributes,
    THeaderHeaders,
)
from willowisp.wire.env import EnvCarrier
from willowisp.wire.jaeger import JAEGER, JaegerContext
from willowisp.wire.tracecontext import TRACECONTEXT, W3CContext
from willowisp.wire.traceparent import is_valid
from willowisp.wire.tracestate import MAX_MEMBERS as TS_MAX
from willowisp.wire.tracestate import is_key, is_value
from willowisp.wire.xray import XRAY, XRayContext

NAMES = ["traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid",
         "x-b3-sampled", "x-b3-flags", "uber-trace-id", "uberctx-k", "x-amzn-trace-id"]  # fmt: skip
# Values near the formats (so parsers get deep) mixed with arbitrary text, bytes and huge runs.
near = st.sampled_from(
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-d",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "abc%3A1f%3A0%3A3",
        "a=1,b=2;p",
    ]
)
mutated = st.tuples(near, st.integers(0, 80), st.text(max_size=3)).map(
    lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
)
huge = st.tuples(st.sampled_from("a=,-0f%;"), st.integers(1, 100_000)).map(lambda t: t[0] * t[1])
values = st.one_of(near, mutated, st.text(), st.binary(), huge, st.integers(), st.none())
names = st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES).map(str.upper), st.text())
pairs = st.lists(st.tuples(names, values), max_size=12)


def _check(found: Any) -> None:
    if found is None:
        return
    if isinstance(found, Baggage):
        assert 0 < len(found.members) <= MAX_MEMBERS
        assert sum(len(m.encode().encode()) + 1 for m in found.members) - 1 <= MAX_BYTES
        return
    if isinstance(found, B3Context) and found.context is None:
        return
    assert isinstance(found, W3CContext | B3Context | JaegerContext | XRayContext)
    assert found.context is not None and is_valid(found.context)
    if isinstance(found, W3CContext):
        entries = found.tracestate.entries
        assert len(entries) <= TS_MAX
        assert all(is_key(k) and is_value(v) for k, v in entries)


def _carriers(ps: list[tuple[Any, Any]]) -> list[Any]:
    text = {k: v for k, v in ps if isinstance(k, str)}
    return [
        HttpHeaders(dict(ps)),
        HeaderList(list(ps)),
        GrpcMetadata(list(ps)),
        KafkaHeaders(list(ps)),
        AmqpHeaders(dict(ps)),
        THeaderHeaders(dict(ps)),
        SqsMessageAttributes({k: {"DataType": "String", "StringValue": v} for k, v in ps}),
        EnvCarrier({k.upper().replace("-", "_"): v for k, v in text.items()}),
    ]


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_extract_never_raises_never_invalid(ps: list[tuple[Any, Any]]) -> None:
    """Arbitrary names and values (text, bytes, huge, wrong types) never raise or mislead."""
    for carrier in _carriers(ps):
        for codec in (TRACECONTEXT, B3_SINGLE, JAEGER, XRAY, BAGGAGE_CODEC):
            _check(codec.extract(carrier))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NAMES), mutated), max_size=6))
def test_near_miss_values_never_invalid(ps: list[tuple[str, str]]) -> None:
    """Values one edit away from valid headers give either None or a valid value."""
    for codec in (TRACECONTEXT, B3_SINGLE, JAEGER, XRAY, BAGGAGE_CODEC):
        _check(codec.extract(HeaderList(list(ps))))
