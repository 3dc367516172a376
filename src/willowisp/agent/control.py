"""The control channel, agent side: ``willowisp ctl`` talks to a running process here.

Specified language-neutrally in ``docs/protocols.md`` (every runtime's agent implements the
same bytes); this is the Python agent's implementation. At start the agent listens on a
Unix socket (mode 0600, in a 0700 per-user folder, ``/tmp/willowisp-<uid>/`` unless
``WILLOWISP_RUNTIME_DIR`` says otherwise) and, with ``WILLOWISP_CONTROL=tcp``, on
127.0.0.1 too. It writes a descriptor beside the socket (pid, process id, service, run
folder, socket, token; mode 0600), which is how ``ctl PID`` and ``ctl RUN_FOLDER`` find it;
nothing is written into the run folder. ``WILLOWISP_CONTROL=off`` disables the channel.

A connection is a sequence of frames -- ``WCTL``, a u32 LE length, a JSON object; see
``willowisp.channel.frames``, shared with the client and the native stream -- in each
direction: a hello carrying the per-session token (compared in constant time), then
requests (``ping``, ``status``, ``enable``, ``disable``) each answered by one reply.

Trade-offs: one thread per connection (at most ``MAX_CONNECTIONS``, the rest are told
``busy``) keeps the code plain blocking reads with timeouts; control traffic is a handful of
requests. Those timeouts are absolute deadlines (``_FrameDeadline``), not per read: a client
dripping a byte every few seconds would otherwise hold a slot for ever, and a few such
clients would leave every real ``willowisp ctl`` with ``busy``. Threads are started with
``_thread`` and locks are ``_thread`` locks, so the channel never shows up as units or
resources in the trace it controls. Nothing here may break the program: malformed input is
counted and answered, anything unexpected becomes an agent fault (``Recorder.fault``), and
the connection -- never the listener -- is closed.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

from willowisp.agent import own_threads
from willowisp.channel.discovery import check_private_dir, runtime_dir, write_private_json
from willowisp.channel.frames import (
    CONTROL_MAGIC,
    CONTROL_VERSIONS,
    FRAME,
    MAX_CONTROL_BODY,
    close_lingering,
    error_reply,
    ok_reply,
    pack_frame,
    parse_object,
    read_frame,
    request_id,
    same_token,
)
from willowisp.errors import ProtocolError, UsageError

MAX_ARG_BYTES = 4096  # a boundary spec or name
MAX_CONNECTIONS = 4
HELLO_TIMEOUT_S = 5.0  # from accept to a complete hello, however the bytes trickle in
IDLE_TIMEOUT_S = 30.0  # after the hello: for a frame's first byte, then for the rest of it
SEND_TIMEOUT_S = 30.0  # for one reply to leave
MAX_UNIX_PATH = 107  # sun_path is 108 bytes with its NUL
OPS = ("ping", "status", "enable", "disable")

# Error code -> does the agent close the connection after sending it. Before a successful
# hello every error closes it.
ERRORS: dict[str, bool] = {
    "bad-frame": True,
    "frame-too-large": True,
    "timeout": True,
    "busy": True,
    "unauthorized": True,
    "unsupported-version": True,
    "hello-required": True,
    "bad-json": False,
    "bad-request": False,
    "unknown-command": False,
    "bad-boundary": False,
    "unavailable": False,
    "internal": False,
}


# --- the server ----------------------------------------------------------------------------


class Backend(Protocol):
    """What the commands call: ``willowisp.agent.boundaries`` in the agent."""

    def enable(self, spec_or_name: str) -> str: ...
    def disable(self, name: str) -> str: ...
    def status(self) -> dict[str, Any]: ...


class BoundariesBackend:
    """The agent's boundaries module, imported when first needed; ``unavailable`` if absent."""

    def _module(self) -> Any:
        try:
            from willowisp.agent import boundaries
        except ImportError as exc:
            raise ProtocolError(
                "unavailable", f"boundary control is not available: {exc}"
            ) from None
        return boundaries

    def enable(self, spec_or_name: str) -> str:
        return str(self._module().enable(spec_or_name))

    def disable(self, name: str) -> str:
        return str(self._module().disable(name))

    def status(self) -> dict[str, Any]:
        return dict(self._module().status())


