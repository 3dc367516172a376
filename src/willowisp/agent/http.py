"""Hooks for the standard library's HTTP: ``http.client`` (and so ``urllib.request``) and
``http.server``.

Client: when the request's headers are complete (``endheaders``) the hook continues the
current trace with a new span id, injects ``traceparent`` (unless the program already set
one, which is then used as is), defines an ``rpc`` resource carrying that context and writes
``msg.send``; ``getresponse`` writes the wait (``unit.block`` reason rpc) and
``rpc.response``; a send that raises (refused, unresolved, reset) writes ``rpc.response`` -1
at once, as ``getresponse`` does when it raises. Server: after the request line and headers
are parsed, the hook extracts ``traceparent``, defines the server-side ``rpc`` resource and
writes ``msg.recv``; the first ``send_response`` writes ``rpc.reply``. The analyzer pairs
the two sides through the span id that crossed the wire, never through timestamps.

Only shapes are kept: method, path without query values, peer address and, on the server,
the allowlisted request headers; no bodies -- unless ``--redact`` (agent/redact.py) asks
for more: more headers, query values, or the entry request's body (the first ``BODY_MAX``
bytes the handler reads, kept as the resource's ``body``). The client's ``library``
names the outermost library on the stack (requests, urllib3, urllib), so requests and
urllib3, which reach the network through ``http.client``, are recorded once, here.

The agent imports neither module: ``http.client`` pulls in ``ssl`` and ``email``,
``http.server`` ``socketserver``, ``mimetypes`` and ``html`` too, a cost a program that
makes no HTTP calls (or serves none) should not pay. Each side's hooks go in right after
the program first imports its module (post_import.py), or at once if it already has. The
price: until the program has imported both, post_import's finder is asked first about each
import it makes (a dict lookup).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from willowisp.agent import boundaries, context, data_access, post_import, redact, rows
from willowisp.agent import recorder as _r
from willowisp.agent.http_propagation import elided_target as _target
from willowisp.agent.http_propagation import entry_headers_json, incoming_context
from willowisp.model.redaction import BODY_MAX, DEFAULT_HEADERS
from willowisp.model.spec import K, Reason
from willowisp.wire.carriers import MessageHeaders
from willowisp.wire.traceparent import TraceContext, new_span_id, new_trace_id, parse

if TYPE_CHECKING:
    import http.client
    import http.server

# entry_headers_json lives with the other HTTP shapes; the gRPC hook imports it from here
__all__ = ["ENTRY_HEADERS", "entry_headers_json", "install", "uninstall"]

_orig: dict[str, Any] = {}  # originals by attribute name; kept by uninstall for calls in flight
_patched: list[tuple[type, str, Any]] = []  # (class, attribute, previous value or _MISSING)
_MISSING = object()
_waits: list[post_import.Waiting] = []  # waits for the program's first imports, until uninstall


# Libraries that reach http.client from above, by top-level module, outermost first: the
# label names the library the program called (requests -> urllib3 -> http.client is
# "requests"), so one request is one rpc resource whatever the layers.
_CLIENT_LIBRARIES = {"requests": 0, "urllib3": 1, "urllib": 2}
_LIBRARY_LABELS = ("requests", "urllib3", "urllib")


def _client_library() -> str:
    """The outermost known HTTP library on the caller's stack, else ``http.client``."""
    modules = sys.modules
    if "urllib.request" not in modules and "urllib3" not in modules and "requests" not in modules:
        return "http.client"  # none is loaded, so none is on the stack: no walk (~3 µs)
    best = len(_LIBRARY_LABELS)
    f = sys._getframe(2)
    while f is not None:
        name = f.f_globals.get("__name__")
        if type(name) is str:
            top = name.partition(".")[0]
            rank = _CLIENT_LIBRARIES.get(top)
            if rank is not None and (top != "urllib" or name == "urllib.request"):
                best = min(best, rank)
                if best == 0:
                    break
        f = f.f_back  # type: ignore[assignment]
    return _LIBRARY_LABELS[best] if best < len(_LIBRARY_LABELS) else "http.client"


