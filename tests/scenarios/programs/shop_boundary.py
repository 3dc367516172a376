"""A shop and its stock service, for always-on recording with a boundary.

``shop`` (this process) serves POST /checkout, which takes the cart lock and asks ``stock``
(a child process) to reserve the item, and GET /browse, which takes the same lock. A client
thread in the shop makes ROUNDS rounds of one checkout and two browses, then everything
stops. With ``--forever`` the client goes on until SIGTERM (for ``willowisp ctl``).
``STOCK_DELAY_MS`` makes stock hold its shelf lock that long per reservation.

    python shop_boundary.py [ROUNDS] [--forever]
"""

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

STOCK_DELAY_S = float(os.environ.get("STOCK_DELAY_MS", "0")) / 1000


class Stock(http.server.BaseHTTPRequestHandler):
    shelf_lock = threading.Lock()

    def do_POST(self) -> None:
        with self.shelf_lock:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if STOCK_DELAY_S:
                time.sleep(STOCK_DELAY_S)  # a slow stock service, for `willowisp diff`
        self._reply()

    def _reply(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def serve_stock() -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stock)
    print(srv.server_address[1], flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the shop closes our stdin
    srv.shutdown()


cart_lock = threading.Lock()
stock_url = ""


class Shop(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # /checkout
        with cart_lock:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
        req = urllib.request.Request(stock_url + "/reserve", data=b"sku=42")
        urllib.request.urlopen(req).read()
        self._reply()

    def do_GET(self) -> None:  # /browse
        with cart_lock:
            pass
        self._reply()

    def _reply(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    global stock_url
    rounds = int(next((a for a in sys.argv[1:] if a.isdigit()), "5"))
    forever = "--forever" in sys.argv
    stock = subprocess.Popen(
        [sys.executable, __file__, "stock"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "OTEL_SERVICE_NAME": "stock"},
    )
    assert stock.stdout is not None and stock.stdin is not None
    stock_url = f"http://127.0.0.1:{int(stock.stdout.readline())}"
    shop = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{shop.server_address[1]}"
    # The handler only flips a flag: it runs on the main thread between two bytecodes, maybe
    # inside Event.set's own lock (two SIGTERMs arrive: the group's and the one `run`
    # forwards), so calling into threading from it can wait on itself forever.
    stopping = [False]
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    print(f"shop on {base}, stock on {stock_url}", flush=True)
    done = 0
    while not stopping[0] and (forever or done < rounds):
        urllib.request.urlopen(urllib.request.Request(base + "/checkout", data=b"cart=7")).read()
        for _ in range(2):
            urllib.request.urlopen(base + "/browse").read()
        done += 1
        if forever:
            time.sleep(0.05)  # the pace of a steady client, not a wait for anything
    shop.shutdown()
    stock.stdin.close()
    stock.wait()
    print(f"{done} rounds", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["stock"]:
        serve_stock()
    else:
        main()
