"""A task's wait across an await whose inside suspends many times: the reply to an async HTTP
or gRPC request, the next message of an asyncio consumer.

A sync client waits in one blocking call, so its wait is one ``unit.block`` ended by the
reply. An asyncio client suspends its task several times per request (connect, write,
read), and the library may record events of its own in between: anyio's events, aio-pika's
and aiokafka's queues are asyncio primitives created outside the standard library, which
aio_sync.py records. A wait lasts until the unit's next meaningful event, so any such event
would end a wait written once at the start. ``drive`` therefore awaits the library's
coroutine itself and writes ``unit.block`` right before a suspension whenever something was
recorded since the task last resumed (always before the first one), and tells aio.py that
the step ends in that block, so the step's ``unit.yield`` names the resource. The event that
ends the wait (``rpc.response``, ``msg.recv``, ``unit.wake``) is the caller's to write once
the await returns.

Trade-off: one generator step per suspension of the request (well under a microsecond),
and a compare of the thread's buffer position to tell whether anything was recorded, so a
request whose library records nothing costs exactly one ``unit.block``.
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any

from willowisp.agent import aio_sync
from willowisp.agent import recorder as _r
from willowisp.model.spec import K

BLOCK = int(K.UNIT_BLOCK)


def _block(rid: int, reason: int, key: int) -> None:
    """Write ``unit.block`` for the running unit and name it as the step's end."""
    rec = _r.RECORDER
    if rec is None:
        return
    try:
        st = _r.state()
        rec.emit_for(st, st.unit, BLOCK, rid, reason, key)
        aio_sync._note_block(rid)
    except Exception as exc:
        rec.fault("task wait", exc)


def _note(rid: int) -> None:
    """The step ends in the wait already written: name it in the step's ``unit.yield``."""
    try:
        aio_sync._note_block(rid)
    except Exception as exc:
        rec = _r.RECORDER
        if rec is not None:
            rec.fault("task wait", exc)


@types.coroutine
def drive(
    coro: Coroutine[Any, Any, Any], rid: int, reason: int, key: int, *, blocked: bool = False
) -> Generator[Any, Any, Any]:
    """Await ``coro``, recording the running task's wait on resource ``rid`` (``reason``,
    located at ``key``) across each of its suspensions, as the module doc says; ``blocked``:
    the caller has just written the block itself. Returns or raises what ``coro`` does; a
    cancellation is passed into it, as a plain ``await`` would.
    """
    value: Any = None
    error: BaseException | None = None
    # The thread's buffer and write offset when the task last resumed (or the caller wrote
    # its block): unchanged at the next suspension means nothing was recorded since, so the
    # wait written before is still open.
    buf: bytearray | None = None
    used = -1
    if blocked:
        st = _r.state()
        buf, used = st.buf, st.used
    while True:
        try:
            y = coro.send(value) if error is None else coro.throw(error)
        except StopIteration as stop:
            return stop.value
        st = _r.state()
        if st.buf is buf and st.used == used:
            _note(rid)
        else:
            _block(rid, reason, key)
        try:
            value, error = (yield y), None
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            value, error = None, exc
        st = _r.state()
        buf, used = st.buf, st.used
