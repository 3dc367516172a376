"""The OTLP/HTTP receiver: ``POST /v1/traces`` (protobuf or JSON, optionally gzip).

A small HTTP/1.1 server on asyncio streams, in a thread of its own, with keep-alive. It
implements just what OTLP/HTTP exporters send, so each rule is visible here: one path, one
method, two content types, ``gzip`` or no encoding, ``Content-Length`` or chunked bodies.
Measured on a 2-core machine it takes well over the 50,000 spans/s target (``bench/
bench_collect.py``); ``http.server``'s thread per connection was not needed nor wanted.

One request, in order (docs/collect.md has the table of answers):

1. the request line and headers (at most 64 KiB; 431 beyond), complete within
   :data:`HEAD_TIMEOUT_S` of connect for the first request, of their first byte for later
   ones (else the connection is closed): a client that sends a byte and stops holds a
   connection seconds, not minutes; path ``/v1/traces`` (404), method ``POST`` (405);
2. ``Host`` (and ``Origin`` when sent) must name a loopback address when we are bound to
   one, so a web page cannot reach us through DNS rebinding (403);
3. the bearer token when one is set (401);
4. ``Content-Type`` ``application/x-protobuf`` or ``application/json`` and
   ``Content-Encoding`` absent, ``identity`` or ``gzip`` (415);
5. the body: at most :data:`~willowisp.collect.otlp_store.MAX_BODY` (64 MiB) as sent and
   again after gzip, which is decompressed in bounded steps (413); its bytes are reserved
   against :data:`MAX_INFLIGHT_BYTES` before they are read (503 with ``Retry-After`` when
   the collector already holds that much: memory stays bounded however many clients send);
6. checking and storing (:mod:`~willowisp.collect.otlp_store`) in a worker thread, so a
   64 MiB JSON body does not stall the other connections; 400 when it does not parse;
7. ``200`` with an ``ExportTraceServiceResponse`` in the request's encoding, with
   ``partial_success`` when spans were rejected — only after the request is written.

Connections are limited (:data:`MAX_CONNECTIONS`); a new one beyond the limit closes the
keep-alive connection idle the longest between two requests, and is refused (503) only
when there is none. Errors carry a ``google.rpc.Status`` (protobuf, or its JSON form) as
OTLP asks. On :meth:`OtlpHttpReceiver.stop` the listener closes, idle keep-alive
connections are closed, and requests in flight finish (stored and answered, with
``Connection: close``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import re
import socket
import threading
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from willowisp.channel.frames import same_token
from willowisp.collect.otlp_store import (
    FORMAT_JSON,
    FORMAT_PROTO,
    MAX_BODY,
    BadRequest,
    OtlpStore,
    check_json,
    check_proto,
    response_json,
    response_proto,
)

PATH = "/v1/traces"
MAX_HEAD = 64 * 1024
MAX_CONNECTIONS = 256
MAX_INFLIGHT_BYTES = 256 * 1024 * 1024  # request bodies being read or processed, all together
IDLE_TIMEOUT_S = 120.0  # a keep-alive connection between two requests
HEAD_TIMEOUT_S = 10.0  # a request head, from connect (first request) or its first byte
BODY_TIMEOUT_S = 60.0
RETRY_AFTER_S = 1
DRAIN_BYTES = 1024 * 1024  # read and dropped after an early answer, so the peer sees it
_PROTO, _JSON = "application/x-protobuf", "application/json"
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 411: 3, 413: 8, 415: 3, 431: 3, 500: 13}
_REASON = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
    415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip


class HttpError(Exception):
    """Answer ``status`` with ``message``; ``close``: end the connection afterwards (the
    body was not read, or the request cannot be framed)."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed request line and headers (names lowercased; a repeated header joined)."""

    method: str
    target: str
    keep_alive: bool
    headers: dict[str, str]

    def get(self, name: str) -> str:
        return self.headers.get(name, "")


