"""The native stream receiver: agents' chunks, written unchanged into segment files.

Protocol (``docs/protocols.md``, "Native stream"): the agent sends a hello frame (``WSTR``,
u32 LE length, JSON: versions, token, process id, service, pid, format version); we answer
with the file we will write; then the agent sends ``.wtrace`` chunks exactly as framed in
``docs/format.md`` (and a ``bye`` frame at its end). Each chunk's framing and CRC-32 are
checked (payloads are not interpreted), the chunk is appended to the connection's segment
with one ``write(2)``, and only then acknowledged: ``{"op": "ack", "chunks": N}`` says the
first N chunks of this connection are in the file. So an acknowledged chunk survives the
collector's death; an unacknowledged one is the agent's to keep (it falls back to a file).

Each connection gets its own file ``<service>-<pid>-<process id prefix>-<n>.wtrace`` (n the
first free number), begun with the format's file header. Garbage ends that connection with
an error message; chunks already written stay. Sizes are bounded: messages 64 KiB, chunks
the format's 64 MiB, connections ``MAX_CONNECTIONS``, and the bytes of all incomplete
chunks together :data:`MAX_PENDING_BYTES`: a chunk's declared size is reserved before its
body is read, and a chunk that does not fit is answered ``busy`` (the agent keeps it in its
file and retries later), so memory stays bounded however many connections send at once.
Deadlines are absolute, so a peer dripping a byte at a time cannot hold a connection: the
hello must be complete ``HELLO_TIMEOUT_S`` after connect, an item (chunk or message)
``ITEM_TIMEOUT_S`` after its first byte, and the next item must begin within
``IDLE_TIMEOUT_S``.

One thread per connection, reading with ``select`` on the socket and a wake-up pipe: on
:meth:`NativeReceiver.stop` every connection stops between chunks (a half-received chunk is
dropped, unacknowledged), says ``bye`` with its final count, and closes.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, cast

from willowisp.channel.frames import (
    FRAME,
    MAX_MESSAGE_BODY,
    STREAM_MAGIC,
    STREAM_VERSIONS,
    close_lingering,
    pack_frame,
    parse_object,
    same_token,
)
from willowisp.errors import ProtocolError, TraceFormatError
from willowisp.model.spec import FORMAT_MAJOR
from willowisp.wtrace.framing import (
    CHUNK_HEADER_SIZE,
    CHUNK_MAGIC,
    CODEC_NONE,
    ChunkHeader,
    parse_chunk_header,
    unpack_payload,
)
from willowisp.wtrace.writer import SegmentWriter

MAX_CONNECTIONS = 256
MAX_PENDING_BYTES = 256 * 1024 * 1024  # chunks being received, all connections together
HELLO_TIMEOUT_S = 10.0  # from connect to a complete hello
IDLE_TIMEOUT_S = 120.0  # agents send a chunk (a clock anchor) at least every second
ITEM_TIMEOUT_S = 60.0  # from an item's first byte to its last (64 MiB at ~1 MB/s)
READ_BYTES = 256 * 1024
_PROCESS_ID = re.compile(r"[0-9a-f]{32}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_LENGTH = struct.Struct("<I")


class _Stopping(Exception):
    """The receiver is stopping: end this connection between chunks."""


@dataclass
class Stats:
    """What the receiver did, for the CLI's last line and for tests."""

    connections: int = 0
    chunks: int = 0
    bytes: int = 0
    refused: int = 0  # connections ended by an error we sent
    files: list[str] = field(default_factory=list)


