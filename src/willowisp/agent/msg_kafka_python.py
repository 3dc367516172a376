"""Hooks for kafka-python (the ``kafka`` package): the records msg_kafka.py makes for
confluent-kafka, so producers and consumers of either client pair.

Send: ``KafkaProducer.send`` injects ``traceparent`` into a copy of the record headers (a
``traceparent`` already there is kept and recorded as is) and records the send on the topic.
The message id is ``topic/partition/offset``, added by a callback on the future ``send``
returns once the broker acknowledged it (on kafka-python's sender thread). A producer
configured for a broker older than 0.11 (message format < v2) writes records without
headers: nothing is injected and the send has no span id.

Receive: ``KafkaConsumer.poll`` records one receive per record with the same id; with a
``timeout_ms`` it writes ``unit.block`` on the subscribed or assigned topics first, and
``unit.wake`` (timeout) when it returns nothing. Iterating the consumer records each record
as it is handed to the program (a wait before each; the end of the iteration, its
``consumer_timeout_ms``, is a timeout wake); the ``poll`` the iterator makes inside is not
recorded again.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from willowisp.agent import messaging as m
from willowisp.agent import msg_kafka as kafka
from willowisp.agent import recorder as _r

LIBRARY = "kafka-python"
_SEND_ARGS = ("value", "key", "headers", "partition", "timestamp_ms")

_patches = m.Patches()
_lib_dir = ""  # kafka-python's package folder: frames skipped when locating an event
Fn = Callable[..., Any]


def _key() -> int:
    return m.program_key_or_0(_lib_dir, "kafka location")


def _id_setter(rec: _r.Recorder, rid: int) -> Fn:
    def on_sent(metadata: Any) -> None:
        if _r.RECORDER is rec:
            try:
                message_id = f"{metadata.topic}/{metadata.partition}/{metadata.offset}"
                m.set_message_id(rec, rid, message_id)
            except Exception as exc:
                rec.fault("kafka.KafkaProducer.send", exc)

    return on_sent


def _make_send(orig: Fn) -> Fn:
    def send(self: Any, topic: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        if rec is None:
            return orig(self, topic, *args, **kwargs)
        kwargs.update(zip(_SEND_ARGS, args, strict=False))
        rid = 0
        try:
            v2 = tuple(self.config.get("api_version") or (0, 11)) >= (0, 11)
            kwargs["headers"], rid = kafka.send_with_context(
                rec, kwargs.get("headers"), topic=topic, library=LIBRARY, key=_key(), inject=v2
            )
        except Exception as exc:
            rec.fault("kafka.KafkaProducer.send", exc)
        future = orig(self, topic, **kwargs)
        if rid:
            try:
                future.add_callback(_id_setter(rec, rid))
            except Exception as exc:
                rec.fault("kafka.KafkaProducer.send", exc)
        return future

    return send


def _topics(consumer: Any) -> str:
    topics = consumer.subscription() or {tp.topic for tp in consumer.assignment()}
    return kafka.destinations(topics)


def _block(rec: _r.Recorder, consumer: Any, key: int) -> int:
    try:
        return m.record_block(rec, key, kafka.PROTOCOL, LIBRARY, _topics(consumer))
    except Exception as exc:
        rec.fault("kafka.KafkaConsumer", exc)
        return 0


def _received(rec: _r.Recorder, key: int, record: Any) -> None:
    kafka.record_record(rec, key, LIBRARY, record)


def _make_poll(orig: Fn) -> Fn:
    def poll(self: Any, timeout_ms: Any = 0, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        internal = kwargs.get("update_offsets", args[1] if len(args) > 1 else True) is False
        if rec is None or internal:  # the iterator's own poll: records are counted as handed
            return orig(self, timeout_ms, *args, **kwargs)
        key = _key()
        wait = _block(rec, self, key) if timeout_ms else 0
        batches = orig(self, timeout_ms, *args, **kwargs)
        kafka.record_batches(rec, key, LIBRARY, wait, batches, "kafka.KafkaConsumer.poll")
        return batches

    return poll


def _make_next(orig: Fn) -> Fn:
    def __next__(self: Any) -> Any:
        rec = _r.RECORDER
        if rec is None:
            return orig(self)
        key = _key()
        wait = _block(rec, self, key)
        try:
            record = orig(self)
        except StopIteration:
            if wait:
                m.record_wake(rec, wait, m.WAKE_TIMEOUT, key)
            raise
        try:
            _received(rec, key, record)
        except Exception as exc:
            rec.fault("kafka.KafkaConsumer.__next__", exc)
        return record

    return __next__


def _patch() -> None:
    global _lib_dir
    producer = importlib.import_module("kafka.producer.kafka").KafkaProducer
    consumer = importlib.import_module("kafka.consumer.group").KafkaConsumer
    _lib_dir = m.package_dir(sys.modules["kafka"])
    for cls, attr, make in (
        (producer, "send", _make_send),
        (consumer, "poll", _make_poll),
        (consumer, "__next__", _make_next),
    ):
        _patches.set(cls, attr, make(getattr(cls, attr)))


_hook = m.DeferredHook("kafka", _patch, _patches, "install kafka-python")
install = _hook.install  # hooks kafka-python now if imported, else when the program imports it
uninstall = _hook.uninstall
