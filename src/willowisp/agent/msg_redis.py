"""Hooks for redis-py: streams and pub/sub are messages; commands on keys are data accesses.

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

Pipelines: a command queued in a pipeline is one hop like any other. ``XADD`` injects and
records its send when queued (before anything is on the wire); its entry id, and the
receives of a queued ``XREAD`` / ``XREADGROUP`` (located at the ``execute`` line), are
recorded from ``execute``'s results, matched by the command's position in the pipeline.
A queued read records no wait. ``RedisCluster`` and its ``ClusterPipeline`` share the
command methods and are hooked the same way; ``ClusterPubSub`` is a ``PubSub``.

Keys: ``execute_command`` of a client (not of a pipeline) records a command on a key as a
data access of ``redis:<key>`` once it returned (the key as given, cut to 200 characters:
keys are the program's identifiers, ``cart:42``): ``KEY_READS`` are reads, ``KEY_WRITES``
writes. Redis runs one command at a time, so a write is atomic on its own and is written
as a hold of a per-key lock (``redis:<key>``, ``shared=1``) around the access: two
``INCR``s do not race, a ``GET`` and another client's ``SET`` after it may. Multi-key
commands record each key (16 at most). Commands queued in pipelines and transactions
(``MULTI``/``EXEC``), scripts and modules are not recorded as accesses.

The wrappers are made per class from that class's original method (``_make_*``) and also
serve ``redis.asyncio`` (msg_redis_async.py): a command that returns a coroutine gets the
recording done after it is awaited.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

from willowisp.agent import boundaries, task_waits
from willowisp.agent import data_access as d
from willowisp.agent import messaging as m
from willowisp.agent import recorder as _r
from willowisp.model.spec import Outcome, Reason
from willowisp.wire.carriers import AmqpHeaders as StreamFields  # a dict of str-or-bytes too
from willowisp.wire.tracecontext import TRACECONTEXT

PROTOCOL, LIBRARY = "redis", "redis-py"
_MESSAGE_TYPES = ("message", "pmessage", "smessage")

_patches = m.Patches()
_lib_dir = ""  # redis-py's package folder: frames skipped when locating an event

Fn = Callable[..., Any]
Make = Callable[[Any], Any]  # original (None if absent) -> what replaces it


def _awaitable(value: Any) -> bool:
    """A coroutine (or other awaitable) from an asyncio client's command. Checked after
    ``value is client``: an asyncio ClusterPipeline is awaitable itself."""
    return hasattr(type(value), "__await__")


def lib_dir() -> str:
    """redis-py's package folder (set once the package is importing)."""
    global _lib_dir
    if not _lib_dir:
        _lib_dir = m.package_dir(sys.modules["redis"])
    return _lib_dir


def _key() -> int:
    return m.program_key(lib_dir())


# --- pipelines ----------------------------------------------------------------------------


def _queued(rec: _r.Recorder, client: Any, kind: str, rid: int, attr: str) -> None:
    """Note a command just queued in pipeline ``client``: its position, what to record from
    its result (``send``: the entry id of send ``rid``; ``read``: the entries read)."""
    try:
        pending = vars(client).setdefault("_wisp_pending", [])
        pending.append((len(client) - 1, kind, rid, attr))
    except Exception as exc:
        rec.fault(f"redis.pipeline.{attr}", exc)


def _take_pending(client: Any) -> Any:
    """The notes of what ``client`` has queued, removed from it (None if there are none)."""
    return getattr(client, "__dict__", {}).pop("_wisp_pending", None)


def _settle(rec: _r.Recorder, key: int, pending: list[tuple[int, str, int, str]], out: Any) -> None:
    """Record, from a pipeline's results, what its queued commands left to record."""
    try:
        if not isinstance(out, list):
            return
        for index, kind, rid, attr in pending:
            if not 0 <= index < len(out):
                continue
            result = out[index]
            if kind == "send" and isinstance(result, bytes | str):
                m.set_message_id(rec, rid, m.text(result))
            elif kind == "read" and not isinstance(result, BaseException):
                _after_read(rec, attr, key, 0, result)
    except Exception as exc:
        rec.fault("redis.pipeline.execute", exc)


