"""Two services that deadlock through HTTP: the situation a cross-process timeline shows.

``orders`` (this process) holds ``state_lock`` while it asks ``stock`` (a child process,
this file with ``stock``) to reserve an item; stock's handler asks orders back for a price,
and orders' price handler needs ``state_lock``. Each process waits for the other: orders'
main thread for stock's reply, stock's handler for orders' reply, orders' handler for the
lock. Stock's wall clock is set 250 ms behind, so the lanes of the two processes line up
only through the offset the analysis recovers. It hangs every time; the test kills the
process group once the trace shows all three waits.

    WILLOWISP_SERVICE=orders python rpc_deadlock.py
    python rpc_deadlock.py stock PORT
"""

import http.server
import os
import subprocess
import sys
import threading
import urllib.request

state_lock = threading.Lock()


class Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class Stock(Quiet):
    orders_port = 0

    def do_POST(self) -> None:  # /reserve
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        url = f"http://127.0.0.1:{self.orders_port}/price"
        urllib.request.urlopen(url, data=b"42").read()
        self.reply()


class Orders(Quiet):
    def do_POST(self) -> None:  # /price
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with state_lock:
            self.reply()


def main() -> None:
    if sys.argv[1:2] == ["stock"]:
        Stock.orders_port = int(sys.argv[2])
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stock)
        print(server.server_port, flush=True)
        server.serve_forever()
        return
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Orders)
    threading.Thread(target=server.serve_forever, name="orders-server", daemon=True).start()
    child = subprocess.Popen(
        [sys.executable, __file__, "stock", str(server.server_port)],
        stdout=subprocess.PIPE,
        text=True,
        # stock's host has a wall clock 250 ms behind (simulated: the agent shifts its
        # clock anchors and records that it did), so it is a clock domain of its own.
        env=dict(os.environ, WILLOWISP_SERVICE="stock", WILLOWISP_CLOCK_OFFSET_NS="-250000000"),
    )
    assert child.stdout is not None
    port = int(child.stdout.readline())
    with state_lock:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/reserve", data=b"1").read()


main()
