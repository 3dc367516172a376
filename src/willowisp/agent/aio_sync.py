"""Hooks for asyncio's primitives: the ``Lock``, ``Event``, ``Condition``, ``Semaphore``,
``BoundedSemaphore``, ``Queue``, ``LifoQueue`` and ``PriorityQueue`` the program creates
are resources, and waits on them are recorded from inside the waiting task's step.

How it fits: aio.py makes tasks units and points the thread's current unit at the running
task for the length of each step, so whatever this module writes during a step is the
task's. aio.py installs and removes these patches along with its own (``patch``, ``undo``)
and hands ``patch`` the function that tells it the running step wrote its own block (so the
step's end adds none); this module never imports aio.

**Waits.** A primitive that is about to suspend its task writes ``unit.block`` inside the
step, before the suspension, and its ending event (``lock.acquired``, ``queue.get``,
``unit.wake``) when the task resumes. ``watch`` drives the original coroutine to see
exactly whether it suspends, so nothing here re-implements asyncio's logic. The trade-off
is a driver (a generator and a ``send`` per resumption) around every recorded wait; only an
unlocked Lock nobody waits for, where asyncio cannot suspend, skips it: locks are hot.

**Resources.** Only what the program creates: a primitive created by standard-library code
(a Condition's own lock, a Queue's internals) stays silent, at the cost of one frame look
per creation. Queue puts and gets are paired by a token, as in queues.py.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from willowisp.agent import recorder as _r
from willowisp.agent import rows
from willowisp.model.spec import K, Outcome, Reason

BLOCK, WAKE = int(K.UNIT_BLOCK), int(K.UNIT_WAKE)
ACQ, REL, NOTIFY = int(K.LOCK_ACQUIRED), int(K.LOCK_RELEASE), int(K.SYNC_NOTIFY)
PUT, GET = int(K.QUEUE_PUT), int(K.QUEUE_GET)

_orig: dict[str, Any] = {}  # originals by "Class.attr", filled by patch (kept by undo)
_patched: list[tuple[type, str, Any]] = []  # (class, attribute, previous value or _MISSING)
_MISSING = object()

# Bound by patch to the running interpreter's asyncio and to aio.py.
_cancelled_error: type[BaseException] = BaseException
_note_block: Callable[[int], None] = lambda rid: None  # noqa: E731 - placeholder until patch
# The recorder's C fast path, if it has one: record_user(kind, res, arg) is what
# Recorder.emit_user calls, one call sooner.
_record_user: Callable[[int, int, int], None] | None = None


def _fault(where: str, exc: BaseException) -> None:
    rec = _r.RECORDER
    if rec is not None:
        rec.fault(where, exc)


def _emit_user(kind: int, res: int, arg: int) -> None:
    """An event of the current unit at the program's innermost frame (Recorder.emit_user)."""
    rec = _r.RECORDER
    if rec is not None:
        try:
            if _record_user is not None:
                _record_user(kind, res, arg)
            else:
                rec.emit_user(kind, res, arg)
        except Exception as exc:
            rec.fault("asyncio", exc)


# --- waits seen from inside the step ------------------------------------------------------------


def _block(rid: int, reason: int) -> None:
    """Write ``unit.block`` for the running task and tell aio.py, so the step's end adds none."""
    _emit_user(BLOCK, rid, reason)
    try:
        _note_block(rid)
    except Exception as exc:
        _fault("asyncio block", exc)


def _wake_outcome(exc: BaseException) -> int:
    return Outcome.CANCELLED if isinstance(exc, _cancelled_error) else Outcome.ERROR


@types.coroutine
def watch(
    coro: Any, rid: int, reason: int, done_kind: int, done_arg: int, wake_on_resume: bool
) -> Generator[Any, Any, Any]:
    """Await ``coro`` (an original primitive's coroutine, or TaskGroup.__aexit__'s for aio.py),
    recording its wait on resource ``rid`` for ``reason``.

    If it completes without suspending: ``done_kind`` (if any). If it is about to suspend:
    ``unit.block`` first, and on completion ``done_kind`` (if any); if it raises after
    suspending, ``unit.wake`` cancelled (CancelledError) or error. ``wake_on_resume`` writes
    ``unit.wake`` as soon as the task is first resumed instead (Condition.wait, whose
    re-acquisition of the lock that follows is recorded by the lock).
    """
    try:
        y = coro.send(None)
    except StopIteration as stop:
        if done_kind:
            _emit_user(done_kind, rid, done_arg)
        return stop.value
    _block(rid, reason)
    woken = False
    try:
        while True:
            try:
                sent = yield y
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                if wake_on_resume and not woken:
                    woken = True
                    _emit_user(WAKE, rid, _wake_outcome(exc))
                y = coro.throw(exc)
            else:
                if wake_on_resume and not woken:
                    woken = True
                    _emit_user(WAKE, rid, Outcome.OK)
                y = coro.send(sent)
    except StopIteration as stop:
        if done_kind and not woken:
            _emit_user(done_kind, rid, done_arg)
        return stop.value
    except GeneratorExit:
        raise
    except BaseException as exc:
        if not woken:
            _emit_user(WAKE, rid, _wake_outcome(exc))
        raise