def _queued_commands(client: Any) -> list[tuple[Any, ...]]:
    """The argument tuples of the commands a pipeline has queued (redis-py keeps
    ``(args, options)`` pairs; the cluster pipeline objects with ``args``)."""
    out: list[tuple[Any, ...]] = []
    for c in getattr(client, "command_stack", None) or ():
        args = getattr(c, "args", None)
        if args is None and isinstance(c, tuple) and c:
            args = c[0]
        if isinstance(args, tuple) and args:
            out.append(args)
    return out


def record_pipeline_keys(
    rec: _r.Recorder, commands: list[tuple[Any, ...]], transaction: bool, key: int
) -> None:
    """The key accesses of a pipeline that ran. A transaction (MULTI/EXEC) runs all its
    commands at once on the server: one hold of the server's ``redis:(MULTI/EXEC)`` lock
    around them all; otherwise each command on its own, as if sent alone."""
    if not commands or not d.enabled(rec):
        return
    if not transaction:
        for args in commands:
            record_keys(rec, args, key)
        return
    try:
        lock = d.shared_lock(rec, "redis:(MULTI/EXEC)", key)
        d.emit(rec, d.ACQUIRED, lock, 0, key)
        for args in commands:
            command = m.text(args[0]).upper()
            write = command in KEY_WRITES
            if not (write or command in KEY_READS):
                continue
            for k in _keys_of(command, args):
                name = d.cut(f"redis:{m.text(k)}")
                rid = d.resource(rec, name, store="redis", statement=command, key=key)
                if write:  # each command is atomic too, as outside a transaction
                    d.atomic_write(rec, d.shared_lock(rec, name, key), rid, key)
                else:
                    d.access(rec, rid, d.READ, key)
        d.emit(rec, d.RELEASE, lock, 0, key)
    except Exception as exc:
        rec.fault("redis.pipeline.execute", exc)


async def _pipeline_later(
    rec: _r.Recorder,
    key: int,
    pending: list[tuple[int, str, int, str]] | None,
    commands: list[tuple[Any, ...]],
    transaction: bool,
    aw: Any,
) -> Any:
    out = await aw
    if pending:
        _settle(rec, key, pending, out)
    record_pipeline_keys(rec, commands, transaction, key)
    return out


def make_execute(orig: Fn) -> Fn:
    """A pipeline's ``execute`` (sync or async) that records what queued commands left: the
    entry ids and reads of stream commands, and the key accesses of every command."""

    def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        pending = _take_pending(self)
        rec = _r.RECORDER
        if rec is None:
            return orig(self, *args, **kwargs)
        commands: list[tuple[Any, ...]] = []
        transaction = False
        key = 0
        try:
            commands = _queued_commands(self) if d.enabled(rec) else []
            transaction = bool(getattr(self, "transaction", False))
            if pending or commands:
                key = _key()
        except Exception as exc:
            rec.fault("redis.pipeline.execute", exc)
        if not pending and not commands:
            return orig(self, *args, **kwargs)
        out = orig(self, *args, **kwargs)
        if _awaitable(out):
            return _pipeline_later(rec, key, pending, commands, transaction, out)
        if pending:
            _settle(rec, key, pending, out)
        record_pipeline_keys(rec, commands, transaction, key)
        return out

    return execute


def make_reset(orig: Fn) -> Fn:
    """A pipeline's ``reset``: what was queued is dropped, and so is our note of it."""

    def reset(self: Any, *args: Any, **kwargs: Any) -> Any:
        _take_pending(self)
        return orig(self, *args, **kwargs)

    return reset


# --- streams -------------------------------------------------------------------------------


