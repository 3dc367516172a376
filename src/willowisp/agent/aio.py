"""Hooks for ``asyncio``: tasks as units, and asyncio's locks, events, conditions, semaphores
and queues as resources.

**Tasks.** ``BaseEventLoop.create_task`` (which ``asyncio.create_task``, ``ensure_future``,
``gather`` and ``TaskGroup`` all reach) makes each new task a unit of kind ``task`` and writes
``unit.create`` in the creating unit, located at the program's own frame. Every step of a task
then runs through ``asyncio.events.Handle._run`` with one of the task's bound methods as the
callback (its step wrapper, or its wakeup after a future completes). The wrapper recognises
those, points the thread's ``tl.st.unit`` at the task for the length of the step, so every
hook that records during the step records for the task, and brackets the step with
``unit.start``/``unit.run`` before and ``unit.end``/``unit.yield`` after.

**Waits.** A primitive that is about to suspend its task writes ``unit.block`` inside the step,
before the suspension, and its ending event (``lock.acquired``, ``queue.get``, ``unit.wake``)
when the task resumes; ``_watch`` drives the original coroutine to see exactly whether it
suspends, so nothing here re-implements asyncio's logic (only an unlocked Lock nobody waits
for, where asyncio cannot suspend, skips the driver: locks are hot). A step that ends awaiting
another known task, and wrote no explicit block, gets ``unit.block`` on that task's ``join``
resource; awaiting an ``asyncio.gather`` of known tasks (or leaving a ``TaskGroup`` with tasks
still running) is a block on a ``future`` resource whose ``waits_for`` lists them. Such a wait
ends at the start of the task's next step (``join.done`` or ``unit.wake``). Plain futures
(sleep, I/O, ``wait_for``, ``asyncio.wait``) get no block: only the ``unit.yield``.

**Cost.** ``Handle._run`` runs for every callback of every loop, so its miss path is a look
at the callback's type (a task's step or wakeup has one of two or three types), and the task
path writes ``unit.run``/``unit.yield`` inline or through the recorder's C fast path. The
task → unit map is keyed by ``id(task)`` and emptied by a weak reference's callback: ~30 ns
more per lookup than a dict keyed by the task itself, which would keep tasks that are
dropped while pending alive forever (hiding asyncio's "Task was destroyed but it is
pending!"); a ``WeakKeyDictionary`` costs ~75 ns more than ours per lookup
(bench/bench_asyncio_steps.py).

asyncio itself is imported by the program, not by the agent (it costs ~10 ms at start): when
the agent starts before it, the patches go in right after its first import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
import weakref
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any

from willowisp.agent import recorder as _r
from willowisp.agent.recorder import CODE_IDS, ROW_SIZE, mono, pack_into, state, tl
from willowisp.model.spec import EndStatus, K, Outcome, Reason

CREATE, START, END = int(K.UNIT_CREATE), int(K.UNIT_START), int(K.UNIT_END)
RUN, YIELD = int(K.UNIT_RUN), int(K.UNIT_YIELD)
BLOCK, WAKE, JOIN_DONE = int(K.UNIT_BLOCK), int(K.UNIT_WAKE), int(K.JOIN_DONE)
ACQ, REL, NOTIFY = int(K.LOCK_ACQUIRED), int(K.LOCK_RELEASE), int(K.SYNC_NOTIFY)
PUT, GET = int(K.QUEUE_PUT), int(K.QUEUE_GET)

# new_resource() locates a resource at a frame of the current stack; a wait found after a
# step has no program frame on the stack, so its resource is defined with none (a depth past
# any stack gives location 0). The events on it carry the program's line instead.
_NO_FRAME = 1 << 30
# Callback names of the task methods that run a step: the C Task's wakeup, and the pure
# Python Task's step and wakeup. The C Task's step is a TaskStepMethWrapper object.
_STEP_NAMES = frozenset({"task_wakeup", "__step", "__wakeup"})

_orig: dict[str, Any] = {}  # originals by "Class.attr", filled by _patch (kept by uninstall)
_patched: list[tuple[type, str, Any]] = []  # (class, attribute, previous value or _MISSING)
_MISSING = object()


class _TaskInfo:
    """What the agent knows of one task. Changed only by the thread running the task's loop.

    Invariant: ``wait_res`` is non-zero exactly while a join or gather wait written after a
    step is open; the task's next step ends it. ``blocked_on`` is the resource of a block a
    primitive wrote during the running step (0 if none); the step's end consumes it.
    """

    __slots__ = (
        "blocked_on",
        "coro",
        "ended",
        "join_rid",
        "name",
        "parent",
        "ref",
        "started",
        "unit",
        "wait_fut",
        "wait_key",
        "wait_res",
        "wait_unit",
    )

    def __init__(self, unit: int, parent: int, name: str, coro: str) -> None:
        self.unit = unit
        self.parent = parent
        self.name = name
        self.coro = coro
        self.started = False
        self.ended = False
        self.join_rid = 0  # this task's join resource, defined when first waited on
        self.blocked_on = 0
        self.wait_res = 0
        self.wait_fut: Any = None  # the task or gather future waited on
        self.wait_unit = 0  # the awaited unit for a join, 0 for a gather
        self.wait_key = 0  # location key of the await
        self.ref: _Ref | None = None


class _Ref(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a task that knows the task's key in ``_infos``."""

    __slots__ = ("key",)
    key: int


