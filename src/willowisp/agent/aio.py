"""Hooks for ``asyncio``: tasks as units, their steps, and their waits on other tasks.

**Tasks.** ``BaseEventLoop.create_task`` (which ``asyncio.create_task``, ``ensure_future``,
``gather`` and ``TaskGroup`` all reach) makes each new task a unit of kind ``task`` and writes
``unit.create`` in the creating unit, located at the program's own frame. Every step of a task
then runs through ``asyncio.events.Handle._run`` with one of the task's bound methods as the
callback (its step wrapper, or its wakeup after a future completes). The wrapper recognises
those, points the thread's ``tl.st.unit`` at the task for the length of the step, so every
hook that records during the step records for the task, and brackets the step with
``unit.start``/``unit.run`` before and ``unit.end``/``unit.yield`` after.

**Waits.** asyncio's primitives and queues (aio_sync.py) write their own ``unit.block``
inside the step, before the task suspends, and tell this module so. A step that ends
awaiting another known task, and wrote no explicit block, gets ``unit.block`` on that task's
``join`` resource; awaiting an ``asyncio.gather`` of known tasks (or leaving a ``TaskGroup``
with tasks still running) is a block on a ``future`` resource whose ``waits_for`` lists them.
Such a wait ends at the start of the task's next step (``join.done`` or ``unit.wake``). Plain
futures (sleep, I/O, ``wait_for``, ``asyncio.wait``) get no block: only the ``unit.yield``.

**Executors.** ``loop.run_in_executor`` and ``asyncio.to_thread`` hand work to a
ThreadPoolExecutor (futures.py records the hand-off and the worker's ``sync.notify`` on the
concurrent future's resource) and wrap its future in an asyncio future (``wrap_future``). A
step that ends awaiting such a wrapper writes ``unit.block`` on the concurrent future's
resource and the next step ``unit.wake``: the notify → wake edge orders the work before what
the task does after the result came back, as ``Future.result()`` does for a thread.

**Cost.** ``Handle._run`` runs for every callback of every loop, so its miss path is a look
at the callback's type (a task's step or wakeup has one of two or three types), and the task
path writes ``unit.run``/``unit.yield`` inline or through the recorder's C fast path. The
task → unit map is keyed by ``id(task)`` and emptied by a weak reference's callback: ~30 ns
more per lookup than a dict keyed by the task itself, which would keep tasks that are
dropped while pending alive forever (hiding asyncio's "Task was destroyed but it is
pending!"); a ``WeakKeyDictionary`` costs ~75 ns more than ours per lookup
(bench/bench_asyncio_steps.py).

**Installing.** ``install``/``uninstall`` patch and restore aio_sync's primitives along with
the tasks, all or nothing. asyncio itself is imported by the program, not by the agent (it
costs ~10 ms at start): when the agent starts before it, the patches go in right after its
first import (post_import.py).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from willowisp.agent import aio_sync, post_import, rows
from willowisp.agent import recorder as _r
from willowisp.agent.recorder import state
from willowisp.agent.rows import CODE_IDS, ROW_SIZE, mono, pack_into, tl
from willowisp.model.spec import EndStatus, K, Outcome, Reason

CREATE, START, END = int(K.UNIT_CREATE), int(K.UNIT_START), int(K.UNIT_END)
RUN, YIELD = int(K.UNIT_RUN), int(K.UNIT_YIELD)
BLOCK, WAKE, JOIN_DONE = int(K.UNIT_BLOCK), int(K.UNIT_WAKE), int(K.JOIN_DONE)

# new_resource() locates a resource at a frame of the current stack unless given a location
# key. A wait found after a step has no program frame on the stack: its resource is located
# by the key of the await (_await_key), and this depth, past any stack, makes a key of 0 mean
# no location rather than some frame of the agent's.
_NO_FRAME = 1 << 30
# Callback names of the task methods that run a step: the C Task's wakeup, and the pure
# Python Task's step and wakeup. The C Task's step is a TaskStepMethWrapper object.
_STEP_NAMES = frozenset({"task_wakeup", "__step", "__wakeup"})

_orig: dict[str, Any] = {}  # originals by "Class.attr", filled by _patch (kept by uninstall)
_patched: list[tuple[Any, str, Any]] = []  # (class or module, attribute, previous or _MISSING)
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
        "key",
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

    def __init__(self, unit: int, parent: int, name: str, coro: str, key: int) -> None:
        self.unit = unit
        self.parent = parent
        self.name = name
        self.coro = coro
        self.key = key  # location key of the program's line that created the task (0: none)
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


class _Wrapped(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to the asyncio future ``wrap_future`` made of an executor's future,
    with its key in ``_wrapped`` and the executor future's resource."""

    __slots__ = ("key", "rid")
    key: int
    rid: int


