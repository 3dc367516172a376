"""Boundaries with third-party libraries (aiohttp): asyncio tasks inside and outside."""

from __future__ import annotations

import json

import pytest
from tests.agent.test_boundaries import _lock_events
from tests.agent.tracekit import read_run, run_program

AIOHTTP_PROGRAM = """
import asyncio
from aiohttp import web, ClientSession

lock = asyncio.Lock()

async def work():
    async with lock:
        await asyncio.sleep(0)

async def checkout(request):
    await asyncio.create_task(work())
    return web.Response(text="ok")

async def browse(request):
    await asyncio.create_task(work())
    return web.Response(text="ok")

async def main():
    app = web.Application()
    app.router.add_post("/checkout", checkout)
    app.router.add_get("/browse", browse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with ClientSession() as s:
        for _ in range(3):
            async with s.post(f"http://127.0.0.1:{port}/checkout", data=b"x") as r:
                await r.read()
            async with s.get(f"http://127.0.0.1:{port}/browse") as r:
                await r.read()
    await runner.cleanup()

asyncio.run(main())
"""


@pytest.mark.parametrize("pure", ["0", "1"])
def test_asyncio_tasks_inside_a_boundary_are_recorded_and_others_not(tmp_path, pure):
    """aiohttp in hops mode: the handler task of POST /checkout and the task it starts are
    traced (the lock's acquisitions, the task's life); those of GET /browse are not."""
    out = str(tmp_path / "run")
    r = run_program(
        AIOHTTP_PROGRAM,
        out,
        env_extra={
            "WILLOWISP_MODE": "hops",
            "WILLOWISP_TRACE_RATIO": "0",
            "WILLOWISP_BOUNDARIES": "entry=http:POST /checkout",
            "WILLOWISP_PURE_PYTHON": pure,
        },
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    assert not p.faults, p.faults
    assert len(_lock_events(p, "lock")) == 3
    work_units = [n for n, u in p.units.items() if str(u.get("coro", "")).endswith("work")]
    started = {e.unit for e in p.events if e.kind == "unit.start" and e.unit in work_units}
    assert len(started) == 3
    stats = json.loads(p.stats["by_boundary"])["http:POST /checkout"]
    assert stats["entries"] == 3


GRPC_PROGRAM = """
import threading
from concurrent import futures
import grpc

lock = threading.Lock()

def reserve(req, ctx):
    with lock:
        return b"ok"

def checkout(req, ctx):
    with lock:
        pass
    return stub_reserve(b"sku")

def browse(req, ctx):
    with lock:
        return b"page"

srv = grpc.server(futures.ThreadPoolExecutor(4))
srv.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("shop.Shop", {
    "Checkout": grpc.unary_unary_rpc_method_handler(checkout),
    "Browse": grpc.unary_unary_rpc_method_handler(browse),
    "Reserve": grpc.unary_unary_rpc_method_handler(reserve),
})])
port = srv.add_insecure_port("127.0.0.1:0")
srv.start()
with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
    stub_reserve = ch.unary_unary("/shop.Shop/Reserve")
    for _ in range(3):
        ch.unary_unary("/shop.Shop/Checkout")(b"c")
        ch.unary_unary("/shop.Shop/Browse")(b"b")
srv.stop(None)
"""


def test_grpc_boundary_and_its_propagation(tmp_path):
    """hops mode, boundary entry=grpc:/shop.Shop/Checkout: Checkout and the Reserve call it
    makes (the wisp member in the call's metadata) are recorded at full fidelity, Browse is
    not."""
    out = str(tmp_path / "run")
    r = run_program(
        GRPC_PROGRAM,
        out,
        env_extra={
            "WILLOWISP_MODE": "hops",
            "WILLOWISP_TRACE_RATIO": "0",
            "WILLOWISP_BOUNDARIES": "entry=grpc:/shop.Shop/Checkout",
        },
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    assert not p.faults, p.faults
    servers = sorted(
        str(res["method"])
        for res in p.resources.values()
        if res.get("protocol") == "grpc" and "parent_span_id" in res
    )
    assert servers == ["/shop.Shop/Checkout"] * 3 + ["/shop.Shop/Reserve"] * 3
    assert len(_lock_events(p, "lock")) == 6
    stats = json.loads(p.stats["by_boundary"])["grpc:/shop.Shop/Checkout"]
    assert (stats["entries"], stats["propagated"]) == (3, 3)
