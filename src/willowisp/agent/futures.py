"""Hooks for ``concurrent.futures``: the hand-off of work to a ThreadPoolExecutor, and waits
on the futures it returns.

**Hand-off.** Each executor is a ``queue`` resource ("ThreadPoolExecutor-0 work", located
where the program created it). ``submit`` writes ``queue.put`` with a fresh token as the work
item enters the executor's work queue, and the worker thread writes ``queue.get`` with the
same token just before it runs the item, so put → get is the happens-before edge from the
submitter to the work. The work queue is replaced, while the executor is still empty, by a
subclass whose ``put`` tags the item: the token travels on the item itself, never through a
lookup table. Worker threads are units through the threading hook, named as the executor
names them ("ThreadPoolExecutor-0_0"). Idle workers waiting for work write nothing.

**Context.** A work item runs under the trace context (and boundary) of the unit that
submitted it, captured once at submit and carried on the item with the token, as
OpenTelemetry's threading instrumentation does. Worker threads are started with no trace
context of their own: the executor starts them inside whichever submit first needs one, and
the request behind that submit must not lend its trace to every later job the worker runs.

**Futures.** Each future returned by ``submit`` is a ``future`` resource, defined before
its work item can reach a worker (so the worker's notify can never miss it) and named after
the variable the program's submitting line assigns. ``result()`` / ``exception()`` on a
future that is not done writes ``unit.block`` (reason await) and then ``unit.wake`` with how
the wait ended; called directly by the program on a done future, they write ``unit.wake``
alone, which keeps the edge from the producer (asyncio's internal reads of executor futures
stay silent). Setting the result or exception, or cancelling, writes ``sync.notify``.

Not recorded: ``concurrent.futures.wait`` and ``as_completed`` (they wait on private
waiters; the ``result()`` that usually follows is recorded), futures the program creates
itself, and ``ProcessPoolExecutor``.
"""

from __future__ import annotations

import _queue
import sys
from typing import Any

from willowisp.agent import context, post_import
from willowisp.agent import recorder as _r
from willowisp.model.spec import K, Outcome, Reason

PUT, GET = int(K.QUEUE_PUT), int(K.QUEUE_GET)
BLOCK, WAKE, NOTIFY = int(K.UNIT_BLOCK), int(K.UNIT_WAKE), int(K.SYNC_NOTIFY)
# concurrent.futures._base's states (strings there too): not imported here, so a program
# that never uses concurrent.futures does not pay for importing it (it pulls in logging).
_DONE = frozenset({"CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED"})
_SETTABLE = frozenset({"PENDING", "RUNNING"})
_waiting: list[post_import.Waiting] = []

_orig: dict[str, Any] = {}  # originals by "Class.attr"; kept by uninstall for calls in flight
_patched: list[tuple[type, str, Any]] = []  # (class, attribute, previous value or _MISSING)
_MISSING = object()


def _emit_user(kind: int, res: int, arg: int) -> None:
    rec = _r.RECORDER
    if rec is not None:
        try:
            rec.emit_user(kind, res, arg)
        except Exception as exc:
            rec.fault("concurrent.futures", exc)


class _WorkQueue(_queue.SimpleQueue[Any]):
    """An executor's work queue that records each work item entering it.

    Invariant: an item put while the agent runs carries ``_wisp = (queue resource, token,
    submitter's context)`` and its future a ``_wisp_rid`` before any worker can take it.
    """

    __slots__ = ("_wisp_rid",)

    def __init__(self, rid: int) -> None:
        super().__init__()
        self._wisp_rid = rid

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:
            rec = _r.RECORDER
            if rec is not None:
                try:
                    self._tag(rec, item)
                except Exception as exc:
                    rec.fault("ThreadPoolExecutor.submit", exc)
        super().put(item, block, timeout)

    def _tag(self, rec: _r.Recorder, item: Any) -> None:
        future = getattr(item, "future", None)
        if future is not None and not future._wisp_rid:
            depth = rec.program_depth()
            future._wisp_rid = rec.new_resource("future", depth or (1 << 30))
        token = next(rec.tokens)
        item._wisp = (self._wisp_rid, token, context.capture())
        rec.emit_user(PUT, self._wisp_rid, token)


def _executor_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _orig["ThreadPoolExecutor.__init__"](self, *args, **kwargs)
    rec = _r.RECORDER
    if rec is None:
        return
    try:
        depth = rec.program_depth()
        rid = rec.new_resource(
            "queue", depth or (1 << 30), name=f"{self._thread_name_prefix} work", pool=1
        )
        self._work_queue = _WorkQueue(rid)  # still empty: no thread has started yet
    except Exception as exc:
        rec.fault("ThreadPoolExecutor.__init__", exc)


