"""``willowisp view``'s HTTP server: the page, its script, and a small JSON API over the
view columns (``model.ViewData``).

Security, because a trace holds other people's strings and the server holds a trace:

- It listens on 127.0.0.1 only (``bind`` refuses anything else).
- Every request must carry the per-session token (``?token=``, 32 random bytes, compared in
  constant time); the URL printed at start is the only way in. The page's own script and
  style sheet too: the page is served with the token written into their URLs.
- ``Host`` must be ``127.0.0.1:PORT`` or ``localhost:PORT`` (a DNS-rebinding page sends its
  own name), and ``Origin``, when a browser sends one, the same origin: another site's page
  cannot read the API even if it guessed the port.
- Only GET and HEAD; any other method is a 405 (with ``Allow``). Every response — errors
  included, even to a request line the server cannot parse — says ``nosniff``, ``no-store``,
  no referrer (the token is in the URL), and the Content-Security-Policy allows no inline
  script and no connection anywhere but here — so a trace string that slipped into markup
  still could not run. The page itself never builds markup from trace strings: text nodes
  and canvas text only (see static/view.js).
- Query values are bounded and validated (``lod.Window``); a bad one is a 400 with a one
  line reason, never a traceback.
- Anyone on the machine can connect without the token, so connections are bounded: at most
  ``MAX_HANDLERS`` are served at once (one thread each; the next get a 503 at once and are
  closed), and one that sends nothing for ``IDLE_TIMEOUT_S`` (``WILLOWISP_VIEW_IDLE_S``) is
  closed. Idle connections could otherwise grow the server by a thread each, without end.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from willowisp.errors import UsageError
from willowisp.view import details, lod
from willowisp.view.model import ViewData

STATIC = {
    "view.js": "text/javascript; charset=utf-8",
    "view.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MAX_QUERY = 4096
MAX_HANDLERS = 64  # connections served at once; a browser opens about six
IDLE_TIMEOUT_S = 30.0  # a connection silent this long is closed (WILLOWISP_VIEW_IDLE_S)


def idle_timeout_s() -> float:
    """WILLOWISP_VIEW_IDLE_S (seconds, > 0) or the default. UsageError for a bad value."""
    raw = os.environ.get("WILLOWISP_VIEW_IDLE_S", "").strip()
    if not raw:
        return IDLE_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0.0 < value <= 86400.0:
        raise UsageError(f"WILLOWISP_VIEW_IDLE_S={raw!r} is not a number of seconds in (0, 86400]")
    return value


class ViewServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stopping must not wait for idle keep-alive connections
    # listen() backlog: with the default 5, a burst of connects (a browser's, or a test's)
    # waits out TCP's 1 s SYN retry for every sixth one while the accept loop catches up.
    request_queue_size = 128

    def __init__(self, data: ViewData, port: int = 0, token: str | None = None) -> None:
        self.data = data
        self.token = token or secrets.token_urlsafe(32)
        self.bounds = data.lane_bounds(len(data.meta["lanes"]))
        self.lock = threading.Lock()
        self.idle_timeout_s = idle_timeout_s()
        # One slot per handler thread: taken on accept, given back when the thread ends.
        self.slots = threading.BoundedSemaphore(MAX_HANDLERS)
        super().__init__(("127.0.0.1", port), Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection if a slot is free; else a 503, sent from the accept
        loop without reading anything, and the connection closed."""
        if not self.slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: it will not give the slot back
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def warm(self) -> None:
        """Compute the per-mode columns the first screens need (lod's memos) ahead of the
        first requests; run on a background thread after the server is up."""
        for mode in ("adjusted", "raw", "causal"):
            w = lod.Window(self.data, {"mode": mode, "px": "1", "lo": "0", "hi": "1"})
            lod.cells(self.data, w, self.bounds)
            lod.events(self.data, w)
            lod.edges(self.data, w)

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"


def _refuse_busy(sock: socket.socket) -> None:
    """A complete 503 with the headers every answer carries; never blocks the accept loop."""
    body = orjson.dumps({"error": "too many connections to the viewer"})
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "Retry-After: 1\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Referrer-Policy: no-referrer\r\n"
        "Cache-Control: no-store\r\n"
        f"Content-Security-Policy: {CSP}\r\n"
        "Cross-Origin-Resource-Policy: same-origin\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        sock.setblocking(False)  # a fresh socket's send buffer takes this whole
        sock.send(head.encode("ascii") + body)


