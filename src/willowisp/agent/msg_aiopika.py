"""Hooks for aio-pika (RabbitMQ from asyncio, over aiormq): the records msg_amqp.py makes for
pika, so a pika producer pairs with an aio-pika consumer and back.

Send: ``Exchange.publish`` (the default exchange and ``RobustExchange`` alike) hands aio-pika
the program's message behind a thin stand-in whose ``properties`` carry ``traceparent`` in a
copy of the headers: the program's ``Message`` is never changed (it may be locked, or sent
again). A ``traceparent`` already in its headers is kept and recorded as is. Destination
``exchange/routing-key`` (``/jobs`` for the default exchange); message id the message's
``message_id``, or '' (AMQP brokers assign none).

Receive: ``Queue.get``, the callbacks of ``Queue.consume`` and ``Queue.iterator()`` (``async
for``) record one receive per delivery, extracting from its headers, destination from the
delivery's exchange and routing key (what the publisher wrote). A callback runs with the
consumer's context current, so what it sends continues the trace, and its receive is
located at the callback's definition (it runs in a task aio-pika starts, with no line of
the program below it). The iterator's wait for a delivery, when none is buffered, is a
``unit.block`` on ``wait <queue>``, kept open across aio-pika's own events by
task_waits.drive, and ended by the receive, or by ``unit.wake`` when the iteration stops
(0), times out (1), is cancelled (2) or fails (3).

Not hooked: aiormq used directly; the publisher's wait for the broker's confirmation.
"""

from __future__ import annotations

import contextvars
import importlib
import sys
from collections.abc import Callable
from typing import Any

from willowisp.agent import boundaries, context, msg_amqp, rows, task_waits
from willowisp.agent import messaging as m
from willowisp.agent import recorder as _r
from willowisp.model.spec import Outcome, Reason
from willowisp.wire.carriers import AmqpHeaders
from willowisp.wire.tracecontext import TRACECONTEXT

PROTOCOL, LIBRARY = "amqp", "aio-pika"
Fn = Callable[..., Any]

_patches = m.Patches()
_dirs: tuple[str, ...] = ()  # aio-pika's and aiormq's folders: frames skipped when locating
_iterator_type: Any = None  # aio_pika.queue.QueueIterator, once hooked
# Set while a hooked __anext__ runs, so a subclass's __anext__ calling its base's records once.
_in_next: contextvars.ContextVar[bool] = contextvars.ContextVar("wisp_aiopika_next", default=False)


def _key() -> int:
    return m.program_key(_dirs)


class _Outgoing:
    """The program's message as ``Exchange.publish`` reads it (``body``, ``properties``, and
    anything else through ``__getattr__``), with ``headers`` replaced by ours."""

    __slots__ = ("_message", "headers")

    def __init__(self, message: Any, headers: dict[str, Any]) -> None:
        self._message = message  # the program's own message, untouched
        self.headers = headers  # a copy of its headers, with the context added

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)

    @property
    def properties(self) -> Any:
        props = self._message.properties  # a new object on every read
        props.headers = self.headers
        return props


def _inject(rec: _r.Recorder, exchange: Any, message: Any, routing_key: Any) -> Any:
    """Record the send; returns what to publish (the stand-in, or the message as it is)."""
    headers = dict(getattr(message, "headers", None) or {})
    carrier = AmqpHeaders(headers)
    found = TRACECONTEXT.extract(carrier)
    ctx = found.context if found is not None else m.outgoing()
    if found is None:
        TRACECONTEXT.inject(boundaries.w3c(ctx), carrier)
    m.record_send(
        rec,
        _key(),
        protocol=PROTOCOL,
        library=LIBRARY,
        destination=f"{m.text(getattr(exchange, 'name', '') or '')}/{m.text(routing_key)}",
        message_id=m.text(getattr(message, "message_id", None) or ""),
        ctx=ctx,
    )
    return message if found is not None else _Outgoing(message, headers)


def _make_publish(orig: Fn) -> Fn:
    async def publish(self: Any, message: Any, routing_key: Any, *args: Any, **kw: Any) -> Any:
        rec = _r.RECORDER
        if rec is not None:
            try:
                message = _inject(rec, self, message, routing_key)
            except Exception as exc:
                rec.fault("aio_pika.Exchange.publish", exc)
        return await orig(self, message, routing_key, *args, **kw)

    return publish


def _received(rec: _r.Recorder, key: int, msg: Any) -> Any:
    """Record one delivery; returns the consumer's context (None if not recorded)."""
    return msg_amqp.record_delivery(
        rec,
        key,
        LIBRARY,
        getattr(msg, "exchange", ""),
        getattr(msg, "routing_key", ""),
        getattr(msg, "headers", None),
        getattr(msg, "message_id", None),
    )