def _send(rec: _r.Recorder, name: Any, fields: dict[Any, Any], args: Any, kwargs: Any) -> int:
    """Inject into ``fields`` (the caller's copy) and record the send; returns it (or 0)."""
    try:
        carrier = StreamFields(fields)
        found = TRACECONTEXT.extract(carrier)
        ctx = found.context if found is not None else m.outgoing()
        if found is None:
            TRACECONTEXT.inject(boundaries.w3c(ctx), carrier)
        given = args[0] if args else kwargs.get("id", "*")
        return m.record_send(
            rec,
            _key(),
            protocol=PROTOCOL,
            library=LIBRARY,
            destination=m.text(name),
            message_id="" if m.text(given) == "*" else m.text(given),
            ctx=ctx,
        )
    except Exception as exc:
        rec.fault("redis.xadd", exc)
        return 0


def _set_id(rec: _r.Recorder, rid: int, entry_id: Any) -> None:
    if isinstance(entry_id, bytes | str):
        try:
            m.set_message_id(rec, rid, m.text(entry_id))
        except Exception as exc:
            rec.fault("redis.xadd", exc)


async def _id_when_done(rec: _r.Recorder, rid: int, aw: Any) -> Any:
    entry_id = await aw
    _set_id(rec, rid, entry_id)
    return entry_id