def _adjust_thread_count(self: Any) -> None:
    """Starts a worker thread when the pool has room: with no trace context, so the thread
    does not inherit the submitting request's (each work item brings its own).

    The boundary is still inherited: in hops mode it is what records the worker's
    ``unit.create`` and ``unit.start`` at all, and between work items a worker writes
    nothing the boundary could let through but its ``unit.end``.
    """
    orig = _orig["ThreadPoolExecutor._adjust_thread_count"]
    # the common case once warm: nothing to start (getattr: private, may change)
    if len(getattr(self, "_threads", ())) >= getattr(self, "_max_workers", 0):
        orig(self)
        return
    token = context.set_current(None)
    try:
        orig(self)
    finally:
        context.reset(token)


def _work_item_run(self: Any, *args: Any) -> None:
    # *args: 3.14 passes the worker's context to run()
    tag = self.__dict__.get("_wisp")
    if tag is None:
        _orig["_WorkItem.run"](self, *args)
        return
    # entered before the get: in hops mode the boundary decides whether it is recorded
    tokens = context.enter(tag[2])
    try:
        rec = _r.RECORDER
        if rec is not None:
            try:
                rec.emit(GET, tag[0], tag[1], 0)
            except Exception as exc:
                rec.fault("ThreadPoolExecutor worker", exc)
        _orig["_WorkItem.run"](self, *args)
    finally:
        context.leave(tokens)


def _outcome(exc: BaseException | None) -> int:
    if exc is None:
        return Outcome.OK
    if isinstance(exc, TimeoutError):
        return Outcome.TIMEOUT
    if isinstance(exc, sys.modules["concurrent.futures._base"].CancelledError):
        return Outcome.CANCELLED
    return Outcome.ERROR


def _waited(name: str) -> Any:
    orig = _orig[f"Future.{name}"]

    def wait(self: Any, timeout: float | None = None) -> Any:
        rid = self._wisp_rid
        if not rid:
            return orig(self, timeout)
        rec = _r.RECORDER
        if self._state in _DONE:
            if rec is None or rec.created_by_internal_code(1):
                return orig(self, timeout)
        else:
            _emit_user(BLOCK, rid, Reason.AWAIT)
        err: BaseException | None = None
        try:
            return orig(self, timeout)
        except BaseException as exc:
            err = exc
            raise
        finally:
            _emit_user(WAKE, rid, _outcome(err))

    wait.__name__ = wait.__qualname__ = name
    return wait


def _notifying(name: str, states: frozenset[str]) -> Any:
    orig = _orig[f"Future.{name}"]

    def complete(self: Any, *args: Any) -> Any:
        rid = self._wisp_rid
        if rid and self._state in states:  # written before the waiters are woken
            _emit_user(NOTIFY, rid, -1)
        return orig(self, *args)

    complete.__name__ = complete.__qualname__ = name
    return complete


def _set(cls: type, attr: str, value: Any) -> None:
    previous = cls.__dict__.get(attr, _MISSING)
    _orig[f"{cls.__name__}.{attr}"] = previous
    _patched.append((cls, attr, previous))
    setattr(cls, attr, value)


def install() -> None:
    """Patch ThreadPoolExecutor, its work items and Future when the program imports
    concurrent.futures (now, if it already has). Idempotent; all or nothing."""
    if _patched or _waiting:
        return
    waiting = post_import.when_imported(
        "concurrent.futures.thread", _install_now, "install futures"
    )
    if waiting is not None:
        _waiting.append(waiting)


def _install_now() -> None:
    try:
        _patch()
    except BaseException:
        uninstall()
        raise


def _patch() -> None:
    from concurrent.futures import _base
    from concurrent.futures import thread as _thread_pool

    future = _base.Future
    _set(_thread_pool.ThreadPoolExecutor, "__init__", _executor_init)
    _set(_thread_pool.ThreadPoolExecutor, "_adjust_thread_count", _adjust_thread_count)
    _set(_thread_pool._WorkItem, "run", _work_item_run)
    _set(future, "_wisp_rid", 0)
    for name in ("result", "exception"):
        _orig[f"Future.{name}"] = future.__dict__[name]
        _set(future, name, _waited(name))
    for name, states in (
        ("set_result", _SETTABLE),
        ("set_exception", _SETTABLE),
        ("cancel", frozenset({"PENDING"})),
    ):
        _orig[f"Future.{name}"] = future.__dict__[name]
        _set(future, name, _notifying(name, states))


def uninstall() -> None:
    """Put concurrent.futures back. Executors created meanwhile keep their (silent) queue."""
    while _waiting:
        post_import.cancel(_waiting.pop())
    while _patched:
        cls, attr, previous = _patched.pop()
        if previous is _MISSING:
            delattr(cls, attr)
        else:
            setattr(cls, attr, previous)
