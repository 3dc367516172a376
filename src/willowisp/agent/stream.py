"""The native stream, agent side: chunks go to ``willowisp collect`` instead of a file.

Specified in ``docs/protocols.md`` ("Native stream"). With ``WILLOWISP_COLLECTOR`` set
(``host:port``, ``tcp://host:port`` or ``unix:/path``) the recorder's segment writer is a
:class:`StreamWriter`: the same interface as :class:`~willowisp.wtrace.writer.SegmentWriter`
(``write_chunk``, ``write_raw_chunk``, ``close``, ``size``, ``path``), so the flusher does not
know where its chunks go. The connection starts with a hello (process id, service, pid,
token, format version); then every chunk is sent exactly as it would be written to a file,
and the collector acknowledges each one once it is in its file.

Nothing is lost silently. Chunks stay in memory until acknowledged (bounded); when the
collector cannot be reached, refuses the hello, goes away or stalls, the writer *falls back*
to the segment file the recorder would have written (``path``), writes there a chunk with
the process record and a ``fault`` record saying what happened, then every unacknowledged
chunk, then everything after. A collector that says ``bye`` (it is shutting down in order)
is not a fault: nothing is lost, every unacknowledged chunk goes to the file, so the
fallback is only counted (``fallbacks`` in :meth:`status`). It retries the collector for as
long as it runs, 1, 2, 4, 8 and 16 s apart (``RETRY_DELAYS_S``), then every
``RETRY_MAX_S`` seconds; ``retry_max_s`` (``WILLOWISP_STREAM_RETRY_S``) caps every delay.
Retries happen only when a chunk is to be written; a good connection resets the schedule
and starts with the process record again.

Trade-off: sends happen on the flusher thread with a timeout, and acknowledgements are read
without blocking after each send. A slow collector therefore delays the flusher (the
buffers absorb it, or drops are counted), but no extra thread is needed.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from willowisp.channel.frames import (
    FRAME,
    MAX_MESSAGE_BODY,
    STREAM_MAGIC,
    STREAM_VERSIONS,
    pack_frame,
    parse_object,
    read_frame,
)
from willowisp.errors import ProtocolError
from willowisp.model.spec import FORMAT_MAJOR, FORMAT_MINOR
from willowisp.wtrace.framing import Compressors, default_codec
from willowisp.wtrace.payload import EventBatch, PackedEvents, Record
from willowisp.wtrace.writer import SegmentWriter, encode_chunk

CONNECT_TIMEOUT_S = 1.0
HELLO_TIMEOUT_S = 2.0
SEND_TIMEOUT_S = 5.0
CLOSE_WAIT_S = 2.0  # how long close() waits for the last acknowledgements
MAX_UNACKED_BYTES = 32 * 1024 * 1024
MAX_UNACKED_CHUNKS = 4096
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0)  # after a fallback; reset by a good reconnect
RETRY_MAX_S = 30.0  # then every this many seconds, without end
R_PROCESS, R_FAULT = 1, 5

FaultSink = Callable[[str, str], int]  # (where, message) -> fault record id, counted


def parse_address(address: str) -> tuple[int, Any]:
    """``host:port``, ``tcp://host:port``, ``[v6]:port`` or ``unix:/path`` -> (family,
    address for connect). ValueError for anything else."""
    a = address.strip()
    if a.startswith("unix:"):
        path = a[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/"):
            raise ValueError(f"collector {address!r}: a Unix socket path must be absolute")
        return socket.AF_UNIX, path
    if a.startswith("tcp://"):
        a = a[6:]
    host, sep, port_s = a.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"collector {address!r} is not host:port, tcp://host:port or unix:/path")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, int(port_s))


class StreamWriter:
    """Sends a process's chunks to a collector; falls back to the segment file ``path``.

    ``hello`` holds the hello's process fields (process_id, service, pid, runtime, segment).
    ``on_fault(where, message)`` counts a fault and returns its record id; the writer puts
    the fault record itself into the fallback file. One flusher owns it; the lock only
    lets :meth:`sync` be called from another thread.
    """

    def __init__(
        self,
        address: str,
        token: str,
        path: str,
        codec: int | None = None,
        *,
        hello: dict[str, Any],
        on_fault: FaultSink,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.address = address
        self.token = token
        self.path = path  # the fallback segment file
        self.codec = default_codec() if codec is None else codec
        self.size = 0  # bytes of chunks taken (sent or written), for the segment roll-over
        self.collector_file = ""  # the file the collector said it writes, for messages
        self._hello = dict(hello)
        self._on_fault = on_fault
        self._compressors = Compressors()
        self._sock: socket.socket | None = None
        self._inbuf = bytearray()
        # Sent but not yet acknowledged, oldest first: (number on this connection, bytes).
        # Invariant: _unacked_bytes == sum of their lengths.
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._unacked_bytes = 0
        self._sent = 0  # chunks sent on the current connection
        self._file: SegmentWriter | None = None  # the fallback, once fallen back
        self._process: Record | None = None  # the latest process record seen
        self._retries = 0  # failed reconnects since the last good connection
        self._retry_max_s = retry_max_s  # caps every delay (WILLOWISP_STREAM_RETRY_S)
        self._retry_at = 0.0
        self._fallbacks = 0  # switches to the file, faults or a collector's orderly bye
        self._closed = False
        self._lock = _thread.allocate_lock()
        self._pid = os.getpid()  # a forked child lets go of its parent's writer
        _LIVE.add(self)
        try:
            self._connect()
        except (OSError, ValueError, ProtocolError) as exc:
            self._fall_back(f"collector {address} unreachable: {_why(exc)}")

    # --- the SegmentWriter interface ----------------------------------------------------

    def write_chunk(
        self, records: Sequence[Record], events: EventBatch | PackedEvents | None = None
    ) -> int:
        """Encode and send (or write) one chunk; returns its size."""
        for r in records:
            if r.rtype == R_PROCESS:
                self._process = r
        data = encode_chunk(records, events, self.codec, self._compressors)
        self.write_raw_chunk(data)
        return len(data)

    def write_raw_chunk(self, chunk: bytes) -> None:
        with self._lock:
            self._take(chunk)

    def _take(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._sock is None:
            self._maybe_reconnect()
        if self._sock is None:
            self._write_file(chunk)
            return
        self._sent += 1
        self._unacked.append((self._sent, chunk))
        self._unacked_bytes += len(chunk)
        try:
            # a bye that came while idle is seen before sending into a closing connection
            self._read_acks(block=False)
            self._sock.settimeout(SEND_TIMEOUT_S)
            self._sock.sendall(chunk)
            self._read_acks(block=False)
            if self._too_many_unacked():
                self._wait_acks(SEND_TIMEOUT_S, until_below_bound=True)
                if self._too_many_unacked():
                    raise TimeoutError(f"{len(self._unacked)} chunks not acknowledged in time")
        except (OSError, ProtocolError) as exc:
            self._went_away(exc)

    def sync(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Wait until every chunk sent is acknowledged (True), or ``timeout`` passes."""
        with self._lock:
            return self._sync(timeout)

    def _sync(self, timeout: float) -> bool:
        if self._sock is None:
            return not self._unacked
        try:
            self._wait_acks(timeout)
        except (OSError, ProtocolError) as exc:
            self._went_away(exc)
        return not self._unacked

    def close(self) -> None:
        """Say goodbye, wait (bounded) for the last acknowledgements; what is still not
        acknowledged goes to the fallback file, with a fault record."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sock is not None:
            try:
                self._sock.settimeout(SEND_TIMEOUT_S)
                self._sock.sendall(pack_frame(STREAM_MAGIC, {"op": "bye"}))
                self._wait_acks(CLOSE_WAIT_S, until_bye=True)
            except (OSError, ProtocolError) as exc:
                if self._unacked:
                    self._fall_back(f"collector {self.address} went away: {_why(exc)}")
            if self._unacked:
                self._fall_back(
                    f"collector {self.address} did not acknowledge {len(self._unacked)} "
                    f"chunks within {CLOSE_WAIT_S} s of the end"
                )
            self._drop_socket()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- connection -------------------------------------------------------------------

    def _connect(self) -> None:
        family, addr = parse_address(self.address)
        if family != socket.AF_UNIX:  # resolve names (and pick v4/v6) the usual way
            infos = socket.getaddrinfo(addr[0], addr[1], type=socket.SOCK_STREAM)
            family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect(addr)
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            hello = {
                "op": "hello",
                "versions": list(STREAM_VERSIONS),
                "token": self.token,
                "format": [FORMAT_MAJOR, FORMAT_MINOR],
                **self._hello,
            }
            sock.settimeout(HELLO_TIMEOUT_S)
            sock.sendall(pack_frame(STREAM_MAGIC, hello))
            body = read_frame(sock, STREAM_MAGIC, MAX_MESSAGE_BODY)
            if body is None:
                raise ProtocolError("bad-frame", "collector closed the connection at hello")
            reply = parse_object(body)
            if reply.get("ok") is not True:
                err = _error_of(reply)
                raise ProtocolError(
                    str(err.get("code", "refused")), str(err.get("message", "hello refused"))
                )
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._inbuf.clear()
        self._sent = 0
        self.collector_file = str(reply.get("file", ""))
        if self._process is not None:  # every destination starts self-describing
            chunk = encode_chunk([self._process], None, self.codec, self._compressors)
            self._sent += 1
            self._unacked.append((self._sent, chunk))
            self._unacked_bytes += len(chunk)
            sock.settimeout(SEND_TIMEOUT_S)
            sock.sendall(chunk)

    def _retry_delay(self) -> float:
        """The wait before the next reconnect: 1, 2, 4, 8, 16 s, then RETRY_MAX_S, each
        capped by ``retry_max_s``."""
        i = self._retries
        delay = RETRY_DELAYS_S[i] if i < len(RETRY_DELAYS_S) else RETRY_MAX_S
        return min(delay, self._retry_max_s)

    def _maybe_reconnect(self) -> None:
        if self._closed or time.monotonic() < self._retry_at:
            return
        try:
            self._connect()
        except (OSError, ValueError, ProtocolError):
            self._retries += 1
            self._retry_at = time.monotonic() + self._retry_delay()
            return
        self._retries = 0

    def _drop_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    # --- acknowledgements -----------------------------------------------------------------

    def _read_acks(self, *, block: bool, until_bye: bool = False) -> bool:
        """Read what the collector sent; True once it said bye. Raises on a broken peer."""
        sock = self._sock
        assert sock is not None
        if not block:
            sock.settimeout(0.0)
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        if not data:
            raise ProtocolError("bad-frame", "collector closed the connection")
        self._inbuf += data
        bye = False
        while len(self._inbuf) >= FRAME.size:
            magic, length = FRAME.unpack_from(self._inbuf)
            if magic != STREAM_MAGIC or length > MAX_MESSAGE_BODY:
                raise ProtocolError("bad-frame", f"collector sent {bytes(magic)!r} ({length})")
            if len(self._inbuf) < FRAME.size + length:
                break
            msg = parse_object(bytes(self._inbuf[FRAME.size : FRAME.size + length]))
            del self._inbuf[: FRAME.size + length]
            n = msg.get("chunks")
            if isinstance(n, int) and not isinstance(n, bool):
                self._acked(n)
            if msg.get("op") == "bye":
                bye = True
            elif msg.get("op") == "error" or msg.get("ok") is False:
                err = _error_of(msg)
                raise ProtocolError(str(err.get("code", "error")), str(err.get("message", "")))
        if bye and not until_bye:
            raise ProtocolError("bye", "collector is shutting down")
        return bye

    def _acked(self, n: int) -> None:
        while self._unacked and self._unacked[0][0] <= n:
            _, chunk = self._unacked.popleft()
            self._unacked_bytes -= len(chunk)

    def _too_many_unacked(self) -> bool:
        return self._unacked_bytes > MAX_UNACKED_BYTES or len(self._unacked) > MAX_UNACKED_CHUNKS

    def _wait_acks(
        self, timeout: float, *, until_bye: bool = False, until_below_bound: bool = False
    ) -> None:
        """Read acknowledgements until none is missing (or, with ``until_below_bound``, until
        back under the bounds; with ``until_bye``, until the collector's bye) or timeout."""
        deadline = time.monotonic() + timeout
        while self._sock is not None and (self._unacked or until_bye):
            if until_below_bound and not self._too_many_unacked():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._sock.settimeout(left)
            try:
                if self._read_acks(block=True, until_bye=until_bye):
                    return
            except TimeoutError:
                return

    # --- falling back to the file ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Where chunks go now, for the control channel's ``status`` (``sink``): streaming
        to the collector, or on the fallback file while the reconnects go on."""
        return {
            "kind": "stream",
            "collector": self.address,
            "state": "streaming" if self._sock is not None else "file",
            "collector_file": self.collector_file,
            "file": self.path if self._file is not None else "",
            "unacked": len(self._unacked),
            "retries": self._retries,
            "fallbacks": self._fallbacks,
        }

    def _went_away(self, exc: OSError | ProtocolError) -> None:
        """The connection ended mid-stream. The collector's ``bye`` is an orderly shutdown:
        every chunk it did not acknowledge still goes to the file, so nothing is lost and
        no fault is recorded (a planned collector restart must pass ``validate --ci-mode``).
        Anything else (an error, a reset, a stall) is a fault."""
        orderly = isinstance(exc, ProtocolError) and exc.code == "bye"
        self._fall_back(f"collector {self.address} went away: {_why(exc)}", fault=not orderly)

    def _fall_back(self, why: str, *, fault: bool = True) -> None:
        """Switch to the segment file: the process record and (for a fault) a fault record,
        then every unacknowledged chunk."""
        self._drop_socket()
        self._fallbacks += 1
        head: list[Record] = [self._process] if self._process is not None else []
        if fault:
            head.append(self._fault_record(why[:500]))
        pending = [chunk for _, chunk in self._unacked]
        self._unacked.clear()
        self._unacked_bytes = 0
        if head:
            self._write_file(encode_chunk(head, None, self.codec, self._compressors))
        for chunk in pending:
            self._write_file(chunk)
        if not self._closed:
            self._retry_at = time.monotonic() + self._retry_delay()

    def _fault_record(self, why: str) -> Record:
        """Counts the fault in the agent's stats and makes its record."""
        where = "stream"
        try:
            fid = self._on_fault(where, why)
        except Exception:
            fid = 0
        return Record(R_FAULT, fid, (("message", why), ("where", where)))

    def _write_file(self, chunk: bytes) -> None:
        if self._file is None:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._file = SegmentWriter(self.path, self.codec)
        self._file.write_raw_chunk(chunk)


# Writers of this process, so that a forked child can let go of its parent's: the child
# must never write to the parent's connection (its own recorder opens its own).
_LIVE: weakref.WeakSet[StreamWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for w in list(_LIVE):
        if w._pid != os.getpid():
            w._closed = True
            w._unacked.clear()
            w._drop_socket()  # closes the child's copy of the descriptor, sends nothing
            if w._file is not None:
                w._file.close()
                w._file = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _error_of(msg: dict[str, Any]) -> dict[str, Any]:
    err = msg.get("error")
    return err if isinstance(err, dict) else {}


def _why(exc: BaseException) -> str:
    if isinstance(exc, ProtocolError):
        return exc.message if exc.code in ("bye", "bad-frame") else f"{exc.code}: {exc.message}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
