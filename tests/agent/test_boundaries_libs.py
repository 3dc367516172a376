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
