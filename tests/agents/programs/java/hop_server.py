"""A stock service for the Java agent's hop test: prints its port, serves until stdin closes."""

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stock(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.headers.get("traceparent", "none").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Stock)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"ready {server.server_address[1]}", flush=True)
sys.stdin.read()
server.shutdown()
