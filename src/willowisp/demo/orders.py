"""Demo service "orders": holds its state lock while asking "stock" to reserve items.

Run by ``willowisp demo`` under the agent. Serves ``/price`` (needs the state lock) and
``/ping``; starts "stock" (stock.py) as a child process, maybe on another simulated host,
warms the connection up with a few healthy calls, then places an order — and hangs,
because stock calls back into ``/price`` while orders still holds the lock.

Usage: python -m willowisp.demo.orders STOCK_LAUNCHER...   (the command that starts stock;
the orders port is appended to it). Prints "orders: placing order" before the deadlock.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state_lock = threading.Lock()
prices = {"sku-1": 42}


class OrdersHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/price"):
            with state_lock:  # blocks while place_order holds the lock
                body = str(prices["sku-1"]).encode()
        else:
            body = b"pong"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def place_order(stock_url: str) -> None:
    with state_lock:
        prices["sku-1"] += 1
        with urllib.request.urlopen(f"{stock_url}/reserve?sku=sku-1&qty=1", timeout=600) as r:
            r.read()


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OrdersHandler)
    threading.Thread(target=server.serve_forever, name="orders-http", daemon=True).start()
    port = server.server_address[1]
    stock = subprocess.Popen([*sys.argv[1:], str(port)], stdout=subprocess.PIPE, text=True)
    assert stock.stdout is not None
    stock_port = int(stock.stdout.readline().split()[-1])
    stock_url = f"http://127.0.0.1:{stock_port}"
    for _ in range(8):  # healthy round trips in both directions bound the clock offset
        with urllib.request.urlopen(f"{stock_url}/check", timeout=30) as r:
            r.read()
    print("orders: placing order", flush=True)
    place_order(stock_url)
    print("orders: done (no deadlock this time)", flush=True)
    stock.kill()


if __name__ == "__main__":
    main()
