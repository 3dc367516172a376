"""Frames of the live protocols: a magic, a u32 LE length, one JSON object.

Every message of the control channel (``WCTL``) and of the native stream (``WSTR``) is one
frame (``docs/protocols.md``, "Frames"). This module reads and writes them with the
protocols' hard limits, parses bodies into JSON objects, builds the control channel's
replies and compares tokens in constant time. Errors are :class:`ProtocolError` with the
code the peer is told.

Trade-off: reads are plain blocking ``recv`` on a socket whose timeout the caller sets;
the length is checked against the limit *before* the body is read, so a hostile peer
cannot make us allocate more than the limit.
"""

from __future__ import annotations

import hmac
import json
import socket
import struct
from typing import Any

from willowisp.errors import ProtocolError

FRAME = struct.Struct("<4sI")  # magic, body length (u32 LE)

CONTROL_MAGIC = b"WCTL"
CONTROL_VERSIONS = (1,)  # control protocol versions spoken, by agent and client alike
MAX_CONTROL_BODY = 1024 * 1024  # bytes of JSON per control frame, either direction

STREAM_MAGIC = b"WSTR"
STREAM_VERSIONS = (1,)  # native stream versions spoken, by agent and collector alike
MAX_MESSAGE_BODY = 64 * 1024  # a stream message: a hello, an ack, a bye

MAX_ID_CHARS = 64  # a request id that is a string
MAX_SAFE_INT = 2**53 - 1  # integers travel through JSON parsers that use doubles


def pack_frame(magic: bytes, obj: dict[str, Any]) -> bytes:
    """One frame: magic, u32 LE length, the object as compact ASCII JSON.

    ValueError if ``obj`` holds NaN or infinities (not JSON) or is not serialisable.
    """
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii")
    return FRAME.pack(magic, len(body)) + body


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes; ``b""`` when the peer closed before sending any of them.
    ProtocolError("truncated") when it closed part way. Socket timeouts propagate."""
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(min(n - len(buf), 65536))
        if not part:
            if not buf:
                return b""
            raise ProtocolError("truncated", f"connection closed {len(buf)} bytes into {n}")
        buf += part
    return bytes(buf)


def read_frame(sock: socket.socket, magic: bytes, max_body: int) -> bytes | None:
    """The body of the next frame, or None at a clean end of the connection.

    Raises ProtocolError: ``bad-frame`` (wrong magic: framing is lost), ``frame-too-large``
    (declared length over ``max_body``; nothing is allocated for it), ``truncated``.
    """
    head = recv_exact(sock, FRAME.size)
    if not head:
        return None
    seen, length = FRAME.unpack(head)
    if seen != magic:
        raise ProtocolError("bad-frame", f"frame starts with {seen!r}, expected {magic!r}")
    if length > max_body:
        raise ProtocolError("frame-too-large", f"frame of {length} bytes is over {max_body}")
    if length == 0:
        return b""
    body = recv_exact(sock, length)
    if not body:
        raise ProtocolError("truncated", f"connection closed before a {length}-byte body")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_object(body: bytes) -> dict[str, Any]:
    """A frame body as a JSON object. ``bad-json``: not UTF-8, not JSON (NaN included), or
    too deep for the parser; ``bad-request``: JSON but not an object."""
    try:
        obj = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad-json", f"body is not a UTF-8 JSON object: {exc}"[:300]) from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad-request", f"body is a JSON {type(obj).__name__}, not an object")
    return obj


def request_id(req: dict[str, Any]) -> tuple[Any, bool]:
    """The request's ``id`` to echo (None if absent) and whether it is a valid one."""
    rid = req.get("id")
    if rid is None:
        return None, True
    if isinstance(rid, str) and len(rid) <= MAX_ID_CHARS:
        return rid, True
    if isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) <= MAX_SAFE_INT:
        return rid, True
    return None, False


def ok_reply(result: dict[str, Any], rid: Any = None) -> dict[str, Any]:
    """A control channel success: ``{"ok": true, "result": ..., "id": rid}``."""
    reply: dict[str, Any] = {"ok": True, "result": result}
    if rid is not None:
        reply["id"] = rid
    return reply


def error_reply(code: str, message: str, rid: Any = None, **extra: Any) -> dict[str, Any]:
    """A control channel error; the message is cut to the protocol's 500 characters."""
    err: dict[str, Any] = {"code": code, "message": message[:500]}
    err.update(extra)
    reply: dict[str, Any] = {"ok": False, "error": err}
    if rid is not None:
        reply["id"] = rid
    return reply


def same_token(given: object, expected: str) -> bool:
    """Constant-time comparison (for equal lengths) of a token from the wire. False for a
    non-string, and always False when ``expected`` is empty (no token means no access)."""
    if not isinstance(given, str) or not expected:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


LINGER_S = 1.0  # draining input after an error, so the peer reads the reply (no RST)


def close_lingering(sock: socket.socket, linger: bool, max_bytes: int = 1024 * 1024) -> None:
    """Close; with ``linger``, first half-close and drain what the peer still sends (bounded
    in bytes and by ``LINGER_S``), so closing with unread input does not reset the
    connection and lose our last message. Never raises."""
    try:
        if linger:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(LINGER_S)
            left = max_bytes
            while left > 0 and (data := sock.recv(65536)):
                left -= len(data)
    except OSError:
        pass
    finally:
        sock.close()
