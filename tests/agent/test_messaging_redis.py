"""redis-py beyond the sync client's single commands: ``redis.asyncio``, pipelines (sync and
async) and Redis Cluster record one hop per stream entry or pub/sub message, with the
context injected where the sync client injects it; against a real redis-server and a real
3-node cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import brokers
import pytest
from test_messaging import folded, kinds_on, messages, run, task_waited

pytest.importorskip("redis")
if not brokers.importable("redis"):
    pytest.skip(
        "redis-py is not installed for the recorded programs' Python", allow_module_level=True
    )


def _linked(send: dict[str, Any], recv: dict[str, Any]) -> bool:
    return recv["parent_span_id"] == send["span_id"] and recv["trace_id"] == send["trace_id"]


ASYNC_STREAMS = """
    import asyncio, sys
    import redis.asyncio as redis

    async def main():
        r = redis.Redis(port=int(sys.argv[1]))
        await r.delete("orders")
        await r.xgroup_create("orders", "billing", id="0", mkstream=True)
        got = asyncio.get_running_loop().create_future()

        async def consume():
            reply = await r.xreadgroup("billing", "c1", {"orders": ">"}, block=10000)  # @read
            got.set_result(reply)

        reader = asyncio.create_task(consume())
        while (await r.info("clients"))["blocked_clients"] < 1:  # until the reader waits
            await asyncio.sleep(0.01)
        eid = await r.xadd("orders", {"item": "42"})  # @xadd
        reply = await got
        await reader
        again = await r.xread({"orders": "0-0"}, count=10)  # @xread
        none = await r.xread({"orders": "$"}, count=1, block=50)  # @timeout
        await r.aclose()
        fields = reply[0][1][0][1]
        print(eid.decode(), b"traceparent" in fields, len(again[0][1]), none)

    asyncio.run(main())
"""


def test_asyncio_streams_link_and_record_the_task_wait(tmp_path, redis_port, marks_of):
    """redis.asyncio: XADD injects and records the entry id once awaited; XREADGROUP and
    XREAD record one receive per entry with that id; a blocking read is the task's wait,
    ended by the receive, or by a timeout wake when nothing came."""
    p = run(tmp_path, ASYNC_STREAMS, str(redis_port))
    eid, injected, count, none = p.stdout.split()  # type: ignore[attr-defined]
    assert (injected, count, none) == ("True", "1", "[]")
    (send,) = messages(p, "send ")
    group, plain = messages(p, "recv ")
    assert send["message_id"] == group["message_id"] == plain["message_id"] == eid
    assert send["destination"] == group["destination"] == "orders"
    assert send["library"] == "redis-py" and _linked(send, group) and _linked(send, plain)
    marks = marks_of(ASYNC_STREAMS)
    by_line = {p.where(e): e.kind for e in p.events if e.kind in ("msg.send", "msg.recv")}
    assert by_line == {
        f"prog.py:{marks['xadd']}": "msg.send",
        f"prog.py:{marks['read']}": "msg.recv",
        f"prog.py:{marks['xread']}": "msg.recv",
    }
    sent = next(e for e in p.events if e.kind == "msg.send")
    read = next(e for e in p.events if e.kind == "msg.recv")
    task_waited(p, "wait orders", read, sent)
    wake = next(e for e in p.events if e.kind == "unit.wake" and e.res == p.resource("wait orders"))
    assert wake.arg == 1 and p.where(wake) == f"prog.py:{marks['timeout']}"  # timed out
    assert wake.unit == sent.unit != read.unit


def test_asyncio_pubsub_get_message_and_listen(tmp_path, redis_port):
    """redis.asyncio pub/sub: PUBLISH and each message received through get_message or
    listen are recorded on the channel; get_message with a timeout is a wait."""
    p = run(
        tmp_path,
        """
        import asyncio, sys
        import redis.asyncio as redis

        async def main():
            r = redis.Redis(port=int(sys.argv[1]))
            ps = r.pubsub()
            await ps.subscribe("news")
            assert (await ps.get_message(timeout=5))["type"] == "subscribe"
            await r.publish("news", b"one")
            first = await ps.get_message(timeout=5)
            await r.publish("news", b"two")
            async for msg in ps.listen():
                if msg["type"] == "message":
                    break
            await ps.aclose()
            await r.aclose()
            print(first["data"].decode(), msg["data"].decode())

        asyncio.run(main())
        """,
        str(redis_port),
    )
    assert p.stdout.split() == ["one", "two"]  # type: ignore[attr-defined]
    sends, recvs = messages(p, "send "), messages(p, "recv ")
    assert [s["destination"] for s in sends] == ["news", "news"]
    assert [r["destination"] for r in recvs] == ["news", "news"]
    assert all(r["parent_span_id"] == "" and r["message_id"] == "" for r in recvs)
    assert folded(kinds_on(p, "wait news")) == ["unit.block", "unit.wake", "unit.block"]
    task_waited(p, "wait news", next(e for e in p.events if e.kind == "msg.recv"))


SYNC_PIPELINE = """
    import sys, redis
    r = redis.Redis(port=int(sys.argv[1]))
    r.delete("p")
    with r.pipeline() as pipe:
        pipe.xadd("p", {"n": "dropped"})
        pipe.reset()  # what was queued is never sent
        pipe.xadd("p", {"n": "1"}).publish("chan", b"x").xadd("p", {"n": "2"})  # @queue
        ids = pipe.execute()
    pipe = r.pipeline(transaction=False)
    pipe.set("k", "v").xread({"p": "0-0"}, count=10)
    entries = pipe.execute()[1][0][1]  # @execute
    print(ids[0].decode(), ids[2].decode(), all(b"traceparent" in f for _, f in entries))