def _forget_wrapped(ref: _Wrapped) -> None:
    _wrapped.pop(ref.key, None)


# id(asyncio future) -> its _Wrapped, for each wrapper of a recorded executor future.
# Invariant: the wrapper is alive (the weak reference's callback removes the entry as it dies,
# before its id can be reused). Weak, keyed by id: the C Future takes no attributes.
_wrapped: dict[int, _Wrapped] = {}
_wrapped_get = _wrapped.get


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
# ids of the creators that name tasks afterwards (ids: hashing a code object hashes its
# constants, which would cost more than the lookup saves; the functions live forever)
_naming_codes: frozenset[int] = frozenset()
# The recorder's C fast path, if it has one: record(kind, res, arg, depth) writes one event
# of the thread's current unit (st.unit) in ~80 ns less than the inlined Python write.
_record: Callable[[int, int, int, int], None] | None = None


def _fault(where: str, exc: BaseException) -> None:
    rec = _r.RECORDER
    if rec is not None:
        rec.fault(where, exc)


def _write(st: rows.ThreadState, kind: int, unit: int, res: int, arg: int, key: int = 0) -> None:
    """Record an event of ``unit`` into the thread's buffer (the inline write of threads.py).
    Past the boundary gate: the step brackets are written outside the task's context, and
    ``_handle_run`` has already skipped the steps of tasks outside every boundary."""
    t = mono()
    i = st.used
    if i < st.end:
        pack_into(st.buf, i, t, kind, unit, res, arg, key)
        st.used = i + ROW_SIZE
    else:
        rec = _r.RECORDER
        if rec is not None:
            rec.emit_for_any(st, unit, kind, res, arg, key)


# --- tasks ---------------------------------------------------------------------------------


def _create_task(self: Any, coro: Any, *args: Any, **kwargs: Any) -> Any:
    orig = _orig["BaseEventLoop.create_task"]
    rec = _r.RECORDER
    if rec is None:
        return orig(self, coro, *args, **kwargs)
    st, n, eager, depth, key = state(), 0, False, 0, 0
    parent = st.unit
    try:
        depth = rec.program_depth()
        key = rec.location_key(depth) if depth else 0  # the program's line, kept for renames
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
            rec.define_unit(n, "task", "(not created)", parent, key=key, coro=_qualname(coro))
        raise
    if eager:
        st.unit = parent
    try:
        info = _register(task, coro, n or rec.new_unit_id(), parent, key)
        rec.define_unit(info.unit, "task", info.name, parent, key=key, coro=info.coro)
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


def _register(task: Any, coro: Any, n: int, parent: int, key: int) -> _TaskInfo:
    info = _TaskInfo(n, parent, _name_to_be(task), _qualname(coro), key)
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
    if id(caller.f_code) in _naming_codes:
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
    gate = _r.GATE  # hops mode with boundaries: a task outside every boundary is not traced
    if gate is not None and self._context.get(gate) is None:
        _untraced_step(self, info)
        return
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


def _untraced_step(handle: Any, info: _TaskInfo | None) -> None:
    """A step of a task outside every boundary: nothing written, but the step's events are
    the task's should it enter a boundary now (a server hook opening one)."""
    if info is None or info.ended:
        _orig_run(handle)
        return
    try:
        st = tl.st
    except AttributeError:
        st = state()
    outer, st.unit = st.unit, info.unit
    try:
        _orig_run(handle)
    finally:
        st.unit = outer
        if not info.started and handle._context.get(_r.GATE) is not None:
            info.started = True  # it entered one: its next step is a unit.run, not a start


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


def _step_begins(st: rows.ThreadState, task: Any, info: _TaskInfo) -> None:
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
            rec.define_unit(info.unit, "task", name, info.parent, key=info.key, coro=info.coro)
        _write(st, START, info.unit, 0, info.parent)
    if info.wait_res:
        _end_wait(st, task, info)
    st.unit = info.unit


def _step_ends(st: rows.ThreadState, task: Any, info: _TaskInfo) -> None:
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
        if w is not None:
            if id(w) in _infos or type(w) is _gathering_type:
                res = _await_block(st, task, info, w)
            else:
                wrapped = _wrapped_get(id(w))
                if wrapped is not None:
                    res = _executor_block(st, task, info, w, wrapped.rid)
    _write(st, YIELD, info.unit, res, 0)


