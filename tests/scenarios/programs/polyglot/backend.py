"""The Python back-end of the polyglot scenario's healthy path (orchestrator.py starts it):
an http.server whose GET /leaf takes the threading.Lock ``stock_lock`` and answers
``python:leaf``. Prints ``PORT <n>`` once it listens; SIGTERM ends it (the Python agent
flushes first)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

stock_lock = threading.Lock()


class Leaf(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/leaf":
            self.send_error(404)
            return
        with stock_lock:
            body = b"python:leaf"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Leaf)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
