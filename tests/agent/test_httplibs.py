"""Third-party HTTP libraries: requests and urllib3 (through http.client), httpx and aiohttp
inject the context and record their side of each hop; servers extract it, keep only the
allowlisted headers, and link to the client through the span id that crossed."""

from __future__ import annotations

import json

import pytest
from tracekit import ProcessTrace, read_run, run_program

pytest.importorskip("requests")
pytest.importorskip("httpx")
pytest.importorskip("aiohttp")

PURE = {"WILLOWISP_PURE_PYTHON": "1"}
BOTH_PATHS = pytest.mark.parametrize("env", [{}, PURE], ids=["native", "pure-python"])

# A stdlib server in a thread that answers 200 with the headers it saw, as JSON.
ECHO_SERVER = """
import json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
echo = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
threading.Thread(target=echo.serve_forever, daemon=True, name="echo").start()
ECHO = f"http://127.0.0.1:{echo.server_address[1]}"
"""


def _run(tmp_path, body: str, env: dict[str, str] | None = None) -> tuple[ProcessTrace, str]:
    out = str(tmp_path / "run")
    r = run_program(ECHO_SERVER + body, out, env_extra=env)
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    hook_faults = [f for f in p.faults.values() if "http" in str(f.get("where"))]
    assert not hook_faults
    return p, r.stdout


def _rpcs(p: ProcessTrace, library: str) -> list[tuple[int, dict]]:
    return [(rid, r) for rid, r in p.resources.items() if r.get("library") == library]


def _server_for(p: ProcessTrace, client: dict) -> tuple[int, dict]:
    """The server resource whose parent span is ``client``'s span (exactly one)."""
    found = [
        (rid, r)
        for rid, r in p.resources.items()
        if r.get("parent_span_id") == client["span_id"] and r.get("trace_id") == client["trace_id"]
    ]
    assert len(found) == 1, found
    return found[0]


def _line(source: str, needle: str) -> str:
    """``prog.py:N`` for the first line of the program ``source`` that contains ``needle``."""
    n = next(i for i, line in enumerate(source.splitlines(), 1) if needle in line)
    return f"prog.py:{n}"


def _kinds(p: ProcessTrace, rid: int) -> list[str]:
    """Kinds of the events on ``rid``, repeats of a ``unit.block`` folded into one, without
    task steps (a task's ``unit.yield`` names the rpc it waits for)."""
    out: list[str] = []
    for e in p.events:
        if e.res == rid and e.kind != "unit.yield" and not (out and out[-1] == e.kind):
            out.append(e.kind)
    return out


def _assert_task_waited_for_reply(p: ProcessTrace, rid: int, server: int, line: str) -> None:
    """An async client's wait: ``unit.block`` (rpc) at the program's line before the server
    replied, every suspension of the task until ``rpc.response`` spent waiting on ``rid``."""
    on = [e for e in p.events if e.res == rid]
    send = next(e for e in on if e.kind == "msg.send")
    response = next(e for e in on if e.kind == "rpc.response")
    blocks = [e for e in on if e.kind == "unit.block"]
    assert blocks and all(e.arg == 7 and e.unit == send.unit for e in blocks)  # Reason.RPC
    assert {p.where(e) for e in blocks} == {p.where(send)} == {line}
    reply = next(e for e in p.events if e.res == server and e.kind == "rpc.reply")
    assert send.time < blocks[0].time < reply.time < response.time
    yields = [
        e
        for e in p.events
        if e.unit == send.unit and e.kind == "unit.yield" and send.time < e.time < response.time
    ]
    assert yields and all(e.res == rid for e in yields), [(e.res, p.where(e)) for e in yields]