class _Conn:
    """One connection's protocol state. Owned by its serving thread."""

    __slots__ = ("hello", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.hello = False  # True once a hello with the right token and a common version


class ControlServer:
    """Serves the control protocol on a Unix socket and/or 127.0.0.1.

    ``info`` is what the hello's reply says about the agent (pid, process id, service,
    runtime, agent version). ``on_fault(where, exc)`` records errors of the server itself.
    """

    def __init__(
        self,
        token: str,
        info: dict[str, Any],
        backend: Backend,
        *,
        unix_path: str = "",
        tcp: bool = False,
        on_fault: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        if len(token) < 16:
            raise ValueError("a control token has at least 16 characters")
        self.token = token
        self.info = info
        self.backend = backend
        self.unix_path = unix_path
        self.want_tcp = tcp
        self.tcp_address = ""  # "127.0.0.1:PORT" once listening
        self.on_fault = on_fault
        self.pid = os.getpid()  # only this process may remove the files (not a fork child)
        self.files: list[str] = []  # the descriptor file(s) to remove at stop
        # Counts for `status` (approximate under contention: plain ints under the GIL).
        self.counters = {
            "connections": 0,
            "requests": 0,
            "malformed": 0,
            "unauthorized": 0,
            "busy": 0,
            "internal_errors": 0,
        }
        self._listeners: list[socket.socket] = []
        self._wake_r = self._wake_w = -1
        self._lock = _thread.allocate_lock()
        self._conns: set[socket.socket] = set()  # Invariant: len <= MAX_CONNECTIONS
        self._closing = False
        self._accepting = _thread.allocate_lock()  # held while the accept thread runs

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        """Bind and listen, then serve from a background thread. Raises OSError."""
        try:
            if self.unix_path:
                if len(os.fsencode(self.unix_path)) > MAX_UNIX_PATH:
                    raise OSError(
                        errno.ENAMETOOLONG, f"socket path {self.unix_path} is over 107 bytes"
                    )
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.unix_path)
                us = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                self._listeners.append(us)
                us.bind(self.unix_path)
                os.chmod(self.unix_path, 0o600)  # the folder is 0700 already: no window
                us.listen(16)
            if self.want_tcp:
                ts = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                self._listeners.append(ts)
                ts.bind(("127.0.0.1", 0))
                ts.listen(16)
                self.tcp_address = f"127.0.0.1:{ts.getsockname()[1]}"
            if not self._listeners:
                raise OSError(errno.EINVAL, "neither a Unix socket nor TCP was asked for")
            for ls in self._listeners:
                ls.setblocking(False)
            self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        except BaseException:
            self._close_fds()
            self._unlink_socket()
            raise
        self._accepting.acquire()
        own_threads.start(self._accept_loop)

    def stop(self) -> None:
        """Stop listening, end open connections, remove the socket and descriptor files."""
        if os.getpid() != self.pid:  # a forked child: the files are the parent's
            self.abandon()
            return
        self._closing = True
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            if self._accepting.acquire(True, 2.0):
                self._accepting.release()
        with self._lock:
            conns = list(self._conns)
        for c in conns:  # wakes their threads' reads; they close and deregister
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        self._close_fds()
        self._unlink_socket()
        for path in self.files:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.files.clear()

    def abandon(self) -> None:
        """In a forked child: drop the inherited descriptors without touching the parent's
        socket, files or wake pipe (the listener thread does not exist here)."""
        self._closing = True
        for c in list(self._conns):
            with contextlib.suppress(OSError):
                c.close()
        self._conns.clear()
        self._close_fds()
        self.files.clear()

    def _close_fds(self) -> None:
        for ls in self._listeners:
            with contextlib.suppress(OSError):
                ls.close()
        self._listeners.clear()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    def _unlink_socket(self) -> None:
        if self.unix_path and os.getpid() == self.pid:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)

    def _fault(self, where: str, exc: BaseException) -> None:
        self.counters["internal_errors"] += 1
        if self.on_fault is not None:
            try:
                self.on_fault(where, exc)
            except Exception:
                pass

    # --- accepting ----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        try:
            by_fd = {ls.fileno(): ls for ls in self._listeners}
            while not self._closing:
                try:
                    ready, _, _ = select.select([*by_fd, self._wake_r], [], [])
                except (OSError, ValueError):
                    break  # our descriptors were closed under us (stop)
                for fd in ready:
                    if self._closing or fd not in by_fd:
                        break
                    self._accept_one(by_fd[fd])
        except Exception as exc:  # never let the program see it; the channel is gone
            self._fault("control accept", exc)
        finally:
            self._accepting.release()

    def _accept_one(self, ls: socket.socket) -> None:
        try:
            conn, _ = ls.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:  # out of descriptors: back off briefly instead of spinning
            self._fault("control accept", exc)
            with contextlib.suppress(OSError, ValueError):
                select.select([self._wake_r], [], [], 0.1)
            return
        self.counters["connections"] += 1
        with self._lock:
            busy = len(self._conns) >= MAX_CONNECTIONS
            if not busy:
                self._conns.add(conn)
        if busy:  # answered from this thread, so without waiting for the peer's input
            self.counters["busy"] += 1
            with contextlib.suppress(OSError):
                conn.settimeout(0.5)
                conn.sendall(
                    pack_frame(CONTROL_MAGIC, error_reply("busy", "too many control connections"))
                )
                conn.shutdown(socket.SHUT_WR)
                conn.setblocking(False)
                conn.recv(MAX_CONTROL_BODY)  # what already arrived, so close sends no reset
            conn.close()
            return
        try:
            accepted = time.monotonic()
            own_threads.start(self._serve, (conn, conn.family == socket.AF_UNIX, accepted))
        except RuntimeError as exc:
            self._fault("control thread", exc)
            self._forget(conn)
            conn.close()

    def _forget(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)

    # --- one connection -------------------------------------------------------------------

    def _serve(self, sock: socket.socket, unix: bool, accepted: float) -> None:
        conn = _Conn(sock)
        linger = True  # drain unread input before closing, so the peer gets our last reply
        clock = _FrameDeadline(sock, accepted + HELLO_TIMEOUT_S, None)
        try:
            sock.settimeout(HELLO_TIMEOUT_S)
            if unix and not _peer_is_us(sock):
                self.counters["unauthorized"] += 1
                self._send(sock, error_reply("unauthorized", "peer is another user"))
                return
            while not self._closing:
                try:
                    # read_frame only calls recv; the adapter gives it the deadline.
                    body = read_frame(cast(socket.socket, clock), CONTROL_MAGIC, MAX_CONTROL_BODY)
                except ProtocolError as exc:
                    self.counters["malformed"] += 1
                    if exc.code == "truncated":
                        linger = False
                    else:
                        self._send(sock, error_reply(exc.code, exc.message))
                    return
                except TimeoutError:
                    self._send(sock, error_reply("timeout", "no complete frame in time"))
                    return
                if body is None:
                    linger = False
                    return
                self.counters["requests"] += 1
                reply, close = self._handle(conn, body)
                self._send(sock, reply)
                if close:
                    return
                clock = _FrameDeadline(sock, time.monotonic() + IDLE_TIMEOUT_S, IDLE_TIMEOUT_S)
        except OSError:
            linger = False  # the peer went away, or stop() shut us down
        except Exception as exc:
            self._fault("control connection", exc)
        finally:
            self._forget(sock)
            close_lingering(sock, linger and not self._closing, MAX_CONTROL_BODY)

    def _send(self, sock: socket.socket, reply: dict[str, Any]) -> None:
        data = pack_frame(CONTROL_MAGIC, reply)
        if len(data) - FRAME.size > MAX_CONTROL_BODY:
            data = pack_frame(
                CONTROL_MAGIC,
                error_reply(
                    "internal",
                    f"reply of {len(data)} bytes is over the {MAX_CONTROL_BODY}-byte limit",
                    reply.get("id"),
                ),
            )
        sock.settimeout(SEND_TIMEOUT_S)  # a read may have left almost no time on the socket
        sock.sendall(data)

    def _handle(self, conn: _Conn, body: bytes) -> tuple[dict[str, Any], bool]:
        """One request -> (reply, close the connection after it)."""
        try:
            req = parse_object(body)
        except ProtocolError as exc:
            self.counters["malformed"] += 1
            return error_reply(exc.code, exc.message), not conn.hello
        rid, id_ok = request_id(req)
        op = req.get("op")
        if not id_ok or not isinstance(op, str):
            self.counters["malformed"] += 1
            what = "id must be a string of at most 64 characters or an integer below 2^53"
            return error_reply("bad-request", what if not id_ok else "op must be a string"), (
                not conn.hello
            )
        if not conn.hello:
            if op != "hello":
                self.counters["malformed"] += 1
                return error_reply("hello-required", "the first request must be hello", rid), True
            return self._hello(conn, req, rid)
        try:
            return ok_reply(self._command(op, req), rid), False
        except ProtocolError as exc:
            self.counters["malformed"] += 1
            return error_reply(exc.code, exc.message, rid), ERRORS.get(exc.code, False)
        except UsageError as exc:
            return error_reply("bad-boundary", str(exc), rid), False
        except Exception as exc:
            self._fault(f"control {op}", exc)
            return error_reply("internal", f"{type(exc).__name__}: {exc}", rid), False

    def _hello(self, conn: _Conn, req: dict[str, Any], rid: Any) -> tuple[dict[str, Any], bool]:
        if not same_token(req.get("token"), self.token):
            self.counters["unauthorized"] += 1
            return error_reply("unauthorized", "missing or wrong token", rid), True
        versions = req.get("versions")
        if (
            not isinstance(versions, list)
            or not 0 < len(versions) <= 16
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in versions)
        ):
            self.counters["malformed"] += 1
            return error_reply("bad-request", "versions must be a list of 1 to 16 integers"), True
        common = set(versions).intersection(CONTROL_VERSIONS)
        if not common:
            return (
                error_reply(
                    "unsupported-version",
                    f"no common version: agent speaks {list(CONTROL_VERSIONS)}",
                    rid,
                    versions=list(CONTROL_VERSIONS),
                ),
                True,
            )
        conn.hello = True
        result = {"version": max(common), "agent": dict(self.info), "ops": list(OPS)}
        return ok_reply(result, rid), False

    def _command(self, op: str, req: dict[str, Any]) -> dict[str, Any]:
        if op == "ping":
            return {}
        if op == "status":
            out = self.backend.status()
            out["control"] = {
                **self.counters,
                "socket": self.unix_path,
                "tcp": self.tcp_address,
            }
            return out
        if op in ("enable", "disable"):
            arg = req.get("boundary")
            if not isinstance(arg, str) or not arg.strip():
                raise ProtocolError("bad-request", f"{op} needs a non-empty string 'boundary'")
            if len(arg.encode("utf-8", "surrogatepass")) > MAX_ARG_BYTES:
                raise ProtocolError("bad-request", f"boundary is over {MAX_ARG_BYTES} bytes")
            if op == "enable":
                return {"boundary": self.backend.enable(arg), "enabled": True}
            return {"boundary": self.backend.disable(arg), "enabled": False}
        if op == "hello":
            raise ProtocolError("bad-request", "hello was already done on this connection")
        raise ProtocolError("unknown-command", f"unknown op {op[:64]!r}; known: {', '.join(OPS)}")


