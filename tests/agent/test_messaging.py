"""Message brokers: producers inject their span into the message and record msg.send,
consumers extract it and record msg.recv with the same destination and message id; the
brokers are real (redis-server, RabbitMQ, librdkafka's mock cluster) except SQS (botocore's
Stubber standing in for the service). The helpers here serve the other test_messaging_*
files too."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from typing import Any

import brokers
import pytest
from tracekit import Ev, ProcessTrace, read_run, run_program

from willowisp.wtrace.reader import read_file


def messages(p: ProcessTrace, name_prefix: str) -> list[dict[str, Any]]:
    """The message resources whose name starts with ``send ``/``recv ``, in definition order."""
    return [
        r
        for rid, r in sorted(p.resources.items())
        if r.get("kind") == "message" and str(r.get("name", "")).startswith(name_prefix)
    ]


def merged_resources(out: str) -> dict[int, dict[str, Any]]:
    """Resource records merged attribute by attribute, as readers must (docs/format.md): a
    broker-assigned message id arrives in a second record. (tracekit keeps the last one.)"""
    merged: dict[int, dict[str, Any]] = {}
    for path in sorted(glob.glob(os.path.join(out, "*.wtrace"))):
        for chunk in read_file(path).chunks:
            for rec in chunk.records:
                if rec.rtype == 3:
                    merged.setdefault(rec.id, {}).update(dict(rec.attrs))
    return merged


def kinds_on(p: ProcessTrace, name: str) -> list[str]:
    rids = {rid for rid, r in p.resources.items() if r.get("name") == name}
    return [e.kind for e in p.events if e.res in rids]


def folded(kinds: list[str]) -> list[str]:
    """Kinds without task steps, repeats folded: a task wait re-blocks after library events."""
    out: list[str] = []
    for k in kinds:
        if k != "unit.yield" and not (out and out[-1] == k):
            out.append(k)
    return out


def task_waited(p: ProcessTrace, wait: str, recv: Ev, sent: Ev | None = None) -> None:
    """The unit that received ``recv`` waited on resource ``wait`` for it: a ``unit.block``
    (reason message) before the receive (and before the message was sent, when ``sent`` is
    given), and every suspension of the task from that block to the receive spent on it."""
    rid = p.resource(wait)
    # The wait that the receive ended: the run of blocks on rid since that unit's last wake.
    mine = [
        e
        for e in p.events
        if e.unit == recv.unit and e.res == rid and e.time < recv.time and e.kind != "unit.yield"
    ]
    run_start = max((i for i, e in enumerate(mine) if e.kind != "unit.block"), default=-1) + 1
    first = mine[run_start]
    assert first.arg == 11  # Reason.MESSAGE
    if sent is not None:
        assert first.time < sent.time < recv.time
    yields = [
        e
        for e in p.events
        if e.unit == recv.unit and e.kind == "unit.yield" and first.time < e.time < recv.time
    ]
    assert all(e.res == rid for e in yields)
    if sent is not None:  # blocked before the message existed: it really waited
        assert yields


def run(
    tmp_path: Any, code: str, *args: str, env_extra: dict[str, str] | None = None
) -> ProcessTrace:
    out = str(tmp_path / "run")
    r = run_program(code, out, args=list(args), env_extra=env_extra)
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    assert not p.faults, p.faults
    p.resources = merged_resources(out)
    p.stdout = r.stdout  # type: ignore[attr-defined]
    return p


def test_redis_stream_links_by_traceparent_field(tmp_path, redis_port):
    """XADD injects traceparent as a field; XREAD extracts it; both carry the entry id."""
    p = run(
        tmp_path,
        """
        import sys, redis
        r = redis.Redis(port=int(sys.argv[1]))
        eid = r.xadd("orders", {"item": "42"})
        raw = r.execute_command("XADD", "orders", "*", "item", "43")  # raw: no context
        got = r.xread({"orders": "0-0"}, count=10, block=1000)
        fields = got[0][1][0][1]
        print(eid.decode(), raw.decode(), b"traceparent" in fields)
        """,
        str(redis_port),
    )
    eid, raw, injected = p.stdout.split()  # type: ignore[attr-defined]
    assert injected == "True"
    (send,) = messages(p, "send ")
    recv = messages(p, "recv ")
    assert [r["message_id"] for r in recv] == [eid, raw]
    assert send["message_id"] == eid and send["destination"] == "orders"
    assert all(r["destination"] == "orders" and r["protocol"] == "redis" for r in recv)
    assert recv[0]["parent_span_id"] == send["span_id"] and recv[0]["trace_id"] == send["trace_id"]
    assert recv[1]["parent_span_id"] == ""
    assert kinds_on(p, "wait orders") == ["unit.block"]


def test_redis_pubsub_records_send_and_receive_without_context(tmp_path, redis_port):
    """PUBLISH has no headers: send and receive are recorded on the channel with id ''."""
    p = run(
        tmp_path,
        """
        import sys, redis
        r = redis.Redis(port=int(sys.argv[1]))
        ps = r.pubsub()
        ps.subscribe("news")
        assert ps.get_message(timeout=5)["type"] == "subscribe"
        r.publish("news", b"hi")
        print(ps.get_message(timeout=5)["data"])
        """,
        str(redis_port),
    )
    (send,) = messages(p, "send ")
    (recv,) = messages(p, "recv ")
    assert send["destination"] == recv["destination"] == "news"
    assert send["message_id"] == recv["message_id"] == "" and send["span_id"] == ""
    assert recv["parent_span_id"] == ""
    assert kinds_on(p, "wait news") == ["unit.block", "unit.wake", "unit.block"]


@pytest.fixture(scope="module")
def rabbitmq_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    broker = brokers.start_rabbitmq(str(tmp_path_factory.mktemp("rabbitmq")))
    try:
        yield broker.port
    finally:
        brokers.stop(broker)


def publish_raw(port: int, queue: str, message_id: str) -> None:
    """Publish from this (unrecorded) process: a message that carries no context."""
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"raw", pika.BasicProperties(message_id=message_id))
    conn.close()


def test_pika_consumer_callback_links_to_publisher(tmp_path, rabbitmq_port):
    """basic_publish injects into headers; a basic_consume callback extracts, same ids."""
    publish_raw(rabbitmq_port, "jobs", "m-raw")
    p = run(
        tmp_path,
        """
        import sys, pika
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", int(sys.argv[1])))
        ch = conn.channel()
        ch.queue_declare("jobs")
        ch.basic_publish("", "jobs", b"work", pika.BasicProperties(message_id="m-1"))
        got = []
        def on_message(ch, method, props, body):
            got.append(props.message_id)
            ch.basic_ack(method.delivery_tag)
            if len(got) == 2:
                ch.stop_consuming()
        ch.basic_consume("jobs", on_message)
        ch.start_consuming()
        conn.close()
        print(*got)
        """,
        str(rabbitmq_port),
    )
    assert p.stdout.split() == ["m-raw", "m-1"]  # type: ignore[attr-defined]
    (send,) = messages(p, "send ")
    raw, recv = messages(p, "recv ")
    assert send["destination"] == recv["destination"] == raw["destination"] == "/jobs"
    assert send["message_id"] == recv["message_id"] == "m-1" and raw["message_id"] == "m-raw"
    assert recv["parent_span_id"] == send["span_id"] and recv["trace_id"] == send["trace_id"]
    assert raw["parent_span_id"] == ""
    assert kinds_on(p, "wait jobs") == ["unit.block", "unit.block", "unit.block", "unit.wake"]


def test_pika_basic_get_and_consume_generator(tmp_path, rabbitmq_port):
    """basic_get and the consume generator record one receive per message, with the wait."""
    publish_raw(rabbitmq_port, "tasks", "t-raw")
    p = run(
        tmp_path,
        """
        import sys, pika
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", int(sys.argv[1])))
        ch = conn.channel()
        ch.queue_declare("tasks")
        method, props, body = ch.basic_get("tasks", auto_ack=True)
        ch.basic_publish("", "tasks", b"work", pika.BasicProperties(message_id="t-1"))
        for method, props, body in ch.consume("tasks", auto_ack=True, inactivity_timeout=5):
            break
        ch.cancel()
        conn.close()
        """,
        str(rabbitmq_port),
    )
    (send,) = messages(p, "send ")
    raw, recv = messages(p, "recv ")
    assert (raw["message_id"], raw["parent_span_id"]) == ("t-raw", "")
    assert recv["message_id"] == send["message_id"] == "t-1"
    assert recv["parent_span_id"] == send["span_id"]
    assert kinds_on(p, "wait tasks") == ["unit.block"]


AIO_PIKA = """
    import asyncio, sys
    import aio_pika, pika
    URL = f"amqp://guest:guest@127.0.0.1:{sys.argv[1]}/"
    Message = aio_pika.Message

    async def main():
        conn = await aio_pika.connect(URL)
        async with conn:
            ch = await conn.channel()
            default = ch.default_exchange
            jobs = await ch.declare_queue("aio-jobs")
            waiting = asyncio.Event()

            async def consume():
                async with jobs.iterator() as it:
                    waiting.set()
                    async for msg in it:  # @iterate
                        await msg.ack()
                        return msg.message_id

            reader = asyncio.create_task(consume())
            await waiting.wait()
            await default.publish(Message(b"w", message_id="a-1"), "aio-jobs")  # @publish
            first = await reader

            orders = await ch.declare_exchange("orders", aio_pika.ExchangeType.DIRECT)
            placed = await ch.declare_queue("aio-orders")
            await placed.bind(orders, "new")
            mine = Message(b"w", message_id="a-2", headers={"k": "v"})
            await orders.publish(mine, routing_key="new")
            second = await placed.get(timeout=5)  # @get
            await second.ack()

            follow = await ch.declare_queue("aio-next")
            handled = asyncio.Event()

            async def on_message(msg):  # @callback
                async with msg.process():
                    await default.publish(Message(b"n", message_id="a-4"), "aio-next")
                handled.set()

            await (await ch.declare_queue("aio-cb")).consume(on_message)
            await default.publish(Message(b"w", message_id="a-3"), "aio-cb")
            await handled.wait()
            fourth = await follow.get(timeout=5)
            await fourth.ack()

            # A pika producer in the same program: the two libraries pair.
            blocking = pika.BlockingConnection(pika.URLParameters(URL))
            blocking.channel().basic_publish(
                "", "aio-mixed", b"p", pika.BasicProperties(message_id="p-1"))
            mixed = await (await ch.declare_queue("aio-mixed")).get(timeout=5)
            await mixed.ack()
            blocking.close()
            print(first, second.message_id, sorted(mine.headers), fourth.message_id,
                  mixed.message_id)

    asyncio.run(main())