def _forget(ref: _Ref) -> None:
    _infos.pop(ref.key, None)


# id(task) -> info, for every live task created while the agent ran. Invariant: an entry's
# task is alive (its weak reference removes the entry as the task dies, before the id can be
# reused); done tasks stay until then so a gather over them still names their units.
_infos: dict[int, _TaskInfo] = {}
_infos_get = _infos.get

# Bound by _patch to the running interpreter's asyncio.
_orig_run: Callable[[Any], Any] = lambda handle: None  # noqa: E731 - placeholder until _patch
_step_type: type = type(None)  # the C Task's TaskStepMethWrapper, learned at a create_task
# Callback types a task step can have: the C Task's wakeup is a builtin method; its step
# type and a pure Python Task's bound methods are added as create_task first sees them.
_step_types: frozenset[type] = frozenset({type(len)})
_gathering_type: type = type(None)  # asyncio.tasks._GatheringFuture
_current_task: Callable[[], Any] = lambda: None  # noqa: E731 - placeholder until _patch
_cancelled_error: type[BaseException] = BaseException
_naming_codes: frozenset[types.CodeType] = frozenset()  # creators that name tasks afterwards
# The recorder's C fast path, if it has one: record(kind, res, arg, depth) writes one event
# of the thread's current unit (st.unit) in ~80 ns less than the inlined Python write.
_record: Callable[[int, int, int, int], None] | None = None
_record_user: Callable[[int, int, int], None] | None = None


def _fault(where: str, exc: BaseException) -> None:
    rec = _r.RECORDER
    if rec is not None:
        rec.fault(where, exc)


def _write(st: _r.ThreadState, kind: int, unit: int, res: int, arg: int, key: int = 0) -> None:
    """Record an event of ``unit`` into the thread's buffer (the inline write of threads.py)."""
    t = mono()
    i = st.used
    if i < st.end:
        pack_into(st.buf, i, t, kind, unit, res, arg, key)
        st.used = i + ROW_SIZE
    else:
        rec = _r.RECORDER
        if rec is not None:
            rec.emit_for(st, unit, kind, res, arg, key)


def _emit_user(kind: int, res: int, arg: int) -> None:
    """An event of the current unit at the program's innermost frame (Recorder.emit_user)."""
    rec = _r.RECORDER
    if rec is not None:
        try:
            if _record_user is not None:
                _record_user(kind, res, arg)  # what emit_user calls, one call sooner
            else:
                rec.emit_user(kind, res, arg)
        except Exception as exc:
            rec.fault("asyncio", exc)


def _program_depth(rec: _r.Recorder) -> int:
    """Frames above the caller to the program's innermost frame (0 if there is none)."""
    f = sys._getframe(1)
    depth = 0
    while f is not None and rec.is_internal(f.f_code.co_filename):
        f = f.f_back  # type: ignore[assignment]
        depth += 1
    return depth if f is not None else 0


# --- tasks ---------------------------------------------------------------------------------