def test_requests_and_urllib3_are_labelled_once_and_linked(tmp_path):
    """requests and urllib3 calls are one rpc each, labelled by library, linked by span id."""
    body = """
import requests, urllib3
requests.get(ECHO + "/r?token=hunter2", headers={"Authorization": "Bearer s3cret"})
urllib3.PoolManager().request("GET", ECHO + "/u?token=hunter2", headers={"Cookie": "sid=s3cret"})
"""
    p, _ = _run(tmp_path, body)
    for library, target in (("requests", "/r?token="), ("urllib3", "/u?token=")):
        clients = _rpcs(p, library)
        assert len(clients) == 1, clients
        rid, client = clients[0]
        assert client["target"] == target and client["method"] == "GET"
        assert _kinds(p, rid) == ["msg.send", "unit.block", "rpc.response"]
        # The program's call, not urllib3's or requests' internals:
        line = _line(ECHO_SERVER + body, f'"{target[:2]}?token=hunter2"')
        assert {p.where(e) for e in p.events if e.res == rid} == {line}
        assert p.locations[p.resources[rid]["loc"]]["file"].endswith("prog.py")
        assert [e.arg for e in p.events if e.res == rid][-1] == 200
        srid, server = _server_for(p, client)
        assert server["library"] == "http.server" and server["target"] == target
        assert _kinds(p, srid) == ["msg.recv", "rpc.reply"]
        headers = json.loads(server["headers"])
        assert headers["user-agent"].startswith(("python-requests", "python-urllib3"))
        assert headers["traceparent"] == f"00-{client['trace_id']}-{client['span_id']}-01"
        assert "authorization" not in headers and "cookie" not in headers
    assert not _rpcs(p, "http.client") and not _rpcs(p, "urllib")
    assert "hunter2" not in str(p.resources) and "s3cret" not in str(p.resources)


@BOTH_PATHS
def test_httpx_sync_and_async_link_to_the_server(tmp_path, env):
    """httpx's sync and async transports inject traceparent and pair with the server."""
    body = """
import asyncio, httpx
with httpx.Client() as c:
    sync_seen = c.get(ECHO + "/sync?page=2").json()["traceparent"]
async def main():
    async with httpx.AsyncClient() as c:
        return (await c.get(ECHO + "/async")).json()["traceparent"]
async_seen = asyncio.run(main())
print(sync_seen, async_seen)
"""
    p, out = _run(tmp_path, body, env)
    sync_seen, async_seen = out.split()
    clients = {r["target"]: (rid, r) for rid, r in _rpcs(p, "httpx")}
    assert set(clients) == {"/sync?page=", "/async"}
    for target, seen in (("/sync?page=", sync_seen), ("/async", async_seen)):
        rid, client = clients[target]
        assert seen == f"00-{client['trace_id']}-{client['span_id']}-01"
        assert _kinds(p, rid) == ["msg.send", "unit.block", "rpc.response"]
        assert [e.arg for e in p.events if e.res == rid][-1] == 200
        _server_for(p, client)
    send = next(e for e in p.events if e.res == clients["/sync?page="][0] and e.kind == "msg.send")
    # The program's c.get, not httpx's internals:
    assert p.where(send) == _line(ECHO_SERVER + body, 'c.get(ECHO + "/sync')
    rid, client = clients["/async"]
    line = _line(ECHO_SERVER + body, 'await c.get(ECHO + "/async")')
    _assert_task_waited_for_reply(p, rid, _server_for(p, client)[0], line)


AIOHTTP_APP = """
import asyncio, json
import aiohttp
from aiohttp import web
async def outer(request):
    async with aiohttp.ClientSession() as s:
        async with s.get(ECHO + "/nested") as r:
            nested = await r.json()
    return web.json_response({"nested": nested})
async def serve(then):
    app = web.Application()
    app.router.add_get("/outer", outer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        return await then(f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()
"""


@BOTH_PATHS
def test_aiohttp_client_to_server_and_nested_call_continue_the_trace(tmp_path, env):
    """aiohttp client -> aiohttp server links; the handler's own call stays in the trace."""
    body = (
        AIOHTTP_APP
        + """
async def call(base):
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": "Bearer s3cret", "Cookie": "sid=s3cret",
                   "Content-Type": "text/plain"}
        async with s.get(base + "/outer?user=alice", headers=headers) as r:
            return await r.json()
print(json.dumps(asyncio.run(serve(call))))
"""
    )
    p, out = _run(tmp_path, body, env)
    nested_seen = json.loads(out)["nested"]
    clients = {r["target"]: (rid, r) for rid, r in _rpcs(p, "aiohttp") if "parent_span_id" not in r}
    assert set(clients) == {"/outer?user=", "/nested"}
    rid, client = clients["/outer?user="]
    assert _kinds(p, rid) == ["msg.send", "unit.block", "rpc.response"]
    srid, server = _server_for(p, client)
    _assert_task_waited_for_reply(
        p, rid, srid, _line(ECHO_SERVER + body, 's.get(base + "/outer?user=alice"')
    )
    assert server["library"] == "aiohttp" and server["propagation"] == "w3c"
    assert _kinds(p, srid) == ["msg.recv", "rpc.reply"]
    assert [e.arg for e in p.events if e.res == srid] == [0, 200]
    headers = json.loads(server["headers"])
    assert headers["content-type"] == "text/plain" and headers["user-agent"].startswith("Python")
    assert headers["traceparent"] == f"00-{client['trace_id']}-{client['span_id']}-01"
    assert "authorization" not in headers and "cookie" not in headers
    nrid, nested = clients["/nested"]
    assert nested["trace_id"] == server["trace_id"] == client["trace_id"]
    assert nested_seen["traceparent"] == f"00-{nested['trace_id']}-{nested['span_id']}-01"
    recv = next(e for e in p.events if e.res == srid and e.kind == "msg.recv")
    send = next(e for e in p.events if e.res == nrid and e.kind == "msg.send")
    assert send.unit == recv.unit  # the handler's task made the nested call
    assert p.where(send) == _line(ECHO_SERVER + body, 's.get(ECHO + "/nested")')
    assert "alice" not in str(p.resources) and "s3cret" not in str(p.resources)