"""


def test_aio_pika_publish_and_every_way_of_consuming_link(tmp_path, rabbitmq_port, marks_of):
    """aio-pika: Exchange.publish (default and named exchange) injects into a copy of the
    headers; the queue iterator (with its wait), Queue.get and consume callbacks (whose
    context is current for what they send) extract, as does an aio-pika consumer of a pika
    producer."""
    declare = pytest.importorskip("pika")
    conn = declare.BlockingConnection(declare.ConnectionParameters("127.0.0.1", rabbitmq_port))
    conn.channel().queue_declare("aio-mixed")  # pika publishes before aio-pika declares it
    conn.close()
    p = run(tmp_path, AIO_PIKA, str(rabbitmq_port))
    assert p.stdout.split() == ["a-1", "a-2", "['k']", "a-4", "p-1"]  # type: ignore[attr-defined]
    sends = {s["message_id"]: s for s in messages(p, "send ")}
    recvs = {r["message_id"]: r for r in messages(p, "recv ")}
    assert set(sends) == set(recvs) == {"a-1", "a-2", "a-3", "a-4", "p-1"}
    destinations = {"a-1": "/aio-jobs", "a-2": "orders/new", "a-3": "/aio-cb", "a-4": "/aio-next"}
    for mid, dest in (*destinations.items(), ("p-1", "/aio-mixed")):
        send, recv = sends[mid], recvs[mid]
        assert send["destination"] == recv["destination"] == dest
        assert recv["parent_span_id"] == send["span_id"] and recv["trace_id"] == send["trace_id"]
        assert recv["library"] == "aio-pika" and recv["protocol"] == "amqp"
    assert sends["p-1"]["library"] == "pika"
    # The callback's own publish continued the trace of the message it handled.
    assert sends["a-4"]["trace_id"] == recvs["a-3"]["trace_id"]
    marks = marks_of(AIO_PIKA)
    at = {p.resources[e.res]["message_id"]: p.where(e) for e in p.events if e.kind == "msg.recv"}
    assert at["a-1"] == f"prog.py:{marks['iterate']}"
    assert at["a-2"] == f"prog.py:{marks['get']}"
    assert at["a-3"] == f"prog.py:{marks['callback']}"
    sent = next(e for e in p.events if e.kind == "msg.send" and e.res in _ids(p, "a-1"))
    assert p.where(sent) == f"prog.py:{marks['publish']}"
    got = next(e for e in p.events if e.kind == "msg.recv" and e.res in _ids(p, "a-1"))
    task_waited(p, "wait aio-jobs", got, sent)
    assert folded(kinds_on(p, "wait aio-jobs")) == ["unit.block"]


def _ids(p: ProcessTrace, message_id: str) -> set[int]:
    return {rid for rid, r in p.resources.items() if r.get("message_id") == message_id}


def test_kafka_consumer_links_to_producer_on_mock_cluster(tmp_path):
    """produce injects into record headers; poll extracts; both use topic/partition/offset."""
    p = run(
        tmp_path,
        """
        import confluent_kafka
        from confluent_kafka import Consumer, Producer, TopicPartition
        quiet = {"log_level": 0}
        prod = Producer({"test.mock.num.brokers": 1, **quiet})
        broker = next(iter(prod.list_topics(timeout=10).brokers.values()))
        prod.produce("orders", b"v1", partition=0)
        assert prod.flush(10) == 0  # delivered (offset 0) before the raw one is sent
        # A producer the hook never saw (the C type itself): no context on the wire.
        servers = {"bootstrap.servers": f"{broker.host}:{broker.port}", **quiet}
        raw = confluent_kafka.cimpl.Producer(servers)
        ids = []
        def report(err, msg):
            ids.append(f"{msg.topic()}/{msg.partition()}/{msg.offset()}")
        raw.produce("orders", b"v2", partition=0, on_delivery=report)
        assert raw.flush(10) == 0
        cons = Consumer({**servers, "group.id": "g"})
        cons.assign([TopicPartition("orders", 0, 0)])
        got = []
        while len(got) < 2:
            msg = cons.poll(10)
            assert msg is not None and msg.error() is None
            got.append(msg)
        cons.close()
        print(ids[0], [k for k, v in got[0].headers()])
        """,
    )
    raw_id, headers = p.stdout.split(" ", 1)  # type: ignore[attr-defined]
    assert headers.strip() == "['traceparent']"
    (send,) = messages(p, "send ")
    recv, raw = messages(p, "recv ")
    assert send["destination"] == recv["destination"] == raw["destination"] == "orders"
    assert send["message_id"] == recv["message_id"] == "orders/0/0"
    assert raw["message_id"] == raw_id == "orders/0/1"
    assert recv["parent_span_id"] == send["span_id"] and recv["trace_id"] == send["trace_id"]
    assert raw["parent_span_id"] == ""
    assert kinds_on(p, "wait orders") == ["unit.block", "unit.block"]


SQS_PROGRAM = """
    import boto3
    from botocore.stub import Stubber
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
    sqs = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="k",
                       aws_secret_access_key="s")
    wire = []  # what the client serialised: the parameters after every hook
    sqs.meta.events.register("before-parameter-build.sqs.*",
                             lambda params, **kw: wire.append(params))
    stub = Stubber(sqs)
    stub.add_response("send_message", {"MessageId": "m-1"})
    stub.add_response("send_message", {"MessageId": "m-2"})
    stub.add_response("send_message_batch",
                      {"Successful": [{"Id": "e1", "MessageId": "m-3", "MD5OfMessageBody": "x"}],
                       "Failed": []})
    stub.activate()
    full = {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(10)}
    sqs.send_message(QueueUrl=url, MessageBody="one")
    sqs.send_message(QueueUrl=url, MessageBody="two", MessageAttributes=full)
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "e1", "MessageBody": "three"}])
    one, two, three = wire[0], wire[1], wire[2]["Entries"][0]
    assert len(two["MessageAttributes"]) == 10
    stub.add_response("receive_message", {"Messages": [
        {"MessageId": "m-1", "Body": "one", "MessageAttributes": one["MessageAttributes"]},
        {"MessageId": "m-2", "Body": "two", "Attributes": {
            "AWSTraceHeader": two["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"]}},
        {"MessageId": "m-3", "Body": "three", "MessageAttributes": three["MessageAttributes"]},
        {"MessageId": "m-raw", "Body": "sent by something unrecorded"},
    ]})
    stub.add_response("receive_message", {})
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert len(got["Messages"]) == 4
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages") is None
    print(sorted(wire[3]["MessageAttributeNames"]), wire[3]["MessageSystemAttributeNames"])
    stub.assert_no_pending_responses()
