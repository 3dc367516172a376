"""Two stock services selling from one SQLite row, triggered at once by an orchestrator.

``orch`` (this process) creates ``shop.db`` with 10 units of product 42, starts ``stock_a``
and ``stock_b`` (children: this file with ``stock``) and POSTs ``/sell`` to both at once, one
thread each. Each service's handler does a read-modify-write of the row:

- ``racy``: ``SELECT qty`` (autocommit), then ``UPDATE ... SET qty = ?`` with qty - 1 and
  ``commit()``. Between the read and the write both handlers meet at a barrier that the
  orchestrator runs over a raw TCP socket (which the agent does not record, so it orders
  nothing in the trace): both read 10, both write 9, one sale is lost.
- ``txn``: the same inside ``BEGIN IMMEDIATE`` ... ``COMMIT``; the handlers meet at the
  barrier before ``BEGIN``, then SQLite runs the two transactions one after the other:
  the row ends at 8.

The orchestrator prints the final quantity.

    python race_shop.py racy|txn [FOLDER]   (FOLDER for shop.db, else a new temporary one)
"""

import http.server
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import urllib.request


def barrier(port: int) -> None:
    """Wait until the other service has arrived too (a raw socket: no trace of it)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"g"


class Stock(http.server.BaseHTTPRequestHandler):
    db = ""
    mode = ""
    barrier_port = 0

    def do_POST(self) -> None:  # /sell
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "racy":
            conn = sqlite3.connect(self.db, timeout=30)
            (qty,) = conn.execute("SELECT qty FROM stock WHERE id = ?", (42,)).fetchone()
            barrier(self.barrier_port)
            conn.execute("UPDATE stock SET qty = ? WHERE id = ?", (qty - 1, 42))
            conn.commit()
        else:
            conn = sqlite3.connect(self.db, timeout=30, isolation_level=None)
            barrier(self.barrier_port)
            conn.execute("BEGIN IMMEDIATE")
            (qty,) = conn.execute("SELECT qty FROM stock WHERE id = ?", (42,)).fetchone()
            conn.execute("UPDATE stock SET qty = ? WHERE id = ?", (qty - 1, 42))
            conn.execute("COMMIT")
        conn.close()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def serve(db: str, mode: str, barrier_port: int) -> None:
    Stock.db, Stock.mode, Stock.barrier_port = db, mode, barrier_port
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stock)
    print(srv.server_address[1], flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    sys.stdin.read()  # until the orchestrator closes our stdin
    srv.shutdown()


def run_barrier(listener: socket.socket) -> None:
    """Release both services once both have arrived."""
    peers = [listener.accept()[0] for _ in range(2)]
    for p in peers:
        assert p.recv(1) == b"x"
    for p in peers:
        p.sendall(b"g")
        p.close()


def sell(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/sell", data=b"sku=42")).read()


def main() -> None:
    mode = sys.argv[1]
    folder = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="race-shop-")
    db = os.path.join(folder, "shop.db")
    setup = sqlite3.connect(db)
    setup.execute("DROP TABLE IF EXISTS stock")  # a fresh shop each run, in any FOLDER
    setup.execute("CREATE TABLE stock (id INTEGER PRIMARY KEY, qty INTEGER)")
    setup.execute("INSERT INTO stock VALUES (42, 10)")
    setup.commit()
    setup.close()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    services = []
    for name in ("stock_a", "stock_b"):
        child = subprocess.Popen(
            [sys.executable, __file__, "stock", db, mode, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "OTEL_SERVICE_NAME": name},
        )
        assert child.stdout is not None
        services.append((child, f"http://127.0.0.1:{int(child.stdout.readline())}"))
    releaser = threading.Thread(target=run_barrier, args=(listener,))
    releaser.start()
    sellers = [threading.Thread(target=sell, args=(url,)) for _, url in services]
    for t in sellers:
        t.start()
    for t in sellers:
        t.join()
    releaser.join()
    listener.close()
    check = sqlite3.connect(db)
    (qty,) = check.execute("SELECT qty FROM stock WHERE id = ?", (42,)).fetchone()
    check.close()
    for child, _ in services:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()
        child.wait()
        child.stdout.close()
    print(f"qty {qty}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["stock"]:
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