def _static(name: str) -> bytes:
    return (resources.files("willowisp.view") / "static" / name).read_bytes()


def _page(token: str) -> bytes:
    """index.html with the token in its script's and style sheet's URLs (they need it like
    every other request). The token is URL-safe base64: nothing in it needs escaping."""
    page = _static("index.html")
    for name in STATIC:
        page = page.replace(
            f'"/static/{name}"'.encode(), f'"/static/{name}?token={token}"'.encode()
        )
    return page


class Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "willowisp-view"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Reads and writes alike: a peer that stops reading holds a slot no longer either.
        self.connection.settimeout(self.server.idle_timeout_s)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the terminal shows the URL, not every tile request

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        try:
            self._get()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _get(self) -> None:
        if len(self.path) > MAX_QUERY:
            self._error(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            return
        if not self._same_origin():
            self._error(HTTPStatus.FORBIDDEN, "Host or Origin is not this viewer")
            return
        url = urlsplit(self.path)
        if url.path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
            return
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if not hmac.compare_digest(query.get("token", "").encode(), self.server.token.encode()):
            self._error(HTTPStatus.FORBIDDEN, "a valid token is required")
            return
        if url.path.startswith("/static/"):
            name = url.path.removeprefix("/static/")
            if name not in STATIC:
                self._error(HTTPStatus.NOT_FOUND, "no such file")
                return
            self._send(200, _static(name), STATIC[name])
            return
        if url.path == "/":
            self._send(200, _page(self.server.token), "text/html; charset=utf-8")
            return
        route = ROUTES.get(url.path)
        if route is None:
            self._error(HTTPStatus.NOT_FOUND, "no such path")
            return
        try:
            body = route(self.server, query)
        except ValueError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e)[:200])
            return
        self._send(200, orjson.dumps(body), "application/json")

    def _same_origin(self) -> bool:
        port = self.server.port
        hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        if self.headers.get("Host", "") not in hosts:
            return False
        origin = self.headers.get("Origin")
        return origin is None or origin in {f"http://{h}" for h in hosts}

    def _error(self, status: int, message: str) -> None:
        self._send(status, orjson.dumps({"error": message}), "application/json")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The http.server's own errors (an unparsable request line, an unknown method) in
        the viewer's form, with its headers: an unsupported method is a 405."""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD"
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # unparsed: answer with headers all the same
            self.request_version = "HTTP/1.0"
        self._error(code, (message or HTTPStatus(code).phrase)[:200])

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _int(query: dict[str, str], name: str) -> int:
    text = query.get(name, "")
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if abs(value) > 2**62:
        raise ValueError(f"{name} is out of range")
    return value


def _meta(server: ViewServer, query: dict[str, str]) -> Any:
    return server.data.meta


def _tiles(server: ViewServer, query: dict[str, str]) -> Any:
    data = server.data
    w = lod.Window(data, query)
    out: dict[str, Any] = {"mode": w.mode, "t0": w.rel0, "t1": w.rel1, "px": w.px}
    out |= lod.cells(data, w, server.bounds)
    out |= lod.events(data, w)
    out |= lod.edges(data, w)
    return out


def _at(server: ViewServer, query: dict[str, str]) -> Any:
    tol = max(_int(query, "tol"), 0) if query.get("tol") else 0
    return details.at(
        server.data, query.get("mode", "adjusted"), _int(query, "lane"), _int(query, "t"), tol
    )  # t relative to the mode's base


def _edge(server: ViewServer, query: dict[str, str]) -> Any:
    return details.edge(server.data, _int(query, "row"))


def _event(server: ViewServer, query: dict[str, str]) -> Any:
    return details.event(server.data, _int(query, "row"))


def _search(server: ViewServer, query: dict[str, str]) -> Any:
    return details.search(server.data, query.get("q", ""))


ROUTES = {
    "/api/meta": _meta,
    "/api/tiles": _tiles,
    "/api/at": _at,
    "/api/edge": _edge,
    "/api/event": _event,
    "/api/search": _search,
}