def _create_task(self: Any, coro: Any, *args: Any, **kwargs: Any) -> Any:
    orig = _orig["BaseEventLoop.create_task"]
    rec = _r.RECORDER
    if rec is None:
        return orig(self, coro, *args, **kwargs)
    st, n, eager, depth = state(), 0, False, 0
    parent = st.unit
    try:
        depth = _program_depth(rec)
        factory = self._task_factory
        # An eager task factory (3.12+) runs the first step inside this call: the task is
        # a unit before it exists, so that step's events are its own.
        eager = getattr(factory, "__qualname__", "").startswith("create_eager_task_factory.")
        if eager:
            n = rec.new_unit_id()
            rec.emit(CREATE, 0, n, depth)
            _write(st, START, n, 0, parent)
            st.unit = n
    except Exception as exc:
        rec.fault("asyncio create_task", exc)
    try:
        task = orig(self, coro, *args, **kwargs)
    except BaseException:
        if eager:
            st.unit = parent
            _write(st, END, n, 0, EndStatus.ERROR)
            rec.define_unit(n, "task", "(not created)", parent, depth, coro=_qualname(coro))
        raise
    if eager:
        st.unit = parent
    try:
        info = _register(task, coro, n or rec.new_unit_id(), parent)
        rec.define_unit(info.unit, "task", info.name, parent, depth, coro=info.coro)
        if not eager:
            rec.emit(CREATE, 0, info.unit, depth)
            if self._task_factory is None or not _already_stepped(task, coro):
                ready = getattr(self, "_ready", None)  # a task factory may make other tasks
                if ready:
                    _learn_step_type(getattr(ready[-1], "_callback", None), task)
                return task
            # A task factory ran a first step we could not see coming: it went to the
            # creator; write the task's bracket now.
            _write(st, START, info.unit, 0, parent)
        info.started = True
        _step_ends(st, task, info)
    except Exception as exc:
        rec.fault("asyncio create_task", exc)
    return task


def _qualname(coro: Any) -> str:
    return str(getattr(coro, "__qualname__", None) or type(coro).__qualname__)


def _register(task: Any, coro: Any, n: int, parent: int) -> _TaskInfo:
    info = _TaskInfo(n, parent, _name_to_be(task), _qualname(coro))
    ref = _Ref(task, _forget)
    ref.key = id(task)
    info.ref = ref
    _infos[id(task)] = info
    return info


def _name_to_be(task: Any) -> str:
    """The task's name, including one its creator is about to set (before 3.13,
    ``asyncio.create_task`` and ``TaskGroup.create_task`` name the task after creating it)."""
    try:
        caller = sys._getframe(3)  # _name_to_be <- _register <- _create_task <- the creator
    except ValueError:  # created from no Python frame at all
        return str(task.get_name())
    if caller.f_code in _naming_codes:
        name = caller.f_locals.get("name")
        if name is not None:
            return str(name)
    return str(task.get_name())


def _already_stepped(task: Any, coro: Any) -> bool:
    return bool(
        task.done()
        or getattr(coro, "cr_suspended", False)
        or getattr(coro, "cr_frame", True) is None
    )


def _handle_run(self: Any) -> None:
    """``Handle._run``: a task's step between its bracket events; anything else untouched.

    The common step (the task ran before, no wait to close, nothing awaited but a plain
    future or the loop itself) is written here inline; the rest goes to _step_begins and
    _step_ends. Every write of the step is attributed through ``st.unit``.
    """
    cb = self._callback
    kind = type(cb)
    if kind not in _step_types:  # a plain function or method: not a step (~40 ns)
        _orig_run(self)
        return
    task = cb.__self__
    info = _infos_get(id(task))
    if info is None or info.ended or (kind is not _step_type and not _is_step(cb)):
        _orig_run(self)
        return
    try:
        st = tl.st
    except AttributeError:  # the thread's first event: it becomes a unit
        st = state()
    outer = st.unit
    try:
        carrier = st.thread_unit
        if info.started and carrier and not info.wait_res:
            st.unit = info.unit
            if _record is not None:
                _record(RUN, 0, carrier, 0)
            else:
                t = mono()
                i = st.used
                if i < st.end:
                    pack_into(st.buf, i, t, RUN, info.unit, 0, carrier, 0)
                    st.used = i + ROW_SIZE
                else:
                    _write(st, RUN, info.unit, 0, carrier)
        else:
            _step_begins(st, task, info)
    except Exception as exc:
        _fault("asyncio step", exc)
    try:
        _orig_run(self)
    finally:
        try:
            if info.blocked_on or task._fut_waiter is not None or task.done():
                _step_ends(st, task, info)
            elif _record is not None:
                _record(YIELD, 0, 0, 0)
            else:
                _write(st, YIELD, info.unit, 0, 0)
        except Exception as exc:
            _fault("asyncio step", exc)
        st.unit = outer


