"""What the stdlib HTTP hooks cost a request, and the shortcuts that keep it low.

Cost is counted, not timed: the calls the agent's code makes (Python calls into the agent
and C calls from it, through ``sys.setprofile``) during one request of a real
``http.client`` -> ``http.server`` hop over loopback. A count is the same on a busy shared
machine as on an idle one, and it grows with every extra header scan, parse or helper,
which is what made propagation cost tens of µs a request. The budgets leave room for
small changes; a scan per header per format, or parsing every value, does not fit.

The shortcuts are checked against what they stand in for: the compact JSON of the entry
headers against ``json.dumps``, the cached request targets against a change of redaction,
and the ids of a private generator against a program that seeds ``random`` itself.
"""

from __future__ import annotations

import json
import os

import pytest
from tracekit import run_program

from willowisp.agent import redact
from willowisp.agent.http_propagation import elided_target, entry_headers_json
from willowisp.wire.traceparent import new_span_id

# Counts the agent's calls while ``counting`` is set; prints the fewest seen per request
# for a hop (http.client to http.server: both sides' hooks) and for a root request (raw
# bytes without trace headers: the server's hooks alone).
COUNTING_PROGRAM = """
import http.client, json, os, socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import willowisp

AGENT = os.path.dirname(willowisp.__file__) + os.sep
counting = False
calls = 0

def profile(frame, event, arg):
    global calls
    if counting and event in ("call", "c_call") and frame.f_code.co_filename.startswith(AGENT):
        calls += 1

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass

threading.setprofile(profile)  # the server's threads, started below
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
conn = http.client.HTTPConnection("127.0.0.1", port)
raw = socket.create_connection(("127.0.0.1", port))
replies = raw.makefile("rb")

def hop():
    conn.request("GET", "/items/7?id=7")
    conn.getresponse().read()

def root():
    raw.sendall(b"GET /root HTTP/1.1\\r\\nHost: x\\r\\nAccept: */*\\r\\n\\r\\n")
    while replies.readline() not in (b"\\r\\n", b""):  # the reply has no body
        pass

sys.setprofile(profile)
fewest = {}
for name, request in (("hop", hop), ("root", root)):
    for _ in range(3):  # warm: the first requests import and fill caches
        request()
    seen = []
    for _ in range(5):
        calls = 0
        counting = True
        request()
        counting = False
        seen.append(calls)
    fewest[name] = min(seen)
sys.setprofile(None)
threading.setprofile(None)
print(json.dumps(fewest))
srv.shutdown()
"""


def agent_calls(tmp_path, ratio: str) -> dict[str, int]:
    out = str(tmp_path / "run")
    env = {"WILLOWISP_MODE": "hops", "WILLOWISP_TRACE_RATIO": ratio}
    r = run_program(COUNTING_PROGRAM, out, env_extra=env)
    assert r.returncode == 0, r.stderr
    counts: dict[str, int] = json.loads(r.stdout)
    return counts


def test_propagation_only_costs_few_agent_calls(tmp_path):
    """hops mode, ratio 0: the context is carried, nothing recorded. A root request
    carrying no trace header is not parsed for any format (the agent made 116 calls for
    one before; 32 now), a hop pays for the W3C parse alone (91 before, 67 now)."""
    counts = agent_calls(tmp_path, "0")
    assert counts["root"] <= 45, counts
    assert counts["hop"] <= 80, counts


def test_recorded_request_costs_few_agent_calls(tmp_path):
    """hops mode, every trace recorded: resources defined and events written on both
    sides (144 calls for a root request before, 64 now; 180 for a hop, 122 now)."""
    counts = agent_calls(tmp_path, "1")
    # without the C fast path (another interpreter: WILLOWISP_TEST_PYTHON) each event is a
    # few Python calls more (158 for a hop under CPython 3.13)
    pure = bool(os.environ.get("WILLOWISP_TEST_PYTHON"))
    assert counts["root"] <= (100 if pure else 85), counts
    assert counts["hop"] <= (175 if pure else 145), counts


@pytest.mark.parametrize(
    "pairs",
    [
        [],
        [("Accept", "*/*"), ("accept", "text/html"), ("X-Secret", "s"), ("Content-Type", "a/b")],
        [("user-agent", 'quote " backslash \\ newline \n control \x01 é 😀'), ("TRACEPARENT", "x")],
        [("Content-Length", 12), (b"accept", b"bytes")],
    ],
)
def test_entry_headers_are_the_json_dumps_would_write(pairs):
    """The hand-built JSON is byte for byte json.dumps(sort_keys, compact): names lowercase
    and sorted, repeated values joined, non-ASCII escaped, nothing but the allowlist."""
    kept: dict[str, str] = {}
    for name, value in pairs:
        key = str(name).lower()
        if key in redact.ACTIVE.headers:
            text = str(value)[:512]
            kept[key] = f"{kept[key]}, {text}" if key in kept else text
    assert entry_headers_json(pairs) == json.dumps(kept, sort_keys=True, separators=(",", ":"))
    assert "x-secret" not in entry_headers_json(pairs)


def test_remembered_targets_follow_the_redaction():
    """A target seen under the default redaction (query values elided) is not served
    from memory once ``query-values`` is asked for, nor the other way round."""
    url = "/search?q=secret&page=2"
    try:
        redact.configure("")
        assert elided_target(url) == "/search?q=&page="
        redact.configure("query-values")
        assert elided_target(url) == url
        redact.configure("")
        assert elided_target(url) == "/search?q=&page="
    finally:
        redact.configure("")
    assert elided_target("/" + "a" * 600) == "/" + "a" * 511  # long ones too, cut to 512
    assert elided_target("http://[::1/x?a=1") == "?"  # unsplittable


def test_span_ids_do_not_follow_the_programs_random_seed(tmp_path):
    """Two processes that seed ``random`` alike still put different ids on the wire, and a
    forked child does not repeat its parent's ids."""
    program = """
        import os, random, sys
        from willowisp.wire.traceparent import new_span_id, new_trace_id
        random.seed(1234)
        r, w = os.pipe()
        pid = os.fork()
        ids = " ".join(new_span_id() + new_trace_id() for _ in range(3))
        if pid == 0:
            os.write(w, ids.encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print(ids, os.read(r, 4096).decode())
    """
    seen: list[str] = []
    for n in range(2):
        r = run_program(program, str(tmp_path / f"run{n}"), name=f"prog{n}")
        assert r.returncode == 0, r.stderr
        seen += r.stdout.split()
    assert len(seen) == 12 and len(set(seen)) == 12, seen
    for one in seen:
        span, trace = one[:16], one[16:]
        assert len(trace) == 32 and int(span, 16) and int(trace, 16)
        assert span == span.lower() and trace == trace.lower()
    assert new_span_id() != new_span_id()
