"""Hooks for confluent-kafka (librdkafka).

Its ``Producer`` and ``Consumer`` are C types, whose methods cannot be replaced, so the
hook replaces the two names in ``confluent_kafka`` with Python subclasses right after the
program imports the package (``from confluent_kafka import Producer`` then gets the
subclass). What the program built before, ``confluent_kafka.cimpl.Producer`` used directly
and ``SerializingProducer`` / ``DeserializingConsumer`` are not hooked.

Send: ``produce`` injects ``traceparent`` into the record headers (a copy of the caller's
list or dict; a ``traceparent`` already there is kept) and records the send on the topic.
The message id is ``topic/partition/offset``, known once the delivery report arrives (in
``poll`` / ``flush``): the hook wraps the per-message ``on_delivery`` (or the one from the
configuration, which a per-message callback would otherwise replace) to add it. With
``delivery.report.only.error`` the id stays ''.

Receive: ``poll`` and ``consume`` record one receive per message (errors and partition-EOF
events are not messages), extracting from the headers, with the same
``topic/partition/offset`` id: the consumer sees it whether or not the producer was
recorded. A ``poll`` / ``consume`` that may wait writes ``unit.block`` on the subscribed or
assigned topics first, and ``unit.wake`` (timeout) when it returns nothing.
"""

from __future__ import annotations

from typing import Any

from willowisp.agent import boundaries
from willowisp.agent import messaging as m
from willowisp.agent import recorder as _r
from willowisp.wire.carriers import KafkaHeaders
from willowisp.wire.tracecontext import TRACECONTEXT

PROTOCOL, LIBRARY = "kafka", "confluent-kafka"
_PRODUCE_ARGS = ("value", "key", "partition", "on_delivery", "timestamp", "headers")

_patches = m.Patches()
_lib_dir = ""  # confluent_kafka's package folder: frames skipped when locating an event


def _message_id(msg: Any) -> str:
    return f"{msg.topic()}/{msg.partition()}/{msg.offset()}"


def _with_id(rec: _r.Recorder, rid: int, report: Any) -> Any:
    """A delivery report callback that adds the message id to send ``rid``, then calls
    the program's ``report`` (if any)."""

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None and _r.RECORDER is rec:
            try:
                m.set_message_id(rec, rid, _message_id(msg))
            except Exception as exc:
                rec.fault("confluent_kafka.on_delivery", exc)
        if report is not None:
            report(err, msg)

    return on_delivery


def send_with_context(
    rec: _r.Recorder, headers: Any, *, topic: Any, library: str, key: int, inject: bool = True
) -> tuple[list[Any], int]:
    """A copy of record ``headers`` (a list or dict of pairs, or None) carrying the context,
    and the send recorded on ``topic`` (its resource, 0 if not recorded). ``inject`` False:
    the record cannot carry headers (message format < v2), so nothing is added and the send
    is recorded without a span id. Shared by the Kafka clients' hooks."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    carrier = KafkaHeaders(pairs)
    found = TRACECONTEXT.extract(carrier)
    ctx = found.context if found is not None else (m.outgoing() if inject else None)
    if found is None and ctx is not None:
        TRACECONTEXT.inject(boundaries.w3c(ctx), carrier)
    rid = m.record_send(
        rec,
        key,
        protocol=PROTOCOL,
        library=library,
        destination=m.text(topic),
        message_id="",
        ctx=ctx,
    )
    return pairs, rid


def record_received(
    rec: _r.Recorder, key: int, library: str, topic: Any, partition: Any, offset: Any, headers: Any
) -> None:
    """Record one consumed record; its id is ``topic/partition/offset``, as the producer's."""
    m.record_recv(
        rec,
        key,
        protocol=PROTOCOL,
        library=library,
        destination=m.text(topic),
        message_id=f"{m.text(topic)}/{partition}/{offset}",
        carriers=[KafkaHeaders(list(headers or ()))],
    )


def record_record(rec: _r.Recorder, key: int, library: str, record: Any) -> None:
    """``record_received`` for a kafka-python / aiokafka ``ConsumerRecord``."""
    record_received(
        rec, key, library, record.topic, record.partition, record.offset, record.headers
    )


def record_batches(
    rec: _r.Recorder, key: int, library: str, wait: int, batches: Any, where: str
) -> None:
    """The records of a kafka-python ``poll`` / aiokafka ``getmany`` result (partition ->
    records), each a receive; a wait that got nothing ends as a timeout. Never raises."""
    try:
        got = 0
        for records in (batches or {}).values():
            for record in records:
                got += 1
                record_record(rec, key, library, record)
        if wait and not got:
            m.record_wake(rec, wait, m.WAKE_TIMEOUT, key)
    except Exception as exc:
        rec.fault(where, exc)


