"""kafka-python and aiokafka: producers inject the context into the record headers and record
the send with its ``topic/partition/offset`` once acknowledged; consumers record one receive
per record with the same id, and their waits. The broker is real Kafka protocol over TCP:
librdkafka's mock cluster (brokers.KafkaMock), which these clients reach like any broker."""

from __future__ import annotations

from collections.abc import Iterator

import brokers
import pytest
from test_messaging import folded, kinds_on, messages, run, task_waited
from tracekit import ProcessTrace

pytest.importorskip("confluent_kafka")  # the mock cluster
pytest.importorskip("kafka")
pytest.importorskip("aiokafka")
if not brokers.importable("kafka", "aiokafka"):
    pytest.skip(
        "kafka-python and aiokafka are not installed for the recorded programs' Python",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def kafka() -> Iterator[str]:
    mock = brokers.KafkaMock()
    try:
        yield mock.bootstrap
    finally:
        mock.stop()


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

KAFKA_PYTHON = f"""
    import sys
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    BOOT = sys.argv[1]
    # librdkafka's mock answers ApiVersions in a form kafka-python 3 cannot read: pin it.
    V = (2, 1)
    prod = KafkaProducer(bootstrap_servers=BOOT, api_version=V)
    prod.send("kp-orders", b"v1", partition=0).get(timeout=10)  # @send
    mine = [("traceparent", b"{TRACEPARENT}")]
    prod.send("kp-orders", value=b"v2", partition=0, headers=mine)
    prod.flush(10)
    prod.close()
    old = KafkaProducer(bootstrap_servers=BOOT, api_version=(0, 10, 2))  # records without headers
    old.send("kp-old", b"v3", partition=0).get(timeout=10)
    old.close()
    cons = KafkaConsumer(bootstrap_servers=BOOT, api_version=V, enable_auto_commit=False,
                         consumer_timeout_ms=5000)
    tp, tp_old = TopicPartition("kp-orders", 0), TopicPartition("kp-old", 0)
    cons.assign([tp, tp_old])
    cons.seek(tp, 0)
    cons.seek(tp_old, 0)
    got = []
    while len(got) < 3:
        for records in cons.poll(timeout_ms=10000).values():  # @poll
            got += records
    cons.seek(tp, 0)
    for record in cons:  # @iterate
        if record.offset == 1:
            break
    empty = cons.poll(timeout_ms=50)  # @empty
    cons.close()
    print(sorted(r.headers[0][0] if r.headers else "-" for r in got), mine, empty)
"""


def test_kafka_python_send_poll_and_iteration_link(tmp_path, kafka, marks_of):
    """KafkaProducer.send injects into a copy of the headers (keeping a program's own
    traceparent; none with the pre-0.11 record format) and gets topic/partition/offset once
    acknowledged; poll and iteration record each record with that id, and their waits."""
    p = run(tmp_path, KAFKA_PYTHON, kafka)
    names, _, mine, empty = p.stdout.rsplit(" ", 3)  # type: ignore[attr-defined]
    assert names == "['-', 'traceparent', 'traceparent']"
    assert "00f067aa0ba902b7" in mine and empty.strip() == "{}"  # nothing added to the given
    s1, s2, s_old = messages(p, "send ")
    assert (s1["message_id"], s2["message_id"]) == ("kp-orders/0/0", "kp-orders/0/1")
    assert s_old["message_id"] == "kp-old/0/0" and s_old["span_id"] == ""
    assert s2["span_id"] == "00f067aa0ba902b7"  # kept, recorded as is
    assert {s["library"] for s in (s1, s2, s_old)} == {"kafka-python"}
    recvs = messages(p, "recv ")
    assert [r["message_id"] for r in recvs] == [
        "kp-orders/0/0",
        "kp-old/0/0",
        "kp-orders/0/1",  # polled
        "kp-orders/0/0",
        "kp-orders/0/1",  # iterated
    ]
    by_id = {s["message_id"]: s for s in (s1, s2)}
    for r in recvs:
        if r["destination"] == "kp-orders":
            send = by_id[r["message_id"]]
            assert r["parent_span_id"] == send["span_id"] and r["trace_id"] == send["trace_id"]
    assert recvs[1]["parent_span_id"] == ""
    marks = marks_of(KAFKA_PYTHON)
    where = {p.where(e) for e in p.events if e.kind == "msg.recv"}
    assert where == {f"prog.py:{marks['poll']}", f"prog.py:{marks['iterate']}"}
    send = next(e for e in p.events if e.kind == "msg.send")
    assert p.where(send) == f"prog.py:{marks['send']}"
    waits = [e for e in p.events if e.res == p.resource("wait kp-old,kp-orders")]
    assert waits[-1].kind == "unit.wake" and waits[-1].arg == 1  # the empty poll timed out
    assert p.where(waits[-1]) == f"prog.py:{marks['empty']}"
    assert folded(kinds_on(p, "wait kp-old,kp-orders")) == ["unit.block", "unit.wake"]


AIOKAFKA = """
    import asyncio, sys
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    BOOT = sys.argv[1]

    async def main():
        prod = AIOKafkaProducer(bootstrap_servers=BOOT)
        await prod.start()
        await prod.send_and_wait("ak-orders", b"v1", partition=0)  # @send_and_wait
        delivery = await prod.send("ak-orders", b"v2", partition=0, headers=[("k", b"v")])
        await delivery
        cons = AIOKafkaConsumer(bootstrap_servers=BOOT, enable_auto_commit=False)
        await cons.start()
        tp = TopicPartition("ak-orders", 0)
        cons.assign([tp])
        cons.seek(tp, 0)
        one = await cons.getone()  # @getone
        many = await cons.getmany(timeout_ms=5000)  # @getmany

        async def consume():
            async for record in cons:  # @iterate
                return record

        later = asyncio.create_task(consume())
        await prod.send_and_wait("ak-orders", b"v3", partition=0)
        third = await later
        none = await cons.getmany(timeout_ms=50)  # @empty
        await cons.stop()
        await prod.stop()
        print(one.headers, [r.headers for r in many[tp]], third.offset, none)

    asyncio.run(main())
"""


def test_aiokafka_send_getone_getmany_and_iteration_link(tmp_path, kafka, marks_of):
    """AIOKafkaProducer.send / send_and_wait inject and get their ids from the delivery
    future; getone, getmany and async iteration record each record, with their waits."""
    p = run(tmp_path, AIOKAFKA, kafka)
    out = p.stdout  # type: ignore[attr-defined]
    assert (
        out.count("traceparent") == 2 and "('k', b'v')" in out and out.split()[-2:] == ["2", "{}"]
    )
    sends, recvs = messages(p, "send "), messages(p, "recv ")
    ids = ["ak-orders/0/0", "ak-orders/0/1", "ak-orders/0/2"]
    assert [s["message_id"] for s in sends] == [r["message_id"] for r in recvs] == ids
    for s, r in zip(sends, recvs, strict=True):
        assert r["parent_span_id"] == s["span_id"] and r["trace_id"] == s["trace_id"]
        assert s["library"] == r["library"] == "aiokafka" and r["destination"] == "ak-orders"
    marks = marks_of(AIOKAFKA)
    lines = [p.where(e) for e in p.events if e.kind in ("msg.send", "msg.recv")]
    assert lines[0] == f"prog.py:{marks['send_and_wait']}"
    assert f"prog.py:{marks['getone']}" in lines and f"prog.py:{marks['getmany']}" in lines
    assert f"prog.py:{marks['iterate']}" in lines
    third = next(e for e in p.events if e.res == _rid(p, "recv", ids[2]))
    sent = next(e for e in p.events if e.res == _rid(p, "send", ids[2]))
    task_waited(p, "wait ak-orders", third)
    assert sent.time < third.time
    wake = [e for e in p.events if e.kind == "unit.wake" and e.res == p.resource("wait ak-orders")]
    assert [(w.arg, p.where(w)) for w in wake] == [(1, f"prog.py:{marks['empty']}")]


def _rid(p: ProcessTrace, side: str, message_id: str) -> int:
    """The ``send`` or ``recv`` resource of the message with ``message_id``."""
    return next(
        rid
        for rid, r in p.resources.items()
        if r.get("message_id") == message_id and str(r.get("name")).startswith(f"{side} ")
    )


def test_a_hook_fault_never_breaks_a_kafka_client(tmp_path, kafka):
    """With the context injection broken inside the agent, both clients still send and
    consume, and each hook records an agent.fault instead."""
    from tracekit import read_run, run_program

    out = str(tmp_path / "run")
    r = run_program(
        """
        import asyncio, sys
        from kafka import KafkaProducer
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
        from willowisp.agent import messaging
        def broken():
            raise RuntimeError("no context today")
        messaging.outgoing = broken
        BOOT = sys.argv[1]
        sync = KafkaProducer(bootstrap_servers=BOOT, api_version=(2, 1))
        print(sync.send("faulty", b"v1", partition=0).get(timeout=10).offset)
        sync.close()

        async def main():
            prod = AIOKafkaProducer(bootstrap_servers=BOOT)
            await prod.start()
            print((await prod.send_and_wait("faulty", b"v2", partition=0)).offset)
            await prod.stop()
            cons = AIOKafkaConsumer(bootstrap_servers=BOOT, enable_auto_commit=False)
            await cons.start()
            cons.assign([TopicPartition("faulty", 0)])
            cons.seek(TopicPartition("faulty", 0), 0)
            print((await cons.getone()).value, (await cons.getone()).value)
            await cons.stop()

        asyncio.run(main())
        """,
        out,
        args=[kafka],
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "1", "b'v1'", "b'v2'"]
    p = read_run(out)["prog"]
    wheres = sorted(str(f["where"]) for f in p.faults.values())
    assert wheres == ["aiokafka.AIOKafkaProducer.send", "kafka.KafkaProducer.send"]
    assert all("no context today" in str(f["message"]) for f in p.faults.values())
