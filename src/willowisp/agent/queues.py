"""Hooks for ``queue``: Queue, LifoQueue, PriorityQueue and SimpleQueue.

A put and a get are one event each (``queue.put`` / ``queue.get``) whose arg is the item's
token, so the analyzer can draw the put → get edge for exactly the item that moved, whatever
the queue's order (FIFO, LIFO, priority). Tokens ride beside the items: for the Queue family
a per-queue map from ``id(item)`` (stable while the item sits in the queue) to its tokens,
filled in ``_put`` and emptied in ``_get``, both called under the queue's own mutex; for
SimpleQueue (a C type without such hooks) the item travels wrapped in a private tuple.

Queues the standard library makes for itself (the executor's work queue) are left alone.
The queue's internal lock and conditions are never user locks.
"""

from __future__ import annotations

import _queue
import queue
from collections import deque
from typing import Any

from willowisp.agent import recorder as _r
from willowisp.agent import rows, standing
from willowisp.model.spec import K, Outcome, Reason

_orig: dict[str, Any] = {}
PUT, GET, BLOCK, WAKE = int(K.QUEUE_PUT), int(K.QUEUE_GET), int(K.UNIT_BLOCK), int(K.UNIT_WAKE)


def _emit_user(kind: int, res: int, arg: int) -> None:
    rec = _r.RECORDER
    if rec is not None:
        try:
            if rows.FAST is not None:  # straight to C: one Python call less per event
                rows.FAST.record_user(kind, res, arg)
            else:
                rec.emit_user(kind, res, arg)
        except Exception as exc:
            rec.fault("queue", exc)


def _queue_init(self: Any, maxsize: int = 0) -> None:
    _orig["Queue.__init__"](self, maxsize)
    if standing.recording_primitives() and not standing.created_by_internal_code(1):
        try:
            rid = self._wisp_rid = standing.new_primitive(self, "queue", 1)
            # FIFO and LIFO queues keep tokens in a parallel deque (same order as the
            # items); a PriorityQueue maps id(item) -> tokens.
            self._wisp_tokens = {} if isinstance(self, queue.PriorityQueue) else deque()
            # Waits are recorded by the queue's own conditions, so the common path (an
            # item is there) pays nothing beyond the put/get event.
            self.not_empty = _QueueCondition(self.mutex, rid, Reason.GET)
            self.not_full = _QueueCondition(self.mutex, rid, Reason.PUT)
            self.all_tasks_done = _QueueCondition(self.mutex, rid, Reason.WAIT, notifies=True)
        except Exception as exc:
            rec = _r.RECORDER
            if rec is not None:
                rec.fault("Queue.__init__", exc)


_QueueCondition: Any = None  # made by install(): a subclass of the original Condition


def _make_queue_condition(base: Any) -> Any:
    class QueueCondition(base):  # type: ignore[misc]
        """One of a user queue's conditions: the same object as before, except that waits
        are recorded on the queue (entering, leaving and notify are the original ones)."""

        def __init__(self, mutex: Any, rid: int, reason: int, notifies: bool = False) -> None:
            super().__init__(mutex)
            self._wisp_rid = rid
            self._wisp_reason = reason
            self._wisp_notifies = notifies

        def wait(self, timeout: float | None = None) -> bool:
            _emit_user(BLOCK, self._wisp_rid, self._wisp_reason)
            ok = super().wait(timeout)
            if not ok:
                _emit_user(WAKE, self._wisp_rid, Outcome.TIMEOUT)
            elif self._wisp_notifies:
                _emit_user(WAKE, self._wisp_rid, Outcome.OK)
            return bool(ok)

        def notify_all(self) -> None:
            if self._wisp_notifies:  # the last task_done: what Queue.join waits for
                _emit_user(int(K.SYNC_NOTIFY), self._wisp_rid, -1)
            super().notify_all()

    return QueueCondition


def _make_put(cls_name: str, keyed: bool) -> Any:
    orig = _orig[f"{cls_name}._put"]

    def _put(self: Any, item: Any) -> None:
        orig(self, item)
        rid = getattr(self, "_wisp_rid", 0)
        if rid:
            rec = _r.RECORDER
            if rec is None:  # between recordings: a token of none keeps items and tokens aligned
                if keyed:
                    self._wisp_tokens.setdefault(id(item), deque()).append(0)
                else:
                    self._wisp_tokens.append(0)
            else:
                try:
                    token = next(rec.tokens)
                    if keyed:
                        self._wisp_tokens.setdefault(id(item), deque()).append(token)
                    else:
                        self._wisp_tokens.append(token)
                    if rows.FAST is not None:
                        rows.FAST.record_user(PUT, rid, token)
                    else:
                        rec.emit_user(PUT, rid, token)
                except Exception as exc:
                    rec.fault("Queue._put", exc)

    return _put


