"""Hooks for redis-py: streams and pub/sub are messages; other commands are not (yet).

Streams: ``XADD`` injects ``traceparent`` as a field of the entry (a copy of the caller's
dict; a ``traceparent`` the program set is kept and recorded as is) and records the send;
the entry id Redis assigns becomes the message id once ``XADD`` returns. ``XREAD`` and
``XREADGROUP`` record one receive per entry, extracting from its fields, with the entry id
as message id; given ``block=``, the wait is a ``unit.block`` on the stream(s).

Pub/sub: a ``PUBLISH`` payload is opaque bytes with no room for headers, so nothing is
injected and the message id is '': the send and each receive are recorded (destination:
the channel) but the analyzer cannot pair them. ``PubSub.get_message`` / ``listen`` /
handler callbacks record the receives (all go through ``PubSub.handle_message``);
``get_message`` with a timeout records the wait.

Not hooked: ``redis.asyncio``, ``RedisCluster`` and commands queued in a pipeline (they
are recorded when queued, with message id '').
"""

from __future__ import annotations

from typing import Any

from willowisp.agent import messaging as m
from willowisp.agent import recorder as _r
from willowisp.wire.carriers import AmqpHeaders as StreamFields  # a dict of str-or-bytes too
from willowisp.wire.tracecontext import TRACECONTEXT, W3CContext

PROTOCOL, LIBRARY = "redis", "redis-py"
_MESSAGE_TYPES = ("message", "pmessage", "smessage")

_patches = m.Patches()
_orig: dict[str, Any] = {}  # originals by attribute name; kept after uninstall for calls in flight
_lib_dir = ""  # redis-py's package folder: frames skipped when locating an event