"""


def test_sqs_send_and_receive_link_through_attributes_with_stubber(tmp_path):
    """traceparent attribute (AWSTraceHeader when 10 are taken); one receive per message."""
    p = run(tmp_path, SQS_PROGRAM)
    assert p.stdout.strip() == "['traceparent'] ['AWSTraceHeader']"  # type: ignore[attr-defined]
    sends = messages(p, "send ")
    recvs = messages(p, "recv ")
    assert [s["message_id"] for s in sends] == ["m-1", "m-2", "m-3"]
    assert [r["message_id"] for r in recvs] == ["m-1", "m-2", "m-3", "m-raw"]
    assert {r["destination"] for r in sends + recvs} == {"orders"}
    for s, r in zip(sends, recvs, strict=False):
        assert r["parent_span_id"] == s["span_id"] and r["trace_id"] == s["trace_id"]
    assert recvs[3]["parent_span_id"] == ""
    assert kinds_on(p, "wait orders") == ["unit.block", "unit.block", "unit.wake"]


def test_a_message_boundary_records_its_consumer_at_full_fidelity(tmp_path, rabbitmq_port):
    """hops mode, boundary entry=amqp:/orders: the consumer's handling of each /orders
    message (a lock inside the callback) is recorded until it takes the next message, and
    the /audit messages it publishes carry the boundary (wisp tracestate member) to the
    /audit consumer; /other messages are not recorded."""
    p = run(
        tmp_path,
        """
        import sys, threading, pika
        lock = threading.Lock()
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", int(sys.argv[1])))
        ch = conn.channel()
        for q in ("orders", "other", "audit"):
            ch.queue_declare(q)
            ch.queue_purge(q)
        for i in range(2):
            ch.basic_publish("", "orders", b"o")
            ch.basic_publish("", "other", b"x")
        seen = {"orders": 0, "other": 0, "audit": 0}
        def on_message(ch, method, props, body):
            with lock:
                seen[method.routing_key] += 1
            if method.routing_key == "orders":
                ch.basic_publish("", "audit", b"a")
            ch.basic_ack(method.delivery_tag)
            if sum(seen.values()) == 6:
                ch.stop_consuming()
        for q in ("orders", "other", "audit"):
            ch.basic_consume(q, on_message)
        ch.start_consuming()
        conn.close()
        print(seen["orders"], seen["other"], seen["audit"])
        """,
        str(rabbitmq_port),
        env_extra={
            "WILLOWISP_MODE": "hops",
            "WILLOWISP_TRACE_RATIO": "0",
            "WILLOWISP_BOUNDARIES": "entry=amqp:/orders",
        },
    )
    assert p.stdout.split() == ["2", "2", "2"]  # type: ignore[attr-defined]
    recvs = messages(p, "recv ")
    assert sorted(str(r["destination"]) for r in recvs) == ["/audit"] * 2 + ["/orders"] * 2
    assert all(r.get("boundary") == "amqp:/orders" for r in recvs)
    sends = messages(p, "send ")
    assert [s["destination"] for s in sends] == ["/audit", "/audit"]
    lock_rid = p.resource("lock")
    assert len([e for e in p.events if e.res == lock_rid and e.kind == "lock.acquired"]) == 4