# Request headers an entry request keeps by default (the contract's allowlist); what a
# process keeps is ``redact.ACTIVE.headers``.
ENTRY_HEADERS = DEFAULT_HEADERS


def _endheaders(
    self: http.client.HTTPConnection, message_body: Any = None, *, encode_chunked: bool = False
) -> None:
    rec = _r.RECORDER
    if rec is not None:
        try:
            _begin_client_request(rec, self)
        except Exception as exc:
            rec.fault("http.client.endheaders", exc)
    try:
        _orig["endheaders"](self, message_body, encode_chunked=encode_chunked)
    except BaseException:
        _end_failed_send(self)
        raise


def _end_failed_send(conn: http.client.HTTPConnection) -> None:
    """End the request whose send raised (connection refused, DNS failure, connect timeout,
    reset): ``getresponse`` will not be called for it, so without this its ``msg.send``
    would stand unanswered, read as a reply still awaited from a receiver not in the
    recording. Status -1, as every agent writes for a call that ended in an error."""
    rid = getattr(conn, "_wisp_rpc", 0)
    rec = _r.RECORDER
    if not rid or rec is None:
        return
    conn._wisp_rpc = 0  # type: ignore[attr-defined]
    try:
        rec.emit_user(int(K.RPC_RESPONSE), rid, -1)
    except Exception as exc:
        rec.fault("http.client.endheaders", exc)


def _begin_client_request(rec: _r.Recorder, conn: http.client.HTTPConnection) -> None:
    buf: list[bytes] = conn._buffer  # type: ignore[attr-defined]
    if not buf:
        return
    ctx = _existing_context(buf)
    if ctx is None:
        ctx = context.outgoing()
        buf.append(b"traceparent: " + ctx.header().encode("ascii"))
        member = boundaries.outgoing_member()
        if member:  # a boundary's full fidelity travels with the request
            buf.append(b"tracestate: " + f"{boundaries.STATE_KEY}={member}".encode("ascii"))
    if not ctx.flags & 1 and rec.config.mode == "hops":
        return  # always-on mode records sampled operations only; the flag still travels
    method, _, rest = buf[0].decode("latin-1", "replace").partition(" ")
    target = _target(rest.rsplit(" ", 1)[0])
    rid = rec.new_resource(
        "rpc",
        2,
        name=f"{method} {target}",
        trace_id=ctx.trace_id,
        span_id=ctx.span_id,
        sampled=ctx.flags & 1,
        protocol="http",
        library=_client_library(),
        method=method,
        target=target,
        peer=f"{conn.host}:{conn.port}",
    )
    conn._wisp_rpc = rid  # type: ignore[attr-defined]
    rec.emit_user(int(K.MSG_SEND), rid, 0)


def _existing_context(buf: list[bytes]) -> TraceContext | None:
    """The context of the ``traceparent`` the program already put on the request, if any
    (the first one; None if it is not valid)."""
    for i in range(1, len(buf)):
        line = buf[i]
        # the first byte alone first: most lines are not traceparent (and b't' is no copy)
        if line[:1] in b"tT" and line[:12].lower() == b"traceparent:":
            return parse(line[12:].decode("latin-1").strip())
    return None


def _getresponse(self: http.client.HTTPConnection) -> Any:
    rid = getattr(self, "_wisp_rpc", 0)
    rec = _r.RECORDER
    if not rid or rec is None:
        return _orig["getresponse"](self)
    self._wisp_rpc = 0  # type: ignore[attr-defined]
    try:
        rec.emit_user(int(K.UNIT_BLOCK), rid, Reason.RPC)
    except Exception as exc:
        rec.fault("http.client.getresponse", exc)
    try:
        resp = _orig["getresponse"](self)
    except BaseException:
        rec.emit_user(int(K.RPC_RESPONSE), rid, -1)
        raise
    rec.emit_user(int(K.RPC_RESPONSE), rid, int(resp.status))
    return resp