def _is_step(cb: Any) -> bool:
    """Is ``cb``, a builtin or Python method bound to a task, its wakeup (not its cancel)?"""
    try:
        return getattr(cb, "__name__", None) in _STEP_NAMES
    except Exception as exc:
        _fault("asyncio step", exc)
        return False


class _ProbeLoop:
    """Just enough of an event loop for a Task to be constructed (and never run)."""

    def __init__(self) -> None:
        self.callback: Any = None

    def get_debug(self) -> bool:
        return False

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> None:
        self.callback = callback


async def _nothing() -> None:
    pass


def _probe_step_type(task_class: Any) -> None:
    """Learn the callback type of ``task_class``'s steps from a task that never runs."""
    loop = _ProbeLoop()
    coro = _nothing()
    try:
        task = task_class(coro, loop=loop)
        task._log_destroy_pending = False  # it stays pending; it is not the program's
        _learn_step_type(loop.callback, task)
    finally:
        loop.callback = None  # the task and its loop go now, not at the next collection
        coro.close()


def _learn_step_type(cb: Any, task: Any) -> None:
    """If ``cb`` is ``task``'s step callback, make its type one that _handle_run looks at."""
    global _step_type, _step_types
    if getattr(cb, "__self__", None) is not task:
        return
    kind = type(cb)
    if kind in _step_types:
        return
    if kind.__name__ == "TaskStepMethWrapper":  # the C Task's step
        _step_type = kind
    _step_types = _step_types | {kind}


def _step_begins(st: _r.ThreadState, task: Any, info: _TaskInfo) -> None:
    """unit.start or unit.run, and the end of a wait the previous step opened."""
    rec = _r.RECORDER
    if rec is None:
        return
    if info.started:
        _write(st, RUN, info.unit, 0, st.thread_unit)
    else:
        info.started = True
        name = task.get_name()
        if name != info.name:  # renamed since its creation (set_name)
            info.name = name
            rec.define_unit(info.unit, "task", name, info.parent, 0, coro=info.coro)
        _write(st, START, info.unit, 0, info.parent)
    if info.wait_res:
        _end_wait(st, task, info)
    st.unit = info.unit


def _step_ends(st: _r.ThreadState, task: Any, info: _TaskInfo) -> None:
    """unit.end, or the wait the step ends in (join or gather) and unit.yield."""
    if task.done():
        if task.cancelled():
            status = EndStatus.CANCELLED
        else:  # _exception, not exception(): that would mark the error as retrieved
            status = EndStatus.OK if task._exception is None else EndStatus.ERROR
        _write(st, END, info.unit, 0, status)
        info.ended = True
        return
    res = info.blocked_on
    if res:
        info.blocked_on = 0
    else:
        w = task._fut_waiter
        if w is not None and (id(w) in _infos or type(w) is _gathering_type):
            res = _await_block(st, task, info, w)
    _write(st, YIELD, info.unit, res, 0)


def _await_block(st: _r.ThreadState, task: Any, info: _TaskInfo, w: Any) -> int:
    """The step ended awaiting a known task or a gather: write the block, return its resource."""
    rec = _r.RECORDER
    if rec is None:
        return 0
    awaited = _infos_get(id(w))
    if awaited is not None:
        rid = awaited.join_rid
        if not rid:
            rid = rec.new_resource(
                "join", _NO_FRAME, name=f"end of {awaited.name}", unit=awaited.unit
            )
            awaited.join_rid = rid
        reason, wait_unit = Reason.JOIN, awaited.unit
    else:
        rid = getattr(w, "_wisp_rid", 0)
        if not rid:
            rid = _gather_resource(rec, w)
            if not rid:
                return 0
        reason, wait_unit = Reason.AWAIT, 0
    key = _await_key(rec, task)
    _write(st, BLOCK, info.unit, rid, reason, key)
    info.wait_res, info.wait_fut, info.wait_unit, info.wait_key = rid, w, wait_unit, key
    return rid


