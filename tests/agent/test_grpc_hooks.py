"""grpcio: the client interceptor injects the context into the call's metadata and records
send/wait/response; the server interceptor extracts it and records receive/reply; the two
sides share the span id that crossed."""

from __future__ import annotations

import pytest
from tracekit import ProcessTrace, read_run, run_program

pytest.importorskip("grpc")

# A sync server on 127.0.0.1 port 0 with generic handlers over bytes (no protoc needed).
SYNC_SERVER = """
import grpc
from concurrent import futures

def serve(service, methods):
    srv = grpc.server(futures.ThreadPoolExecutor(4))
    srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, methods)])
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    return srv, f"127.0.0.1:{port}"
"""


def _rpcs(p: ProcessTrace, library: str) -> list[tuple[int, dict[str, object]]]:
    return [
        (rid, r)
        for rid, r in p.resources.items()
        if r["kind"] == "rpc" and r.get("library") == library
    ]


def _events(p: ProcessTrace, rid: int) -> list[tuple[str, int]]:
    """The events on ``rid``, without task steps (a ``unit.yield`` names the awaited rpc)."""
    return [(e.kind, e.arg) for e in p.events if e.res == rid and e.kind != "unit.yield"]


def _grpc_faults(p: ProcessTrace) -> list[dict[str, object]]:
    return [f for f in p.faults.values() if "grpc" in str(f.get("where"))]


@pytest.mark.parametrize("pure", ["0", "1"])
def test_sync_client_and_server_link_through_traceparent(tmp_path, marks_of, pure):
    """A sync call: client send/block/response and server recv/reply, paired by span id."""
    out = str(tmp_path / "run")
    program = (
        SYNC_SERVER
        + """
seen = []
def ping(req, ctx):
    seen.append(dict(ctx.invocation_metadata()).get("traceparent"))
    return b"pong:" + req
srv, target = serve("demo.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(ping)})
with grpc.insecure_channel(target) as ch:
    print(ch.unary_unary("/demo.Echo/Ping")(b"x").decode(), seen[0])  # @call
srv.stop(None)
"""
    )
    r = run_program(program, out, env_extra={"WILLOWISP_PURE_PYTHON": pure})
    assert r.returncode == 0, r.stderr
    reply, header = r.stdout.split()
    assert reply == "pong:x"
    p = read_run(out)["prog"]
    assert not _grpc_faults(p)
    [(client, c)] = [x for x in _rpcs(p, "grpcio") if "parent_span_id" not in x[1]]
    [(server, s)] = [x for x in _rpcs(p, "grpcio") if "parent_span_id" in x[1]]
    assert header == f"00-{c['trace_id']}-{c['span_id']}-01"
    assert s["trace_id"] == c["trace_id"] and s["parent_span_id"] == c["span_id"]
    assert s["span_id"] != c["span_id"]
    assert c["method"] == s["method"] == "/demo.Echo/Ping" and c["protocol"] == "grpc"
    assert str(c["peer"]).startswith("127.0.0.1:")
    assert _events(p, client) == [("msg.send", 0), ("unit.block", 7), ("rpc.response", 0)]
    assert _events(p, server) == [("msg.recv", 0), ("rpc.reply", 0)]
    send = next(e for e in p.events if e.res == client)
    assert p.where(send) == f"prog.py:{marks_of(program)['call']}"


