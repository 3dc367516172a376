"""A client request whose connection fails (refused: nothing listens on the port yet) ends
its call with ``rpc.response`` -1 in every HTTP library the agent hooks, leaves no unit
waiting, and raises the library's own error, as it does without the agent."""

from __future__ import annotations

import pytest
from tracekit import ProcessTrace, read_run, run_program

pytest.importorskip("requests")
pytest.importorskip("httpx")
pytest.importorskip("aiohttp")

# Each library calls a port nothing listens on (bound once to learn a free port, then
# closed: connecting to it is refused), and prints the error it raised. Then the QA
# scenario: a retry loop on GET /warm, refused three times, until the server is up on
# that very port; the fourth attempt is answered.
PROGRAM = """
import asyncio, http.client, socket, threading, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import aiohttp, httpx, requests, urllib3

s = socket.socket()
s.bind(("127.0.0.1", 0))
PORT = s.getsockname()[1]
s.close()
BASE = f"http://127.0.0.1:{PORT}"

def attempt(label, call):
    try:
        call()
    except Exception as exc:
        print(label, type(exc).__name__, flush=True)
    else:
        print(label, "answered", flush=True)

def plain():
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    conn.request("GET", "/down/http.client")
    conn.getresponse()

async def async_httpx():
    async with httpx.AsyncClient() as client:
        await client.get(BASE + "/down/httpx-async")

async def async_aiohttp():
    async with aiohttp.ClientSession() as session:
        await session.get(BASE + "/down/aiohttp")

attempt("urllib", lambda: urllib.request.urlopen(BASE + "/down/urllib", timeout=10))
attempt("http.client", plain)
attempt("requests", lambda: requests.get(BASE + "/down/requests", timeout=10))
pool = urllib3.PoolManager(retries=False)
attempt("urllib3", lambda: pool.request("GET", BASE + "/down/urllib3"))
attempt("httpx", lambda: httpx.get(BASE + "/down/httpx"))
attempt("httpx-async", lambda: asyncio.run(async_httpx()))
attempt("aiohttp", lambda: asyncio.run(async_aiohttp()))

class Warm(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass

for n in range(4):
    if n == 3:  # the service comes up on the port the client keeps trying
        srv = ThreadingHTTPServer(("127.0.0.1", PORT), Warm)
        threading.Thread(target=srv.serve_forever, daemon=True, name="warm").start()
    attempt(f"warm{n}", lambda: urllib.request.urlopen(BASE + "/warm", timeout=10).read())
srv.shutdown()
"""

# What each library raises for a refused connection, without the agent as with it.
ERRORS = {
    "urllib": "URLError",
    "http.client": "ConnectionRefusedError",
    "requests": "ConnectionError",
    "urllib3": "NewConnectionError",
    "httpx": "ConnectError",
    "httpx-async": "ConnectError",
    "aiohttp": "ClientConnectorError",
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProcessTrace, dict[str, str]]:
    """The program's trace and what it printed, label -> error name (recorded once)."""
    out = str(tmp_path_factory.mktemp("refused") / "run")
    r = run_program(PROGRAM, out)
    assert r.returncode == 0, r.stderr
    printed = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    p = read_run(out)["prog"]
    assert not [f for f in p.faults.values() if "http" in str(f.get("where"))], p.faults
    return p, printed


def _client(p: ProcessTrace, target: str) -> list[int]:
    """Client rpc resources (they carry a span id, no parent) of ``target``, in order."""
    return sorted(
        rid
        for rid, r in p.resources.items()
        if r.get("target") == target and r.get("span_id") and not r.get("parent_span_id")
    )


def _ending(p: ProcessTrace, rid: int) -> tuple[list[str], list[int]]:
    """The kinds of the events on ``rid`` (repeated blocks and task steps folded) and the
    statuses its ``rpc.response`` events carry."""
    kinds: list[str] = []
    for e in p.events:
        if e.res == rid and e.kind != "unit.yield" and not (kinds and kinds[-1] == e.kind):
            kinds.append(e.kind)
    statuses = [e.arg for e in p.events if e.res == rid and e.kind == "rpc.response"]
    return kinds, statuses


def test_refused_connection_ends_the_call_with_status_minus_one(recorded):
    """Every hooked library: a refused request is msg.send then rpc.response -1, the
    program sees the library's own error, and no unit is left blocked on the request."""
    p, printed = recorded
    for label, error in ERRORS.items():
        assert printed[label] == error, (label, printed)
        rids = _client(p, f"/down/{label}")
        assert len(rids) == 1, (label, rids)
        kinds, statuses = _ending(p, rids[0])
        assert kinds[0] == "msg.send" and kinds[-1] == "rpc.response", (label, kinds)
        assert statuses == [-1], (label, statuses)


def test_retry_until_the_server_is_up(recorded):
    """A retry loop: each refused attempt ends with -1 and has no server side; the attempt
    once the server listens is answered 200 and linked to the server's receive."""
    p, printed = recorded
    assert [printed[f"warm{n}"] for n in range(4)] == ["URLError"] * 3 + ["answered"]
    rids = _client(p, "/warm")
    assert len(rids) == 4, rids
    endings = [_ending(p, rid) for rid in rids]
    assert [e[0] for e in endings[:3]] == [["msg.send", "rpc.response"]] * 3
    assert [e[1] for e in endings] == [[-1], [-1], [-1], [200]]
    assert endings[3][0] == ["msg.send", "unit.block", "rpc.response"]
    spans = {p.resources[rid]["span_id"] for rid in rids}
    received = [r for r in p.resources.values() if r.get("parent_span_id") in spans]
    assert [r["parent_span_id"] for r in received] == [p.resources[rids[3]]["span_id"]]
