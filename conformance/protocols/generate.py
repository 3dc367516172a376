"""The protocol corpus: bytes a peer sends on one connection, and what must come of them.

``docs/protocols.md`` specifies the control channel and the native stream; this corpus
pins down how an implementation answers valid and malformed input: truncated frames,
oversized lengths, wrong magic and versions, wrong tokens, bad JSON, unknown commands,
huge strings, non-UTF-8, bad chunks. Each item is one file (``control/NAME.bin`` or
``stream/NAME.bin``) and an entry in ``index.json`` with the expected outcome; the harness
is described at the end of ``docs/protocols.md``. Every agent's tests feed every item to
their control server, and the collector's tests to its stream receiver.

Items are built here in code so each says what it tests. ``tests/protocols`` rebuilds them
in memory and compares with the committed files. After a deliberate protocol change, run
``python conformance/protocols/generate.py`` and commit the result.
"""

from __future__ import annotations

import json
import random
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from willowisp.wtrace.payload import Record, encode_payload

HERE = Path(__file__).resolve().parent
TOKEN = "0123456789abcdef0123456789abcdef"  # start the server under test with this token
PROCESS_ID = "5f0c3a9e1d2b4c6f8a7e9d0b1c2a3f4e"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Item:
    """One corpus case: its file's bytes and the index entry (without name and file)."""

    channel: str  # control or stream
    name: str
    description: str
    data: bytes
    expect: dict[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return f"{self.channel}/{self.name}.bin"


def frame(magic: bytes, body: bytes | dict[str, Any]) -> bytes:
    if isinstance(body, dict):
        body = json.dumps(body, separators=(",", ":")).encode()
    return magic + struct.pack("<I", len(body)) + body


def ctl(body: bytes | dict[str, Any]) -> bytes:
    return frame(b"WCTL", body)


def msg(body: bytes | dict[str, Any]) -> bytes:
    return frame(b"WSTR", body)


HELLO = ctl({"op": "hello", "versions": [1], "token": TOKEN, "client": "corpus"})
PING = ctl({"op": "ping"})


def chunk(
    records: list[Record],
    *,
    codec: int = 0,
    stored: bytes | None = None,
    crc_xor: int = 0,
    reserved: int = 0,
    stored_len: int | None = None,
    raw_len: int | None = None,
) -> bytes:
    """A chunk framed by hand (so broken ones can be made), payload from the encoder."""
    payload = encode_payload(records, None)
    body = payload if stored is None else stored
    header = struct.pack(
        "<4sBBHIII",
        b"WCHK",
        codec,
        reserved,
        0,
        len(body) if stored_len is None else stored_len,
        len(payload) if raw_len is None else raw_len,
        zlib.crc32(payload) ^ crc_xor,
    )
    return header + body


def fault_record(i: int) -> Record:
    return Record(5, i, (("message", f"corpus chunk {i}"), ("where", "corpus")))


PROCESS_RECORD = Record(1, 0, (("process_id", PROCESS_ID), ("service", "corpus"), ("pid", 4242)))


def stream_hello(**change: Any) -> bytes:
    hello: dict[str, Any] = {
        "op": "hello",
        "versions": [1],
        "token": TOKEN,
        "format": [1, 0],
        "process_id": PROCESS_ID,
        "service": "corpus",
        "pid": 4242,
        "runtime": "python",
        "segment": 1,
    }
    for k, v in change.items():
        if v is None:
            hello.pop(k, None)
        else:
            hello[k] = v
    return msg(hello)


C1 = chunk([PROCESS_RECORD])
C2 = chunk([fault_record(2)])
C3 = chunk([fault_record(3)])
BYE = msg({"op": "bye"})


def control_items() -> Iterator[Item]:
    def item(name: str, description: str, data: bytes, replies: list[Any], **more: Any) -> Item:
        return Item("control", name, description, data, {"replies": replies, **more})

    ok2 = ["ok", "ok"]
    yield item("hello_ping", "the shortest useful conversation", HELLO + PING, ok2)
    yield item(
        "id_echo",
        "a request's string id comes back in its reply",
        HELLO + ctl({"op": "ping", "id": "abc-1"}),
        ok2,
        id="abc-1",
    )
    yield item(
        "pipelined",
        "several requests before reading: one reply each, in order; integer id echoed",
        HELLO + ctl({"op": "status"}) + PING + ctl({"op": "ping", "id": 42}),
        ["ok"] * 4,
        id=42,
    )
    yield item(
        "many_requests", "two hundred pings on one connection", HELLO + PING * 200, ["ok"] * 201
    )
    yield item(
        "version_negotiation",
        "the client lists versions it speaks, newest first; the agent picks one it knows",
        ctl({"op": "hello", "versions": [7, 3, 1], "token": TOKEN}) + PING,
        ok2,
    )
    yield item("empty", "connect and close without a byte: no reply, no harm", b"", [])
    yield item(
        "http_request",
        "a browser or curl talking HTTP to the port: not our magic",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\r\n",
        ["error:bad-frame"],
    )
    yield item(
        "bad_magic_after_hello",
        "framing lost after a good hello: the connection ends",
        HELLO + frame(b"WCTX", {"op": "ping"}) + PING,
        ["ok", "error:bad-frame"],
    )
    yield item(
        "oversized_length",
        "a 4 GiB length: refused before reading or allocating the body",
        HELLO + b"WCTL" + struct.pack("<I", 0xFFFFFFFF) + b"{}",
        ["ok", "error:frame-too-large"],
    )
    yield item(
        "just_over_limit",
        "a length of 1 MiB + 1, the first size refused",
        HELLO + b"WCTL" + struct.pack("<I", MIB + 1) + b"{",
        ["ok", "error:frame-too-large"],
    )
    yield item(
        "truncated_header",
        "the peer closes inside a frame header: closed without a reply",
        HELLO + b"WCT",
        ["ok"],
    )
    yield item(
        "truncated_body",
        "the peer closes inside a frame body: closed without a reply",
        HELLO + b"WCTL" + struct.pack("<I", 100) + b'{"op":"pin',
        ["ok"],
    )
    yield item(
        "bad_token",
        "a wrong token: refused and closed (the ping after it is never answered)",
        ctl({"op": "hello", "versions": [1], "token": "f" * 32}) + PING,
        ["error:unauthorized"],
    )
    yield item(
        "token_prefix",
        "half of the right token is a wrong token",
        ctl({"op": "hello", "versions": [1], "token": TOKEN[:16]}) + PING,
        ["error:unauthorized"],
    )
    yield item(
        "missing_token",
        "a hello without a token",
        ctl({"op": "hello", "versions": [1]}) + PING,
        ["error:unauthorized"],
    )
    yield item(
        "token_not_a_string",
        "a token of the wrong JSON type",
        ctl({"op": "hello", "versions": [1], "token": 1234}) + PING,
        ["error:unauthorized"],
    )
    yield item(
        "unsupported_version",
        "no common protocol version: the reply lists the agent's, then it closes",
        ctl({"op": "hello", "versions": [99], "token": TOKEN}) + PING,
        ["error:unsupported-version"],
    )
    yield item(
        "versions_not_a_list",
        "versions must be a list of integers",
        ctl({"op": "hello", "versions": "1", "token": TOKEN}) + PING,
        ["error:bad-request"],
    )
    yield item(
        "command_before_hello",
        "a request before the hello",
        PING + HELLO + PING,
        ["error:hello-required"],
    )
    yield item(
        "bad_json_before_hello",
        "before the hello every error closes",
        ctl(b'{"op":') + HELLO,
        ["error:bad-json"],
    )
    yield item(
        "bad_json",
        "after the hello, a body that is not JSON is answered and the connection lives on",
        HELLO + ctl(b'{"op":') + PING,
        ["ok", "error:bad-json", "ok"],
    )
    yield item(
        "empty_body", "a zero-length body is not JSON", HELLO + ctl(b"") + PING,
        ["ok", "error:bad-json", "ok"],
    )  # fmt: skip
    yield item(
        "non_utf8",
        "bytes that are not UTF-8",
        HELLO + ctl(b'{"op":"\xff\xfe\xc0\xaf"}') + PING,
        ["ok", "error:bad-json", "ok"],
    )
    yield item(
        "nan",
        "NaN is not JSON",
        HELLO + ctl(b'{"op":"ping","id":NaN}') + PING,
        ["ok", "error:bad-json", "ok"],
    )
    yield item(
        "not_an_object",
        "a JSON array is not a request",
        HELLO + ctl(b"[1,2,3]") + PING,
        ["ok", "error:bad-request", "ok"],
    )
    yield item(
        "op_not_a_string",
        "op must be a string",
        HELLO + ctl({"op": 5}) + PING,
        ["ok", "error:bad-request", "ok"],
    )
    yield item(
        "bad_ids",
        "ids: an object, 65 characters, 2^60 (beyond doubles)",
        HELLO
        + ctl({"op": "ping", "id": {"a": 1}})
        + ctl({"op": "ping", "id": "i" * 65})
        + ctl({"op": "ping", "id": 2**60})
        + PING,
        ["ok", "error:bad-request", "error:bad-request", "error:bad-request", "ok"],
    )
    yield item(
        "huge_number",
        "a 5000-digit integer: some parsers refuse it (bad-json), others read it (bad-request)",
        HELLO + ctl(b'{"op":"ping","id":1' + b"0" * 5000 + b"}") + PING,
        ["ok", ["error:bad-json", "error:bad-request"], "ok"],
    )
    yield item(
        "deep_nesting",
        "50000 nested arrays: too deep for some parsers (bad-json), not an object to others",
        HELLO + ctl(b"[" * 50_000 + b"]" * 50_000) + PING,
        ["ok", ["error:bad-json", "error:bad-request"], "ok"],
    )
    yield item(
        "unknown_command",
        "an op the agent does not know",
        HELLO + ctl({"op": "format-disk"}) + PING,
        ["ok", "error:unknown-command", "ok"],
    )
    yield item(
        "huge_op",
        "a 100 kB op name: unknown, and not echoed in full",
        HELLO + ctl({"op": "x" * 100_000}) + PING,
        ["ok", "error:unknown-command", "ok"],
    )
    yield item(
        "huge_boundary",
        "a 100 kB boundary argument: over the 4096-byte limit",
        HELLO + ctl({"op": "enable", "boundary": "entry=http:GET /" + "a" * 100_000}) + PING,
        ["ok", "error:bad-request", "ok"],
    )
    yield item(
        "boundary_arguments",
        "enable without boundary, with a blank one, with a number",
        HELLO
        + ctl({"op": "enable"})
        + ctl({"op": "enable", "boundary": "   "})
        + ctl({"op": "disable", "boundary": 42})
        + PING,
        ["ok", "error:bad-request", "error:bad-request", "error:bad-request", "ok"],
    )
    yield item(
        "bad_spec",
        "a SPEC that does not parse is refused with the parser's message",
        HELLO + ctl({"op": "enable", "boundary": "entry="}) + PING,
        ["ok", "error:bad-boundary", "ok"],
    )
    yield item(
        "disable_unknown",
        "disabling a boundary the process does not know",
        HELLO + ctl({"op": "disable", "boundary": "corpus:no-such-boundary"}) + PING,
        ["ok", "error:bad-boundary", "ok"],
    )
    yield item(
        "enable_disable",
        "enable a new boundary from a SPEC, then disable it by name",
        HELLO
        + ctl({"op": "enable", "boundary": "entry=http:POST /corpus"})
        + ctl({"op": "disable", "boundary": "http:POST /corpus"})
        + ctl({"op": "status"}),
        ["ok", "ok", "ok", "ok"],
    )
    yield item(
        "lone_surrogate",
        "a JSON escape of a lone surrogate: refused as JSON, request or boundary",
        HELLO + ctl(b'{"op":"enable","boundary":"\\ud800"}') + PING,
        ["ok", ["error:bad-json", "error:bad-request", "error:bad-boundary"], "ok"],
    )
    yield item(
        "second_hello",
        "a second hello on one connection",
        HELLO + HELLO + PING,
        ["ok", "error:bad-request", "ok"],
    )
    rng = random.Random(20260101)
    yield item(
        "random_bytes",
        "4 kB of seeded random bytes",
        b"\x00" + bytes(rng.randrange(256) for _ in range(4096)),
        ["error:bad-frame"],
    )


def stream_items() -> Iterator[Item]:
    def item(
        name: str,
        description: str,
        data: bytes,
        hello: str | None,
        acked: int,
        end: str,
        chunks: int,
        **more: Any,
    ) -> Item:
        expect = {"hello": hello, "acked": acked, "end": end, "chunks": chunks, **more}
        return Item("stream", name, description, data, expect)

    h = stream_hello()
    yield item(
        "valid",
        "hello, two chunks, bye: both acknowledged and in the file",
        h + C1 + C2 + BYE,
        "ok",
        2,
        "bye",
        2,
        segment_file="corpus-4242-5f0c3a9e-1.wtrace",
    )
    yield item("no_bye", "the agent just closes after a chunk", h + C1, "ok", 1, "close", 1)
    yield item("hello_only", "a hello and nothing else", h, "ok", 0, "close", 0)
    yield item("empty", "connect and close", b"", None, 0, "close", 0)
    yield item("many_chunks", "a hundred chunks", h + C1 + C2 * 99 + BYE, "ok", 100, "bye", 100)
    payload = encode_payload([fault_record(9)], None)
    yield item(
        "deflate_chunk",
        "a deflate chunk is checked against the CRC of its uncompressed payload",
        h + chunk([fault_record(9)], codec=1, stored=zlib.compress(payload, 0)) + BYE,
        "ok",
        1,
        "bye",
        1,
    )
    garbage = bytes(range(40))
    yield item(
        "payload_not_interpreted",
        "the collector checks framing and CRC only: a right CRC over bytes that are no "
        "payload is stored (readers skip that chunk later)",
        h + struct.pack("<4sBBHIII", b"WCHK", 0, 0, 0, 40, 40, zlib.crc32(garbage)) + garbage,
        "ok",
        1,
        "close",
        1,
    )
    yield item(
        "service_path",
        "a service name with slashes cannot leave the output folder",
        stream_hello(service="../../etc/passwd") + C1,
        "ok",
        1,
        "close",
        1,
        segment_file=".._.._etc_passwd-4242-5f0c3a9e-1.wtrace",
    )
    for name, description, data, code in (
        ("http_request", "HTTP is not our magic", b"POST /v1/traces HTTP/1.1\r\n\r\n", "bad-frame"),
        ("bad_token", "a wrong token", stream_hello(token="0" * 32), "unauthorized"),
        ("missing_token", "no token", stream_hello(token=None), "unauthorized"),
        ("unsupported_version", "no common version", stream_hello(versions=[5]),
         "unsupported-version"),
        ("newer_format", "chunks of a newer format major", stream_hello(format=[2, 0]),
         "unsupported-format"),
        ("bad_format", "format is not [major, minor]", stream_hello(format="1.0"), "bad-request"),
        ("bad_process_id", "process id not 32 lowercase hex", stream_hello(process_id="XYZ"),
         "bad-request"),
        ("missing_pid", "no pid", stream_hello(pid=None), "bad-request"),
        ("huge_service", "a 300-character service", stream_hello(service="s" * 300),
         "bad-request"),
        ("not_hello", "the first message is not a hello", BYE, "hello-required"),
        ("hello_bad_json", "hello body not JSON", msg(b'{"op":"hel'), "bad-json"),
        ("hello_non_utf8", "hello body not UTF-8", msg(b'{"op":"\xff"}'), "bad-json"),
        ("hello_not_object", "hello body an array", msg(b"[]"), "bad-request"),
        ("hello_too_large", "a message over 64 KiB", b"WSTR" + struct.pack("<I", 65537),
         "frame-too-large"),
    ):  # fmt: skip
        yield item(name, description, data, f"error:{code}", 0, f"error:{code}", 0)
    yield item(
        "truncated_hello",
        "closed inside the hello: no reply",
        b"WSTR" + struct.pack("<I", 50) + b'{"op":',
        None,
        0,
        "close",
        0,
    )
    bad_chunks = (
        ("bad_crc", "a chunk whose CRC does not match", chunk([fault_record(2)], crc_xor=1)),
        (
            "oversized_chunk",
            "a declared length over 64 MiB: refused without reading it",
            chunk([fault_record(2)], stored_len=0x7FFFFFFF, raw_len=0x7FFFFFFF)[:20],
        ),
        ("unknown_codec", "codec byte 9", chunk([fault_record(2)], codec=9)),
        ("reserved_bytes", "a non-zero reserved byte", chunk([fault_record(2)], reserved=1)),
        (
            "length_mismatch",
            "codec none with stored length != raw length",
            chunk([fault_record(2)], raw_len=3),
        ),
        (
            "bad_deflate",
            "a deflate chunk that does not inflate",
            chunk([fault_record(2)], codec=1, stored=b"\x78\x9cnot deflate at all"),
        ),
    )
    for name, description, bad in bad_chunks:
        yield item(
            f"chunk_{name}",
            f"{description}, after a good one that stays written",
            h + C1 + bad + C3,
            "ok",
            1,
            "error:bad-chunk",
            1,
        )
    yield item(
        "chunk_truncated",
        "closed inside the second chunk: the first stays, the partial one is dropped",
        h + C1 + C2[:-5],
        "ok",
        1,
        "close",
        1,
    )
    yield item(
        "garbage_after_chunk",
        "bytes that are neither a chunk nor a message",
        h + C1 + b"GARBAGE!" + C2,
        "ok",
        1,
        "error:bad-frame",
        1,
    )
    yield item(
        "unknown_message",
        "a message other than bye after the hello",
        h + C1 + msg({"op": "flush"}),
        "ok",
        1,
        "error:bad-request",
        1,
    )
    yield item(
        "message_too_large",
        "a message over 64 KiB after the hello",
        h + C1 + b"WSTR" + struct.pack("<I", 70_000),
        "ok",
        1,
        "error:frame-too-large",
        1,
    )


def items() -> list[Item]:
    return [*control_items(), *stream_items()]


def index() -> dict[str, Any]:
    return {
        "description": "Protocol corpus for docs/protocols.md: bytes a peer sends on one "
        "connection and the outcome each must have. See the 'Conformance' section there.",
        "token": TOKEN,
        "process_id": PROCESS_ID,
        "items": [
            {
                "name": it.name,
                "channel": it.channel,
                "file": it.file,
                "description": it.description,
                **it.expect,
            }
            for it in items()
        ],
    }


def build() -> dict[str, bytes]:
    """Every file of the corpus, by path relative to this folder."""
    out = {it.file: it.data for it in items()}
    out["index.json"] = (json.dumps(index(), indent=1) + "\n").encode()
    return out


def main() -> int:
    for rel, data in build().items():
        path = HERE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    print(f"wrote {len(build())} files into {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