def _xadd(self: Any, name: Any, fields: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _r.RECORDER
    if rec is None or not isinstance(fields, dict):
        return _orig["xadd"](self, name, fields, *args, **kwargs)
    rid = 0
    try:
        fields = dict(fields)
        carrier = StreamFields(fields)
        found = TRACECONTEXT.extract(carrier)
        ctx = found.context if found is not None else m.outgoing()
        if found is None:
            TRACECONTEXT.inject(W3CContext(ctx), carrier)
        given = args[0] if args else kwargs.get("id", "*")
        rid = m.record_send(
            rec,
            m.program_key(_lib_dir),
            protocol=PROTOCOL,
            library=LIBRARY,
            destination=m.text(name),
            message_id="" if m.text(given) == "*" else m.text(given),
            ctx=ctx,
        )
    except Exception as exc:
        rec.fault("redis.xadd", exc)
    entry_id = _orig["xadd"](self, name, fields, *args, **kwargs)
    if rid and isinstance(entry_id, bytes | str):
        try:
            m.set_message_id(rec, rid, m.text(entry_id))
        except Exception as exc:
            rec.fault("redis.xadd", exc)
    return entry_id


def _entries(reply: Any) -> list[tuple[str, Any, Any]]:
    """(stream, entry id, fields) of every entry in an XREAD / XREADGROUP reply, RESP2
    (``[[stream, [(id, fields), ...]], ...]``) or RESP3 (``{stream: [[(id, fields)...]]}``)."""
    out: list[tuple[str, Any, Any]] = []

    def walk(stream: str, node: Any) -> None:
        if (
            isinstance(node, list | tuple)
            and len(node) == 2
            and isinstance(node[0], bytes | str)
            and (node[1] is None or isinstance(node[1], dict))
        ):
            out.append((stream, node[0], node[1]))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(stream, item)

    if isinstance(reply, dict):
        for stream, node in reply.items():
            walk(m.text(stream), node)
    elif isinstance(reply, list):
        for item in reply:
            if isinstance(item, list | tuple) and len(item) == 2:
                walk(m.text(item[0]), item[1])
    return out


def _before_read(rec: _r.Recorder, attr: str, streams: Any, block: Any) -> tuple[int, int]:
    """The program's location key, and the wait resource when the read may block."""
    key = wait = 0
    try:
        key = m.program_key(_lib_dir)
        if isinstance(block, tuple):  # the positional argument, sliced
            block = block[0]
        if block is not None:
            dest = ",".join(m.text(s) for s in streams)
            wait = m.record_block(rec, key, PROTOCOL, LIBRARY, dest)
    except Exception as exc:
        rec.fault(f"redis.{attr}", exc)
    return key, wait


def _after_read(rec: _r.Recorder, attr: str, key: int, wait: int, reply: Any) -> Any:
    try:
        entries = _entries(reply)
        for stream, entry_id, fields in entries:
            m.record_recv(
                rec,
                key,
                protocol=PROTOCOL,
                library=LIBRARY,
                destination=stream,
                message_id=m.text(entry_id),
                carriers=[StreamFields(fields)] if fields else [],
            )
        if wait and not entries:
            m.record_wake(rec, wait, m.WAKE_TIMEOUT, key)
    except Exception as exc:
        rec.fault(f"redis.{attr}", exc)
    return reply


def _xread(self: Any, streams: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _r.RECORDER
    if rec is None or not isinstance(streams, dict):
        return _orig["xread"](self, streams, *args, **kwargs)
    key, wait = _before_read(rec, "xread", streams, kwargs.get("block", args[1:2] or None))
    return _after_read(rec, "xread", key, wait, _orig["xread"](self, streams, *args, **kwargs))


def _xreadgroup(
    self: Any, groupname: Any, consumername: Any, streams: Any, *a: Any, **kw: Any
) -> Any:
    rec = _r.RECORDER
    if rec is None or not isinstance(streams, dict):
        return _orig["xreadgroup"](self, groupname, consumername, streams, *a, **kw)
    key, wait = _before_read(rec, "xreadgroup", streams, kw.get("block", a[1:2] or None))
    reply = _orig["xreadgroup"](self, groupname, consumername, streams, *a, **kw)
    return _after_read(rec, "xreadgroup", key, wait, reply)


def _publish(self: Any, channel: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _r.RECORDER
    if rec is not None:
        try:
            m.record_send(
                rec,
                m.program_key(_lib_dir),
                protocol=PROTOCOL,
                library=LIBRARY,
                destination=m.text(channel),
                message_id="",
                ctx=None,  # a pub/sub payload has no headers: nothing can be injected
            )
        except Exception as exc:
            rec.fault("redis.publish", exc)
    return _orig["publish"](self, channel, message, *args, **kwargs)


def _handle_message(self: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _r.RECORDER
    if rec is not None and isinstance(response, list | tuple) and len(response) >= 3:
        try:
            kind = m.text(response[0])
            if kind in _MESSAGE_TYPES:
                channel = response[2] if kind == "pmessage" else response[1]
                m.record_recv(
                    rec,
                    m.program_key(_lib_dir),
                    protocol=PROTOCOL,
                    library=LIBRARY,
                    destination=m.text(channel),
                    message_id="",
                    carriers=[],
                )
        except Exception as exc:
            rec.fault("redis.pubsub.handle_message", exc)
    return _orig["handle_message"](self, response, *args, **kwargs)


def _get_message(self: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _r.RECORDER
    timeout = kwargs.get("timeout", args[1] if len(args) > 1 else 0.0)
    if rec is None or timeout == 0:
        return _orig["get_message"](self, *args, **kwargs)
    key = wait = 0
    try:
        key = m.program_key(_lib_dir)
        names = [*self.channels, *self.patterns]
        dest = ",".join(sorted(m.text(n) for n in names)) or "?"
        wait = m.record_block(rec, key, PROTOCOL, LIBRARY, dest)
    except Exception as exc:
        rec.fault("redis.pubsub.get_message", exc)
    msg = _orig["get_message"](self, *args, **kwargs)
    if wait:
        got = isinstance(msg, dict) and m.text(msg.get("type")) in _MESSAGE_TYPES
        if not got:  # a msg.recv ended the wait otherwise
            m.record_wake(rec, wait, m.WAKE_TIMEOUT if msg is None else m.WAKE_OK, key)
    return msg


def _patch() -> None:
    global _lib_dir
    import redis.client

    _lib_dir = m.package_dir(redis)
    hooks: tuple[tuple[str, Any], ...] = (
        ("xadd", _xadd),
        ("xread", _xread),
        ("xreadgroup", _xreadgroup),
        ("publish", _publish),
    )
    for attr, fn in hooks:
        _orig[attr] = _patches.set(redis.client.Redis, attr, fn)
    hooks = (("handle_message", _handle_message), ("get_message", _get_message))
    for attr, fn in hooks:
        _orig[attr] = _patches.set(redis.client.PubSub, attr, fn)


_hook = m.DeferredHook("redis", _patch, _patches, "install redis")
install = _hook.install  # hooks redis-py now if imported, else when the program imports it
uninstall = _hook.uninstall
