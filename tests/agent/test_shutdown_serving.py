"""A Python HTTP server recorded by the agent and stopped with SIGTERM (or leaving with
os._exit) while clients keep polling it: every request it answered is in its recording.

The agent's last flush runs while the server's threads still serve; a reply sent after it
would be a request whose receiver is missing from the recording (validate's missing-span).
Real processes: the server and the polling client both run under the agent (the
environment ``willowisp run`` gives), on 127.0.0.1 with port 0.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from willowisp.cli.run import build_env

ROUNDS = 4  # each round one server stopped under fire; the old agent lost a reply in most
POLLERS = 4
TIMEOUT_S = 60.0

SERVER = r"""
import os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/exit":  # the os._exit path: leave while other threads serve
            threading.Thread(target=os._exit, args=(0,)).start()
        if self.path == "/return":  # the interpreter's own end, its daemon threads serving
            done.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass

done = threading.Event()
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("PORT", server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
# Waits in steps: Python runs a signal handler on the main thread only, and a main thread
# blocked for good on a lock never runs it when the kernel hands SIGTERM to another thread.
while not done.wait(0.2):  # SIGTERM or os._exit may end it sooner
    pass
"""

# Polls GET /jobs/next from POLLERS threads until the server is gone; prints "POLLING" once
# every thread has had an answer, and at the end how many requests were answered.
CLIENT = r"""
import sys, threading, urllib.request, urllib.error
port, pollers = int(sys.argv[1]), int(sys.argv[2])
answered = [0] * pollers
started = threading.Barrier(pollers + 1)

def poll(i):
    first = True
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs/next", timeout=30) as r:
                r.read()
        except urllib.error.HTTPError:
            pass  # answered, with an error status
        except OSError:
            break  # refused or reset: the server is gone
        answered[i] += 1
        if first:
            first = False
            started.wait()
    if first:
        started.abort()

threads = [threading.Thread(target=poll, args=(i,), name=f"poller-{i}") for i in range(pollers)]
for t in threads:
    t.start()
try:
    started.wait()
    print("POLLING", flush=True)
except threading.BrokenBarrierError:
    pass
for t in threads:
    t.join()
print("ANSWERED", sum(answered), flush=True)
"""


def line(proc: subprocess.Popen[str], prefix: str) -> str:
    """The next stdout line of ``proc``, which must start with ``prefix``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT_S)
    assert ready, f"no {prefix!r} line in {TIMEOUT_S} s"
    text = proc.stdout.readline()
    assert text.startswith(prefix), text
    return text


def serve_under_fire(out: Path, tmp: Path, stop: str) -> int:
    """One server and one polling client, recorded into ``out``; the server is ended by
    ``stop`` while the client polls: ``sigterm``; ``exit``, a request that makes it call
    os._exit; ``return``, a request that lets its main thread return (atexit). Returns how
    many requests the client got an answer to."""
    (tmp / "server.py").write_text(SERVER)
    (tmp / "client.py").write_text(CLIENT)
    procs: list[subprocess.Popen[str]] = []
    try:
        server = subprocess.Popen(
            [sys.executable, str(tmp / "server.py")],
            env=build_env(str(out), "full", 1.0, [], "queue-server"),
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(server)
        port = line(server, "PORT ").split()[1]
        client = subprocess.Popen(
            [sys.executable, str(tmp / "client.py"), port, str(POLLERS)],
            env=build_env(str(out), "full", 1.0, [], "poller"),
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(client)
        line(client, "POLLING")
        if stop == "sigterm":
            server.send_signal(signal.SIGTERM)
            assert server.wait(TIMEOUT_S) == -signal.SIGTERM  # it dies as it would have
        else:
            import urllib.request

            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/{stop}", timeout=TIMEOUT_S)
            except OSError:
                pass  # it may leave before it answers
            assert server.wait(TIMEOUT_S) == 0
        answered = int(line(client, "ANSWERED ").split()[1])
        assert client.wait(TIMEOUT_S) == 0
        return answered
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


def hop(out: Path) -> dict[str, object]:
    """The poller -> queue-server HTTP hop of ``analyze --format json``."""
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(out), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hops = [
        h
        for h in json.loads(done.stdout)["hops"]
        if h["from"]["service"] == "poller" and h["to"]["service"] == "queue-server"
    ]
    assert len(hops) == 1, hops
    return hops[0]


@pytest.mark.parametrize("stop", ["sigterm", "exit", "return"])
def test_every_request_a_stopping_server_answered_is_recorded(tmp_path: Path, stop: str) -> None:
    """Stopped while clients poll, the server's recording holds the receipt of every
    request it answered: analyze links every answered request, validate --ci-mode reports
    no missing span (a refused poll after the end is a failed call, not a problem)."""
    for n in range(ROUNDS):
        out = tmp_path / f"run-{n}"
        answered = serve_under_fire(out, tmp_path, stop)
        assert answered >= POLLERS
        found = hop(out)
        assert found["linked"] >= answered, (n, found, answered)
        done = subprocess.run(
            [sys.executable, "-m", "willowisp", "validate", "--ci-mode", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert "missing-span" not in done.stdout, (n, done.stdout)
        assert done.returncode == 0, (n, done.stdout, done.stderr)
