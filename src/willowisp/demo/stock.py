"""Demo service "stock": reserving items asks orders for the current price.

Usage: python -m willowisp.demo.stock ORDERS_PORT. Prints "stock: listening on PORT".
``/check`` calls orders' ``/ping`` (no lock needed); ``/reserve`` calls ``/price``, which
needs the lock orders holds while it waits for this reply.
"""

from __future__ import annotations

import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDERS = f"http://127.0.0.1:{sys.argv[-1]}"
reserved: dict[str, int] = {}
reserved_lock = threading.Lock()


class StockHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = "/price" if self.path.startswith("/reserve") else "/ping"
        with urllib.request.urlopen(ORDERS + path, timeout=600) as r:
            body = r.read()
        with reserved_lock:
            reserved["sku-1"] = reserved.get("sku-1", 0) + 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StockHandler)
    print(f"stock: listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