def _define(obj: Any, kind: str) -> int:
    """Make ``obj`` a resource if the program (not the standard library) created it."""
    rec = _r.RECORDER
    if rec is None:
        return 0
    try:
        if rec.created_by_internal_code(2):
            return 0
        rid = rec.new_resource(kind, 2)
        obj._wisp_rid = rid
        return rid
    except Exception as exc:
        rec.fault(f"asyncio {kind}", exc)
        return 0


def _lock_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["Lock.__init__"](self, *args, **kwargs)
    _define(self, "lock")


async def _lock_acquire(self: Any) -> bool:
    rid = self._wisp_rid
    orig = _orig["Lock.acquire"]
    if not rid:
        return bool(await orig(self))
    if not self._locked and not self._waiters:
        # asyncio takes its fast path here (no suspension): skip the driver, locks are hot.
        got = await orig(self)
        _emit_user(ACQ, rid, 0)
        return bool(got)
    return bool(await watch(orig(self), rid, Reason.ACQUIRE, ACQ, 0, False))


def _lock_release(self: Any) -> None:
    rid = self._wisp_rid
    if rid and self._locked:  # written before the release (docs/format.md)
        _emit_user(REL, rid, 0)
    _orig["Lock.release"](self)


def _event_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["Event.__init__"](self, *args, **kwargs)
    _define(self, "event")


def _event_set(self: Any) -> None:
    rid = self._wisp_rid
    if rid:
        _emit_user(NOTIFY, rid, -1)
    _orig["Event.set"](self)


async def _event_wait(self: Any) -> bool:
    rid = self._wisp_rid
    orig = _orig["Event.wait"]
    if not rid:
        return bool(await orig(self))
    return bool(await watch(orig(self), rid, Reason.WAIT, WAKE, Outcome.OK, False))


def _condition_init(self: Any, lock: Any = None, *args: Any, **kwargs: Any) -> None:
    _orig["Condition.__init__"](self, lock, *args, **kwargs)
    rid = _define(self, "condition")
    if rid and lock is None:
        # The condition's own lock is not a resource of its own: its acquisitions and
        # releases are recorded on the condition.
        self._lock._wisp_rid = rid


async def _condition_wait(self: Any) -> bool:
    rid = self._wisp_rid
    orig = _orig["Condition.wait"]
    if not rid:
        return bool(await orig(self))
    return bool(await watch(orig(self), rid, Reason.WAIT, 0, 0, True))


def _condition_notify(self: Any, n: int = 1) -> None:
    rid = self._wisp_rid
    if rid and self.locked():
        _emit_user(NOTIFY, rid, n)
    _orig["Condition.notify"](self, n)


def _condition_notify_all(self: Any) -> None:
    rid = self._wisp_rid
    if rid and self.locked():
        _emit_user(NOTIFY, rid, -1)
    # notify_all() calls notify(); call the original so the event is written once.
    _orig["Condition.notify"](self, len(self._waiters))


def _semaphore_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["Semaphore.__init__"](self, *args, **kwargs)
    _define(self, "semaphore")


def _bounded_semaphore_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["BoundedSemaphore.__init__"](self, *args, **kwargs)
    _define(self, "semaphore")


async def _semaphore_acquire(self: Any) -> bool:
    rid = self._wisp_rid
    orig = _orig["Semaphore.acquire"]
    if not rid:
        return bool(await orig(self))
    return bool(await watch(orig(self), rid, Reason.ACQUIRE, ACQ, 0, False))


def _semaphore_release(self: Any) -> None:
    rid = self._wisp_rid
    if rid:  # BoundedSemaphore checks its bound before calling this
        _emit_user(REL, rid, 0)
    _orig["Semaphore.release"](self)


# --- queues: one event per put and per get, paired by a token (as in queues.py) --------------


def _queue_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["Queue.__init__"](self, *args, **kwargs)
    if _define(self, "queue"):
        self._wisp_tokens = {}  # id(item) -> tokens of that item now in the queue


def _make_put(orig: Callable[..., None]) -> Callable[..., None]:
    def _put(self: Any, item: Any, *args: Any) -> None:
        orig(self, item, *args)
        rid = self._wisp_rid
        if rid:
            rec = _r.RECORDER
            if rec is not None:
                try:
                    token = next(rec.tokens)
                    self._wisp_tokens.setdefault(id(item), deque()).append(token)
                    rec.emit_user(PUT, rid, token)
                except Exception as exc:
                    rec.fault("asyncio Queue._put", exc)

    return _put


