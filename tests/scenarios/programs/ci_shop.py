"""A three-service shop for the CI gate: gateway -> orders -> stock, all http.server services
calling the next with http.client. Each checkout is one trace.

A header-stripping client can be switched on for one request number per hop: the
connection still goes out (so the agent records the client side with the traceparent it
injected) but the header is removed from the bytes before they are sent, as a
misconfigured proxy or a client rewriting its request would.

Usage:
  python ci_shop.py drive N [--break-gateway K] [--break-orders K]
      start the services, send N POST /checkout requests (body {"n": i}), stop them
  python ci_shop.py serve [--break-gateway K] [--break-orders K]
      start the services, print "ready PORT" (the gateway's), serve until stdin closes
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StrippingConnection(http.client.HTTPConnection):
    """Sends its request without the ``traceparent`` header that was put into it."""

    def _send_output(self, message_body=None, encode_chunked=False):  # type: ignore[no-untyped-def]
        kept = [line for line in self._buffer if not line.lower().startswith(b"traceparent:")]
        self._buffer[:] = kept
        return super()._send_output(message_body, encode_chunked=encode_chunked)


def call(port: int, method: str, path: str, body: bytes, strip: bool) -> bytes:
    cls = StrippingConnection if strip else http.client.HTTPConnection
    conn = cls("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.read()
    finally:
        conn.close()


def service(name: str, next_port: int, next_method: str, next_path: str, break_at: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(size) if size else b"{}"
            n = int(json.loads(raw or b"{}").get("n", -1))
            out = name.encode()
            if next_port:
                out += b">" + call(next_port, next_method, next_path, raw, n == break_at)
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = _handle
        do_POST = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


def start(role: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "WILLOWISP_SERVICE": role}
    p = subprocess.Popen(
        [sys.executable, __file__, "_service", role, *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert p.stdout is not None
    return p, int(p.stdout.readline().split()[-1])


def start_shop(break_gateway: int, break_orders: int) -> tuple[list[subprocess.Popen[str]], int]:
    stock, stock_port = start("stock", "0", "-", "-", "-1")
    orders, orders_port = start("orders", str(stock_port), "GET", "/reserve", str(break_orders))
    gateway, gw_port = start("gateway", str(orders_port), "POST", "/orders", str(break_gateway))
    return [gateway, orders, stock], gw_port


def stop(children: list[subprocess.Popen[str]]) -> None:
    for p in children:
        p.terminate()
    for p in children:
        p.wait(timeout=30)


def main() -> None:
    if sys.argv[1] == "_service":
        _, _, name, port, method, path, brk = sys.argv
        service(name, int(port), method, path, int(brk))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("drive", "serve"))
    ap.add_argument("n", nargs="?", type=int, default=0)
    ap.add_argument("--break-gateway", type=int, default=-1)
    ap.add_argument("--break-orders", type=int, default=-1)
    args = ap.parse_args()
    children, port = start_shop(args.break_gateway, args.break_orders)
    try:
        if args.mode == "drive":
            for i in range(args.n):
                body = json.dumps({"n": i}).encode()
                assert call(port, "POST", "/checkout", body, False) == b"gateway>orders>stock"
            print("drive done", flush=True)
        else:
            print(f"ready {port}", flush=True)
            sys.stdin.read()  # until the test closes our stdin
    finally:
        stop(children)


if __name__ == "__main__":
    main()