def test_aio_client_and_server_link(tmp_path):
    """grpc.aio on both sides: the aio client's rpc pairs with the aio server's by span id."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import asyncio, grpc

        async def ping(req, ctx):
            return b"pong:" + req

        async def main():
            srv = grpc.aio.server()
            srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
                "demo.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(ping)})])
            port = srv.add_insecure_port("127.0.0.1:0")
            await srv.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                print((await ch.unary_unary("/demo.Echo/Ping")(b"x")).decode())
            await srv.stop(None)

        asyncio.run(main())
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "pong:x"
    p = read_run(out)["prog"]
    assert not _grpc_faults(p)
    [(client, c), (server, s)] = _rpcs(p, "grpcio.aio")
    if "parent_span_id" in c:
        (client, c), (server, s) = (server, s), (client, c)
    assert s["trace_id"] == c["trace_id"] and s["parent_span_id"] == c["span_id"]
    assert c["method"] == s["method"] == "/demo.Echo/Ping"
    assert _events(p, client) == [("msg.send", 0), ("unit.block", 7), ("rpc.response", 0)]
    assert _events(p, server) == [("msg.recv", 0), ("rpc.reply", 0)]


def test_handler_calling_another_service_continues_the_trace(tmp_path):
    """A handler's own outgoing call carries the inbound trace id to the next service."""
    out = str(tmp_path / "run")
    r = run_program(
        SYNC_SERVER
        + """
def price(req, ctx):
    return b"42"
back, back_target = serve("demo.Prices", {"Get": grpc.unary_unary_rpc_method_handler(price)})
back_channel = grpc.insecure_channel(back_target)
def order(req, ctx):
    return b"order at " + back_channel.unary_unary("/demo.Prices/Get")(req)
front, target = serve("demo.Orders", {"Place": grpc.unary_unary_rpc_method_handler(order)})
with grpc.insecure_channel(target) as ch:
    print(ch.unary_unary("/demo.Orders/Place")(b"x").decode())
back_channel.close()
front.stop(None)
back.stop(None)
""",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "order at 42"
    p = read_run(out)["prog"]
    rpcs = _rpcs(p, "grpcio")
    by = {(r["method"], "parent_span_id" in r): r for _, r in rpcs}
    c1 = by[("/demo.Orders/Place", False)]
    s1 = by[("/demo.Orders/Place", True)]
    c2 = by[("/demo.Prices/Get", False)]
    s2 = by[("/demo.Prices/Get", True)]
    assert {c1["trace_id"], s1["trace_id"], c2["trace_id"], s2["trace_id"]} == {c1["trace_id"]}
    assert s1["parent_span_id"] == c1["span_id"]
    assert s2["parent_span_id"] == c2["span_id"]
    assert c2["span_id"] not in (c1["span_id"], s1["span_id"])


def test_error_status_is_recorded_on_both_sides(tmp_path):
    """A handler that aborts with NOT_FOUND: the reply and the response carry status 5."""
    out = str(tmp_path / "run")
    r = run_program(
        SYNC_SERVER
        + """
def find(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such item")
srv, target = serve("demo.Items", {"Find": grpc.unary_unary_rpc_method_handler(find)})
with grpc.insecure_channel(target) as ch:
    try:
        ch.unary_unary("/demo.Items/Find")(b"x")
    except grpc.RpcError as err:
        print(err.code().name)
srv.stop(None)
""",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "NOT_FOUND"
    p = read_run(out)["prog"]
    rpcs = dict(_rpcs(p, "grpcio"))
    client = next(rid for rid, r in rpcs.items() if "parent_span_id" not in r)
    server = next(rid for rid, r in rpcs.items() if "parent_span_id" in r)
    assert _events(p, client)[-1] == ("rpc.response", 5)
    assert _events(p, server) == [("msg.recv", 0), ("rpc.reply", 5)]


def test_b3_only_metadata_is_extracted_and_kept(tmp_path):
    """A call whose metadata already carries B3: the client records that context and injects
    no traceparent; the server extracts B3 as the parent."""
    out = str(tmp_path / "run")
    r = run_program(
        SYNC_SERVER
        + """
seen = []
def ping(req, ctx):
    seen.append(sorted(k for k, _ in ctx.invocation_metadata() if k in ("b3", "traceparent")))
    return b"ok"
srv, target = serve("demo.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(ping)})
b3 = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
with grpc.insecure_channel(target) as ch:
    ch.unary_unary("/demo.Echo/Ping")(b"x", metadata=[("b3", b3)])
print(seen[0])
srv.stop(None)
""",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['b3']"
    p = read_run(out)["prog"]
    rpcs = [r for _, r in _rpcs(p, "grpcio")]
    client = next(r for r in rpcs if "parent_span_id" not in r)
    server = next(r for r in rpcs if "parent_span_id" in r)
    assert client["span_id"] == "e457b5a2e4d86bd1"
    assert server["trace_id"] == "80f198ee56343ba864fe8b2a57d3eff7"
    assert server["parent_span_id"] == "e457b5a2e4d86bd1"


def test_a_hook_fault_never_breaks_the_call(tmp_path):
    """With context extraction broken inside the agent, the call still succeeds on both
    sides and each side's hook records an agent.fault instead."""
    out = str(tmp_path / "run")
    r = run_program(
        SYNC_SERVER
        + """
from willowisp.agent import rpc_grpc
def broken(pairs):
    raise RuntimeError("codec exploded")
rpc_grpc._extract = broken
def ping(req, ctx):
    return b"pong:" + req
srv, target = serve("demo.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(ping)})
with grpc.insecure_channel(target) as ch:
    print(ch.unary_unary("/demo.Echo/Ping")(b"x").decode())
srv.stop(None)
""",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "pong:x"
    p = read_run(out)["prog"]
    wheres = sorted(str(f["where"]) for f in _grpc_faults(p))
    assert wheres == ["grpc client", "grpc server"]
    assert all("codec exploded" in str(f["message"]) for f in _grpc_faults(p))
    assert "agent.fault" in {e.kind for e in p.events}


def test_server_streaming_records_the_reply_after_the_last_message(tmp_path):
    """A unary-stream call: the server's reply follows its last message; the client's
    response is written when the stream ends, with no wait (the program iterates)."""
    out = str(tmp_path / "run")
    r = run_program(
        SYNC_SERVER
        + """
def count(req, ctx):
    for i in range(3):
        yield str(i).encode()
srv, target = serve("demo.Count", {"Up": grpc.unary_stream_rpc_method_handler(count)})
with grpc.insecure_channel(target) as ch:
    call = ch.unary_stream("/demo.Count/Up")(b"x")
    print(b"".join(call).decode(), call.code().name)
srv.stop(None)
""",
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["012", "OK"]
    p = read_run(out)["prog"]
    rpcs = dict(_rpcs(p, "grpcio"))
    client = next(rid for rid, r in rpcs.items() if "parent_span_id" not in r)
    server = next(rid for rid, r in rpcs.items() if "parent_span_id" in r)
    assert rpcs[server]["parent_span_id"] == rpcs[client]["span_id"]
    assert _events(p, client) == [("msg.send", 0), ("rpc.response", 0)]
    assert _events(p, server) == [("msg.recv", 0), ("rpc.reply", 0)]


def test_aio_streaming_calls_are_linked(tmp_path):
    """grpc.aio unary-stream and stream-unary calls: each client rpc pairs with its server
    rpc, with the response written when the call ends (grpc.aio files one interceptor
    under one kind only, so each kind needs its own)."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import asyncio, grpc

        async def count(req, ctx):
            for i in range(3):
                yield b"%d" % i

        async def total(reqs, ctx):
            return b"%d" % sum([len(r) async for r in reqs])

        async def main():
            srv = grpc.aio.server()
            srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("demo.S", {
                "Count": grpc.unary_stream_rpc_method_handler(count),
                "Total": grpc.stream_unary_rpc_method_handler(total)})])
            port = srv.add_insecure_port("127.0.0.1:0")
            await srv.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                got = [m async for m in ch.unary_stream("/demo.S/Count")(b"x")]
                print(b"".join(got).decode(), (await ch.stream_unary("/demo.S/Total")(
                    iter([b"ab", b"c"]))).decode())
            await srv.stop(None)

        asyncio.run(main())
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["012", "3"]
    p = read_run(out)["prog"]
    assert not _grpc_faults(p)
    rpcs = _rpcs(p, "grpcio.aio")
    for method in ("/demo.S/Count", "/demo.S/Total"):
        [(client, c)] = [
            x for x in rpcs if x[1]["method"] == method and "parent_span_id" not in x[1]
        ]
        [(server, s)] = [x for x in rpcs if x[1]["method"] == method and "parent_span_id" in x[1]]
        assert s["trace_id"] == c["trace_id"] and s["parent_span_id"] == c["span_id"]
        assert _events(p, client) == [("msg.send", 0), ("rpc.response", 0)]
        assert _events(p, server) == [("msg.recv", 0), ("rpc.reply", 0)]


AIO_NESTED = """
import asyncio, grpc

def handlers(service, methods):
    return [grpc.method_handlers_generic_handler(service, methods)]

async def price(req, ctx):  # @price
    return b"42"

async def main():
    back = grpc.aio.server()
    back.add_generic_rpc_handlers(handlers("demo.Prices", {
        "Get": grpc.unary_unary_rpc_method_handler(price)}))
    back_port = back.add_insecure_port("127.0.0.1:0")
    await back.start()
    back_channel = grpc.aio.insecure_channel(f"127.0.0.1:{back_port}")
    get_price = back_channel.unary_unary("/demo.Prices/Get")

    async def order(req, ctx):  # @order
        return b"order at " + await get_price(req)  # @nested

    front = grpc.aio.server()
    front.add_generic_rpc_handlers(handlers("demo.Orders", {
        "Place": grpc.unary_unary_rpc_method_handler(order)}))
    port = front.add_insecure_port("127.0.0.1:0")
    await front.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        place = ch.unary_unary("/demo.Orders/Place")
        print((await place(b"x")).decode())  # @call
    await back_channel.close()
    await front.stop(None)
    await back.stop(None)

asyncio.run(main())
"""


def test_aio_events_point_at_the_program_and_handlers_continue_the_trace(tmp_path, marks_of):
    """grpc.aio: the client's send, wait and response are located at the program's call line
    (not grpc's task), the server's at the handler; a handler's own aio call continues the
    trace it received."""
    out = str(tmp_path / "run")
    r = run_program(AIO_NESTED, out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "order at 42"
    p = read_run(out)["prog"]
    assert not _grpc_faults(p)
    marks = marks_of(AIO_NESTED)
    by = {(r["method"], "parent_span_id" in r): (rid, r) for rid, r in _rpcs(p, "grpcio.aio")}
    (c1, place), (s1, placed) = by[("/demo.Orders/Place", False)], by[("/demo.Orders/Place", True)]
    (c2, get), (s2, got) = by[("/demo.Prices/Get", False)], by[("/demo.Prices/Get", True)]
    assert {place["trace_id"], placed["trace_id"], get["trace_id"], got["trace_id"]} == {
        place["trace_id"]
    }
    assert placed["parent_span_id"] == place["span_id"]
    assert got["parent_span_id"] == get["span_id"]
    assert get["span_id"] not in (place["span_id"], placed["span_id"])
    for rid, line in ((c1, marks["call"]), (c2, marks["nested"])):
        evs = [e for e in p.events if e.res == rid and e.kind != "unit.yield"]
        assert evs[0].kind == "msg.send" and evs[-1].kind == "rpc.response"
        assert "unit.block" in {e.kind for e in evs}
        assert {p.where(e) for e in evs} == {f"prog.py:{line}"}
    for rid, line in ((s1, marks["order"]), (s2, marks["price"])):
        evs = [e for e in p.events if e.res == rid]
        assert [e.kind for e in evs] == ["msg.recv", "rpc.reply"]
        assert {p.where(e) for e in evs} == {f"prog.py:{line}"}


def test_server_keeps_allowlisted_metadata_and_the_body_only_when_asked(tmp_path):
    """The server's rpc resource has the allowlisted metadata (never authorization); the
    request message is kept only under --redact bodies."""
    program = (
        SYNC_SERVER
        + """
srv, target = serve("demo.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(lambda r, c: r)})
with grpc.insecure_channel(target) as ch:
    ch.unary_unary("/demo.Echo/Ping")(b"hello", metadata=[("authorization", "s3cret"),
                                                            ("user-agent", "t/1")])
srv.stop(None)
"""
    )
    for bodies in (False, True):
        out = str(tmp_path / f"run-{bodies}")
        env = {"WILLOWISP_REDACT": "bodies"} if bodies else {}
        r = run_program(program, out, env_extra=env)
        assert r.returncode == 0, r.stderr
        p = read_run(out)["prog"]
        [(_, s)] = [x for x in _rpcs(p, "grpcio") if "parent_span_id" in x[1]]
        import json

        headers = json.loads(str(s["headers"]))
        assert "authorization" not in headers and "traceparent" in headers
        assert s.get("body") == ("hello" if bodies else None)