def _parse_request(self: http.server.BaseHTTPRequestHandler) -> bool:
    ok: bool = _orig["parse_request"](self)
    rec = _r.RECORDER
    if not ok or rec is None:
        return ok
    try:
        _receive(rec, self)
    except Exception as exc:
        rec.fault("http.server.parse_request", exc)
    return ok


def _receive(rec: _r.Recorder, handler: http.server.BaseHTTPRequestHandler) -> None:
    """Take the inbound context, make it current with this server's own span id, and,
    unless unsampled in hops mode, define the server-side rpc resource and write
    ``msg.recv``."""
    headers = handler.headers
    # W3C, else B3, else X-Ray: whatever the caller's tracer speaks
    parent, state, how = incoming_context(MessageHeaders(headers))
    own = new_span_id()
    if parent is not None:
        trace_id, flags = parent.trace_id, parent.flags
    else:
        trace_id, flags = new_trace_id(), context.root_flags()
    method = handler.command or "?"
    bnd = boundaries.enter("http", method, handler.path, state.get(boundaries.STATE_KEY) or "")
    forced: dict[str, Any] = {}
    if bnd is not None:
        handler._wisp_boundary = bnd  # type: ignore[attr-defined]
        forced = boundaries.forced_attrs(flags)
        flags |= 1  # a declared boundary is recorded whatever the trace ratio
    if not flags & 1 and rec.config.mode == "hops":
        handler._wisp_ctx_token = context.set_current(  # type: ignore[attr-defined]
            TraceContext(trace_id, own, flags)
        )
        return  # not sampled: propagate the decision, record nothing
    code = getattr(getattr(type(handler), "do_" + method, None), "__code__", None)
    key = 0
    if code is not None:
        rows.CODE_IDS[id(code)] = code
        key = id(code) << 16
    target = _target(handler.path)
    rid = rec.new_resource(
        "rpc",
        2,
        name=f"{method} {target}",
        trace_id=trace_id,
        span_id=own,
        parent_span_id=parent.span_id if parent else "",
        sampled=flags & 1,
        protocol="http",
        library="http.server",
        method=method,
        target=target,
        peer=f"{handler.client_address[0]}:{handler.client_address[1]}",
        headers=entry_headers_json(headers.items()),
        propagation=how,
        **forced,
    )
    handler._wisp_rpc = rid  # type: ignore[attr-defined]
    if redact.ACTIVE.bodies:
        tap = _BodyTap(handler.rfile, rec, rid, headers.get("content-length"))
        handler.rfile = tap  # type: ignore[assignment]
    handler._wisp_ctx_token = context.set_current(  # type: ignore[attr-defined]
        TraceContext(trace_id, own, flags)
    )
    st = _r.state()
    rec.emit_for(st, st.unit, int(K.MSG_RECV), rid, 0, key)
    if data_access.enabled(rec):  # (the Host lookup is a scan of the headers: only if used)
        # the request as a read or write of what its URL names (agent/data_access.py)
        host = headers.get("Host") or "?"
        data_access.http_request(rec, method, host, target, key)


