"""A Python front for the Go boundary service: POST /checkout (a boundary's entry) calls the
Go service's GET /work; GET /down answers the Go service's own downstream call.

Run under ``willowisp run`` with the Go service (tests/agents/programs/go/boundary) as the
argument: it starts the service as its child (the Go agent configured by the same
WILLOWISP_* variables), sends one POST /checkout to itself and one GET /work to the Go
service directly (outside every boundary), stops the service with SIGTERM and ends.
Prints the two answers.
"""

import http.server
import os
import signal
import subprocess
import sys
import threading
import urllib.request

GO_URL = ""


class Front(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        with urllib.request.urlopen(GO_URL + "/work") as r:
            body = r.read()
        self.answer(body)

    def do_GET(self) -> None:
        self.answer(b"ok")

    def answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    global GO_URL
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    front = f"http://127.0.0.1:{server.server_address[1]}"
    go = subprocess.Popen(
        [sys.argv[1]],
        env={**os.environ, "DOWNSTREAM": front + "/down"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert go.stdout is not None
    GO_URL = "http://" + go.stdout.readline().split()[1]
    try:
        req = urllib.request.Request(front + "/checkout", b"", method="POST")
        with urllib.request.urlopen(req) as r:
            print("checkout", r.read().decode().strip())
        with urllib.request.urlopen(GO_URL + "/work") as r:
            print("direct", r.read().decode().strip())
    finally:
        go.send_signal(signal.SIGTERM)
        go.wait(timeout=30)
        go.stdout.close()
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
