"""A client that retries a refused connection until its downstream service is up: the
refused attempts are failed calls (``analyze``: unlinked ``failed-to-connect``), not
requests whose receiver is missing, so ``validate --ci-mode`` passes; a request answered
by a service that is not traced is still a missing-span.

Real processes under ``willowisp run``: the front retries GET /warm on a port that refuses
(bound once to learn a free port, then closed) and starts the downstream service on that
port after three refused attempts, as a service racing its dependency's start-up does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from wispkit import analyze_json, clean_env, wisp

# A one-request HTTP server on the port given, which says "ready" once it listens.
SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
srv = HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("ready", srv.server_address[1], flush=True)
srv.handle_request()
"""

# The front: three refused GET /warm, then the downstream service comes up on that port and
# the fourth attempt is answered. With "untraced", it also calls a service started with the
# agent disabled: a receiver that is really missing from the recording.
FRONT = """
import os, socket, subprocess, sys, urllib.request
HERE = os.path.dirname(os.path.abspath(__file__))

def start(port, **env):
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), str(port)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
    word, bound = proc.stdout.readline().split()
    assert word == "ready"
    return proc, int(bound)

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
procs = []
for attempt in range(4):
    if attempt == 3:
        procs.append(start(port)[0])
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/warm", timeout=10).read()
        print("answered", attempt, flush=True)
    except OSError as exc:
        print("refused", attempt, type(exc).__name__, flush=True)
if sys.argv[1:] == ["untraced"]:
    proc, bound = start(0, WILLOWISP_DISABLED="1")
    procs.append(proc)
    urllib.request.urlopen(f"http://127.0.0.1:{bound}/untraced", timeout=10).read()
for proc in procs:
    proc.wait(timeout=30)
"""


def _record(tmp_path: Path, *args: str) -> Path:
    """Run the front (and its servers) under ``willowisp run``; the run folder."""
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "front.py").write_text(FRONT)
    out = tmp_path / "run"
    done = wisp(
        "run",
        "--out",
        str(out),
        "--",
        sys.executable,
        str(tmp_path / "front.py"),
        *args,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:4] == [
        "refused 0 URLError",
        "refused 1 URLError",
        "refused 2 URLError",
        "answered 3",
    ], done.stdout
    return out


def _validate(run: Path) -> tuple[int, list[dict[str, Any]]]:
    done = wisp("validate", "--ci-mode", "--json", str(run), env=clean_env())
    assert "Traceback" not in done.stderr, done.stderr
    problems: list[dict[str, Any]] = json.loads(done.stdout)["problems"]
    return done.returncode, problems


def test_refused_retries_are_failed_calls_not_missing_spans(tmp_path: Path) -> None:
    """analyze counts the three refused attempts as failed-to-connect on the hop to the
    service that answered the fourth, outside its latency; validate --ci-mode exits 0 with
    no problem."""
    run = _record(tmp_path)
    doc = analyze_json(run)
    http = [h for h in doc["hops"] if h["protocol"] == "http"]
    assert len(http) == 1, http
    hop = http[0]
    assert (hop["from"]["service"], hop["to"]["service"]) == ("front", "server")
    assert (hop["count"], hop["linked"]) == (4, 1)
    assert hop["unlinked"] == {"failed-to-connect": 3}
    # the latency is the answered request's alone, not pulled down by the refused ones
    assert hop["latency_ns"]["p50"] == hop["latency_ns"]["p99"] > 0
    assert not [f for f in doc["findings"] if f["kind"] == "leak"]
    code, problems = _validate(run)
    assert (code, problems) == (0, [])


def test_a_receiver_not_traced_is_still_a_missing_span(tmp_path: Path) -> None:
    """The same run plus a request answered by a service whose agent is disabled: exit 1,
    one missing-span, for that request only (not for the refused GET /warm)."""
    run = _record(tmp_path, "untraced")
    code, problems = _validate(run)
    assert code == 1
    assert [(p["kind"], p["hop"]["what"]) for p in problems] == [
        ("missing-span", "GET /untraced")
    ], problems
    assert len(problems[0]["traces"]) == 1