def _gather_resource(rec: _r.Recorder, w: Any) -> int:
    """The ``future`` resource of a gather whose children include known tasks (0 if none)."""
    children = [_infos_get(id(c)) for c in getattr(w, "_children", ())]
    known = [c for c in children if c is not None]
    if not known:
        return 0
    rid = _future_resource(rec, 0, "gather", known)
    w._wisp_rid = rid
    return rid


def _future_resource(rec: _r.Recorder, depth: int, what: str, tasks: Sequence[_TaskInfo]) -> int:
    """A ``future`` resource waiting for ``tasks``, created ``depth`` frames above the caller
    (0: nowhere on the stack)."""
    names = ", ".join(t.name for t in tasks)
    if len(names) > 200:
        names = names[:200] + "..."
    waits_for = ",".join(str(t.unit) for t in tasks)
    return rec.new_resource(
        "future", depth + 1 if depth else _NO_FRAME, name=f"{what} of {names}", waits_for=waits_for
    )


def _await_key(rec: _r.Recorder, task: Any) -> int:
    """Location key of the program's innermost frame in the task's chain of awaits."""
    key = 0
    coro = task.get_coro()
    while coro is not None:
        f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if f is None:
            break
        c = f.f_code
        if not rec.is_internal(c.co_filename):
            CODE_IDS[id(c)] = c
            key = (id(c) << 16) | (f.f_lasti & 0xFFFF)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return key


def _end_wait(st: _r.ThreadState, task: Any, info: _TaskInfo) -> None:
    """The task runs again: close the join or gather wait its previous step opened."""
    rid, fut, unit, key = info.wait_res, info.wait_fut, info.wait_unit, info.wait_key
    info.wait_res, info.wait_fut = 0, None
    if fut.done():
        if unit:
            _write(st, JOIN_DONE, info.unit, rid, unit, key)
            return
        if fut.cancelled():
            outcome = Outcome.CANCELLED
        else:
            outcome = Outcome.OK if fut._exception is None else Outcome.ERROR
    else:  # resumed before the awaited work finished: the waiter was cancelled
        outcome = Outcome.CANCELLED if task.cancelling() else Outcome.OK
    _write(st, WAKE, info.unit, rid, outcome, key)


# --- primitives: waits seen from inside the step ---------------------------------------------


def _block(rid: int, reason: int) -> None:
    """Write ``unit.block`` for the running task and note it, so the step's end does not add one."""
    _emit_user(BLOCK, rid, reason)
    try:
        info = _infos_get(id(_current_task()))
        if info is not None:
            info.blocked_on = rid
    except RuntimeError:  # a coroutine driven outside a running loop
        pass
    except Exception as exc:
        _fault("asyncio block", exc)


def _wake_outcome(exc: BaseException) -> int:
    return Outcome.CANCELLED if isinstance(exc, _cancelled_error) else Outcome.ERROR


