"""Redis commands on keys as data accesses (sync and ``redis.asyncio``), against a real
redis-server: reads are accesses, writes are atomic holds of the key's lock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import brokers
import pytest
from test_data_hooks import story
from tracekit import read_run, run_program

pytest.importorskip("redis")
if not brokers.importable("redis"):
    pytest.skip(
        "redis-py is not installed for the recorded programs' Python", allow_module_level=True
    )


SYNC = """
    import sys
    import redis
    r = redis.Redis(port=int(sys.argv[1]))
    r.set("cart:42", 1)  # @set
    r.get("cart:42")  # @get
    r.incr("cart:42")  # @incr
    r.mget("cart:42", "cart:43")  # @mget
    p = r.pipeline(transaction=False)
    p.set("cart:44", 1)
    p.get("cart:44")
    p.execute()  # @plain
    t = r.pipeline()  # MULTI/EXEC
    t.get("cart:45")
    t.set("cart:45", 2)
    t.execute()  # @multi
    r.xadd("events", {"a": "1"})
    r.close()
"""

ASYNC = """
    import asyncio, sys
    import redis.asyncio as redis

    async def main():
        r = redis.Redis(port=int(sys.argv[1]))
        await r.hset("user:7", "name", "ann")  # @hset
        await r.hget("user:7", "name")  # @hget
        async with r.pipeline() as t:
            t.hget("user:7", "name")
            t.hset("user:7", "name", "bob")
            await t.execute()  # @multi
        await r.aclose()

    asyncio.run(main())
"""


def _run(tmp_path: Path, code: str, port: int):  # type: ignore[no-untyped-def]
    out = str(tmp_path / "run")
    r = run_program(code, out, args=[str(port)])
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    assert not p.faults, p.faults
    return p


def test_sync_client_key_commands(
    tmp_path: Path, redis_port: int, marks_of: Callable[[str], dict[str, int]]
) -> None:
    """SET and INCR are writes bracketed by the key's lock, GET a read, MGET a read of each
    key; a pipeline's commands are recorded when it executes (each on its own, or, in a
    MULTI/EXEC transaction, all inside one hold of the server's transaction lock); stream
    commands are no key access."""
    p = _run(tmp_path, SYNC, redis_port)
    m = {k: f"prog.py:{v}" for k, v in marks_of(SYNC).items()}
    k42, k43 = "redis:cart:42", "redis:cart:43"
    assert story(p) == [
        ("lock.acquired", m["set"], k42, ""),
        ("data.access", m["set"], k42, "write SET"),
        ("lock.release", m["set"], k42, ""),
        ("data.access", m["get"], k42, "read GET"),
        ("lock.acquired", m["incr"], k42, ""),
        ("data.access", m["incr"], k42, "write INCRBY"),  # redis-py sends INCRBY
        ("lock.release", m["incr"], k42, ""),
        ("data.access", m["mget"], k42, "read MGET"),
        ("data.access", m["mget"], k43, "read MGET"),
        ("lock.acquired", m["plain"], "redis:cart:44", ""),
        ("data.access", m["plain"], "redis:cart:44", "write SET"),
        ("lock.release", m["plain"], "redis:cart:44", ""),
        ("data.access", m["plain"], "redis:cart:44", "read GET"),
        ("lock.acquired", m["multi"], "redis:(MULTI/EXEC)", ""),
        ("data.access", m["multi"], "redis:cart:45", "read GET"),
        ("lock.acquired", m["multi"], "redis:cart:45", ""),
        ("data.access", m["multi"], "redis:cart:45", "write SET"),
        ("lock.release", m["multi"], "redis:cart:45", ""),
        ("lock.release", m["multi"], "redis:(MULTI/EXEC)", ""),
    ]
    locks = [r for r in p.resources.values() if r.get("kind") == "lock" and r.get("shared")]
    assert [(r["name"], r["shared"]) for r in locks] == [
        (k42, 1),
        ("redis:cart:44", 1),
        ("redis:(MULTI/EXEC)", 1),
        ("redis:cart:45", 1),
    ]


def test_asyncio_client_key_commands(
    tmp_path: Path, redis_port: int, marks_of: Callable[[str], dict[str, int]]
) -> None:
    """redis.asyncio records the same once each command is awaited, at the awaiting line."""
    p = _run(tmp_path, ASYNC, redis_port)
    m = {k: f"prog.py:{v}" for k, v in marks_of(ASYNC).items()}
    key = "redis:user:7"
    assert story(p) == [
        ("lock.acquired", m["hset"], key, ""),
        ("data.access", m["hset"], key, "write HSET"),
        ("lock.release", m["hset"], key, ""),
        ("data.access", m["hget"], key, "read HGET"),
        ("lock.acquired", m["multi"], "redis:(MULTI/EXEC)", ""),
        ("data.access", m["multi"], key, "read HGET"),
        ("lock.acquired", m["multi"], key, ""),
        ("data.access", m["multi"], key, "write HSET"),
        ("lock.release", m["multi"], key, ""),
        ("lock.release", m["multi"], "redis:(MULTI/EXEC)", ""),
    ]
