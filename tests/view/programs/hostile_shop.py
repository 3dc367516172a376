"""A front service calls a back service over HTTP a few times, touches a record whose name is
markup, then two threads with hostile names deadlock on two locks. Everything a trace can
carry from the program (thread names, a data key, the service name given by the test) is a
string a viewer must keep inert.

Usage: python hostile_shop.py          (front: starts the back, calls it, then deadlocks)
       python hostile_shop.py back     (serves GET /price until stdin closes)
"""

import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import willowisp

HOSTILE = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>"


class Price(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        willowisp.access(f"price:{HOSTILE}", "read")
        body = b"42"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def back() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Price)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"ready {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()


def front() -> None:
    child = subprocess.Popen(
        [sys.executable, __file__, "back"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline().split()[1])
    for _ in range(3):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/price", timeout=30) as r:
            r.read()
    child.stdin.close()
    child.wait()
    ledger_lock = threading.Lock()
    audit_lock = threading.Lock()
    both = threading.Barrier(2)

    def one() -> None:
        with ledger_lock:
            both.wait()
            with audit_lock:
                pass

    def other() -> None:
        with audit_lock:
            both.wait()
            with ledger_lock:
                pass

    a = threading.Thread(target=one, name=f"{HOSTILE} one")
    b = threading.Thread(target=other, name=f"{HOSTILE} other")
    a.start()
    b.start()
    print("deadlocking", flush=True)
    a.join()


if __name__ == "__main__":
    back() if sys.argv[1:] == ["back"] else front()
