"""MessageHeaders: the carrier over the headers http.client and http.server parse (an
email.message.Message), read through the message's own case-insensitive lookup."""

from __future__ import annotations

import io
from email.header import Header
from http.client import parse_headers

from willowisp.wire.carriers import MessageHeaders
from willowisp.wire.tracecontext import TRACECONTEXT

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def parsed(raw: bytes) -> MessageHeaders:
    return MessageHeaders(parse_headers(io.BytesIO(raw + b"\r\n")))


def test_names_and_values_whatever_the_case():
    h = parsed(
        b"Host: x\r\nTraceParent: " + TP.encode() + b"\r\nTRACESTATE: a=1\r\ntracestate: b=2\r\n"
    )
    assert h.names() == ["host", "traceparent", "tracestate", "tracestate"]
    assert h.get("traceparent") == [TP]
    assert h.get("tracestate") == ["a=1", "b=2"]
    assert h.get("b3") == []
    found = TRACECONTEXT.extract(h)
    assert found is not None and found.context.span_id == "b7ad6b7169203331"
    assert found.tracestate.entries == (("a", "1"), ("b", "2"))


def test_bytes_beyond_ascii_read_as_latin_1_and_objects_skipped():
    """http.client decodes header bytes as ISO-8859-1, as HTTP does; a value the program
    set as an ``email.header.Header`` object is not text, and is skipped as every carrier
    skips what it cannot read as text."""
    h = parsed(b"traceparent: " + TP.encode() + b"\r\ntracestate: caf\xc3\xa9=1\r\n")
    assert h.get("tracestate") == ["caf\xc3\xa9=1"]
    h.message["b3"] = Header("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
    assert h.get("b3") == []
    assert h.names() == ["traceparent", "tracestate", "b3"]


def test_set_replaces_every_value():
    h = parsed(b"Traceparent: old\r\ntraceparent: older\r\nHost: x\r\n")
    h.set("traceparent", TP)
    assert h.get("traceparent") == [TP]
    assert h.names() == ["host", "traceparent"]
