"""AWS X-Ray header: Root <-> 32-hex trace id, Parent, Sampled, extras kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.wire.strategies import contexts

from willowisp.wire.carriers import HttpHeaders, SqsSystemAttributes
from willowisp.wire.traceparent import SAMPLED, TraceContext
from willowisp.wire.xray import XRAY, XRayContext

HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@given(contexts, st.none() | st.booleans())
def test_round_trip(ctx: TraceContext, sampled: bool | None) -> None:
    """Trace id, span id and the sampling decision survive inject + extract."""
    ctx = TraceContext(ctx.trace_id, ctx.span_id, SAMPLED if sampled else 0)
    value = XRayContext(ctx, sampled)
    headers: dict[str, str] = {}
    XRAY.inject(value, HttpHeaders(headers))
    assert XRAY.extract(HttpHeaders(headers)) == value


def test_aws_example_and_root_mapping() -> None:
    """The documented header maps Root's hex parts to the W3C trace id."""
    got = XRAY.extract(HttpHeaders({"X-Amzn-Trace-Id": HEADER}))
    assert got is not None
    assert got.context == TraceContext("5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8", 1)
    assert got.root == "1-5759e988-bd862e3fe1be46a994272793"
    assert got.header() == HEADER


def test_sqs_system_attribute() -> None:
    """AWSTraceHeader in SQS system attributes is read as the X-Ray header."""
    got = XRAY.extract(SqsSystemAttributes({"AWSTraceHeader": HEADER, "SentTimestamp": "1"}))
    assert got is not None and got.sampled is True


def test_extras_kept_and_deferred_sampling() -> None:
    """Unknown fields are written back; Sampled=? means no decision."""
    got = XRAY.extract(HttpHeaders({"x-amzn-trace-id": HEADER[:-1] + "?;Lineage=a87bd80c:0"}))
    assert got is not None
    assert got.sampled is None and not got.context.sampled
    assert got.header().endswith("Parent=53995c3f42cd8ad8;Lineage=a87bd80c:0")


@pytest.mark.parametrize(
    "value",
    [
        "Root=1-5759e988-bd862e3fe1be46a994272793",
        "Parent=53995c3f42cd8ad8",
        "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
        "Root=1-5759e98-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
        "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;junk",
        HEADER + ";Root=1-5759e988-bd862e3fe1be46a994272794",
        "",
    ],
)
def test_malformed_ignored(value: str) -> None:
    """Missing Root or Parent, bad Root version or length, zero ids, junk: None."""
    assert XRAY.extract(HttpHeaders({"x-amzn-trace-id": value})) is None
