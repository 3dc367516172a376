"""Hooks for httpx: the sync ``HTTPTransport`` and the async ``AsyncHTTPTransport``.

The transport is where a request meets the network, after the client's redirects, auth
and event hooks have shaped it, so each request on the wire is one ``rpc`` resource (a
redirect is a second one). The hook injects ``traceparent`` into the request's headers
(keeping one already there), defines the client resource and writes ``msg.send``; the sync
transport then writes the wait (``unit.block`` reason rpc); both write ``rpc.response``
with the status (-1 when the transport raised) once the response headers are in. The async
transport records the task's wait too, through task_waits.drive: httpcore suspends the task
several times per request and anyio's events, which aio_sync.py records, would end a
single block early, so the block is written again before a suspension that follows them.
Custom transports (``httpx.MockTransport``, ``WSGITransport``) are not hooked.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from willowisp.agent import http_propagation as hp
from willowisp.agent import recorder as _r
from willowisp.agent import task_waits
from willowisp.model.spec import K, Reason

if TYPE_CHECKING:
    from collections.abc import Callable

    from willowisp.agent.httplibs import Patches

# Top-level modules whose frames are the library's, not the program's.
LIBRARIES = frozenset(("httpx", "httpcore", "anyio", "sniffio", "h11", "h2"))


def _send(rec: _r.Recorder, request: Any) -> tuple[int, int]:
    """Inject and record one request; returns (resource or 0, location key)."""
    headers = request.headers
    ctx = hp.outgoing_context(headers.get("traceparent"), hp.ItemSetter(headers))
    url = request.url
    port = url.port or (443 if url.scheme == "https" else 80)
    key = hp.program_key(rec, LIBRARIES)
    rid = hp.client_send(
        rec,
        ctx,
        library="httpx",
        method=str(request.method),
        url=str(url.raw_path.decode("ascii", "replace")),
        peer=f"{url.host}:{port}",
        key=key,
    )
    return rid, key


def _response(rec: _r.Recorder, rid: int, status: int, key: int) -> None:
    try:
        hp.emit_at(rec, int(K.RPC_RESPONSE), rid, status, key)
    except Exception as exc:
        rec.fault("httpx response", exc)


def _wrap_sync(orig: Callable[..., Any]) -> Callable[..., Any]:
    def handle_request(self: Any, request: Any) -> Any:
        rec = _r.RECORDER
        rid = key = 0
        if rec is not None:
            try:
                rid, key = _send(rec, request)
                if rid:
                    hp.emit_at(rec, int(K.UNIT_BLOCK), rid, int(Reason.RPC), key)
            except Exception as exc:
                rec.fault("httpx.HTTPTransport.handle_request", exc)
        if not rid or rec is None:
            return orig(self, request)
        try:
            resp = orig(self, request)
        except BaseException:
            _response(rec, rid, -1, key)
            raise
        _response(rec, rid, int(resp.status_code), key)
        return resp

    return handle_request


def _wrap_async(orig: Callable[..., Any]) -> Callable[..., Any]:
    async def handle_async_request(self: Any, request: Any) -> Any:
        rec = _r.RECORDER
        rid = key = 0
        if rec is not None:
            try:
                rid, key = _send(rec, request)
            except Exception as exc:
                rec.fault("httpx.AsyncHTTPTransport.handle_async_request", exc)
        if not rid or rec is None:
            return await orig(self, request)
        try:
            resp = await task_waits.drive(orig(self, request), rid, int(Reason.RPC), key)
        except BaseException:
            _response(rec, rid, -1, key)
            raise
        _response(rec, rid, int(resp.status_code), key)
        return resp

    return handle_async_request


def patch(patches: Patches) -> None:
    """Hook both transports of the imported httpx; all or nothing."""
    httpx = sys.modules["httpx"]
    patches.apply(
        (httpx.HTTPTransport, "handle_request", _wrap_sync),
        (httpx.AsyncHTTPTransport, "handle_async_request", _wrap_async),
    )