def _make_get(cls_name: str, lifo: bool, keyed: bool) -> Any:
    orig = _orig[f"{cls_name}._get"]

    def _get(self: Any) -> Any:
        item = orig(self)
        rid = getattr(self, "_wisp_rid", 0)
        if rid:
            rec = _r.RECORDER
            if rec is not None:
                try:
                    token = 0
                    tokens = self._wisp_tokens
                    if keyed:
                        tokens = tokens.get(id(item))
                        if tokens:
                            token = tokens.popleft()
                            if not tokens:
                                del self._wisp_tokens[id(item)]
                    elif tokens:
                        token = tokens.pop() if lifo else tokens.popleft()
                    if rows.FAST is not None:
                        rows.FAST.record_user(GET, rid, token)
                    else:
                        rec.emit_user(GET, rid, token)
                except Exception as exc:
                    rec.fault("Queue._get", exc)
        return item

    return _get


class _Tagged(tuple):  # type: ignore[type-arg]
    """(token, item) as it travels through a SimpleQueue."""

    __slots__ = ()


class SimpleQueue(_queue.SimpleQueue):  # type: ignore[type-arg]
    _wisp_rid = 0

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        recording = standing.recording_primitives()
        if cls is SimpleQueue and (not recording or standing.created_by_internal_code(1)):
            return _orig["SimpleQueue"]()
        self = super().__new__(cls)
        if recording:
            self._wisp_rid = standing.new_primitive(self, "queue", 1)
        return self

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        rec = _r.RECORDER
        token = 0
        if rec is not None and self._wisp_rid:
            try:
                token = next(rec.tokens)
                rec.emit_user(PUT, self._wisp_rid, token)
            except Exception as exc:
                rec.fault("SimpleQueue.put", exc)
        super().put(_Tagged((token, item)), block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block and self._wisp_rid and self.empty():
            _emit_user(BLOCK, self._wisp_rid, Reason.GET)
            try:
                v = super().get(block, timeout)
            except queue.Empty:
                _emit_user(WAKE, self._wisp_rid, Outcome.TIMEOUT)
                raise
        else:
            v = super().get(block, timeout)
        if type(v) is _Tagged:
            token, item = v
            if self._wisp_rid:
                _emit_user(GET, self._wisp_rid, token)
            return item
        return v

    def get_nowait(self) -> Any:
        return self.get(False)

    def put_nowait(self, item: Any) -> None:
        self.put(item, False)


_queue_mod: Any = queue  # patched through Any: the replacements are wrappers by design
_FAMILY = (("Queue", False, False), ("LifoQueue", True, False), ("PriorityQueue", False, True))


def install() -> None:
    global _QueueCondition
    if _orig:
        return
    import threading

    _orig["Queue.__init__"] = queue.Queue.__init__
    _orig["SimpleQueue"] = queue.SimpleQueue
    _orig["Condition"] = getattr(threading, "_wisp_original_Condition", threading.Condition)
    for name, _, _ in _FAMILY:
        cls = getattr(_queue_mod, name)
        _orig[f"{name}._put"] = cls.__dict__["_put"]
        _orig[f"{name}._get"] = cls.__dict__["_get"]
    _QueueCondition = _make_queue_condition(_orig["Condition"])
    _queue_mod.Queue.__init__ = _queue_init
    for name, lifo, keyed in _FAMILY:
        cls = getattr(_queue_mod, name)
        cls._put = _make_put(name, keyed)
        cls._get = _make_get(name, lifo, keyed)
    _queue_mod.SimpleQueue = SimpleQueue


def uninstall() -> None:
    if not _orig:
        return
    _queue_mod.Queue.__init__ = _orig["Queue.__init__"]
    for name, _, _ in _FAMILY:
        cls = getattr(_queue_mod, name)
        cls._put = _orig[f"{name}._put"]
        cls._get = _orig[f"{name}._get"]
    _queue_mod.SimpleQueue = _orig["SimpleQueue"]
    _orig.clear()
