"""Transport carriers: case-insensitive lookup, multi-values, types skipped, written in place."""

from __future__ import annotations

from typing import Any

import pytest

from willowisp.errors import UsageError
from willowisp.wire.b3 import B3_MULTI, B3Context
from willowisp.wire.baggage import BAGGAGE_CODEC, Baggage, BaggageMember
from willowisp.wire.carriers import (
    AmqpHeaders,
    GrpcMetadata,
    HeaderList,
    HttpHeaders,
    KafkaHeaders,
    SqsMessageAttributes,
    SqsSystemAttributes,
    THeaderHeaders,
)
from willowisp.wire.env import EnvCarrier, env_name
from willowisp.wire.jaeger import JAEGER, JaegerContext
from willowisp.wire.payload import PayloadCarrier, compile_path
from willowisp.wire.tracecontext import TRACECONTEXT, W3CContext
from willowisp.wire.traceparent import TraceContext
from willowisp.wire.tracestate import parse_tracestate
from willowisp.wire.xray import XRAY, XRayContext

CTX = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
W3C = W3CContext(CTX, parse_tracestate(["a=1,b=2"]))
TP = CTX.header()


def _carriers() -> list[tuple[str, Any]]:
    return [
        ("http", HttpHeaders({})),
        ("list", HeaderList([])),
        ("grpc", GrpcMetadata([])),
        ("kafka", KafkaHeaders([])),
        ("amqp", AmqpHeaders({})),
        ("theader", THeaderHeaders({})),
        ("sqs", SqsMessageAttributes({})),
        ("env", EnvCarrier({})),
        ("payload", PayloadCarrier({}, {"traceparent": "$.meta.tp", "tracestate": "$.meta.ts"})),
    ]


@pytest.mark.parametrize(("kind", "carrier"), _carriers())
def test_w3c_round_trip_every_carrier(kind: str, carrier: Any) -> None:
    """W3C context and tracestate survive inject + extract through every carrier."""
    TRACECONTEXT.inject(W3C, carrier)
    TRACECONTEXT.inject(W3C, carrier)  # a second inject replaces, never duplicates
    assert TRACECONTEXT.extract(carrier) == W3C


@pytest.mark.parametrize(("kind", "carrier"), _carriers()[:7])
def test_other_codecs_round_trip_header_carriers(kind: str, carrier: Any) -> None:
    """B3, X-Ray, baggage and Jaeger survive every header-like carrier."""
    values: list[tuple[Any, Any]] = [
        (B3_MULTI, B3Context.of(CTX)),
        (XRAY, XRayContext.of(CTX)),
        (BAGGAGE_CODEC, Baggage((BaggageMember("k", "v é"),))),
        (JAEGER, JaegerContext(CTX, 1, (("user", "x y"),))),
    ]
    for codec, value in values:
        codec.inject(value, carrier)
        assert codec.extract(carrier) == value


def test_http_case_insensitive_and_bytes() -> None:
    """HTTP names match in any case; bytes are read as ISO-8859-1."""
    assert HttpHeaders({b"TraceParent": TP.encode()}).get("traceparent") == [TP]
    assert HeaderList([(b"TRACEPARENT", TP.encode())]).get("traceparent") == [TP]


def test_http_set_replaces_other_case() -> None:
    """Injecting replaces a differently-cased header instead of adding a second one."""
    headers = {"TraceParent": "old"}
    HttpHeaders(headers).set("traceparent", TP)
    assert headers == {"traceparent": TP}


def test_grpc_skips_bin_keys() -> None:
    """-bin metadata is binary and never read as text."""
    md = GrpcMetadata([("grpc-trace-bin", b"\x00\x01"), ("traceparent", TP)])
    assert md.get("grpc-trace-bin") == []
    assert list(md.names()) == ["traceparent"]


def test_kafka_writes_bytes_and_skips_undecodable() -> None:
    """Kafka values are UTF-8 bytes; undecodable ones are skipped."""
    pairs: list[tuple[Any, Any]] = [("traceparent", b"\xff\xfe")]
    kafka = KafkaHeaders(pairs)
    assert TRACECONTEXT.extract(kafka) is None
    TRACECONTEXT.inject(W3CContext(CTX), kafka)
    assert pairs == [("traceparent", TP.encode())]


def test_amqp_mixed_value_types() -> None:
    """AMQP str and bytes values are read; ints and tables are skipped."""
    amqp = AmqpHeaders({"traceparent": TP.encode(), "tracestate": 5, "x": {"a": 1}})
    got = TRACECONTEXT.extract(amqp)
    assert got == W3CContext(CTX)


def test_sqs_attributes_only_strings() -> None:
    """SQS String attributes are read; Binary ones are skipped; writes use String."""
    attrs: dict[str, Any] = {
        "traceparent": {"DataType": "String", "StringValue": TP},
        "tracestate": {"DataType": "Binary", "BinaryValue": b"a=1"},
    }
    assert TRACECONTEXT.extract(SqsMessageAttributes(attrs)) == W3CContext(CTX)
    SqsMessageAttributes(attrs).set("baggage", "k=v")
    assert attrs["baggage"] == {"DataType": "String", "StringValue": "k=v"}


def test_sqs_system_attributes_only_trace_header() -> None:
    """Only AWSTraceHeader is visible, as x-amzn-trace-id."""
    attrs: dict[str, Any] = {}
    XRAY.inject(XRayContext.of(CTX), SqsSystemAttributes(attrs))
    assert list(attrs) == ["AWSTraceHeader"]
    assert SqsSystemAttributes(attrs).get("traceparent") == []


def test_env_names_normalised() -> None:
    """Field names become OTel env-carrier names; reads use only those."""
    assert env_name("traceparent") == "TRACEPARENT"
    assert env_name("x-b3-traceid") == "X_B3_TRACEID"
    assert env_name("1abc.def") == "_1ABC_DEF"
    assert EnvCarrier({"traceparent": TP}).get("traceparent") == []
    assert EnvCarrier({"TRACEPARENT": TP}).get("traceparent") == [TP]


def test_env_read_only_mapping_refuses_inject() -> None:
    """Injecting into a read-only mapping is a programming error, reported as TypeError."""
    from types import MappingProxyType

    with pytest.raises(TypeError, match="read-only"):
        EnvCarrier(MappingProxyType({})).set("traceparent", TP)


def test_payload_paths() -> None:
    """Declared JSON paths are read; absent, non-string or undeclared give nothing."""
    doc = {"meta": {"ids": [{"traceparent": TP}], "n": 5}}
    carrier = PayloadCarrier(
        doc, {"traceparent": "$.meta.ids[0]['traceparent']", "tracestate": "$.meta.n"}
    )
    assert carrier.get("traceparent") == [TP]
    assert carrier.get("tracestate") == []
    assert carrier.get("baggage") == []
    assert PayloadCarrier([], {"traceparent": "$.a[3].b"}).get("traceparent") == []


@pytest.mark.parametrize(
    "path", ["meta.tp", "$", "$.a..b", "$[a]", "$.a[__import__('os')]", "$" + ".a" * 17]
)
def test_payload_bad_path_is_usage_error(path: str) -> None:
    """Invalid or too-deep paths are rejected at construction, never evaluated."""
    with pytest.raises(UsageError, match="JSON path"):
        compile_path(path)


def test_payload_set_through_non_object_raises() -> None:
    """Writing through a string is a configuration error."""
    carrier = PayloadCarrier({"meta": "x"}, {"traceparent": "$.meta.tp"})
    with pytest.raises(UsageError, match="does not lead"):
        carrier.set("traceparent", TP)