def _make_get(orig: Callable[..., Any], lifo: bool) -> Callable[..., Any]:
    def _get(self: Any, *args: Any) -> Any:
        item = orig(self, *args)
        rid = self._wisp_rid
        if rid:
            rec = _r.RECORDER
            if rec is not None:
                try:
                    token = 0
                    tokens = self._wisp_tokens.get(id(item))
                    if tokens:
                        token = tokens.pop() if lifo else tokens.popleft()
                        if not tokens:
                            del self._wisp_tokens[id(item)]
                    rec.emit_user(GET, rid, token)
                except Exception as exc:
                    rec.fault("asyncio Queue._get", exc)
        return item

    return _get


async def _queue_get(self: Any) -> Any:
    rid = self._wisp_rid
    orig = _orig["Queue.get"]
    if not rid:
        return await orig(self)
    return await watch(orig(self), rid, Reason.GET, 0, 0, False)  # _get writes queue.get


async def _queue_put(self: Any, item: Any) -> None:
    rid = self._wisp_rid
    orig = _orig["Queue.put"]
    if not rid:
        await orig(self, item)
        return
    await watch(orig(self, item), rid, Reason.PUT, 0, 0, False)  # _put writes queue.put


def _queue_task_done(self: Any) -> None:
    rid = self._wisp_rid
    if rid:
        _emit_user(NOTIFY, rid, 1)
    _orig["Queue.task_done"](self)


async def _queue_join(self: Any) -> None:
    rid = self._wisp_rid
    orig = _orig["Queue.join"]
    if not rid:
        await orig(self)
        return
    await watch(orig(self), rid, Reason.WAIT, WAKE, Outcome.OK, False)


# --- installing ---------------------------------------------------------------------------------


def _set(cls: type, attr: str, value: Any) -> None:
    previous = cls.__dict__.get(attr, _MISSING)
    _orig[f"{cls.__name__}.{attr}"] = previous
    _patched.append((cls, attr, previous))
    setattr(cls, attr, value)


def patch(note_block: Callable[[int], None]) -> None:
    """Patch the asyncio that is now imported (aio.py calls this from its own patching).

    ``note_block(rid)`` is called after each ``unit.block`` written from inside a step; it may
    raise (recorded as a fault). Not idempotent and not all or nothing: a failure leaves what
    was patched for ``undo``, which aio.py calls.
    """
    global _cancelled_error, _note_block, _record_user
    import asyncio
    from asyncio import locks, queues

    _record_user = None if rows.FAST is None else rows.FAST.record_user
    _cancelled_error = asyncio.CancelledError
    _note_block = note_block
    for cls in (locks.Lock, locks.Event, locks.Condition, locks.Semaphore, queues.Queue):
        _set(cls, "_wisp_rid", 0)
    _set(locks.Lock, "__init__", _lock_init)
    _set(locks.Lock, "acquire", _lock_acquire)
    _set(locks.Lock, "release", _lock_release)
    _set(locks.Event, "__init__", _event_init)
    _set(locks.Event, "set", _event_set)
    _set(locks.Event, "wait", _event_wait)
    _set(locks.Condition, "__init__", _condition_init)
    _set(locks.Condition, "wait", _condition_wait)
    _set(locks.Condition, "notify", _condition_notify)
    _set(locks.Condition, "notify_all", _condition_notify_all)
    _set(locks.Semaphore, "__init__", _semaphore_init)
    _set(locks.BoundedSemaphore, "__init__", _bounded_semaphore_init)
    _set(locks.Semaphore, "acquire", _semaphore_acquire)
    _set(locks.Semaphore, "release", _semaphore_release)
    _set(queues.Queue, "__init__", _queue_init)
    _set(queues.Queue, "get", _queue_get)
    _set(queues.Queue, "put", _queue_put)
    _set(queues.Queue, "task_done", _queue_task_done)
    _set(queues.Queue, "join", _queue_join)
    for qcls, lifo in (
        (queues.Queue, False),
        (queues.LifoQueue, True),
        (queues.PriorityQueue, False),
    ):
        _set(qcls, "_put", _make_put(qcls.__dict__["_put"]))
        _set(qcls, "_get", _make_get(qcls.__dict__["_get"], lifo))


def undo() -> None:
    """Put back what ``patch`` changed, latest first. ``_orig`` is kept: a call another
    thread entered before this point still finds it."""
    while _patched:
        cls, attr, previous = _patched.pop()
        if previous is _MISSING:
            delattr(cls, attr)
        else:
            setattr(cls, attr, previous)