def make_xadd(orig: Fn) -> Fn:
    def xadd(self: Any, name: Any, fields: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        if rec is None or not isinstance(fields, dict):
            return orig(self, name, fields, *args, **kwargs)
        fields = dict(fields)
        rid = _send(rec, name, fields, args, kwargs)
        result = orig(self, name, fields, *args, **kwargs)
        if not rid:
            return result
        if result is self:  # queued in a pipeline: the id comes with execute's results
            _queued(rec, self, "send", rid, "xadd")
        elif _awaitable(result):
            return _id_when_done(rec, rid, result)
        else:
            _set_id(rec, rid, result)
        return result

    return xadd


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
        key = _key()
        if isinstance(block, tuple):  # the positional argument, sliced
            block = block[0] if block else None
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


def wake_failed(rec: _r.Recorder, wait: int, key: int, exc: BaseException) -> None:
    """End a wait its call ended by raising: cancelled, or an error."""
    asyncio = sys.modules.get("asyncio")
    cancelled = asyncio is not None and isinstance(exc, asyncio.CancelledError)
    m.record_wake(rec, wait, int(Outcome.CANCELLED if cancelled else Outcome.ERROR), key)


async def _read_when_done(rec: _r.Recorder, attr: str, key: int, wait: int, aw: Any) -> Any:
    try:
        if wait and isinstance(aw, types.CoroutineType):
            reply = await task_waits.drive(aw, wait, int(Reason.MESSAGE), key, blocked=True)
        else:
            reply = await aw
    except BaseException as exc:
        if wait:
            wake_failed(rec, wait, key, exc)
        raise
    return _after_read(rec, attr, key, wait, reply)


def _read(rec: _r.Recorder, attr: str, client: Any, streams: Any, block: Any, call: Fn) -> Any:
    """One XREAD / XREADGROUP: the wait, the call, the receives (now, once awaited, or from
    the pipeline's results)."""
    queued = getattr(client, "_wisp_pipeline", False)  # a pipeline queues: never a wait
    key, wait = _before_read(rec, attr, streams, None if queued else block)
    try:
        result = call()
    except BaseException as exc:
        if wait:
            wake_failed(rec, wait, key, exc)
        raise
    if queued and result is client:
        _queued(rec, client, "read", 0, attr)
        return result
    if _awaitable(result):
        return _read_when_done(rec, attr, key, wait, result)
    return _after_read(rec, attr, key, wait, result)


def make_xread(orig: Fn) -> Fn:
    def xread(self: Any, streams: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        if rec is None or not isinstance(streams, dict):
            return orig(self, streams, *args, **kwargs)
        block = kwargs.get("block", args[1:2])
        return _read(
            rec, "xread", self, streams, block, lambda: orig(self, streams, *args, **kwargs)
        )

    return xread


def make_xreadgroup(orig: Fn) -> Fn:
    def xreadgroup(self: Any, group: Any, consumer: Any, streams: Any, *a: Any, **kw: Any) -> Any:
        rec = _r.RECORDER
        if rec is None or not isinstance(streams, dict):
            return orig(self, group, consumer, streams, *a, **kw)
        block = kw.get("block", a[1:2])
        return _read(
            rec,
            "xreadgroup",
            self,
            streams,
            block,
            lambda: orig(self, group, consumer, streams, *a, **kw),
        )

    return xreadgroup


# --- pub/sub ------------------------------------------------------------------------------


def make_publish(orig: Fn) -> Fn:
    def publish(self: Any, channel: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        if rec is not None:
            try:
                m.record_send(
                    rec,
                    _key(),
                    protocol=PROTOCOL,
                    library=LIBRARY,
                    destination=m.text(channel),
                    message_id="",
                    ctx=None,  # a pub/sub payload has no headers: nothing can be injected
                )
            except Exception as exc:
                rec.fault("redis.publish", exc)
        return orig(self, channel, message, *args, **kwargs)

    return publish


def make_handle_message(orig: Fn) -> Fn:
    """``PubSub.handle_message`` (sync, or async returning its coroutine): called once the
    message is in, so the receive is recorded before handing it on."""

    def handle_message(self: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        if rec is not None and isinstance(response, list | tuple) and len(response) >= 3:
            try:
                kind = m.text(response[0])
                if kind in _MESSAGE_TYPES:
                    channel = response[2] if kind == "pmessage" else response[1]
                    m.record_recv(
                        rec,
                        _key(),
                        protocol=PROTOCOL,
                        library=LIBRARY,
                        destination=m.text(channel),
                        message_id="",
                        carriers=[],
                    )
            except Exception as exc:
                rec.fault("redis.pubsub.handle_message", exc)
        return orig(self, response, *args, **kwargs)

    return handle_message


def subscriptions(pubsub: Any) -> str:
    """The channels and patterns ``pubsub`` listens to, as a wait's destination."""
    names = [*pubsub.channels, *pubsub.patterns]
    return ",".join(sorted(m.text(n) for n in names)) or "?"


def get_message_wait(rec: _r.Recorder, pubsub: Any) -> tuple[int, int]:
    """(location key, wait resource) of a ``get_message`` that may wait."""
    try:
        key = _key()
        return key, m.record_block(rec, key, PROTOCOL, LIBRARY, subscriptions(pubsub))
    except Exception as exc:
        rec.fault("redis.pubsub.get_message", exc)
        return 0, 0


def end_get_message_wait(rec: _r.Recorder, key: int, wait: int, msg: Any) -> None:
    """End the wait unless the message's ``msg.recv`` did."""
    got = isinstance(msg, dict) and m.text(msg.get("type")) in _MESSAGE_TYPES
    if wait and not got:
        m.record_wake(rec, wait, m.WAKE_TIMEOUT if msg is None else m.WAKE_OK, key)


def get_message_timeout(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return kwargs.get("timeout", args[1] if len(args) > 1 else 0.0)


def _make_get_message(orig: Fn) -> Fn:
    def get_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _r.RECORDER
        if rec is None or get_message_timeout(args, kwargs) == 0:
            return orig(self, *args, **kwargs)
        key, wait = get_message_wait(rec, self)
        try:
            msg = orig(self, *args, **kwargs)
        except BaseException as exc:
            if wait:
                wake_failed(rec, wait, key, exc)
            raise
        end_get_message_wait(rec, key, wait, msg)
        return msg

    return get_message


# --- keys: data accesses ------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


KEY_READS = _words(
    "GET MGET GETRANGE STRLEN EXISTS TYPE TTL PTTL HGET HMGET HGETALL HKEYS HVALS HLEN "
    "HEXISTS HSTRLEN LRANGE LINDEX LLEN LPOS SMEMBERS SISMEMBER SMISMEMBER SCARD "
    "SRANDMEMBER ZRANGE ZRANGEBYSCORE ZREVRANGE ZSCORE ZMSCORE ZRANK ZREVRANK ZCARD ZCOUNT "
    "GETBIT BITCOUNT PFCOUNT XLEN XRANGE XREVRANGE DUMP"
)
KEY_WRITES = _words(
    "SET SETEX PSETEX SETNX SETRANGE GETSET GETDEL GETEX APPEND INCR INCRBY INCRBYFLOAT "
    "DECR DECRBY DEL UNLINK EXPIRE PEXPIRE EXPIREAT PEXPIREAT PERSIST RENAME HSET HSETNX "
    "HMSET HDEL HINCRBY HINCRBYFLOAT LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LSET LREM LTRIM "
    "LINSERT SADD SREM SPOP SMOVE ZADD ZREM ZINCRBY ZPOPMIN ZPOPMAX SETBIT PFADD MSET "
    "MSETNX RESTORE"
)
_ALL_KEYS = _words("MGET EXISTS DEL UNLINK")  # every argument is a key
_PAIRS = _words("MSET MSETNX")  # key, value, key, value, ...
MAX_KEYS = 16


def _keys_of(command: str, args: tuple[Any, ...]) -> list[Any]:
    if command in _ALL_KEYS:
        return list(args[1 : 1 + MAX_KEYS])
    if command in _PAIRS:
        return list(args[1::2][:MAX_KEYS])
    return list(args[1:2])


def record_keys(rec: _r.Recorder, args: tuple[Any, ...], key: int) -> None:
    """The data accesses of one command that returned (see the module doc)."""
    try:
        command = m.text(args[0]).upper()
        write = command in KEY_WRITES
        if not (write or command in KEY_READS) or not d.enabled(rec):
            return
        for k in _keys_of(command, args):
            name = d.cut(f"redis:{m.text(k)}")
            rid = d.resource(rec, name, store="redis", statement=command, key=key)
            if write:
                d.atomic_write(rec, d.shared_lock(rec, name, key), rid, key)
            else:
                d.access(rec, rid, d.READ, key)
    except Exception as exc:
        rec.fault("redis.execute_command", exc)


async def _keys_when_done(rec: _r.Recorder, args: tuple[Any, ...], key: int, aw: Any) -> Any:
    result = await aw
    record_keys(rec, args, key)
    return result


def make_execute_command(orig: Fn) -> Fn:
    """A client's ``execute_command`` (sync, or async returning its coroutine) that records
    the key accesses of the commands that return."""

    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        rec = _r.RECORDER
        if rec is None or not args:
            return orig(self, *args, **options)
        key = 0
        try:
            key = _key()
        except Exception as exc:
            rec.fault("redis.execute_command", exc)
        result = orig(self, *args, **options)
        if _awaitable(result):
            return _keys_when_done(rec, args, key, result)
        record_keys(rec, args, key)
        return result

    return execute_command


KEY_COMMANDS: tuple[tuple[str, Make], ...] = (("execute_command", make_execute_command),)


# --- installing ---------------------------------------------------------------------------

COMMANDS: tuple[tuple[str, Make], ...] = (
    ("xadd", make_xadd),
    ("xread", make_xread),
    ("xreadgroup", make_xreadgroup),
    ("publish", make_publish),
)
PIPELINE_METHODS: tuple[tuple[str, Make], ...] = (
    ("execute", make_execute),
    ("reset", make_reset),
    ("_wisp_pipeline", lambda _absent: True),  # marks the class: its reads are queued
)


def wrap(patches: m.Patches, cls: Any, hooks: tuple[tuple[str, Make], ...]) -> None:
    """Replace each ``cls.attr`` by ``make(original)`` (None for an attribute it lacks)."""
    for attr, make in hooks:
        patches.set(cls, attr, make(getattr(cls, attr, None)))


def _patch() -> None:
    client = importlib.import_module("redis.client")
    cluster = importlib.import_module("redis.cluster")
    lib_dir()
    wrap(_patches, client.Redis, COMMANDS + KEY_COMMANDS)
    wrap(_patches, cluster.RedisCluster, COMMANDS + KEY_COMMANDS)
    for pipeline in (client.Pipeline, cluster.ClusterPipeline):
        wrap(_patches, pipeline, PIPELINE_METHODS)
    pubsub = (("handle_message", make_handle_message), ("get_message", _make_get_message))
    wrap(_patches, client.PubSub, pubsub)


_hook = m.DeferredHook("redis", _patch, _patches, "install redis")
install = _hook.install  # hooks redis-py now if imported, else when the program imports it
uninstall = _hook.uninstall
