"""The polyglot scenario's orchestrator: Python calls a Go service that calls a Node service
that calls back into Python. Run it under ``willowisp run``; the services are its child
processes and inherit what ``run`` set (Go reads WILLOWISP_* through wisp/auto, Node gets
NODE_OPTIONS, Python children get the Python agent).

    python orchestrator.py ok|deadlock [GO_SERVICE_BINARY]

``ok``: one request Python -> Go /work (wisp.Mutex) -> Node /step (async-mutex) -> Python
back-end /leaf (threading.Lock) and back; prints the answer.

``deadlock``: a wait-for cycle through the three locks and three rpc waits:

    T1 holds orders_lock, calls Go /a     -> /a waits for inventory (wisp.Mutex)
    T2 called Go /b: holds inventory, calls Node /c -> /c waits for shelf (async-mutex)
    T3 called Node /d: holds shelf, calls this process's /e -> /e waits for orders_lock

Every step is sequenced on a signal (an Event here, a line a service prints); once the
cycle is closed and nothing moved for STUCK_S seconds, the orchestrator prints
``deadlocked``, sends SIGTERM to the Go and Node services (their agents store their
recordings and they end) and leaves with os._exit (the Python agent flushes first).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
GO_SERVICE = ROOT / ".cache" / "polyglot-scenario" / "gosvc"
SIGNAL_TIMEOUT_S = 30.0
STUCK_S = 2.0


class Service:
    """A child process whose stdout lines are signals, read by a thread into a queue."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        env = {**os.environ, "WILLOWISP_SERVICE": name}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, name=f"read-{name}", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("<eof>")

    def expect(self, prefix: str) -> str:
        """The next line; it must start with ``prefix``."""
        try:
            line = self.lines.get(timeout=SIGNAL_TIMEOUT_S)
        except queue.Empty:
            raise SystemExit(f"{self.name}: no {prefix!r} line in {SIGNAL_TIMEOUT_S} s") from None
        if not line.startswith(prefix):
            raise SystemExit(f"{self.name}: expected {prefix!r}, got {line!r}")
        return line

    def port(self) -> int:
        return int(self.expect("PORT ").split()[1])

    def stop(self) -> None:
        """SIGTERM (the agents store their recording on it), then wait for the end."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=SIGNAL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as resp:
        body: bytes = resp.read()
    return body.decode()


def start_go(node_port: int) -> Service:
    binary = sys.argv[2] if len(sys.argv) > 2 else str(GO_SERVICE)
    return Service("gosvc", [binary, str(node_port)])


def start_node(backend_port: int) -> Service:
    return Service("nodesvc", ["node", str(HERE / "nodesvc.js"), str(backend_port)])


def healthy() -> None:
    backend = Service("backend", [sys.executable, str(HERE / "backend.py")])
    node = go = None
    try:
        node = start_node(backend.port())
        go = start_go(node.port())
        print(get(go.port(), "/work"), flush=True)
    finally:
        for service in (go, node, backend):
            if service is not None:
                service.stop()


orders_lock = threading.Lock()
e_arrived = threading.Event()


class Orders(BaseHTTPRequestHandler):
    """GET /e: the last link of the cycle, served inside the orchestrator: it needs
    orders_lock, which T1 holds while it waits for Go."""

    def do_GET(self) -> None:
        e_arrived.set()
        with orders_lock:
            body = b"python:e"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def deadlock() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Orders)
    threading.Thread(target=server.serve_forever, name="orders-server", daemon=True).start()
    node = go = None
    never = threading.Event()  # threads whose call failed at the end stay where they are
    try:
        node = start_node(server.server_address[1])
        node_port = node.port()
        go = start_go(node_port)
        go_port = go.port()

        l_held, call_a = threading.Event(), threading.Event()

        def t1() -> None:
            with orders_lock:
                l_held.set()
                call_a.wait()
                try:
                    get(go_port, "/a")
                except OSError:
                    never.wait()

        def t2() -> None:
            try:
                get(go_port, "/b")
            except OSError:
                never.wait()

        def t3() -> None:
            try:
                get(node_port, "/d")
            except OSError:
                never.wait()

        threads = [
            threading.Thread(target=t1, name="T1", daemon=True),
            threading.Thread(target=t2, name="T2", daemon=True),
            threading.Thread(target=t3, name="T3", daemon=True),
        ]
        threads[0].start()
        if not l_held.wait(SIGNAL_TIMEOUT_S):
            raise SystemExit("T1 never took orders_lock")
        threads[2].start()  # T3: Node /d takes shelf and calls /e, which waits for orders_lock
        node.expect("node-d-holding")
        if not e_arrived.wait(SIGNAL_TIMEOUT_S):
            raise SystemExit("/e never arrived")
        threads[1].start()  # T2: Go /b takes inventory and calls Node /c, which waits for shelf
        go.expect("go-b-holding")
        node.expect("node-c-waiting")
        call_a.set()  # T1 (holding orders_lock): Go /a waits for inventory
        go.expect("go-a-waiting")
        for t in threads:
            t.join(STUCK_S / len(threads))
        if any(not t.is_alive() for t in threads):
            raise SystemExit("a request finished: no deadlock")
        print("deadlocked", flush=True)
    finally:
        for service in (go, node):
            if service is not None:
                service.proc.terminate()
        for service in (go, node):
            if service is not None:
                service.stop()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    {"ok": healthy, "deadlock": deadlock}[sys.argv[1]]()