@pytest.mark.parametrize(
    ("headers", "propagation"),
    [
        ({"X-B3-TraceId": "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId": "a2fb4a1d1a96d312",
          "X-B3-Sampled": "1"}, "b3"),
        ({"b3": "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1"}, "b3"),
        ({"X-Amzn-Trace-Id": "Root=1-463ac35c-9f6413ad48485a3953bb6124;Parent=a2fb4a1d1a96d312;"
          "Sampled=1"}, "xray"),
    ],
    ids=["b3-multi", "b3-single", "xray"],
)  # fmt: skip
def test_aiohttp_server_extracts_b3_and_xray(tmp_path, headers, propagation):
    """Without traceparent the aiohttp server reads B3, else X-Ray, and continues that trace."""
    p, out = _run(
        tmp_path,
        AIOHTTP_APP
        + f"""
async def call(base):
    # A raw request: a hooked client would add its own traceparent, which wins.
    host, port = base[len("http://"):].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = ["GET /outer HTTP/1.0", f"Host: {{host}}", "Connection: close"]
    lines += [f"{{k}}: {{v}}" for k, v in {headers!r}.items()]
    writer.write(("\\r\\n".join(lines) + "\\r\\n\\r\\n").encode())
    response = await reader.read()
    writer.close()
    return json.loads(response.split(b"\\r\\n\\r\\n", 1)[1])
print(json.dumps(asyncio.run(serve(call))))
""",
    )
    servers = [r for _, r in _rpcs(p, "aiohttp") if r.get("propagation")]
    assert len(servers) == 1
    server = servers[0]
    assert server["propagation"] == propagation
    assert server["trace_id"] == "463ac35c9f6413ad48485a3953bb6124"
    assert server["parent_span_id"] == "a2fb4a1d1a96d312"
    assert json.loads(out)["nested"]["traceparent"].startswith(
        "00-463ac35c9f6413ad48485a3953bb6124-"
    )


def test_aiohttp_handler_carries_inbound_tracestate_on(tmp_path):
    """The tracestate that came with the request goes out on the handler's own calls."""
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    p, out = _run(
        tmp_path,
        AIOHTTP_APP
        + f"""
async def call(base):
    async with aiohttp.ClientSession() as s:
        headers = {{"traceparent": "{tp}", "tracestate": "vendor=opaque"}}
        async with s.get(base + "/outer", headers=headers) as r:
            return await r.json()
print(json.dumps(asyncio.run(serve(call))))
""",
    )
    nested = json.loads(out)["nested"]
    assert nested["tracestate"] == "vendor=opaque"
    assert nested["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    server = next(r for _, r in _rpcs(p, "aiohttp") if r.get("propagation"))
    assert server["parent_span_id"] == "00f067aa0ba902b7"
    assert json.loads(server["headers"])["tracestate"] == "vendor=opaque"


@pytest.mark.parametrize("bodies", [False, True])
def test_aiohttp_server_keeps_the_body_only_when_asked(tmp_path, bodies):
    """--redact bodies: the entry request's body as the handler read it; none by default."""
    p, out = _run(
        tmp_path,
        """
import asyncio
import aiohttp
from aiohttp import web
async def order(request):
    return web.json_response({"got": (await request.json())["item"]})
async def main():
    app = web.Application()
    app.router.add_post("/order", order)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/order", json={"item": 42}) as r:
            print((await r.json())["got"])
    await runner.cleanup()
asyncio.run(main())
""",
        env={"WILLOWISP_REDACT": "bodies"} if bodies else None,
    )
    assert out.strip() == "42"
    [server] = [r for _, r in _rpcs(p, "aiohttp") if "parent_span_id" in r]
    assert server.get("body") == ('{"item": 42}' if bodies else None)