def _make_get(orig: Fn) -> Fn:
    async def get(self: Any, *args: Any, **kwargs: Any) -> Any:
        msg = await orig(self, *args, **kwargs)
        rec = _r.RECORDER
        if rec is not None and msg is not None:
            try:
                _received(rec, _key(), msg)
            except Exception as exc:
                rec.fault("aio_pika.Queue.get", exc)
        return msg

    return get


def _definition_key(callback: Any) -> int:
    """The location key of a callback's definition (its first line), 0 if it has no code."""
    fn = getattr(callback, "func", callback)  # functools.partial
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is None:
        return 0
    rows.CODE_IDS[id(code)] = code
    return id(code) << 16


def _wrap_callback(callback: Any) -> Fn:
    """The program's ``callback(message)``, recording the delivery first and running with the
    consumer's context current."""
    key = _definition_key(callback)

    async def on_message(message: Any) -> Any:
        rec = _r.RECORDER
        token = None
        if rec is not None:
            try:
                own = _received(rec, key, message)
                token = context.set_current(own) if own is not None else None
            except Exception as exc:
                rec.fault("aio_pika.on_message", exc)
        try:
            result = callback(message)
            return await result if hasattr(type(result), "__await__") else result
        finally:
            if token is not None:
                context.reset(token)

    return on_message


def _make_consume(orig: Fn) -> Fn:
    async def consume(self: Any, callback: Any, *args: Any, **kwargs: Any) -> Any:
        # A queue iterator consumes through here with its own callback: its deliveries are
        # recorded when the program takes them from the iterator, not when they arrive.
        if _r.RECORDER is not None and not isinstance(
            getattr(callback, "__self__", None), _iterator_type
        ):
            try:
                callback = _wrap_callback(callback)
            except Exception as exc:
                _r.RECORDER.fault("aio_pika.Queue.consume", exc)
        return await orig(self, callback, *args, **kwargs)

    return consume


def _begin_wait(rec: _r.Recorder, iterator: Any) -> tuple[int, int]:
    """(location key, wait resource or 0): a wait only when no delivery is buffered."""
    try:
        key = _key()
        buffered = getattr(iterator, "_message_or_closed", None)  # aio-pika's own flag
        if buffered is not None and buffered.is_set():
            return key, 0
        queue = m.text(getattr(getattr(iterator, "_amqp_queue", None), "name", "?"))
        return key, m.record_block(rec, key, PROTOCOL, LIBRARY, queue)
    except Exception as exc:
        rec.fault("aio_pika.QueueIterator", exc)
        return 0, 0


def _make_anext(orig: Fn) -> Fn:
    async def __anext__(self: Any) -> Any:
        rec = _r.RECORDER
        if rec is None or _in_next.get():
            return await orig(self)
        token = _in_next.set(True)
        try:
            key, wait = _begin_wait(rec, self)
            call = orig(self)
            if wait:
                call = task_waits.drive(call, wait, int(Reason.MESSAGE), key, blocked=True)
            try:
                msg = await call
            except BaseException as exc:
                if wait:
                    m.record_wake(rec, wait, _outcome(exc), key)
                raise
            try:
                _received(rec, key, msg)
            except Exception as exc:
                rec.fault("aio_pika.QueueIterator", exc)
            return msg
        finally:
            _in_next.reset(token)

    return __anext__


def _outcome(exc: BaseException) -> int:
    """How a wait that ``exc`` ended, ended."""
    asyncio = sys.modules["asyncio"]  # imported by aio-pika; not by the agent
    if isinstance(exc, StopAsyncIteration):  # the iterator was closed
        return int(Outcome.OK)
    if isinstance(exc, asyncio.TimeoutError):
        return int(Outcome.TIMEOUT)
    if isinstance(exc, asyncio.CancelledError):
        return int(Outcome.CANCELLED)
    return int(Outcome.ERROR)


def _patch() -> None:
    global _dirs, _iterator_type
    exchange = importlib.import_module("aio_pika.exchange")
    queue = importlib.import_module("aio_pika.queue")
    robust = importlib.import_module("aio_pika.robust_queue")
    _dirs = tuple(m.package_dir(sys.modules[name]) for name in ("aio_pika", "aiormq"))
    _iterator_type = queue.QueueIterator
    hooks: list[tuple[Any, str, Callable[[Fn], Fn]]] = [
        (exchange.Exchange, "publish", _make_publish),
        (queue.Queue, "get", _make_get),
        (queue.Queue, "consume", _make_consume),
        (queue.QueueIterator, "__anext__", _make_anext),
    ]
    if "__anext__" in robust.RobustQueueIterator.__dict__:  # its own, not calling the base
        hooks.append((robust.RobustQueueIterator, "__anext__", _make_anext))
    for cls, attr, make in hooks:
        _patches.set(cls, attr, make(getattr(cls, attr)))


_hook = m.DeferredHook("aio_pika", _patch, _patches, "install aio_pika")
install = _hook.install  # hooks aio-pika now if imported, else when the program imports it
uninstall = _hook.uninstall