"""


def test_sync_pipeline_records_a_hop_per_queued_command(tmp_path, redis_port, marks_of):
    """Commands queued in a pipeline: XADD injects when queued and gets its entry id from
    execute's results, by position (a reset drops what was queued before it); a queued
    XREAD records its receives when execute returns them."""
    p = run(tmp_path, SYNC_PIPELINE, str(redis_port))
    id1, id2, injected = p.stdout.split()  # type: ignore[attr-defined]
    assert injected == "True"
    dropped, one, chan, two = messages(p, "send ")
    assert dropped["message_id"] == "" and chan["destination"] == "chan"
    assert (one["message_id"], two["message_id"]) == (id1, id2)
    recvs = messages(p, "recv ")
    assert [r["message_id"] for r in recvs] == [id1, id2]
    assert _linked(one, recvs[0]) and _linked(two, recvs[1])
    marks = marks_of(SYNC_PIPELINE)
    sends = [e for e in p.events if e.kind == "msg.send"]
    assert {p.where(e) for e in sends[1:]} == {f"prog.py:{marks['queue']}"}
    recv_lines = {p.where(e) for e in p.events if e.kind == "msg.recv"}
    assert recv_lines == {f"prog.py:{marks['execute']}"}
    assert not [r for r in p.resources.values() if str(r.get("name", "")).startswith("wait ")]


def test_asyncio_pipeline_records_a_hop_per_queued_command(tmp_path, redis_port):
    """The asyncio pipeline: the same hops as the sync one, from awaited execute()."""
    p = run(
        tmp_path,
        """
        import asyncio, sys
        import redis.asyncio as redis

        async def main():
            r = redis.Redis(port=int(sys.argv[1]))
            await r.delete("ap")
            async with r.pipeline(transaction=True) as pipe:
                pipe.xadd("ap", {"n": "1"}).xadd("ap", {"n": "2"})
                ids = await pipe.execute()
            async with r.pipeline(transaction=False) as pipe:
                pipe.xread({"ap": "0-0"}, count=10)
                (reply,) = await pipe.execute()
            await r.aclose()
            print(*(i.decode() for i in ids), len(reply[0][1]))

        asyncio.run(main())
        """,
        str(redis_port),
    )
    id1, id2, count = p.stdout.split()  # type: ignore[attr-defined]
    assert count == "2"
    sends, recvs = messages(p, "send "), messages(p, "recv ")
    assert [s["message_id"] for s in sends] == [id1, id2]
    assert [r["message_id"] for r in recvs] == [id1, id2]
    assert all(_linked(s, r) for s, r in zip(sends, recvs, strict=True))


@pytest.fixture(scope="module")
def cluster_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    nodes = brokers.start_redis_cluster(str(tmp_path_factory.mktemp("redis-cluster")))
    try:
        yield nodes[0].port
    finally:
        for node in nodes:
            brokers.stop(node)


def test_cluster_clients_and_pipeline_link_across_nodes(tmp_path, cluster_port):
    """RedisCluster (sync and asyncio) and ClusterPipeline on a real 3-node cluster: streams
    on different nodes, each entry one linked hop with its entry id."""
    p = run(
        tmp_path,
        """
        import asyncio, sys
        from redis.cluster import RedisCluster
        from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
        port = int(sys.argv[1])
        rc = RedisCluster(host="127.0.0.1", port=port)
        streams = ["s-a", "s-b", "s-c", "s-d"]
        nodes = {rc.get_node_from_key(s).port for s in streams}
        ids = [rc.xadd("s-a", {"n": "1"}).decode()]
        pipe = rc.pipeline()
        pipe.xadd("s-b", {"n": "2"}).xadd("s-c", {"n": "3"})
        ids += [i.decode() for i in pipe.execute()]
        for s in ("s-a", "s-b", "s-c"):
            rc.xread({s: "0-0"}, count=10)
        rc.close()

        async def main():
            arc = AsyncRedisCluster(host="127.0.0.1", port=port)
            ids.append((await arc.xadd("s-d", {"n": "4"})).decode())
            await arc.xread({"s-d": "0-0"}, count=10, block=1000)
            await arc.aclose()

        asyncio.run(main())
        print(len(nodes), *ids)
        """,
        str(cluster_port),
    )
    spread, *ids = p.stdout.split()  # type: ignore[attr-defined]
    assert int(spread) > 1  # the streams really live on different nodes
    sends, recvs = messages(p, "send "), messages(p, "recv ")
    assert [s["message_id"] for s in sends] == ids
    assert [r["message_id"] for r in recvs] == ids
    assert [r["destination"] for r in recvs] == ["s-a", "s-b", "s-c", "s-d"]
    assert all(_linked(s, r) for s, r in zip(sends, recvs, strict=True))
    task_waited(p, "wait s-d", [e for e in p.events if e.kind == "msg.recv"][-1])


def test_a_hook_fault_never_breaks_a_redis_command(tmp_path, redis_port):
    """With the context injection broken inside the agent, XADD still works (no context
    injected) and the hook records an agent.fault instead."""
    from tracekit import read_run, run_program

    out = str(tmp_path / "run")
    r = run_program(
        """
        import asyncio, sys
        import redis.asyncio as redis
        from willowisp.agent import messaging
        def broken():
            raise RuntimeError("no context today")
        messaging.outgoing = broken

        async def main():
            r = redis.Redis(port=int(sys.argv[1]))
            eid = await r.xadd("faulty", {"n": "1"})
            reply = await r.xread({"faulty": "0-0"}, count=1)
            await r.aclose()
            print(eid.decode() == reply[0][1][0][0].decode(), b"traceparent" in reply[0][1][0][1])

        asyncio.run(main())
        """,
        out,
        args=[str(redis_port)],
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"]
    p = read_run(out)["prog"]
    faults = [f for f in p.faults.values() if f.get("where") == "redis.xadd"]
    assert faults and "no context today" in str(faults[0]["message"])
