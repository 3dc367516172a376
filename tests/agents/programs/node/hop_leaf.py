"""The last service of the Python -> Node -> Python hop: answers one GET /leaf, then exits.

Prints ``PORT <n>`` once it listens, so the test knows when and where to call.
"""

import http.server
import sys


class Leaf(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"leaf"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Leaf)
print(f"PORT {server.server_address[1]}", flush=True)
server.handle_request()
server.server_close()
sys.exit(0)
