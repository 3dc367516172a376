"""A Python HTTP service called by a Go client: serve on 127.0.0.1 (port 0), run the client
given on the command line with the service's URL, wait for it, stop.

Run under ``willowisp run``: the Python agent records the server side, the Go agent (linked
into the client, configured through the WILLOWISP_* variables ``run`` sets) the client side.
"""

import http.server
import subprocess
import sys
import threading


class Stock(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"in stock"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stock)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/stock/42?color=red"
    done = subprocess.run([*sys.argv[1:], url], check=False)
    server.shutdown()
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
