"""Hooks for urllib3, and so for requests, which sends through it: the record http.py makes
for ``http.client``, located at the program's line that made the request.

urllib3's ``HTTPConnection`` is an ``http.client.HTTPConnection``, so http.py's hooks on the
base class would record its requests, but at the nearest frame outside the standard library:
urllib3's own ``request``. This module gives urllib3's class an ``endheaders`` of its own
and wraps its ``getresponse``. They record what http.py records (the context injected into
the header buffer unless the request carries ``traceparent``, one ``rpc`` resource,
``msg.send``, ``unit.block`` reason rpc, ``rpc.response`` with the status, -1 if the call
raised, sending included (urllib3 connects while sending); ``library`` ``requests`` when
requests is on the stack, else ``urllib3``), located at the innermost frame that is neither
the standard library, the agent, urllib3 nor requests. http.py's hooks are left nothing to
do for these connections: the plain ``endheaders`` is called, and ``_wisp_rpc`` (http.py's
note of the request in flight) is taken before its ``getresponse`` looks.

Trade-off: one stack walk per request (a few µs, small beside a request), and a copy of
http.py's few lines that read the request line and headers from the connection's buffer.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from willowisp.agent import http_propagation as hp
from willowisp.agent import recorder as _r
from willowisp.agent import rows
from willowisp.model.spec import K, Reason

if TYPE_CHECKING:
    from willowisp.agent.httplibs import Patches

# Top-level modules whose frames are the library's, not the program's.
LIBRARIES = frozenset(("urllib3", "requests"))


class _BufferSetter:
    """A Setter that adds header lines to an ``http.client`` connection's buffer."""

    def __init__(self, buf: list[bytes]) -> None:
        self.buf = buf  # the connection's own buffer, appended to in place

    def set(self, name: str, value: str) -> None:
        """Add the header ``name: value``."""
        self.buf.append(f"{name}: {value}".encode("latin-1"))


def _caller(rec: _r.Recorder) -> tuple[int, str]:
    """The location key of the program's frame that made the request (0 if none) and the
    library it called: ``requests`` if its frames are on the way, else ``urllib3``."""
    library = "urllib3"
    f = sys._getframe(1)
    while f is not None:
        name = f.f_globals.get("__name__")
        top = name.partition(".")[0] if type(name) is str else ""
        if top == "requests":
            library = "requests"
        elif top != "urllib3" and not rec.is_internal(f.f_code.co_filename):
            code = f.f_code
            rows.CODE_IDS[id(code)] = code
            return (id(code) << 16) | (f.f_lasti & 0xFFFF), library
        f = f.f_back  # type: ignore[assignment]
    return 0, library


def _begin(rec: _r.Recorder, conn: Any) -> None:
    """Inject into the buffered request and record its send (http.py's
    ``_begin_client_request``, located at the program's line)."""
    buf: list[bytes] = conn._buffer
    if not buf:
        return
    method, _, rest = buf[0].decode("latin-1", "replace").partition(" ")
    url = rest.rsplit(" ", 1)[0]
    existing = None
    for line in buf[1:]:
        if line[:12].lower() == b"traceparent:":
            existing = line[12:].decode("latin-1").strip()
            break
    ctx = hp.outgoing_context(existing, _BufferSetter(buf))
    key, library = _caller(rec)
    conn._wisp_key = key
    conn._wisp_rpc = hp.client_send(
        rec,
        ctx,
        library=library,
        method=method,
        url=url,
        peer=f"{conn.host}:{conn.port}",
        key=key,
    )


def _plain_endheaders() -> Callable[..., Any]:
    """``http.client``'s own ``endheaders``, not http.py's hook (which would record again)."""
    from willowisp.agent import http

    plain = http._orig.get("endheaders")  # kept after uninstall, for calls in flight
    if plain is None:
        plain = sys.modules["http.client"].HTTPConnection.endheaders
    return plain  # type: ignore[no-any-return]


def _endheaders(self: Any, message_body: Any = None, *, encode_chunked: bool = False) -> None:
    rec = _r.RECORDER
    if rec is not None:
        try:
            _begin(rec, self)
        except Exception as exc:
            rec.fault("urllib3.HTTPConnection.endheaders", exc)
    try:
        _plain_endheaders()(self, message_body, encode_chunked=encode_chunked)
    except BaseException:
        _end_failed_send(self)
        raise


def _end_failed_send(conn: Any) -> None:
    """End the request whose send raised (urllib3 connects here: refused, unresolved,
    timed out): its ``getresponse`` never comes, so ``rpc.response`` -1 now, or the
    ``msg.send`` would read as a request whose receiver is missing from the recording."""
    rid = getattr(conn, "_wisp_rpc", 0)
    rec = _r.RECORDER
    if not rid or rec is None:
        return
    conn._wisp_rpc = 0
    _response(rec, rid, -1, getattr(conn, "_wisp_key", 0))


def _response(rec: _r.Recorder, rid: int, status: int, key: int) -> None:
    try:
        hp.emit_at(rec, int(K.RPC_RESPONSE), rid, status, key)
    except Exception as exc:
        rec.fault("urllib3 response", exc)


def _wrap_getresponse(orig: Callable[..., Any]) -> Callable[..., Any]:
    def getresponse(self: Any, *args: Any, **kwargs: Any) -> Any:
        rid = getattr(self, "_wisp_rpc", 0)
        rec = _r.RECORDER
        if not rid or rec is None:
            return orig(self, *args, **kwargs)
        self._wisp_rpc = 0  # taken: http.py's getresponse, reached through super(), is quiet
        key = getattr(self, "_wisp_key", 0)
        try:
            hp.emit_at(rec, int(K.UNIT_BLOCK), rid, int(Reason.RPC), key)
        except Exception as exc:
            rec.fault("urllib3.HTTPConnection.getresponse", exc)
        try:
            resp = orig(self, *args, **kwargs)
        except BaseException:
            _response(rec, rid, -1, key)
            raise
        _response(rec, rid, int(resp.status), key)
        return resp

    return getresponse


def patch(patches: Patches) -> None:
    """Hook the imported urllib3's ``HTTPConnection``; all or nothing."""
    connection = importlib.import_module("urllib3.connection")  # loaded by urllib3 itself
    patches.apply(
        (connection.HTTPConnection, "endheaders", lambda _inherited: _endheaders),
        (connection.HTTPConnection, "getresponse", _wrap_getresponse),
    )
