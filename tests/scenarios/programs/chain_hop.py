"""One link of a chain of services over HTTP: serves GET /work and, unless it is the last
link, calls the next link's /work before answering. Prints "ready PORT" once listening.

Usage: python chain_hop.py NAME [NEXT_PORT]
"""

import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]
NEXT = f"http://127.0.0.1:{sys.argv[2]}/work" if len(sys.argv) > 2 else None
served = 0
served_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        global served
        body = NAME.encode()
        if NEXT is not None:
            with urllib.request.urlopen(NEXT, timeout=30) as r:
                body += b">" + r.read()
        with served_lock:
            served += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"ready {server.server_address[1]}", flush=True)
server.serve_forever()
