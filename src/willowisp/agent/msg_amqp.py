"""Hooks for pika (RabbitMQ, AMQP 0-9-1).

Send: ``Channel.basic_publish`` (which ``BlockingChannel.basic_publish`` calls too) injects
``traceparent`` into ``properties.headers`` (creating the properties or headers when the
program passed none; a ``traceparent`` already there is kept and recorded as is) and
records the send. Destination: ``exchange/routing-key`` (``/jobs`` for the default
exchange); message id: ``properties.message_id`` when the program set one, else ''
(AMQP brokers assign none).

Receive: ``BlockingChannel.basic_consume`` callbacks, ``BlockingChannel.basic_get``, the
``BlockingChannel.consume`` generator and ``Channel.basic_consume`` callbacks of the
asynchronous connections each record one receive per delivery, extracting from the
headers; the destination is the delivery's ``exchange/routing-key``, which is what the
publisher wrote. A callback runs with the consumer's context current, so what it sends
continues the trace.

Waits: ``start_consuming`` and the ``consume`` generator write ``unit.block`` on the
consumed queues while no callback runs (ended by the next ``msg.recv``, or ``unit.wake``
when the loop ends or an inactivity timeout yields nothing).

Not hooked: ``Channel.basic_get`` of the asynchronous connections, aio-pika.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from willowisp.agent import boundaries, context
from willowisp.agent import messaging as m
from willowisp.agent import recorder as _r
from willowisp.wire.carriers import AmqpHeaders
from willowisp.wire.tracecontext import TRACECONTEXT

PROTOCOL, LIBRARY = "amqp", "pika"

_patches = m.Patches()
_orig: dict[str, Any] = {}  # originals by attribute name; kept after uninstall for calls in flight
_lib_dir = ""  # pika's package folder: frames skipped when locating an event
_blocking_channel: Any = None  # pika.adapters.blocking_connection.BlockingChannel, once hooked


def _publish(
    self: Any,
    exchange: Any,
    routing_key: Any,
    body: Any,
    properties: Any = None,
    mandatory: bool = False,
) -> Any:
    rec = _r.RECORDER
    if rec is not None:
        try:
            properties = _inject(rec, exchange, routing_key, properties)
        except Exception as exc:
            rec.fault("pika.basic_publish", exc)
    return _orig["basic_publish"](self, exchange, routing_key, body, properties, mandatory)


def _inject(rec: _r.Recorder, exchange: Any, routing_key: Any, properties: Any) -> Any:
    if properties is None:
        properties = sys.modules["pika"].BasicProperties()
    if properties.headers is None:
        properties.headers = {}
    carrier = AmqpHeaders(properties.headers)
    found = TRACECONTEXT.extract(carrier)
    ctx = found.context if found is not None else m.outgoing()
    if found is None:
        TRACECONTEXT.inject(boundaries.w3c(ctx), carrier)
    m.record_send(
        rec,
        m.program_key(_lib_dir),
        protocol=PROTOCOL,
        library=LIBRARY,
        destination=f"{m.text(exchange)}/{m.text(routing_key)}",
        message_id=m.text(properties.message_id or ""),
        ctx=ctx,
    )
    return properties


def _received(rec: _r.Recorder, key: int, method: Any, properties: Any) -> Any:
    """Record one delivery; returns the consumer's context (None if not recorded)."""
    return record_delivery(
        rec,
        key,
        LIBRARY,
        method.exchange,
        method.routing_key,
        getattr(properties, "headers", None),
        getattr(properties, "message_id", None),
    )


def record_delivery(
    rec: _r.Recorder,
    key: int,
    library: str,
    exchange: Any,
    routing_key: Any,
    headers: Any,
    message_id: Any,
) -> Any:
    """One AMQP delivery received (pika, aio-pika): the destination ``exchange/routing-key``
    both libraries' sends name too, so their hops pair. Returns the consumer's context."""
    return m.record_recv(
        rec,
        key,
        protocol=PROTOCOL,
        library=library,
        destination=f"{m.text(exchange or '')}/{m.text(routing_key or '')}",
        message_id=m.text(message_id or ""),
        carriers=[AmqpHeaders(headers)] if isinstance(headers, dict) else [],
    )


def _wrap_callback(callback: Any, channel: Any) -> Any:
    """The program's ``on_message_callback(channel, method, properties, body)``, recording
    the delivery first and running with the consumer's context current."""

    def on_message(ch: Any, method: Any, properties: Any, body: Any) -> Any:
        rec = _r.RECORDER
        token = None
        if rec is not None:
            try:
                own = _received(rec, m.program_key(_lib_dir), method, properties)
                token = context.set_current(own) if own is not None else None
            except Exception as exc:
                rec.fault("pika.on_message", exc)
        try:
            return callback(ch, method, properties, body)
        finally:
            if token is not None:
                context.reset(token)
            if rec is not None and getattr(channel, "_wisp_consuming", False):
                _block(rec, channel)  # back to waiting for the next delivery

    return on_message