def _executor_block(st: rows.ThreadState, task: Any, info: _TaskInfo, w: Any, rid: int) -> int:
    """The step ended awaiting an executor's result (``w`` wraps the concurrent future whose
    resource is ``rid``): block on it, so the next step's wake follows the worker's notify."""
    rec = _r.RECORDER
    if rec is None:
        return 0
    key = _await_key(rec, task)
    _write(st, BLOCK, info.unit, rid, Reason.AWAIT, key)
    info.wait_res, info.wait_fut, info.wait_unit, info.wait_key = rid, w, 0, key
    return rid


def _wrap_future(future: Any, *, loop: Any = None) -> Any:
    """``asyncio.wrap_future`` (run_in_executor's): remember which asyncio future mirrors a
    recorded executor future, for the wait on it (_executor_block)."""
    new = _orig["futures.wrap_future"](future, loop=loop)
    rid = getattr(future, "_wisp_rid", 0)  # set by futures.py on each submit it recorded
    if rid and new is not future:
        try:
            ref = _Wrapped(new, _forget_wrapped)
            ref.key, ref.rid = id(new), rid
            _wrapped[id(new)] = ref
        except Exception as exc:
            _fault("asyncio wrap_future", exc)
    return new


def _await_block(st: rows.ThreadState, task: Any, info: _TaskInfo, w: Any) -> int:
    """The step ended awaiting a known task or a gather: write the block, return its resource."""
    rec = _r.RECORDER
    if rec is None:
        return 0
    awaited = _infos_get(id(w))
    known: list[_TaskInfo] = []
    if awaited is not None:
        rid, reason, wait_unit = awaited.join_rid, Reason.JOIN, awaited.unit
    else:
        rid, reason, wait_unit = getattr(w, "_wisp_rid", 0), Reason.AWAIT, 0
        if not rid:
            children = (_infos_get(id(c)) for c in getattr(w, "_children", ()))
            known = [c for c in children if c is not None]
            if not known:  # a gather of plain futures: only the unit.yield, as for any future
                return 0
    key = _await_key(rec, task)
    if not rid:  # the join or gather resource is located where the program first awaits it
        if awaited is not None:
            name = f"end of {awaited.name}"
            rid = rec.new_resource("join", _NO_FRAME, name=name, key=key, unit=awaited.unit)
            awaited.join_rid = rid
        else:
            rid = _future_resource(rec, key, "gather", known)
            w._wisp_rid = rid
    _write(st, BLOCK, info.unit, rid, reason, key)
    info.wait_res, info.wait_fut, info.wait_unit, info.wait_key = rid, w, wait_unit, key
    return rid