def parse_head(raw: bytes) -> Head:
    """Parse ``raw`` (ending with the blank line). Raises HttpError(400)."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(400, f"bad request line {lines[0][:80]!r}", close=True)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or name[0] in " \t":
            raise HttpError(400, f"bad header line {line[:80]!r}", close=True)
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps the connection unless told not to; HTTP/1.0 only when asked to.
    keep = "close" not in connection if parts[2] == "HTTP/1.1" else "keep-alive" in connection
    return Head(parts[0], parts[1], keep, headers)


def head_keep_alive(raw: bytes) -> bool:
    """Whether the client wants the connection kept (False when the head does not parse)."""
    try:
        return parse_head(raw).keep_alive
    except HttpError:
        return False


def status_body(status: int, message: str, content_type: str) -> bytes:
    """A ``google.rpc.Status`` with the gRPC code matching ``status``, as protobuf (field 1
    code, field 2 message: written by hand, it is two fields) or as JSON."""
    code = _GRPC_CODE.get(status, 14)
    if content_type == _PROTO:
        text = message.encode()
        return bytes([0x08, code, 0x12]) + _varint(len(text)) + text
    return json.dumps({"code": code, "message": message}).encode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def is_loopback_host(value: str) -> bool:
    """Whether a ``Host`` header value (``name[:port]``, ``[v6]:port``) names this host."""
    host = urlsplit(f"//{value}").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OtlpHttpReceiver:
    """Serves ``POST /v1/traces`` on ``host:port`` into ``store``.

    ``token``: when non-empty every request needs ``Authorization: Bearer <token>``.
    ``start()`` binds (OSError if it cannot) and returns ``host:port``; ``stop()`` drains.
    """

    def __init__(self, store: OtlpStore, *, host: str, port: int, token: str = "") -> None:
        self.store = store
        self.host = host
        self.port = port
        self.token = token
        self.address = ""
        self._check_host = False  # set at bind: True when bound to a loopback address
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wisp-otlp-http")
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="wisp-otlp")
        self._server: asyncio.Server | None = None
        # Loop-thread state. Invariant: every live connection's task is in _tasks (until it
        # is evicted), and its writer is in _idle exactly while it waits for the first byte
        # of a request; _idle maps it to its task, whether it served a request before,
        # oldest first.
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: dict[asyncio.StreamWriter, tuple[asyncio.Task[None], bool]] = {}
        self._inflight = 0  # bytes reserved by bodies being read or processed
        self._stopping = False

    def start(self) -> str:
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]
        ls = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(addr)
            ls.listen(128)
        except OSError:
            ls.close()
            raise
        host, port = ls.getsockname()[:2]
        self._check_host = ipaddress.ip_address(host).is_loopback
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._listen(ls), self._loop)
        fut.result()
        return self.address

    async def _listen(self, ls: socket.socket) -> None:
        self._server = await asyncio.start_server(self._connection, sock=ls, limit=MAX_HEAD)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting; close idle connections; let requests in flight finish (up to
        ``timeout``); then end the loop thread."""
        if not self._thread.is_alive():  # never started (the bind failed)
            self._pool.shutdown(wait=False)
            self._loop.close()
            return
        fut = asyncio.run_coroutine_threadsafe(self._drain(timeout), self._loop)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            fut.result(timeout + 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._pool.shutdown(wait=True)
        self._loop.close()

    async def _drain(self, timeout: float) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._idle):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    # --- one connection -----------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if not self._stopping and len(self._tasks) >= MAX_CONNECTIONS:
            self._evict_idle()
        if self._stopping or len(self._tasks) >= MAX_CONNECTIONS:
            self.store.refused()
            msg = "collector is stopping" if self._stopping else "too many connections"
            await self._answer(writer, 503, status_body(503, msg, _JSON), _JSON, close=True)
            writer.close()
            return
        self._tasks.add(task)
        try:
            served = False
            while not self._stopping:
                raw = await self._head(reader, writer, task, served)
                served = True
                if not await self._request(raw, reader, writer):
                    break
        except (asyncio.LimitOverrunError, ValueError):
            self.store.refused()
            body = status_body(431, f"request head over {MAX_HEAD} bytes", _JSON)
            await self._answer(writer, 431, body, _JSON, close=True)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the client left (or idled out) between requests, or mid-request
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _head(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        task: asyncio.Task[None],
        served: bool,
    ) -> bytes:
        """The next request head. The first must be complete HEAD_TIMEOUT_S after connect;
        a later one may wait IDLE_TIMEOUT_S to begin (keep-alive), then has HEAD_TIMEOUT_S
        from its first byte. Deadlines are absolute: dripping bytes does not extend them."""
        deadline = self._loop.time() + (IDLE_TIMEOUT_S if served else HEAD_TIMEOUT_S)
        self._idle[writer] = (task, served)
        try:
            async with asyncio.timeout_at(deadline):
                first = await reader.readexactly(1)
        finally:
            self._idle.pop(writer, None)
        if served:
            deadline = self._loop.time() + HEAD_TIMEOUT_S
        async with asyncio.timeout_at(deadline):
            return first + await reader.readuntil(b"\r\n\r\n")

    def _evict_idle(self) -> None:
        """Close the connection idle longest between two requests, making room for a new
        one: a client that comes back later reconnects, one waiting now would get 503."""
        for writer, (task, served) in self._idle.items():
            if served:
                del self._idle[writer]
                self._tasks.discard(task)  # gone now; its own finally runs soon after
                writer.close()
                return

    async def _request(
        self, raw: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; whether the connection stays open."""
        content_type = _JSON
        reserved = 0
        try:
            head = parse_head(raw)
            content_type = _media_type(head.get("content-type"))
            self._admit(head)
            length = _content_length(head)
            if length > MAX_BODY:
                raise HttpError(413, f"body of {length} bytes is over {MAX_BODY}", close=True)
            reserved = length if length >= 0 else MAX_BODY
            if self._inflight + reserved > MAX_INFLIGHT_BYTES:
                reserved = 0
                raise HttpError(503, "collector is busy: retry later", close=True)
            self._inflight += reserved
            if "100-continue" in head.get("expect").lower():
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            async with asyncio.timeout(BODY_TIMEOUT_S):
                body = await _read_body(reader, length)
            status, answer = await self._loop.run_in_executor(
                self._pool, self._accept, head, content_type, body
            )
            keep = head.keep_alive and not self._stopping
            await self._answer(writer, status, answer, content_type, close=not keep)
            return keep
        except HttpError as exc:
            self.store.refused()
            ct = content_type if content_type in (_PROTO, _JSON) else _JSON
            keep = not exc.close and not self._stopping and head_keep_alive(raw)
            body = status_body(exc.status, exc.message, ct)
            await self._answer(writer, exc.status, body, ct, close=not keep)
            if exc.close:
                await _drain_input(reader, writer)
            return keep
        finally:
            self._inflight -= reserved

    def _admit(self, head: Head) -> None:
        """The checks that need no body: path, method, Host/Origin, token, media types."""
        if urlsplit(head.target).path != PATH:
            raise HttpError(404, f"no such path {head.target[:200]!r}: OTLP traces go to {PATH}")
        if head.method != "POST":
            raise HttpError(405, f"method {head.method[:20]} not allowed: use POST")
        if self._check_host:
            host, origin = head.get("host"), head.get("origin")
            if host and not is_loopback_host(host):
                raise HttpError(403, f"Host {host[:100]!r} is not this host", close=True)
            if origin and not is_loopback_host(urlsplit(origin).netloc):
                raise HttpError(403, f"Origin {origin[:100]!r} is not allowed", close=True)
        if self.token:
            scheme, _, given = head.get("authorization").partition(" ")
            if scheme.lower() != "bearer" or not same_token(given.strip(), self.token):
                raise HttpError(401, "missing or wrong bearer token", close=True)
        if _media_type(head.get("content-type")) not in (_PROTO, _JSON):
            raise HttpError(
                415,
                f"Content-Type {head.get('content-type')[:100]!r}: use {_PROTO} or {_JSON}",
                close=True,
            )
        if head.get("content-encoding").lower() not in ("", "identity", "gzip"):
            raise HttpError(
                415, f"Content-Encoding {head.get('content-encoding')[:50]!r}: use gzip or none",
                close=True,
            )  # fmt: skip

    def _accept(self, head: Head, content_type: str, body: bytes) -> tuple[int, bytes]:
        """Worker thread: undo gzip, check, store. (status, answer body)."""
        if head.get("content-encoding").lower() == "gzip":
            body = gunzip(body)
        proto = content_type == _PROTO
        fmt, check = (FORMAT_PROTO, check_proto) if proto else (FORMAT_JSON, check_json)
        try:
            verdict = check(body)
        except BadRequest as exc:
            raise HttpError(400, str(exc)) from None
        try:
            self.store.append(fmt, body, verdict)
        except OSError as exc:
            raise HttpError(500, f"cannot store the request: {exc.strerror or exc}") from None
        answer = response_proto(verdict) if proto else response_json(verdict)
        return 200, answer

    async def _answer(
        self, writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str, *, close: bool
    ) -> None:
        head = [
            f"HTTP/1.1 {status} {_REASON.get(status, 'Error')}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(body)}",
        ]
        if status == 503:
            head.append(f"Retry-After: {RETRY_AFTER_S}")
        elif status == 401:
            head.append('WWW-Authenticate: Bearer realm="willowisp"')
        elif status == 405:
            head.append("Allow: POST")
        if close:
            head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()


def _media_type(value: str) -> str:
    return value.partition(";")[0].strip().lower()


def _content_length(head: Head) -> int:
    """The declared length; -1 for a chunked body. Raises HttpError(400/411)."""
    te, cl = head.get("transfer-encoding").lower(), head.get("content-length")
    if te:
        if te != "chunked" or cl:
            raise HttpError(400, f"Transfer-Encoding {te[:50]!r} not supported here", close=True)
        return -1
    if not cl:
        raise HttpError(411, "a body needs Content-Length or chunked encoding", close=True)
    if not cl.isdigit() or len(cl) > 18:
        raise HttpError(400, f"bad Content-Length {cl[:30]!r}", close=True)
    return int(cl)


async def _read_body(reader: asyncio.StreamReader, length: int) -> bytes:
    if length >= 0:
        return await reader.readexactly(length)
    # One growing buffer: a list of pieces costs ~50 bytes of objects per chunk, so 2-byte
    # chunks would make 64 MiB of body take over a gigabyte.
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):  # int() alone takes "-2", "0x2", "1_0"
            raise HttpError(400, f"bad chunk size {size_text[:20]!r}", close=True)
        size = int(size_text, 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers: ignored
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise HttpError(413, f"chunked body over {MAX_BODY} bytes", close=True)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError(400, "chunk not followed by CRLF", close=True)


def gunzip(body: bytes) -> bytes:
    """Decompress a gzip body, never producing more than MAX_BODY bytes (HttpError 413),
    so a small bomb cannot take the memory; HttpError 400 for damaged data."""
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(body, MAX_BODY + 1)
    except zlib.error as exc:
        raise HttpError(400, f"gzip body does not decompress: {exc}") from None
    if len(out) > MAX_BODY or d.unconsumed_tail:
        raise HttpError(413, f"body over {MAX_BODY} bytes after gzip decompression")
    if not d.eof:
        raise HttpError(400, "gzip body is truncated")
    return out


async def _drain_input(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then read and drop what the client still sends (bounded), so it reads
    our answer rather than a connection reset."""
    with contextlib.suppress(TimeoutError, ConnectionError, OSError):
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(1.0):
            left = DRAIN_BYTES
            while left > 0 and (data := await reader.read(65536)):
                left -= len(data)
