"""A parent waits 100 ms for a signal that never comes (a timeout), then spawns a child
Python process and serves the one HTTP request the child makes; the child works 300 ms
first. The run's time is decided by the child, which exists only
because the parent spawned it: the critical path goes parent -> spawn -> child -> request
-> parent. Mirrors the demo, where the shop spawns the risk engine and waits on it.

Usage: python spawned.py            (the parent)
       python spawned.py PORT       (the child: calls the parent on PORT)
"""

import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer


class Ping(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def parent() -> None:
    threading.Event().wait(0.1)
    with HTTPServer(("127.0.0.1", 0), Ping) as server:
        child = subprocess.Popen([sys.executable, __file__, str(server.server_address[1])])
        server.handle_request()
        child.wait()


def child(port: int) -> None:
    time.sleep(0.3)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=30) as r:
        r.read()


if __name__ == "__main__":
    child(int(sys.argv[1])) if sys.argv[1:] else parent()