class _Conn:
    """Buffered, bounded reads from one agent, interruptible by the wake-up pipe, against
    an absolute deadline (a deadline per read would let a byte every few seconds keep a
    connection forever)."""

    def __init__(self, sock: socket.socket, wake_fd: int) -> None:
        self.sock = sock
        self.wake_fd = wake_fd
        self.buf = bytearray()
        self.deadline = 0.0
        self.late = ""  # the TimeoutError's message once the deadline passes
        self.expect(HELLO_TIMEOUT_S, f"no complete hello within {HELLO_TIMEOUT_S:.0f} s")

    def expect(self, seconds: float, late: str) -> None:
        """What is read next must be complete ``seconds`` from now."""
        self.deadline = time.monotonic() + seconds
        self.late = late

    def begin_item(self) -> bool:
        """Wait up to ``IDLE_TIMEOUT_S`` for an item's first byte, then give the whole item
        ``ITEM_TIMEOUT_S`` from there. False if the agent closed cleanly instead."""
        self.expect(IDLE_TIMEOUT_S, f"nothing received for {IDLE_TIMEOUT_S:.0f} s")
        if not self.buf and not self._receive(READ_BYTES, self.buf):
            return False
        self.expect(ITEM_TIMEOUT_S, f"item not complete within {ITEM_TIMEOUT_S:.0f} s")
        return True

    def read(self, n: int, *, boundary: bool = False) -> bytes | None:
        """Exactly ``n`` bytes. None if the agent closed cleanly at an item ``boundary``;
        ProtocolError("truncated") if it closed inside an item; TimeoutError; _Stopping."""
        while len(self.buf) < n:
            if not self._receive(READ_BYTES, self.buf):
                if boundary and not self.buf:
                    return None
                raise ProtocolError("truncated", "connection closed inside an item")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def need(self, n: int) -> bytes:
        data = self.read(n)
        assert data is not None
        return data

    def read_into(self, out: bytearray, n: int) -> None:
        """Append exactly ``n`` bytes to ``out``, receiving no more than that: the bytes
        grow one buffer as they arrive (no pieces, no copy, nothing beyond the item)."""
        take = min(n, len(self.buf))
        out += self.buf[:take]
        del self.buf[:take]
        want = len(out) + n - take
        while len(out) < want:
            if not self._receive(min(READ_BYTES, want - len(out)), out):
                raise ProtocolError("truncated", "connection closed inside an item")

    def _receive(self, most: int, into: bytearray) -> bool:
        """One ``recv`` of at most ``most`` bytes appended to ``into``; False at EOF."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(self.late)
        ready, _, _ = select.select([self.sock.fileno(), self.wake_fd], [], [], left)
        if self.wake_fd in ready:
            raise _Stopping
        if not ready:
            raise TimeoutError(self.late)
        data = self.sock.recv(most)
        into += data
        return bool(data)

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.settimeout(10.0)
        self.sock.sendall(pack_frame(STREAM_MAGIC, msg))


class _Budget:
    """Bytes reserved by chunks being received, shared by every connection."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self.held -= n


def check_hello(req: dict[str, Any], token: str) -> dict[str, Any]:
    """Validate a hello (order: op, token, versions, format, fields). Returns the version
    and the fields the file name needs; raises ProtocolError with the reply's code."""
    if req.get("op") != "hello":
        raise ProtocolError("hello-required", "the first message must be a hello")
    if token and not same_token(req.get("token"), token):
        raise ProtocolError("unauthorized", "missing or wrong token")
    versions = req.get("versions")
    if (
        not isinstance(versions, list)
        or not 0 < len(versions) <= 16
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in versions)
    ):
        raise ProtocolError("bad-request", "versions must be a list of 1 to 16 integers")
    common = set(versions).intersection(STREAM_VERSIONS)
    if not common:
        raise ProtocolError("unsupported-version", f"collector speaks {list(STREAM_VERSIONS)}")
    fmt = req.get("format")
    if (
        not isinstance(fmt, list)
        or len(fmt) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in fmt)
    ):
        raise ProtocolError("bad-request", "format must be [major, minor]")
    if fmt[0] != FORMAT_MAJOR:
        raise ProtocolError(
            "unsupported-format",
            f"format {fmt[0]}.{fmt[1]}: this collector writes format {FORMAT_MAJOR}.x",
        )
    pid, service, process_id = req.get("pid"), req.get("service"), req.get("process_id")
    if not isinstance(process_id, str) or not _PROCESS_ID.fullmatch(process_id):
        raise ProtocolError("bad-request", "process_id must be 32 lowercase hex digits")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid < 2**31:
        raise ProtocolError("bad-request", "pid must be an integer in [0, 2^31)")
    if not isinstance(service, str) or len(service) > 256:
        raise ProtocolError("bad-request", "service must be a string of at most 256 characters")
    return {"version": max(common), "pid": pid, "service": service, "process_id": process_id}