class _FrameDeadline:
    """The socket as ``read_frame`` sees it, with one absolute deadline for a whole frame.

    ``first_by`` is when the frame's first byte must have arrived; once it has, the rest is
    due ``rest_s`` seconds after it (None: by ``first_by`` too, as for the hello, whose
    limit counts from connect). Each recv waits only for what is left, and raises
    TimeoutError once nothing is, so trickled bytes never extend the limit.
    """

    __slots__ = ("_deadline", "_rest_s", "_sock", "_started")

    def __init__(self, sock: socket.socket, first_by: float, rest_s: float | None) -> None:
        self._sock = sock
        self._deadline = first_by  # monotonic seconds
        self._rest_s = rest_s
        self._started = False  # has a byte of this frame arrived

    def recv(self, n: int) -> bytes:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete frame in time")
        self._sock.settimeout(left)
        data = self._sock.recv(n)
        if data and not self._started:
            self._started = True
            if self._rest_s is not None:
                self._deadline = time.monotonic() + self._rest_s
        return data


def _peer_is_us(sock: socket.socket) -> bool:
    """Is the process at the other end of a Unix socket ours (or root)? Linux only; where
    SO_PEERCRED is missing the 0700 folder and the token are the protection."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return True
    creds = sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


# --- the agent's one server ----------------------------------------------------------------

_SERVER: ControlServer | None = None


def start_server(rec: Any) -> None:
    """At agent start: listen for ``willowisp ctl`` (WILLOWISP_CONTROL: unix, tcp or off).
    Never raises: a channel that cannot be set up is an agent fault, the program runs on."""
    global _SERVER
    try:
        mode = (os.environ.get("WILLOWISP_CONTROL") or "unix").strip().lower()
        if mode in ("off", "0", "no", "none"):
            return
        if mode not in ("unix", "tcp"):
            rec.fault("control", UsageError(f"WILLOWISP_CONTROL={mode!r}: use unix, tcp or off"))
            mode = "unix"
        _SERVER = _start(rec, tcp=mode == "tcp")
    except Exception as exc:
        rec.fault("control", exc)


def _start(rec: Any, *, tcp: bool) -> ControlServer:
    from willowisp import __version__

    folder = runtime_dir()
    check_private_dir(folder, create=True)
    sweep_stale(folder)
    stem = f"{os.getpid()}-{rec.process_id[:8]}"
    sock_path = os.path.join(folder, stem + ".sock")
    if len(os.fsencode(sock_path)) > MAX_UNIX_PATH:
        if not tcp:
            raise OSError(errno.ENAMETOOLONG, f"socket path {sock_path} is over 107 bytes")
        sock_path = ""
    info = {
        "pid": os.getpid(),
        "process_id": rec.process_id,
        "service": rec.config.service,
        "runtime": "python",
        "agent_version": __version__,
    }
    token = os.urandom(16).hex()
    server = ControlServer(
        token, info, BoundariesBackend(), unix_path=sock_path, tcp=tcp, on_fault=rec.fault
    )
    server.start()
    try:
        descriptor = {
            **info,
            "protocol": "willowisp-control",
            "versions": list(CONTROL_VERSIONS),
            "socket": sock_path,
            "tcp": server.tcp_address,
            "token": token,
            "run": os.path.realpath(rec.config.out),  # how `ctl RUN_FOLDER` finds us
        }
        path = os.path.join(folder, stem + ".json")
        write_private_json(path, descriptor)
        server.files.append(path)
    except BaseException:
        server.stop()
        raise
    return server


def sweep_stale(folder: str, limit: int = 256) -> None:
    """Remove descriptors and sockets that processes killed without a chance to clean up
    (SIGKILL) left behind: those whose pid no longer exists. Bounded per call."""
    try:
        names = os.listdir(folder)[: limit * 2]
    except OSError:
        return
    for name in names:
        pid_s, dash, rest = name.partition("-")
        if not dash or not pid_s.isdigit() or not rest.endswith((".json", ".sock")):
            continue
        try:
            os.kill(int(pid_s), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
        except (PermissionError, OverflowError, ValueError):
            pass


def stop_server() -> None:
    """At agent stop (and before ``os._exit``): close the channel and remove its files."""
    global _SERVER
    server, _SERVER = _SERVER, None
    if server is not None:
        try:
            server.stop()
        except Exception:
            pass


def after_fork(rec: Any) -> None:
    """In a forked child: let go of the parent's channel, open the child's own."""
    global _SERVER
    old, _SERVER = _SERVER, None
    if old is None:
        return
    try:
        old.abandon()
    except Exception:
        pass
    start_server(rec)


def current() -> ControlServer | None:
    """The running server, if any (tests, status)."""
    return _SERVER
