"""Hooks for aiohttp: the client (``ClientSession._request``) and the server
(``web_protocol.RequestHandler._handle_request`` and ``StreamResponse.prepare``), the
same methods in aiohttp 3.9 to 3.14.

Client: the hook copies the request's headers, injects ``traceparent`` (unless the call or
the session's default headers carry one), defines the client ``rpc`` resource, writes
``msg.send``, the task's wait for the reply (``unit.block`` reason rpc, through
task_waits.drive, so events recorded inside aiohttp while the request is in flight do not
end it early) and, once the response headers are in, ``rpc.response`` with the status (-1
if the request raised). One call is one resource: redirects aiohttp follows carry the same
span id.

Server: ``_handle_request`` runs once per request in its own task. The hook extracts the
context (W3C, else B3, else X-Ray), defines the server ``rpc`` resource with the
allowlisted request headers, writes ``msg.recv`` and makes the context current for the
handler, so its outgoing calls continue the trace. ``rpc.reply`` is written when the
response is prepared (its headers about to go out), so it precedes the client's
``rpc.response``; a request whose response is never prepared (the client went away) has
no reply.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from willowisp.agent import http_propagation as hp
from willowisp.agent import recorder as _r
from willowisp.agent import redact, task_waits
from willowisp.model.spec import K, Reason
from willowisp.wire.carriers import HeaderList

if TYPE_CHECKING:
    from collections.abc import Callable

    from willowisp.agent.httplibs import Patches

# Top-level modules whose frames are the library's, not the program's.
LIBRARIES = frozenset(("aiohttp", "multidict", "yarl", "aiohappyeyeballs", "aiosignal"))

# Server requests whose reply is not written yet: id(request) -> resource. An entry lives
# from the request's msg.recv to its response's prepare, or the end of its handling.
_replies: dict[int, int] = {}


# --- client ---------------------------------------------------------------------------


def _client_send(
    rec: _r.Recorder, session: Any, method: str, str_or_url: Any, headers: Any
) -> tuple[int, int, Any]:
    """Inject into a copy of ``headers`` and record; returns (resource or 0, key, headers)."""
    from multidict import CIMultiDict

    out: Any = CIMultiDict(headers) if headers is not None else CIMultiDict()
    existing = out.get("traceparent")
    if existing is None:
        defaults = getattr(session, "headers", None)
        existing = defaults.get("traceparent") if defaults is not None else None
    ctx = hp.outgoing_context(existing, hp.ItemSetter(out))
    build = getattr(session, "_build_url", None)
    url = str(build(str_or_url) if build is not None else str_or_url)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    key = hp.program_key(rec, LIBRARIES)
    rid = hp.client_send(
        rec,
        ctx,
        library="aiohttp",
        method=method.upper(),
        url=url,
        peer=f"{parts.hostname}:{port}",
        key=key,
    )
    return rid, key, out


def _response(rec: _r.Recorder, rid: int, status: int, key: int) -> None:
    try:
        hp.emit_at(rec, int(K.RPC_RESPONSE), rid, status, key)
    except Exception as exc:
        rec.fault("aiohttp response", exc)


def _wrap_request(orig: Callable[..., Any]) -> Callable[..., Any]:
    async def _request(self: Any, method: str, str_or_url: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        rid = key = 0
        if rec is not None:
            try:
                rid, key, kwargs["headers"] = _client_send(
                    rec, self, method, str_or_url, kwargs.get("headers")
                )
            except Exception as exc:
                rec.fault("aiohttp.ClientSession._request", exc)
        if not rid or rec is None:
            return await orig(self, method, str_or_url, *args, **kwargs)
        try:
            call = orig(self, method, str_or_url, *args, **kwargs)
            resp = await task_waits.drive(call, rid, int(Reason.RPC), key)
        except BaseException:
            _response(rec, rid, -1, key)
            raise
        _response(rec, rid, int(resp.status), key)
        return resp

    return _request


def patch_client(patches: Patches) -> None:
    """Hook ``ClientSession`` of the imported aiohttp."""
    aiohttp = sys.modules["aiohttp"]
    patches.apply((aiohttp.ClientSession, "_request", _wrap_request))


# --- server ---------------------------------------------------------------------------


def _server_receive(rec: _r.Recorder, request: Any) -> tuple[int, hp.Tokens]:
    pairs = list(request.headers.items())
    peer = "?"
    transport = request.transport
    if transport is not None:
        addr = transport.get_extra_info("peername")
        if isinstance(addr, tuple) and len(addr) >= 2:
            peer = f"{addr[0]}:{addr[1]}"
    rid, tokens = hp.server_receive(
        rec,
        HeaderList(pairs),
        pairs,
        library="aiohttp",
        method=str(request.method),
        url=str(request.raw_path),
        peer=peer,
    )
    if rid:
        _replies[id(request)] = rid
    return rid, tokens


def _reply(rid: int, status: int) -> None:
    rec = _r.RECORDER
    if rec is None:
        return
    try:
        hp.emit_at(rec, int(K.RPC_REPLY), rid, status, hp.program_key(rec, LIBRARIES))
    except Exception as exc:
        rec.fault("aiohttp reply", exc)


def _wrap_handle_request(orig: Callable[..., Any]) -> Callable[..., Any]:
    async def _handle_request(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        tokens = None
        entry = 0
        if rec is not None:
            try:
                entry, tokens = _server_receive(rec, request)
            except Exception as exc:
                rec.fault("aiohttp.RequestHandler._handle_request", exc)
        result = None
        try:
            result = await orig(self, request, *args, **kwargs)
            return result
        finally:
            rid = _replies.pop(id(request), 0)
            if rid and isinstance(result, tuple) and result:
                # Prepared through a request object other than this one (a clone): the
                # reply is known only now.
                _reply(rid, int(getattr(result[0], "status", -1)))
            if tokens is not None:
                hp.leave(tokens)
            if entry and rec is not None and redact.ACTIVE.bodies:
                _record_body(rec, entry, request)

    return _handle_request


def _record_body(rec: _r.Recorder, rid: int, request: Any) -> None:
    """The entry request's body, when the handler read it (aiohttp keeps what ``read()``,
    ``text()`` or ``json()`` read) and ``--redact bodies`` asked for it."""
    try:
        data = getattr(request, "_read_bytes", None)
        if isinstance(data, bytes):
            rec.update_resource(rid, **redact.body_attrs(data))
    except Exception as exc:
        rec.fault("aiohttp body", exc)


def _wrap_prepare(orig: Callable[..., Any]) -> Callable[..., Any]:
    async def prepare(self: Any, request: Any) -> Any:
        rid = _replies.pop(id(request), 0)
        if rid:
            _reply(rid, int(self.status))
        return await orig(self, request)

    return prepare


def patch_server(patches: Patches) -> None:
    """Hook the request handler and ``StreamResponse.prepare`` of the imported aiohttp
    server; all or nothing."""
    protocol = sys.modules["aiohttp.web_protocol"]
    response = importlib.import_module("aiohttp.web_response")
    patches.apply(
        (protocol.RequestHandler, "_handle_request", _wrap_handle_request),
        (response.StreamResponse, "prepare", _wrap_prepare),
    )