def _queues(channel: Any) -> str:
    return ",".join(sorted(getattr(channel, "_wisp_queues", ()))) or "?"


def _block(rec: _r.Recorder, channel: Any) -> int:
    try:
        return m.record_block(rec, m.program_key(_lib_dir), PROTOCOL, LIBRARY, _queues(channel))
    except Exception as exc:
        rec.fault("pika.wait", exc)
        return 0


def _blocking_basic_consume(
    self: Any, queue: Any, on_message_callback: Any, *a: Any, **kw: Any
) -> Any:
    if _r.RECORDER is not None:
        try:
            self._wisp_queues = {*getattr(self, "_wisp_queues", ()), m.text(queue)}
            on_message_callback = _wrap_callback(on_message_callback, self)
        except Exception as exc:
            _r.RECORDER.fault("pika.basic_consume", exc)
    return _orig["BlockingChannel.basic_consume"](self, queue, on_message_callback, *a, **kw)


def _channel_basic_consume(
    self: Any, queue: Any, on_message_callback: Any, *a: Any, **kw: Any
) -> Any:
    # BlockingChannel consumes through here with its own internal callback: skip that one
    # (the program's callback was wrapped in BlockingChannel.basic_consume).
    if _r.RECORDER is not None and not isinstance(
        getattr(on_message_callback, "__self__", None), _blocking_channel
    ):
        on_message_callback = _wrap_callback(on_message_callback, self)
    return _orig["Channel.basic_consume"](self, queue, on_message_callback, *a, **kw)


def _start_consuming(self: Any) -> None:
    rec = _r.RECORDER
    if rec is None:
        return _orig["start_consuming"](self)  # type: ignore[no-any-return]
    self._wisp_consuming = True
    wait = _block(rec, self)
    try:
        _orig["start_consuming"](self)
    finally:
        self._wisp_consuming = False
        if wait:
            m.record_wake(rec, wait, m.WAKE_OK, m.program_key(_lib_dir))
    return None


def _consume(self: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
    items = _orig["consume"](self, queue, *args, **kwargs)
    try:
        while True:
            rec = _r.RECORDER
            wait = 0
            if rec is not None:
                self._wisp_queues = {*getattr(self, "_wisp_queues", ()), m.text(queue)}
                wait = _block(rec, self)
            try:
                item = next(items)
            except StopIteration:
                if rec is not None and wait:
                    m.record_wake(rec, wait, m.WAKE_OK, m.program_key(_lib_dir))
                return
            if rec is not None:
                try:
                    method, properties, _body = item
                    if method is not None:
                        _received(rec, m.program_key(_lib_dir), method, properties)
                    elif wait:  # inactivity_timeout passed with nothing
                        m.record_wake(rec, wait, m.WAKE_TIMEOUT, m.program_key(_lib_dir))
                except Exception as exc:
                    rec.fault("pika.consume", exc)
            yield item
    finally:
        items.close()


def _basic_get(self: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
    result = _orig["basic_get"](self, queue, *args, **kwargs)
    rec = _r.RECORDER
    if rec is not None and result[0] is not None:
        try:
            _received(rec, m.program_key(_lib_dir), result[0], result[1])
        except Exception as exc:
            rec.fault("pika.basic_get", exc)
    return result


def _patch() -> None:
    global _lib_dir, _blocking_channel
    # Any-typed handles: pika ships no type information.
    blocking: Any = importlib.import_module("pika.adapters.blocking_connection")
    channel: Any = importlib.import_module("pika.channel")

    _lib_dir = m.package_dir(sys.modules["pika"])
    _blocking_channel = blocking.BlockingChannel
    chan, bch = channel.Channel, blocking.BlockingChannel
    _orig["basic_publish"] = _patches.set(chan, "basic_publish", _publish)
    _orig["Channel.basic_consume"] = _patches.set(chan, "basic_consume", _channel_basic_consume)
    _orig["BlockingChannel.basic_consume"] = _patches.set(
        bch, "basic_consume", _blocking_basic_consume
    )
    _orig["start_consuming"] = _patches.set(bch, "start_consuming", _start_consuming)
    _orig["consume"] = _patches.set(bch, "consume", _consume)
    _orig["basic_get"] = _patches.set(bch, "basic_get", _basic_get)


_hook = m.DeferredHook("pika", _patch, _patches, "install pika")
install = _hook.install  # hooks pika now if imported, else when the program imports it
uninstall = _hook.uninstall