def _produce_hook(producer: Any, topic: Any, kwargs: dict[str, Any]) -> None:
    """Inject into ``kwargs['headers']`` and record the send (changes ``kwargs``)."""
    rec = _r.RECORDER
    if rec is None:
        return
    try:
        pairs, rid = send_with_context(
            rec, kwargs.get("headers"), topic=topic, library=LIBRARY, key=m.program_key(_lib_dir)
        )
        kwargs["headers"] = pairs
        report = kwargs.pop("callback", None) or kwargs.get("on_delivery")
        if rid:
            kwargs["on_delivery"] = _with_id(
                rec, rid, report or getattr(producer, "_wisp_report", None)
            )
    except Exception as exc:
        rec.fault("confluent_kafka.produce", exc)


def destinations(topics: Any) -> str:
    """The topics a consumer reads, as its wait's destination."""
    return ",".join(sorted(m.text(t) for t in topics or ())) or "?"


def may_wait(timeout: Any) -> bool:
    """Whether a poll with ``timeout`` (None or negative: forever) may wait."""
    return timeout is None or timeout < 0 or timeout > 0


def _before_poll(consumer: Any, timeout: Any) -> tuple[int, int]:
    rec = _r.RECORDER
    if rec is None or not may_wait(timeout):
        return 0, 0
    try:
        key = m.program_key(_lib_dir)
        return key, m.record_block(
            rec, key, PROTOCOL, LIBRARY, destinations(getattr(consumer, "_wisp_topics", ()))
        )
    except Exception as exc:
        rec.fault("confluent_kafka.poll", exc)
        return 0, 0


def _after_poll(key: int, wait: int, msgs: list[Any]) -> None:
    rec = _r.RECORDER
    if rec is None:
        return
    try:
        key = key or m.program_key(_lib_dir)
        got = 0
        for msg in msgs:
            if msg is None or msg.error() is not None:
                continue
            got += 1
            record_received(
                rec, key, LIBRARY, msg.topic(), msg.partition(), msg.offset(), msg.headers()
            )
        if wait and not got:
            m.record_wake(rec, wait, m.WAKE_TIMEOUT, key)
    except Exception as exc:
        rec.fault("confluent_kafka.poll", exc)


def _subclasses(base_producer: type, base_consumer: type) -> tuple[type, type]:
    class Producer(base_producer):  # type: ignore[misc]
        __doc__ = base_producer.__doc__

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            conf = args[0] if args and isinstance(args[0], dict) else kwargs
            # The configuration's delivery callback, which a per-message one replaces.
            self._wisp_report = conf.get("on_delivery") or conf.get("delivery.report.callback")

        def produce(self, topic: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs.update(zip(_PRODUCE_ARGS, args, strict=False))
            _produce_hook(self, topic, kwargs)
            return super().produce(topic, **kwargs)

    class Consumer(base_consumer):  # type: ignore[misc]
        __doc__ = base_consumer.__doc__

        def subscribe(self, topics: Any, *args: Any, **kwargs: Any) -> Any:
            self._wisp_topics = {m.text(t) for t in topics}
            return super().subscribe(topics, *args, **kwargs)

        def assign(self, partitions: Any, *args: Any, **kwargs: Any) -> Any:
            self._wisp_topics = {m.text(p.topic) for p in partitions}
            return super().assign(partitions, *args, **kwargs)

        def poll(self, timeout: Any = None) -> Any:
            t = -1 if timeout is None else timeout
            key, wait = _before_poll(self, t)
            msg = super().poll(t)
            _after_poll(key, wait, [msg])
            return msg

        def consume(self, num_messages: int = 1, timeout: Any = -1) -> Any:
            key, wait = _before_poll(self, timeout)
            msgs = super().consume(num_messages, timeout)
            _after_poll(key, wait, list(msgs))
            return msgs

    return Producer, Consumer


def _patch() -> None:
    global _lib_dir
    import confluent_kafka

    _lib_dir = m.package_dir(confluent_kafka)
    producer, consumer = _subclasses(confluent_kafka.Producer, confluent_kafka.Consumer)
    _patches.set(confluent_kafka, "Producer", producer)
    _patches.set(confluent_kafka, "Consumer", consumer)


_hook = m.DeferredHook("confluent_kafka", _patch, _patches, "install confluent_kafka")
install = _hook.install  # hooks confluent-kafka now if imported, else when the program imports it
uninstall = _hook.uninstall
