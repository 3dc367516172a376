"""An http.server front hands each request's job to a two-thread ThreadPoolExecutor and
waits for its result; four clients send three requests each. Each job holds a lock for a
few milliseconds, so the workers' events are all in jobs of some request."""

import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

work_lock = threading.Lock()
pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="worker")


def job(n: int) -> int:
    with work_lock:
        time.sleep(0.003)
    return n * 2


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        result = pool.submit(job, int(self.path.rsplit("/", 1)[1])).result()
        body = str(result).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
port = server.server_address[1]
threading.Thread(target=server.serve_forever, name="server", daemon=True).start()


def client(c: int) -> None:
    for i in range(3):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/job/{c * 10 + i}").read()


clients = [threading.Thread(target=client, args=(c,), name=f"client{c}") for c in range(4)]
for t in clients:
    t.start()
for t in clients:
    t.join()
server.shutdown()
pool.shutdown()