def _future_resource(rec: _r.Recorder, key: int, what: str, tasks: Sequence[_TaskInfo]) -> int:
    """A ``future`` resource waiting for ``tasks``, located at ``key`` (0: nowhere)."""
    names = ", ".join(t.name for t in tasks)
    if len(names) > 200:
        names = names[:200] + "..."
    waits_for = ",".join(str(t.unit) for t in tasks)
    return rec.new_resource(
        "future", _NO_FRAME, name=f"{what} of {names}", key=key, waits_for=waits_for
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


def _end_wait(st: rows.ThreadState, task: Any, info: _TaskInfo) -> None:
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


async def _taskgroup_aexit(self: Any, et: Any, exc: Any, tb: Any) -> Any:
    """Leaving a TaskGroup waits for its tasks: a block on a future that waits for them."""
    orig = _orig["TaskGroup.__aexit__"]
    rec = _r.RECORDER
    running: list[_TaskInfo] = []
    rid = 0
    if rec is not None:
        try:
            found = (_infos_get(id(t)) for t in self._tasks)
            # the group keeps a set: order by unit number so the resource is the same
            running = sorted(
                (i for i in found if i is not None and not i.ended), key=lambda i: i.unit
            )
            if running:
                key = rec.program_location_key()  # the program's ``async with`` line
                rid = _future_resource(rec, key, "task group", running)
        except Exception as e:
            rec.fault("asyncio TaskGroup.__aexit__", e)
    if not rid:
        return await orig(self, et, exc, tb)
    return await aio_sync.watch(orig(self, et, exc, tb), rid, Reason.AWAIT, WAKE, Outcome.OK, False)


async def _tasks_wait(fs: Any, timeout: Any, return_when: Any, loop: Any) -> Any:
    """``asyncio.wait`` (its helper ``tasks._wait``): with ALL_COMPLETED it waits for every
    task, a block on a future that waits for them. FIRST_COMPLETED and FIRST_EXCEPTION wait
    for any one of them, which is no wait-for edge to each: only the yield, as for a future."""
    orig = _orig["tasks._wait"]
    rec = _r.RECORDER
    rid = 0
    if rec is not None and return_when == "ALL_COMPLETED":
        try:
            found = (_infos_get(id(f)) for f in fs)
            # asyncio.wait takes a set: order by unit number so the resource is the same
            pending = sorted(
                (i for i in found if i is not None and not i.ended), key=lambda i: i.unit
            )
            if pending:
                key = rec.program_location_key()  # the program's ``await asyncio.wait`` line
                rid = _future_resource(rec, key, "wait", pending)
        except Exception as e:
            rec.fault("asyncio wait", e)
    if not rid:
        return await orig(fs, timeout, return_when, loop)
    return await aio_sync.watch(
        orig(fs, timeout, return_when, loop), rid, Reason.AWAIT, WAKE, Outcome.OK, False
    )


def _note_block(rid: int) -> None:
    """aio_sync wrote ``unit.block`` on ``rid`` inside the running task's step: the step's
    end consumes it (as the yield's resource) instead of looking for a wait of its own."""
    try:
        info = _infos_get(id(_current_task()))
    except RuntimeError:  # a coroutine driven outside a running loop
        return
    if info is not None:
        info.blocked_on = rid


# --- installing ---------------------------------------------------------------------------------


def _set(cls: type, attr: str, value: Any) -> None:
    previous = cls.__dict__.get(attr, _MISSING)
    _orig[f"{cls.__name__}.{attr}"] = previous
    _patched.append((cls, attr, previous))
    setattr(cls, attr, value)


def _set_in(module: Any, attr: str, value: Any) -> None:
    """Like _set, for a module's function (restored by the same undo), kept in ``_orig`` as
    "tasks._wait" for ``asyncio.tasks._wait``."""
    previous = module.__dict__.get(attr, _MISSING)
    _orig[f"{module.__name__.rsplit('.', 1)[-1]}.{attr}"] = previous
    _patched.append((module, attr, previous))
    setattr(module, attr, value)


def _patch() -> None:
    """Patch the asyncio that is now imported, primitives (aio_sync) included. Idempotent."""
    global _orig_run, _gathering_type, _current_task, _naming_codes, _record
    if _patched:
        return
    import asyncio
    from asyncio import base_events, events, futures, taskgroups, tasks

    _orig_run = events.Handle._run
    _record = None if rows.FAST is None else rows.FAST.record_any
    _gathering_type = tasks._GatheringFuture  # type: ignore[attr-defined]
    _current_task = asyncio.current_task
    _naming_codes = frozenset(
        {id(tasks.create_task.__code__), id(taskgroups.TaskGroup.create_task.__code__)}
    )
    try:
        _probe_step_type(asyncio.Task)
    except Exception as exc:  # create_task still learns the type from the first real task
        _fault("asyncio probe", exc)
    _set(events.Handle, "_run", _handle_run)
    _set(base_events.BaseEventLoop, "create_task", _create_task)
    aio_sync.patch(_note_block)
    _set(taskgroups.TaskGroup, "__aexit__", _taskgroup_aexit)
    _set_in(tasks, "_wait", _tasks_wait)
    # run_in_executor calls it through its module, the program through asyncio's
    _set_in(futures, "wrap_future", _wrap_future)
    _set_in(asyncio, "wrap_future", _wrap_future)


def _patch_or_undo() -> None:
    """_patch, or nothing at all: a failure halfway takes back what was patched."""
    try:
        _patch()
    except BaseException:
        _undo()
        raise


# The wait for the program's first ``import asyncio``, while there is one.
_waiting: post_import.Waiting | None = None


def _patch_when_imported() -> None:
    global _waiting
    _waiting = None  # the wait, if there was one, is over: a failure here may be retried
    _patch_or_undo()


def install() -> None:
    """Patch asyncio now if the program has imported it, else right after it does. Idempotent.

    Now: all or nothing, and a failure raises. Later: a failure is an agent.fault.
    """
    global _waiting
    if _patched or _waiting is not None:
        return
    _waiting = post_import.when_imported("asyncio", _patch_when_imported, "install aio")


def uninstall() -> None:
    """Put asyncio back as it was; tasks created meanwhile are forgotten.

    ``_orig`` is kept: a call another thread entered before this point still finds it.
    """
    global _waiting
    if _waiting is not None:
        post_import.cancel(_waiting)
        _waiting = None
    _undo()
    _infos.clear()
    _wrapped.clear()


def _undo() -> None:
    while _patched:
        cls, attr, previous = _patched.pop()
        if previous is _MISSING:
            delattr(cls, attr)
        else:
            setattr(cls, attr, previous)
    aio_sync.undo()
