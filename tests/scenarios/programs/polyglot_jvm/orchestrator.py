"""The JVM polyglot scenario's orchestrator: Python calls a Java service that calls a Rust
service that calls back into this Python process. Run it under ``willowisp run``; the
services are its child processes and inherit what ``run`` set (the JVM gets the Java agent
through JAVA_TOOL_OPTIONS, the Rust service links the agent and reads WILLOWISP_*).

    python orchestrator.py ok|deadlock JAVA_CLASSES_DIR RUST_SERVICE_BINARY

The orchestrator serves GET /leaf and GET /e itself (http.server, a thread per request).

``ok``: one request Python -> Java /work -> Rust /step (tokio::sync::Mutex) -> Python
/leaf (threading.Lock) and back; prints the answer.

``deadlock``: a wait-for cycle through three locks and three rpc waits:

    T1 holds orders_lock, calls Java /a  -> /a waits for inventory (a Java monitor)
    T2 called Java /b: holds inventory, calls Rust /c -> /c waits for shelf (tokio Mutex)
    T3 called Rust /d: holds shelf, calls this process's /e -> /e waits for orders_lock

Every step is sequenced on a signal (an Event here, a line a service prints); once the
cycle is closed and nothing moved for STUCK_S seconds, the orchestrator prints
``deadlocked``, ends the services (SIGTERM to the JVM, whose agent flushes in a shutdown
hook; end of stdin to the Rust service, which drops its agent's guard) and leaves with
os._exit (the Python agent flushes first).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGNAL_TIMEOUT_S = 30.0
STUCK_S = 2.0


class Service:
    """A child process whose stdout lines are signals, read by a thread into a queue. A
    service with ``stdin_ends_it`` ends when its stdin closes, any other on SIGTERM."""

    def __init__(self, name: str, argv: list[str], stdin_ends_it: bool = False) -> None:
        self.name = name
        self.stdin_ends_it = stdin_ends_it
        env = {**os.environ, "WILLOWISP_SERVICE": name}
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin_ends_it else subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._port: int | None = None
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
        """The port of its ``PORT <n>`` line (read once)."""
        if self._port is None:
            self._port = int(self.expect("PORT ").split()[1])
        return self._port

    def end(self) -> None:
        """Ask it to end: its agent stores its recording and it exits."""
        if self.stdin_ends_it:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        elif self.proc.poll() is None:
            self.proc.terminate()

    def wait(self) -> None:
        try:
            self.proc.wait(timeout=SIGNAL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as resp:
        body: bytes = resp.read()
    return body.decode()


leaf_lock = threading.Lock()
orders_lock = threading.Lock()
e_arrived = threading.Event()


class Python(BaseHTTPRequestHandler):
    """GET /leaf: the healthy path's last hop, under leaf_lock. GET /e: the last link of
    the cycle; it needs orders_lock, which T1 holds while it waits for Java."""

    def do_GET(self) -> None:
        if self.path == "/leaf":
            with leaf_lock:
                body = b"python:leaf"
        elif self.path == "/e":
            e_arrived.set()
            with orders_lock:
                body = b"python:e"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def start_services(python_port: int) -> tuple[Service, Service]:
    """The Rust service (calling back to ``python_port``), then the JVM (calling Rust)."""
    classes, rust_binary = sys.argv[2], sys.argv[3]
    rust = Service("rustsvc", [rust_binary, str(python_port)], stdin_ends_it=True)
    try:
        java = Service("javasvc", ["java", "-cp", classes, "JavaSvc", str(rust.port())])
    except BaseException:
        rust.end()
        rust.wait()
        raise
    return rust, java


def stop(services: tuple[Service, ...]) -> None:
    """One after the other, in this order: the Rust service stores its recording and
    stops recording before its end fails the JVM's call to it."""
    for service in services:
        service.end()
        service.wait()


def serve() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Python)
    threading.Thread(target=server.serve_forever, name="python-server", daemon=True).start()
    port: int = server.server_address[1]
    return port


def healthy() -> None:
    services = start_services(serve())
    try:
        _, java = services
        print(get(java.port(), "/work"), flush=True)
    finally:
        stop(services)


def deadlock() -> None:
    services = start_services(serve())
    never = threading.Event()  # threads whose call failed at the end stay where they are
    try:
        rust, java = services
        rust_port, java_port = rust.port(), java.port()
        l_held, call_a = threading.Event(), threading.Event()

        def t1() -> None:
            with orders_lock:
                l_held.set()
                call_a.wait()
                try:
                    get(java_port, "/a")
                except Exception:
                    never.wait()

        def t2() -> None:
            try:
                get(java_port, "/b")
            except Exception:
                never.wait()

        def t3() -> None:
            try:
                get(rust_port, "/d")
            except Exception:
                never.wait()

        threads = [
            threading.Thread(target=t1, name="T1", daemon=True),
            threading.Thread(target=t2, name="T2", daemon=True),
            threading.Thread(target=t3, name="T3", daemon=True),
        ]
        threads[0].start()
        if not l_held.wait(SIGNAL_TIMEOUT_S):
            raise SystemExit("T1 never took orders_lock")
        threads[2].start()  # T3: Rust /d takes shelf and calls /e, which waits for orders_lock
        rust.expect("rust-d-holding")
        if not e_arrived.wait(SIGNAL_TIMEOUT_S):
            raise SystemExit("/e never arrived")
        threads[1].start()  # T2: Java /b takes inventory and calls Rust /c, which waits
        java.expect("java-b-holding")
        rust.expect("rust-c-waiting")
        call_a.set()  # T1 (holding orders_lock): Java /a waits for inventory
        java.expect("java-a-waiting")
        for t in threads:
            t.join(STUCK_S / len(threads))
        if any(not t.is_alive() for t in threads):
            raise SystemExit("a request finished: no deadlock")
        print("deadlocked", flush=True)
    finally:
        stop(services)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    {"ok": healthy, "deadlock": deadlock}[sys.argv[1]]()
