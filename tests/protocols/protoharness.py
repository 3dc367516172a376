"""The corpus harness of docs/protocols.md ("Conformance"), for the Python implementations.

Sends one item's bytes on a fresh connection, half-closes, reads until the other side
closes, and turns what came back into the outcome vocabulary of ``index.json``. Also used by
the fuzz tests, which check the same invariants on generated input.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from willowisp.agent.control import ERRORS
from willowisp.channel.frames import MAX_CONTROL_BODY
from willowisp.wtrace.framing import (
    CHUNK_HEADER_SIZE,
    FILE_HEADER_SIZE,
    file_header,
    parse_chunk_header,
    unpack_payload,
)

CORPUS = Path(__file__).resolve().parents[2] / "conformance" / "protocols"
INDEX = json.loads((CORPUS / "index.json").read_text())
TOKEN: str = INDEX["token"]
STREAM_ERRORS = {
    "bad-frame",
    "frame-too-large",
    "hello-required",
    "unauthorized",
    "unsupported-version",
    "unsupported-format",
    "bad-json",
    "bad-request",
    "bad-chunk",
    "busy",
    "timeout",
    "internal",
}

Connect = Callable[[], socket.socket]


def load_generate() -> ModuleType:
    """conformance/protocols/generate.py as a module (loaded once)."""
    name = "protocol_corpus_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CORPUS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def items(channel: str) -> list[dict[str, Any]]:
    return [it for it in INDEX["items"] if it["channel"] == channel]


def connector(address: str) -> Connect:
    """``unix:/path`` or ``host:port`` -> a function opening a new connection."""

    def connect() -> socket.socket:
        if address.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(address[5:])
        else:
            host, _, port = address.rpartition(":")
            s = socket.create_connection((host, int(port)), timeout=10)
        return s

    return connect


def exchange(connect: Connect, data: bytes) -> bytes:
    """Send ``data``, half-close, and return everything received until the peer closed."""
    sock = connect()
    try:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the peer closed early; what it said before is still readable
        received = bytearray()
        while part := sock.recv(65536):
            received += part
        return bytes(received)
    finally:
        sock.close()


def frames(data: bytes, magic: bytes, max_body: int = MAX_CONTROL_BODY) -> list[dict[str, Any]]:
    """The peer's bytes as complete, well-formed frames of JSON objects (asserted)."""
    out = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 8, f"half a frame header at the end: {data[pos:]!r}"
        seen, length = struct.unpack_from("<4sI", data, pos)
        assert seen == magic and length <= max_body
        body = data[pos + 8 : pos + 8 + length]
        assert len(body) == length, "half a frame body at the end"
        obj = json.loads(body.decode("utf-8"))
        assert isinstance(obj, dict)
        out.append(obj)
        pos += 8 + length
    return out


def control_outcome(reply: dict[str, Any]) -> str:
    """'ok' or 'error:CODE' for one control reply, checking its shape."""
    if reply.get("ok") is True:
        assert isinstance(reply.get("result"), dict), reply
        return "ok"
    assert reply.get("ok") is False, reply
    err = reply["error"]
    assert err["code"] in ERRORS, err
    assert isinstance(err["message"], str) and len(err["message"]) <= 500
    return f"error:{err['code']}"


def check_control_item(item: dict[str, Any], received: bytes) -> None:
    replies = frames(received, b"WCTL")
    got = [control_outcome(r) for r in replies]
    want = item["replies"]
    assert len(got) == len(want), f"{item['name']}: got {got}, expected {want}"
    for g, w in zip(got, want):
        assert g in (w if isinstance(w, list) else [w]), f"{item['name']}: got {got}"
    if "id" in item:
        assert replies[-1].get("id") == item["id"]


def hello(**fields: Any) -> bytes:
    body = json.dumps({"op": "hello", "versions": [1], "token": TOKEN, **fields}).encode()
    return b"WCTL" + struct.pack("<I", len(body)) + body


PING = b"WCTL" + struct.pack("<I", 13) + b'{"op":"ping"}'


def control_alive(connect: Connect) -> None:
    """The server still answers a valid hello and ping on a new connection."""
    got = [control_outcome(r) for r in frames(exchange(connect, hello() + PING), b"WCTL")]
    assert got == ["ok", "ok"]


def stream_outcome(received: bytes) -> dict[str, Any]:
    """hello / acked / end of one stream connection, from the collector's messages."""
    msgs = frames(received, b"WSTR", 65536)
    acked = 0
    for m in msgs:
        if "chunks" in m:
            assert isinstance(m["chunks"], int) and m["chunks"] >= acked, msgs
            acked = m["chunks"]
        if m.get("ok") is False:
            assert m["error"]["code"] in STREAM_ERRORS, m
    if not msgs:
        return {"hello": None, "acked": 0, "end": "close", "file": ""}

    def label(m: dict[str, Any]) -> str:
        if m.get("ok") is False:
            return f"error:{m['error']['code']}"
        return "ok" if m.get("op") == "hello" else str(m.get("op"))

    last = msgs[-1]
    end = label(last) if last.get("ok") is False or last.get("op") == "bye" else "close"
    return {"hello": label(msgs[0]), "acked": acked, "end": end, "file": msgs[0].get("file", "")}


def count_chunks(path: str) -> int:
    """Chunks in a collector's file, each checked for framing and CRC; nothing else in it."""
    data = Path(path).read_bytes()
    assert data[:FILE_HEADER_SIZE] == file_header()
    pos, n = FILE_HEADER_SIZE, 0
    while pos < len(data):
        header = parse_chunk_header(data, pos)
        stored = data[pos + CHUNK_HEADER_SIZE : pos + CHUNK_HEADER_SIZE + header.stored_len]
        unpack_payload(header, stored)
        pos += CHUNK_HEADER_SIZE + header.stored_len
        n += 1
    assert pos == len(data)
    return n


def stream_hello_bytes(**change: Any) -> bytes:
    gen = load_generate()
    return bytes(gen.stream_hello(**change))


def wtrace_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".wtrace"))
