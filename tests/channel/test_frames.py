"""The framing both live protocols share: limits checked before reading, errors coded, and
no collector or client reaching into the agent package for it."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest

from willowisp.channel.frames import (
    CONTROL_MAGIC,
    FRAME,
    STREAM_MAGIC,
    pack_frame,
    parse_object,
    read_frame,
    same_token,
)
from willowisp.errors import ProtocolError, WillowispError


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(5.0)
    b.settimeout(5.0)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_frame_round_trip(pair: tuple[socket.socket, socket.socket]) -> None:
    """A packed frame reads back as its object; a clean close after it reads as None."""
    a, b = pair
    a.sendall(pack_frame(STREAM_MAGIC, {"op": "ack", "chunks": 3}))
    a.shutdown(socket.SHUT_WR)
    body = read_frame(b, STREAM_MAGIC, 1024)
    assert body is not None and parse_object(body) == {"op": "ack", "chunks": 3}
    assert read_frame(b, STREAM_MAGIC, 1024) is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "bad-frame"),  # a browser: no magic
        (FRAME.pack(CONTROL_MAGIC, 2**31), "frame-too-large"),  # refused before the body
        (FRAME.pack(CONTROL_MAGIC, 10) + b"{}", "truncated"),
        (b"WCT", "truncated"),
    ],
)
def test_bad_frames_are_coded(
    pair: tuple[socket.socket, socket.socket], data: bytes, code: str
) -> None:
    """Each way a frame can be wrong ends the read with its protocol error code."""
    a, b = pair
    a.sendall(data)
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(ProtocolError) as info:
        read_frame(b, CONTROL_MAGIC, 1024)
    assert info.value.code == code
    assert isinstance(info.value, WillowispError)


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"\xff", "bad-json"), (b"NaN", "bad-json"), (b"[1]", "bad-request"), (b"", "bad-json")],
)
def test_bodies_that_are_not_objects(body: bytes, code: str) -> None:
    """Only a UTF-8 JSON object is a message; anything else is bad-json or bad-request."""
    with pytest.raises(ProtocolError) as info:
        parse_object(body)
    assert info.value.code == code


def test_same_token() -> None:
    """Tokens match only when equal, strings, and a token is expected at all."""
    assert same_token("ab" * 16, "ab" * 16)
    assert not same_token("ab" * 16, "ba" * 16)
    assert not same_token(b"ab" * 16, "ab" * 16)
    assert not same_token("", "")


def test_collector_and_ctl_do_not_import_the_agent() -> None:
    """The collector and `willowisp ctl` get the framing from willowisp.channel, not the
    agent package (which would load the agent's hooks into a CLI process)."""
    code = (
        "import sys, willowisp.collect.native, willowisp.cli.ctl, willowisp.cli.collect; "
        "print(sorted(m for m in sys.modules if m.startswith('willowisp.agent')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_length_is_little_endian() -> None:
    """The length field is a u32 LE after the four-byte magic (docs/protocols.md)."""
    data = pack_frame(CONTROL_MAGIC, {"op": "ping"})
    assert data[:4] == b"WCTL"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