@types.coroutine
def _watch(
    coro: Any, rid: int, reason: int, done_kind: int, done_arg: int, wake_on_resume: bool
) -> Generator[Any, Any, Any]:
    """Await ``coro`` (an original primitive's coroutine), recording its wait.

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
    return bool(await _watch(orig(self), rid, Reason.ACQUIRE, ACQ, 0, False))


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
    return bool(await _watch(orig(self), rid, Reason.WAIT, WAKE, Outcome.OK, False))


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
    return bool(await _watch(orig(self), rid, Reason.WAIT, 0, 0, True))


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
    return bool(await _watch(orig(self), rid, Reason.ACQUIRE, ACQ, 0, False))


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
    return await _watch(orig(self), rid, Reason.GET, 0, 0, False)  # _get writes queue.get


async def _queue_put(self: Any, item: Any) -> None:
    rid = self._wisp_rid
    orig = _orig["Queue.put"]
    if not rid:
        await orig(self, item)
        return
    await _watch(orig(self, item), rid, Reason.PUT, 0, 0, False)  # _put writes queue.put


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
    await _watch(orig(self), rid, Reason.WAIT, WAKE, Outcome.OK, False)


async def _taskgroup_aexit(self: Any, et: Any, exc: Any, tb: Any) -> Any:
    """Leaving a TaskGroup waits for its tasks: a block on a future that waits for them."""
    orig = _orig["TaskGroup.__aexit__"]
    rec = _r.RECORDER
    running: list[_TaskInfo] = []
    rid = 0
    if rec is not None:
        try:
            found = (_infos_get(id(t)) for t in self._tasks)
            running = [i for i in found if i is not None and not i.ended]
            if running:
                rid = _future_resource(rec, _program_depth(rec), "task group", running)
        except Exception as e:
            rec.fault("asyncio TaskGroup.__aexit__", e)
    if not rid:
        return await orig(self, et, exc, tb)
    return await _watch(orig(self, et, exc, tb), rid, Reason.AWAIT, WAKE, Outcome.OK, False)


# --- installing ---------------------------------------------------------------------------------


def _set(cls: type, attr: str, value: Any) -> None:
    previous = cls.__dict__.get(attr, _MISSING)
    _orig[f"{cls.__name__}.{attr}"] = previous
    _patched.append((cls, attr, previous))
    setattr(cls, attr, value)


def _patch() -> None:
    """Patch the asyncio that is now imported. Idempotent."""
    global _orig_run, _gathering_type, _current_task, _cancelled_error, _naming_codes
    global _record, _record_user
    if _patched:
        return
    import asyncio
    from asyncio import base_events, events, locks, queues, taskgroups, tasks

    _orig_run = events.Handle._run
    _record = None if _r.FAST is None else _r.FAST.record
    _record_user = None if _r.FAST is None else _r.FAST.record_user
    _gathering_type = tasks._GatheringFuture  # type: ignore[attr-defined]
    _current_task = asyncio.current_task
    _cancelled_error = asyncio.CancelledError
    _naming_codes = frozenset(
        {tasks.create_task.__code__, taskgroups.TaskGroup.create_task.__code__}
    )
    try:
        _probe_step_type(asyncio.Task)
    except Exception as exc:  # create_task still learns the type from the first real task
        _fault("asyncio probe", exc)
    _set(events.Handle, "_run", _handle_run)
    _set(base_events.BaseEventLoop, "create_task", _create_task)
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
    _set(taskgroups.TaskGroup, "__aexit__", _taskgroup_aexit)


def _patch_or_undo() -> None:
    """_patch, or nothing at all: a failure halfway takes back what was patched."""
    try:
        _patch()
    except BaseException:
        _undo()
        raise


def _patch_after_import() -> None:
    try:
        _patch_or_undo()
    except Exception as exc:
        _fault("install aio", exc)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a function right after module ``name`` has first been imported.

    It finds the module's spec through the other finders and wraps its loader for that one
    load; the module gets its real loader back as soon as it has executed.
    """

    def __init__(self, name: str, then: Callable[[], None]) -> None:
        self.name = name
        self.then = then

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _LoaderThen(spec.loader, self)
                return spec
        return None


class _LoaderThen(importlib.abc.Loader):
    def __init__(self, loader: Any, finder: _AfterImport) -> None:
        self.loader = loader
        self.finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        try:
            self.loader.exec_module(module)
        finally:
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader
            _stop_waiting(self.finder)
        self.finder.then()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


_waiting: list[_AfterImport] = []


def _stop_waiting(finder: _AfterImport) -> None:
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
    if finder in _waiting:
        _waiting.remove(finder)


def install() -> None:
    """Patch asyncio now if the program has imported it, else right after it does. Idempotent."""
    if _patched or _waiting:
        return
    if "asyncio" in sys.modules:
        _patch_or_undo()
        return
    finder = _AfterImport("asyncio", _patch_after_import)
    _waiting.append(finder)
    sys.meta_path.insert(0, finder)


def uninstall() -> None:
    """Put asyncio back as it was; tasks created meanwhile are forgotten.

    ``_orig`` is kept: a call another thread entered before this point still finds it.
    """
    while _waiting:
        _stop_waiting(_waiting[0])
    _undo()
    _infos.clear()


def _undo() -> None:
    while _patched:
        cls, attr, previous = _patched.pop()
        if previous is _MISSING:
            delattr(cls, attr)
        else:
            setattr(cls, attr, previous)
