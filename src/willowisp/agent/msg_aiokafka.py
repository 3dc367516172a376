"""Hooks for aiokafka: the records msg_kafka.py makes for confluent-kafka, made in the task
that sends or consumes, so producers and consumers of every Kafka client pair.

Send: ``AIOKafkaProducer.send`` (and so ``send_and_wait``, which awaits it) injects
``traceparent`` into a copy of the record headers (one already there is kept and recorded
as is) and records the send on the topic; the message id ``topic/partition/offset`` is
added from the delivery future's done callback once the broker acknowledged the batch.
A client pinned to a broker older than 0.11 gets nothing injected (no record headers).

Receive: ``getone`` (and so ``async for``, which calls it) and ``getmany`` record one
receive per record with the same id. Their wait is a ``unit.block`` on the subscribed or
assigned topics, written for every call that may wait (``getone`` always; ``getmany`` with
a ``timeout_ms``), kept open across aiokafka's own events by task_waits.drive, and ended by
the receive, ``unit.wake`` timeout (``getmany`` returned nothing), cancelled or error.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from willowisp.agent import messaging as m
from willowisp.agent import msg_kafka as kafka
from willowisp.agent import recorder as _r
from willowisp.agent import task_waits
from willowisp.model.spec import Outcome, Reason

LIBRARY = "aiokafka"
_SEND_ARGS = ("value", "key", "partition", "timestamp_ms", "headers")

_patches = m.Patches()
_lib_dir = ""  # aiokafka's package folder: frames skipped when locating an event
Fn = Callable[..., Any]


def _key() -> int:
    return m.program_key_or_0(_lib_dir, "aiokafka location")


def _headers_allowed(producer: Any) -> bool:
    """Record headers need message format v2 (brokers 0.11+; all that aiokafka 0.13+ speaks)."""
    version = getattr(getattr(producer, "client", None), "api_version", None)
    return not isinstance(version, tuple) or version >= (0, 11)


def _id_setter(rec: _r.Recorder, rid: int) -> Fn:
    def done(fut: Any) -> None:
        if _r.RECORDER is not rec or fut.cancelled() or fut.exception() is not None:
            return
        try:
            md = fut.result()
            m.set_message_id(rec, rid, f"{md.topic}/{md.partition}/{md.offset}")
        except Exception as exc:
            rec.fault("aiokafka.AIOKafkaProducer.send", exc)

    return done


def _make_send(orig: Fn) -> Fn:
    async def send(self: Any, topic: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        if rec is None:
            return await orig(self, topic, *args, **kwargs)
        kwargs.update(zip(_SEND_ARGS, args, strict=False))
        rid = 0
        try:
            kwargs["headers"], rid = kafka.send_with_context(
                rec,
                kwargs.get("headers"),
                topic=topic,
                library=LIBRARY,
                key=_key(),
                inject=_headers_allowed(self),
            )
        except Exception as exc:
            rec.fault("aiokafka.AIOKafkaProducer.send", exc)
        future = await orig(self, topic, **kwargs)
        if rid:
            try:
                future.add_done_callback(_id_setter(rec, rid))
            except Exception as exc:
                rec.fault("aiokafka.AIOKafkaProducer.send", exc)
        return future

    return send


def _begin_wait(rec: _r.Recorder, consumer: Any, may_wait: bool) -> tuple[int, int]:
    """(location key, wait resource or 0)."""
    key = _key()
    if not may_wait:
        return key, 0
    try:
        topics = consumer.subscription() or {tp.topic for tp in consumer.assignment()}
        dest = kafka.destinations(topics)
        return key, m.record_block(rec, key, kafka.PROTOCOL, LIBRARY, dest)
    except Exception as exc:
        rec.fault("aiokafka.AIOKafkaConsumer", exc)
        return key, 0


async def _awaited(rec: _r.Recorder, call: Any, key: int, wait: int) -> Any:
    """Await a consumer call, the wait kept open across aiokafka's own events."""
    if not wait:
        return await call
    try:
        return await task_waits.drive(call, wait, int(Reason.MESSAGE), key, blocked=True)
    except BaseException as exc:
        cancelled = isinstance(exc, sys.modules["asyncio"].CancelledError)
        m.record_wake(rec, wait, int(Outcome.CANCELLED if cancelled else Outcome.ERROR), key)
        raise


def _received(rec: _r.Recorder, key: int, record: Any) -> None:
    kafka.record_record(rec, key, LIBRARY, record)


def _make_getone(orig: Fn) -> Fn:
    async def getone(self: Any, *partitions: Any) -> Any:
        rec = _r.RECORDER
        if rec is None:
            return await orig(self, *partitions)
        key, wait = _begin_wait(rec, self, True)
        record = await _awaited(rec, orig(self, *partitions), key, wait)
        try:
            _received(rec, key, record)
        except Exception as exc:
            rec.fault("aiokafka.AIOKafkaConsumer.getone", exc)
        return record

    return getone


def _make_getmany(orig: Fn) -> Fn:
    async def getmany(self: Any, *partitions: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        if rec is None:
            return await orig(self, *partitions, **kwargs)
        key, wait = _begin_wait(rec, self, bool(kwargs.get("timeout_ms", 0)))
        batches = await _awaited(rec, orig(self, *partitions, **kwargs), key, wait)
        kafka.record_batches(rec, key, LIBRARY, wait, batches, "aiokafka.AIOKafkaConsumer.getmany")
        return batches

    return getmany


def _patch() -> None:
    global _lib_dir
    aiokafka = importlib.import_module("aiokafka")
    _lib_dir = m.package_dir(aiokafka)
    producer, consumer = aiokafka.AIOKafkaProducer, aiokafka.AIOKafkaConsumer
    for cls, attr, make in (
        (producer, "send", _make_send),
        (consumer, "getone", _make_getone),
        (consumer, "getmany", _make_getmany),
    ):
        _patches.set(cls, attr, make(getattr(cls, attr)))


_hook = m.DeferredHook("aiokafka", _patch, _patches, "install aiokafka")
install = _hook.install  # hooks aiokafka now if imported, else when the program imports it
uninstall = _hook.uninstall
