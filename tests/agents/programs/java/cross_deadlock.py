"""The Python half of a deadlock across two runtimes: the main thread holds ``ledger_lock``
and calls the Java service's /reserve; the /credit handler needs ``ledger_lock``.
Prints "ready PORT"; on "call PORT" (stdin) takes the lock, prints "holding" and calls."""

import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ledger_lock = threading.Lock()


class Credit(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        with ledger_lock:
            self.send_response(200)
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Credit)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"ready {server.server_address[1]}", flush=True)
java_port = sys.stdin.readline().split()[1]
with ledger_lock:
    print("holding", flush=True)
    urllib.request.urlopen(f"http://127.0.0.1:{java_port}/reserve").read()
