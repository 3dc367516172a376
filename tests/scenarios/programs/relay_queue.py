"""One order crosses three processes: front POSTs it to relay over HTTP; relay's handler
appends it to a Redis stream and answers; sink, a polling consumer, looks at the stream
every POLL_S seconds (an ``Event.wait`` timer between non-blocking XREADs) and books each
order under a lock. front sends one order at a time and waits until sink says it booked it
(a line on sink's stdout), so every order waits for one of sink's polls: the shape of the
run is fixed even though its timing is not. ``BOOK_DELAY_MS`` makes each booking that slow.

Usage: python relay_queue.py front REDIS_PORT ORDERS
       python relay_queue.py relay REDIS_PORT          (prints "ready PORT")
       python relay_queue.py sink REDIS_PORT ORDERS     (prints "ready", then "booked K")
"""

import os
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis

ROLE, PORT = sys.argv[1], int(sys.argv[2])
STREAM = "orders"
POLL_S = 0.2
BOOK_DELAY_S = float(os.environ.get("BOOK_DELAY_MS", "0")) / 1000


def relay() -> None:
    r = redis.Redis(port=PORT)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            r.xadd(STREAM, {"order": body})
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


def sink(orders: int) -> None:
    r = redis.Redis(port=PORT)
    timer = threading.Event()  # never set: each wait is one poll period
    book_lock = threading.Lock()
    booked, last = 0, b"0-0"
    print("ready", flush=True)
    while booked < orders:
        timer.wait(POLL_S)
        for _stream, entries in r.xread({STREAM: last}, count=10):
            for entry_id, _fields in entries:
                last = entry_id
                with book_lock:
                    if BOOK_DELAY_S:
                        time.sleep(BOOK_DELAY_S)  # a slow booking, for `willowisp diff`
                    booked += 1
                print(f"booked {booked}", flush=True)


def start(role: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "WILLOWISP_SERVICE": role}  # each role is its own service
    p = subprocess.Popen(
        [sys.executable, __file__, role, str(PORT), *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert p.stdout is not None
    return p, p.stdout.readline().strip()


def front(orders: int) -> None:
    redis.Redis(port=PORT).delete(STREAM)
    relay_proc, ready = start("relay")
    sink_proc, _ = start("sink", str(orders))
    url = f"http://127.0.0.1:{ready.split()[-1]}/order"
    try:
        assert sink_proc.stdout is not None
        for k in range(1, orders + 1):
            with urllib.request.urlopen(url, data=f"order-{k}".encode(), timeout=30) as resp:
                assert resp.status == 202
            assert sink_proc.stdout.readline().strip() == f"booked {k}"
        assert sink_proc.wait(timeout=30) == 0
        print("orders done", flush=True)
    finally:
        for p in (relay_proc, sink_proc):
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=30)


if __name__ == "__main__":
    if ROLE == "front":
        front(int(sys.argv[3]))
    elif ROLE == "relay":
        relay()
    else:
        sink(int(sys.argv[3]))
