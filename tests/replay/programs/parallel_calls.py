"""A client calls its own HTTP service from two threads at once: GET /a takes 100 ms, GET /b
10 ms. The main thread joins the /a caller first, then the /b caller, which ended long
before that join (a join of a finished thread, where the time in between is slack, not a
latency). The service stays up for a fixed 600 ms from the start (a keeper thread's sleep),
as a long-running server does: its idle time, not the requests, sets the run's length."""

import http.server
import threading
import time
import urllib.request

SLEEP_MS = {"/a": 100, "/b": 10}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(SLEEP_MS.get(self.path, 0) / 1000)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def call(path: str) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}{path}") as r:
        r.read()


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
keeper = threading.Thread(target=time.sleep, args=(0.6,), name="keeper")
keeper.start()
serving = threading.Thread(
    target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="server"
)
serving.start()
callers = [threading.Thread(target=call, args=(p,), name=f"call{p[1:]}") for p in ("/a", "/b")]
for t in callers:
    t.start()
for t in callers:
    t.join()
keeper.join()
server.shutdown()
serving.join()