class NativeReceiver:
    """Listens on ``host:port`` (or a Unix socket) and writes every stream into ``out``.

    ``token``: required in every hello when non-empty (the CLI insists on one for anything
    but loopback). ``start()`` returns the address agents should use.
    """

    def __init__(
        self,
        out: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix_path: str = "",
        token: str = "",
    ) -> None:
        self.out = os.path.abspath(out)
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.token = token
        self.stats = Stats()
        self.address = ""
        self._listener: socket.socket | None = None
        self._wake_r = self._wake_w = -1
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()  # Invariant: len <= MAX_CONNECTIONS
        self._accept: threading.Thread | None = None
        self._stopping = False
        self._budget = _Budget(MAX_PENDING_BYTES)

    def start(self) -> str:
        """Bind, listen and accept in the background. Raises OSError (port taken, ...)."""
        os.makedirs(self.out, exist_ok=True)
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                if not os.path.isdir(self.unix_path):
                    os.unlink(self.unix_path)
            ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            ls.bind(self.unix_path)
            os.chmod(self.unix_path, 0o600)
            self.address = f"unix:{self.unix_path}"
        else:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            family, _, _, _, addr = infos[0]
            ls = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(addr)
            host, port = ls.getsockname()[:2]
            self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        ls.listen(64)
        ls.setblocking(False)
        self._listener = ls
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._accept = threading.Thread(target=self._accept_loop, name="wisp-accept", daemon=True)
        self._accept.start()
        return self.address

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting; every connection finishes the chunk it is writing, says bye and
        closes. Returns when they are done (or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        self._stopping = True
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if self._accept is not None:
            self._accept.join(timeout)
        # closed before the connections drain: an agent reconnecting meanwhile is refused
        # at once (and falls back or retries elsewhere) rather than left in the backlog of
        # a socket nobody accepts from any more
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.unix_path:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)
        with self._lock:
            threads = list(self._threads)
        for t in threads:  # one deadline for all, not `timeout` each
            t.join(max(0.0, deadline - time.monotonic()))
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _accept_loop(self) -> None:
        ls = self._listener
        assert ls is not None
        while not self._stopping:
            ready, _, _ = select.select([ls.fileno(), self._wake_r], [], [])
            if self._stopping or self._wake_r in ready:
                return
            try:
                sock, _ = ls.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError:  # out of descriptors: wait a little rather than spin
                select.select([self._wake_r], [], [], 0.1)
                continue
            self.stats.connections += 1
            with self._lock:
                busy = len(self._threads) >= MAX_CONNECTIONS
                if not busy:
                    t = threading.Thread(
                        target=self._serve, args=(sock,), name="wisp-stream", daemon=True
                    )
                    self._threads.add(t)
            if busy:
                self.stats.refused += 1
                with contextlib.suppress(OSError):
                    sock.settimeout(1.0)
                    sock.sendall(pack_frame(STREAM_MAGIC, _error("busy", "too many agents", 0)))
                sock.close()
                continue
            t.start()

    # --- one agent ----------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        conn = _Conn(sock, self._wake_r)
        writer: SegmentWriter | None = None
        chunks = 0
        linger = True
        try:
            body = self._message(conn, boundary=True)
            if body is None:
                return
            hello = check_hello(parse_object(body), self.token)
            writer = self._open_segment(hello)
            name = os.path.basename(writer.path)
            conn.send({"ok": True, "op": "hello", "version": hello["version"], "file": name})
            while True:
                if not conn.begin_item():
                    linger = False
                    return  # the agent is gone; everything it sent is written
                magic = conn.need(4)
                if magic == CHUNK_MAGIC:
                    chunk = self._chunk(conn, magic, chunks + 1)
                    try:
                        # a bytearray is fine for os.write; copying 64 MiB to bytes is not
                        writer.write_raw_chunk(cast(bytes, chunk))
                    except OSError as exc:
                        raise ProtocolError(
                            "internal", f"cannot write {writer.path}: {exc.strerror}"
                        ) from exc
                    finally:
                        self._budget.release(len(chunk) - CHUNK_HEADER_SIZE)
                    chunks += 1
                    self.stats.chunks += 1
                    self.stats.bytes += len(chunk)
                    conn.send({"op": "ack", "chunks": chunks})
                elif magic == STREAM_MAGIC:
                    msg = parse_object(self._body(conn))
                    if msg.get("op") != "bye":
                        raise ProtocolError("bad-request", "the only message after hello is bye")
                    conn.send({"op": "bye", "chunks": chunks})
                    return
                else:
                    raise ProtocolError(
                        "bad-frame", f"item starts with {magic!r}, expected WCHK or WSTR"
                    )
        except _Stopping:
            with contextlib.suppress(OSError):
                conn.send({"op": "bye", "chunks": chunks})
        except ProtocolError as exc:
            if exc.code == "truncated":
                linger = False
            else:
                self.stats.refused += 1
                with contextlib.suppress(OSError):
                    conn.send(_error(exc.code, exc.message, chunks))
        except TimeoutError as exc:
            self.stats.refused += 1
            with contextlib.suppress(OSError):
                conn.send(_error("timeout", str(exc), chunks))
        except OSError:
            linger = False  # the agent's side broke; what was acknowledged is written
        finally:
            if writer is not None:
                writer.close()
            close_lingering(sock, linger)
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _message(self, conn: _Conn, *, boundary: bool = False) -> bytes | None:
        head = conn.read(FRAME.size, boundary=boundary)
        if head is None:
            return None
        magic, length = FRAME.unpack(head)
        if magic != STREAM_MAGIC:
            raise ProtocolError("bad-frame", f"frame starts with {magic!r}, expected WSTR")
        if length > MAX_MESSAGE_BODY:
            raise ProtocolError(
                "frame-too-large", f"message of {length} bytes is over {MAX_MESSAGE_BODY}"
            )
        return conn.need(length)

    def _body(self, conn: _Conn) -> bytes:
        """The rest of a message whose magic was read already."""
        (length,) = _LENGTH.unpack(conn.need(4))
        if length > MAX_MESSAGE_BODY:
            raise ProtocolError(
                "frame-too-large", f"message of {length} bytes is over {MAX_MESSAGE_BODY}"
            )
        return conn.need(length)

    def _chunk(self, conn: _Conn, magic: bytes, index: int) -> bytearray:
        """The rest of chunk ``index`` (from 1), checked: header, decompression, CRC.
        Its declared size is reserved against the collector's budget while it is read;
        the caller releases ``len(chunk) - CHUNK_HEADER_SIZE`` once done with it."""
        head = magic + conn.need(CHUNK_HEADER_SIZE - len(magic))
        try:
            header = parse_chunk_header(head, 0)
        except TraceFormatError as exc:  # TraceLimitError included: nothing allocated
            raise ProtocolError("bad-chunk", f"chunk {index}: {exc}") from None
        if not self._budget.reserve(header.stored_len):
            raise ProtocolError(
                "busy", f"collector holds {MAX_PENDING_BYTES} bytes of incomplete chunks"
            )
        try:
            chunk = bytearray(head)
            conn.read_into(chunk, header.stored_len)
            _check_payload(header, memoryview(chunk)[CHUNK_HEADER_SIZE:], index)
        except BaseException:  # truncated, timed out, stopping, bad: nothing held any more
            self._budget.release(header.stored_len)
            raise
        return chunk

    def _open_segment(self, hello: dict[str, Any]) -> SegmentWriter:
        safe = _UNSAFE.sub("_", hello["service"])[:40] or "unknown"
        stem = f"{safe}-{hello['pid']}-{hello['process_id'][:8]}"
        for n in range(1, 1_000_000):
            path = os.path.join(self.out, f"{stem}-{n}.wtrace")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                continue
            os.close(fd)
            writer = SegmentWriter(path)  # empty: it writes the file header
            with self._lock:
                self.stats.files.append(path)
            return writer
        raise ProtocolError("internal", f"no free segment name for {stem}")


def _check_payload(header: ChunkHeader, stored: memoryview, index: int) -> None:
    """ProtocolError("bad-chunk") unless chunk ``index``'s payload decompresses to its
    CRC. An uncompressed payload is checked in place: no second copy of up to 64 MiB."""
    try:
        if header.codec != CODEC_NONE:
            unpack_payload(header, stored)
        elif (crc := zlib.crc32(stored)) != header.crc:
            raise TraceFormatError(f"checksum 0x{crc:08x} != 0x{header.crc:08x}")
    except TraceFormatError as exc:
        raise ProtocolError("bad-chunk", f"chunk {index}: {exc}") from None


def _error(code: str, message: str, chunks: int) -> dict[str, Any]:
    return {
        "ok": False,
        "op": "error",
        "error": {"code": code, "message": message[:500]},
        "chunks": chunks,
    }