class _BodyTap:
    """The request's ``rfile`` while its handler reads the body: passes every read through
    and keeps the first ``BODY_MAX`` bytes of the body (``Content-Length`` of them), which
    go to the resource as ``body`` (UTF-8 text, or ``base64:...``) once read or replied."""

    def __init__(self, raw: Any, rec: _r.Recorder, rid: int, length: str | None) -> None:
        self._raw = raw
        self._rec = rec
        self._rid = rid
        try:
            self._left = max(0, int(length or 0))
        except ValueError:
            self._left = 0
        self._total = self._left
        self._kept = bytearray()
        self._done = self._left == 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._raw.read(n)
        self._take(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        data: bytes = self._raw.readline(limit)
        self._take(data)
        return data

    def _take(self, data: bytes) -> None:
        if self._done:
            return
        try:
            part = data[: self._left]
            self._left -= len(part)
            room = BODY_MAX - len(self._kept)
            if room > 0:
                self._kept += part[:room]
            if self._left <= 0 or not data:
                self.finish()
        except Exception as exc:
            self._rec.fault("http.server body", exc)

    def finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._rec.update_resource(self._rid, **redact.body_attrs(bytes(self._kept), self._total))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _send_response_only(
    self: http.server.BaseHTTPRequestHandler, code: int, message: str | None = None
) -> None:
    rid = getattr(self, "_wisp_rpc", 0)
    rec = _r.RECORDER
    if rid and rec is not None:
        self._wisp_rpc = 0  # type: ignore[attr-defined]
        try:
            rec.emit_user(int(K.RPC_REPLY), rid, int(code))
        except Exception as exc:
            rec.fault("http.server.send_response_only", exc)
    _orig["send_response_only"](self, code, message)


def _handle_one_request(self: http.server.BaseHTTPRequestHandler) -> None:
    try:
        _orig["handle_one_request"](self)
    finally:
        tap = getattr(self, "rfile", None)
        if isinstance(tap, _BodyTap):  # the next request on the connection reads plainly
            self.rfile = tap._raw
            tap.finish()
        bnd = getattr(self, "_wisp_boundary", None)
        if bnd is not None:
            self._wisp_boundary = None  # type: ignore[attr-defined]
            boundaries.leave(bnd)
        token = getattr(self, "_wisp_ctx_token", None)
        if token is not None:
            self._wisp_ctx_token = None  # type: ignore[attr-defined]
            try:
                context.reset(token)
            except ValueError:
                pass


def _set(cls: type, attr: str, value: Any) -> None:
    _orig[attr] = getattr(cls, attr)
    _patched.append((cls, attr, cls.__dict__.get(attr, _MISSING)))
    setattr(cls, attr, value)


def _patch_client() -> None:
    """Hook ``http.client.HTTPConnection`` (imported by now); all or nothing."""
    # From sys.modules: while its first import runs, ``http.client`` is not yet an
    # attribute of the ``http`` package.
    conn = sys.modules["http.client"].HTTPConnection
    _all_or_nothing(((conn, "endheaders", _endheaders), (conn, "getresponse", _getresponse)))


def _patch_server() -> None:
    """Hook ``http.server.BaseHTTPRequestHandler`` (imported by now); all or nothing."""
    handler = sys.modules["http.server"].BaseHTTPRequestHandler
    _all_or_nothing(
        (
            (handler, "parse_request", _parse_request),
            (handler, "send_response_only", _send_response_only),
            (handler, "handle_one_request", _handle_one_request),
        )
    )


def _all_or_nothing(patches: tuple[tuple[type, str, Any], ...]) -> None:
    mark = len(_patched)
    try:
        for cls, attr, value in patches:
            _set(cls, attr, value)
    except BaseException:
        _undo(mark)
        raise


def install() -> None:
    """Hook each of ``http.client`` and ``http.server`` now if the program has imported it,
    else right after it does. Idempotent. A failure now undoes everything and raises; a
    failure later, at the import, is an agent.fault and leaves that module unhooked."""
    if _patched or _waits:
        return
    try:
        for name, patch in (("http.client", _patch_client), ("http.server", _patch_server)):
            waiting = post_import.when_imported(name, patch, "install http")
            if waiting is not None:
                _waits.append(waiting)
    except BaseException:
        uninstall()
        raise


def uninstall() -> None:
    """Stop waiting for the imports and put back what was hooked."""
    while _waits:
        post_import.cancel(_waits.pop())
    _undo(0)


def _undo(keep: int) -> None:
    """Put back the patches after the first ``keep``, latest first."""
    while len(_patched) > keep:
        cls, attr, previous = _patched.pop()
        if previous is _MISSING:
            delattr(cls, attr)
        else:
            setattr(cls, attr, previous)
