"""Hooks for ``threading``: threads as units, and every synchronization primitive.

Locks are the hottest thing the agent sees: their wrappers call the C fast path's
``record`` directly when it is built (willowisp/_native.c), else ``_py_write``, the same
write in Python. The other primitives call ``Recorder.emit``.

Primitives created by the standard library for its own use (the lock inside a
``queue.Queue`` or an ``Event``) stay unwrapped: the factories look at who is creating them
and hand internal callers the original, so internals never appear as user locks.

Ordering rule (see docs/format.md): ``lock.release`` is written *before* the lock is
released and ``lock.acquired`` *after* it is obtained, so within a process the time order
of events respects every hand-off.
"""

from __future__ import annotations

import _thread
import threading
from typing import Any

from willowisp.agent import recorder as _r
from willowisp.agent import rows, standing
from willowisp.agent.recorder import state
from willowisp.agent.rows import CODE_IDS, FAST, ROW_SIZE, _getframe, mono, pack_into, tl
from willowisp.model.spec import EndStatus, K, Outcome, Reason

_allocate_lock = _thread.allocate_lock
_RLock: Any = _thread.RLock

ACQ = int(K.LOCK_ACQUIRED)
REL = int(K.LOCK_RELEASE)
BLOCK = int(K.UNIT_BLOCK)
WAKE = int(K.UNIT_WAKE)

_orig: dict[str, Any] = {}


def _fault(where: str, exc: BaseException) -> None:
    rec = _r.RECORDER
    if rec is not None:
        rec.fault(where, exc)


def _emit(kind: int, res: int, arg: int, depth: int) -> None:
    """Record through the recorder; ``depth`` counts frames above *our caller*."""
    rec = _r.RECORDER
    if rec is not None:
        try:
            if FAST is not None:  # straight to C: one Python call less per event
                FAST.record(kind, res, arg, depth + 1)
            else:
                rec.emit(kind, res, arg, depth + 1)
        except Exception as exc:
            _fault("threading", exc)


def _py_write(kind: int, rid: int, f: Any) -> None:
    """The pure-Python hot-path write (the C fast path replaces the callers below)."""
    if _r.GATE is not None and _r.gated_out(kind):
        return
    t = mono()
    try:
        st = tl.st
    except AttributeError:
        st = state()
    i = st.used
    c = f.f_code
    CODE_IDS[id(c)] = c
    key = (id(c) << 16) | (f.f_lasti & 0xFFFF)
    if i < st.end:
        pack_into(st.buf, i, t, kind, st.unit, rid, 0, key)
        st.used = i + ROW_SIZE
    else:
        _overflow(st, t, kind, rid, 0, key)


class WLock:
    """A ``threading.Lock`` that records acquisitions and releases."""

    __slots__ = ("__weakref__", "_wisp_lock", "_wisp_rid")

    def __init__(self, rid: int) -> None:
        self._wisp_lock = _allocate_lock()
        self._wisp_rid = rid

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        lk = self._wisp_lock
        if lk.acquire(False):
            try:
                _py_write(ACQ, self._wisp_rid, _getframe(1))
            except Exception as exc:
                _fault("Lock.acquire", exc)
            return True
        if not blocking:
            return bool(lk.acquire(blocking, timeout))
        return _blocking_acquire(lk, self._wisp_rid, timeout, 2)

    __enter__ = acquire

    def release(self) -> None:
        try:
            _py_write(REL, self._wisp_rid, _getframe(1))
        except Exception as exc:
            _fault("Lock.release", exc)
        self._wisp_lock.release()

    def __exit__(self, *exc: object) -> None:
        try:
            _py_write(REL, self._wisp_rid, _getframe(1))
        except Exception as e:
            _fault("Lock.release", e)
        self._wisp_lock.release()

    def locked(self) -> bool:
        return self._wisp_lock.locked()

    # Condition protocol, so a Condition over this lock records the release and re-acquire.
    def _is_owned(self) -> bool:
        return self._wisp_lock.locked()

    def _release_save(self) -> None:
        _emit(REL, self._wisp_rid, 0, 2)
        self._wisp_lock.release()

    def _acquire_restore(self, _state: object) -> None:
        lk = self._wisp_lock
        if lk.acquire(False):
            _emit(ACQ, self._wisp_rid, 0, 2)
        else:
            _blocking_acquire(lk, self._wisp_rid, -1, 3)

    def _at_fork_reinit(self) -> None:
        lk: Any = self._wisp_lock
        lk._at_fork_reinit()

    def __repr__(self) -> str:
        state = "locked" if self.locked() else "unlocked"
        return f"<willowisp Lock #{self._wisp_rid} {state}>"


if FAST is not None:
    # The C fast path does the whole write (clock, thread state, location, row); these
    # replace the inlined Python versions above, which stay as the reference.
    _fast_record = FAST.record

    def _fast_acquire(self: WLock, blocking: bool = True, timeout: float = -1) -> bool:
        lk = self._wisp_lock
        if lk.acquire(False):
            try:
                _fast_record(ACQ, self._wisp_rid, 0, 1)
            except Exception as exc:
                _fault("Lock.acquire", exc)
            return True
        if not blocking:
            return bool(lk.acquire(blocking, timeout))
        return _blocking_acquire(lk, self._wisp_rid, timeout, 2)

    def _fast_release(self: WLock) -> None:
        try:
            _fast_record(REL, self._wisp_rid, 0, 1)
        except Exception as exc:
            _fault("Lock.release", exc)
        self._wisp_lock.release()

    def _fast_exit(self: WLock, *exc: object) -> None:
        try:
            _fast_record(REL, self._wisp_rid, 0, 1)
        except Exception as e:
            _fault("Lock.release", e)
        self._wisp_lock.release()

    _WLock: Any = WLock
    _WLock.acquire = _WLock.__enter__ = _fast_acquire
    _WLock.release = _fast_release
    _WLock.__exit__ = _fast_exit


def _emit_user(kind: int, res: int, arg: int) -> None:
    """Record at the program's own frame (for waits the standard library makes, too)."""
    rec = _r.RECORDER
    if rec is not None:
        try:
            rec.emit_user(kind, res, arg)
        except Exception as exc:
            _fault("threading", exc)


def _overflow(st: rows.ThreadState, t: int, kind: int, res: int, arg: int, key: int) -> None:
    rec = _r.RECORDER
    if rec is not None:
        rec.overflow(st, t, kind, res, arg, key)


def _blocking_acquire(lk: Any, rid: int, timeout: float, depth: int) -> bool:
    """The contended path: record the wait, block, record how it ended."""
    _emit(BLOCK, rid, Reason.ACQUIRE, depth)
    try:
        got = lk.acquire(True, timeout)
    except BaseException:  # interrupted (KeyboardInterrupt, a signal handler raising)
        _emit(WAKE, rid, Outcome.ERROR, depth)
        raise
    if got:
        _emit(ACQ, rid, 0, depth)
    else:
        _emit(WAKE, rid, Outcome.TIMEOUT, depth)
    return bool(got)


class WRLock:
    """A ``threading.RLock`` that records the outermost acquire and the final release.

    The arg of each event is the recursion depth after it; the depth is tracked here
    because only the owner changes it while it owns the lock.
    """

    __slots__ = ("__weakref__", "_wisp_depth", "_wisp_lock", "_wisp_rid")

    def __init__(self, rid: int) -> None:
        self._wisp_lock = _RLock()
        self._wisp_rid = rid
        self._wisp_depth = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        lk = self._wisp_lock
        if lk.acquire(False):
            self._wisp_depth += 1
            _emit(ACQ, self._wisp_rid, self._wisp_depth, 1)
            return True
        if not blocking:
            return bool(lk.acquire(blocking, timeout))
        _emit(BLOCK, self._wisp_rid, Reason.ACQUIRE, 1)
        got = False
        try:
            got = lk.acquire(True, timeout)
        finally:
            if got:
                self._wisp_depth += 1
                _emit(ACQ, self._wisp_rid, self._wisp_depth, 1)
            else:
                _emit(WAKE, self._wisp_rid, Outcome.TIMEOUT, 1)
        return bool(got)

    __enter__ = acquire

    def release(self) -> None:
        if self._wisp_lock._is_owned():
            self._wisp_depth -= 1
            _emit(REL, self._wisp_rid, self._wisp_depth, 1)
        self._wisp_lock.release()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _is_owned(self) -> bool:
        return bool(self._wisp_lock._is_owned())

    def _release_save(self) -> tuple[Any, int]:
        depth = self._wisp_depth
        self._wisp_depth = 0
        _emit(REL, self._wisp_rid, 0, 2)
        return (self._wisp_lock._release_save(), depth)

    def _acquire_restore(self, state: tuple[Any, int]) -> None:
        # Re-taking the lock `depth` times leaves the RLock exactly as _acquire_restore
        # would (this thread owns it, that many times), and shows whether it had to wait.
        _inner, depth = state
        lk = self._wisp_lock
        if not lk.acquire(False):
            _emit(BLOCK, self._wisp_rid, Reason.ACQUIRE, 2)
            lk.acquire()
        for _ in range(depth - 1):
            lk.acquire()
        self._wisp_depth = depth
        _emit(ACQ, self._wisp_rid, depth, 2)

    def _at_fork_reinit(self) -> None:
        self._wisp_lock._at_fork_reinit()
        self._wisp_depth = 0

    def __repr__(self) -> str:
        return f"<willowisp RLock #{self._wisp_rid} depth={self._wisp_depth}>"


def Lock() -> Any:
    try:
        if standing.recording_primitives() and not standing.created_by_internal_code(1):
            lk = WLock(0)
            lk._wisp_rid = standing.new_primitive(lk, "lock", 1)
            return lk
    except Exception as exc:  # the program gets a working lock whatever happens here
        _fault("threading.Lock", exc)
    return _allocate_lock()


def RLock(*args: Any, **kwargs: Any) -> Any:
    try:
        if standing.recording_primitives() and not standing.created_by_internal_code(1):
            lk = WRLock(0)
            lk._wisp_rid = standing.new_primitive(lk, "rlock", 1)
            return lk
    except Exception as exc:
        _fault("threading.RLock", exc)
    return _orig["RLock"](*args, **kwargs)


def _internal_caller() -> bool:
    return not standing.recording_primitives() or standing.created_by_internal_code(2)


def _define(obj: Any, kind: str) -> int:
    rid = 0
    try:
        rid = standing.new_primitive(obj, kind, 2)
    except Exception as exc:  # unrecorded but working
        _fault(f"threading.{type(obj).__name__}", exc)
    obj._wisp_rid = rid
    return rid


class _UserOnly:
    """Mixin: instances the standard library creates for its own use are the original class
    (``_wisp_original`` names it in ``_orig``); subclasses the program defines are ours."""

    _wisp_original = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        original = cls.__dict__.get("_wisp_original")
        if original and _internal_caller():
            return _orig[original](*args, **kwargs)
        return object.__new__(cls)


class Condition(_UserOnly, threading.Condition):
    """Records wait (block, wake) and notify; the lock's own events come from its wrapper."""

    _wisp_rid = 0

    _wisp_original = "Condition"

    def __init__(self, lock: Any = None) -> None:
        if lock is None:
            lock = _RLock()
            if standing.recording_primitives():
                lock = WRLock(0)
                lock._wisp_rid = standing.new_primitive(lock, "rlock", 1, name_suffix=".lock")
        super().__init__(lock)
        _define(self, "condition")

    def wait(self, timeout: float | None = None) -> bool:
        # Same algorithm as threading.Condition.wait, with the wait recorded between the
        # lock's release and its re-acquisition (where it really is).
        if not self._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = _allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)  # type: ignore[attr-defined]
        saved_state = self._release_save()  # type: ignore[attr-defined]
        gotit = False
        _emit(BLOCK, self._wisp_rid, Reason.WAIT, 1)
        try:
            if timeout is None:
                waiter.acquire()
                gotit = True
            elif timeout > 0:
                gotit = waiter.acquire(True, timeout)
            else:
                gotit = waiter.acquire(False)
            return gotit
        finally:
            _emit(WAKE, self._wisp_rid, Outcome.OK if gotit else Outcome.TIMEOUT, 1)
            self._acquire_restore(saved_state)  # type: ignore[attr-defined]
            if not gotit:
                try:
                    self._waiters.remove(waiter)  # type: ignore[attr-defined]
                except ValueError:
                    pass

    def notify(self, n: int = 1) -> None:
        if self._is_owned():  # type: ignore[attr-defined]  # else super() raises
            _emit(int(K.SYNC_NOTIFY), self._wisp_rid, n, 1)
        super().notify(n)

    def notify_all(self) -> None:
        if self._is_owned():  # type: ignore[attr-defined]
            _emit(int(K.SYNC_NOTIFY), self._wisp_rid, -1, 1)
        super().notify(len(self._waiters))  # type: ignore[attr-defined]


class _SemaphoreHooks:
    """Shared by Semaphore and BoundedSemaphore: acquire/release as a counted lock."""

    _wisp_rid = 0

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        base: Any = super()
        if base.acquire(False):
            _emit(ACQ, self._wisp_rid, 0, 1)
            return True
        if not blocking:
            return False
        _emit(BLOCK, self._wisp_rid, Reason.ACQUIRE, 1)
        got = False
        try:
            got = base.acquire(True, timeout)
        finally:
            _emit(ACQ if got else WAKE, self._wisp_rid, 0 if got else Outcome.TIMEOUT, 1)
        return bool(got)

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        bound = getattr(self, "_initial_value", None)
        if bound is not None:  # BoundedSemaphore: refuse before recording a release
            cond: Any = self._cond  # type: ignore[attr-defined]
            with cond:
                if self._value + n > bound:  # type: ignore[attr-defined]
                    raise ValueError("Semaphore released too many times")
        for _ in range(n if n > 0 else 0):
            _emit(REL, self._wisp_rid, 0, 1)
        base: Any = super()
        base.release(n)


class Semaphore(_UserOnly, _SemaphoreHooks, threading.Semaphore):
    _wisp_original = "Semaphore"

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        _define(self, "semaphore")


class BoundedSemaphore(_UserOnly, _SemaphoreHooks, threading.BoundedSemaphore):
    _wisp_original = "BoundedSemaphore"

    def __init__(self, value: int = 1) -> None:
        # threading.BoundedSemaphore.__init__ calls the module's Semaphore.__init__ by
        # name, which is ours now; do its two steps directly instead.
        _orig["Semaphore"].__init__(self, value)
        self._initial_value = value
        _define(self, "semaphore")


class Event(_UserOnly, threading.Event):
    _wisp_rid = 0

    _wisp_original = "Event"

    def __init__(self) -> None:
        super().__init__()
        _define(self, "event")

    def set(self) -> None:
        _emit(int(K.SYNC_NOTIFY), self._wisp_rid, -1, 1)
        super().set()

    def wait(self, timeout: float | None = None) -> bool:
        if self.is_set():
            _emit(WAKE, self._wisp_rid, Outcome.OK, 1)
            return True
        _emit(BLOCK, self._wisp_rid, Reason.WAIT, 1)
        ok = False
        try:
            ok = super().wait(timeout)
        finally:
            _emit(WAKE, self._wisp_rid, Outcome.OK if ok else Outcome.TIMEOUT, 1)
        return ok


class Barrier(_UserOnly, threading.Barrier):
    _wisp_rid = 0

    _wisp_original = "Barrier"

    def __init__(self, parties: int, action: Any = None, timeout: float | None = None) -> None:
        super().__init__(parties, action, timeout)
        _define(self, "barrier")

    def wait(self, timeout: float | None = None) -> int:
        _emit(int(K.SYNC_ARRIVE), self._wisp_rid, self.n_waiting + 1, 1)
        _emit(BLOCK, self._wisp_rid, Reason.WAIT, 1)
        outcome = Outcome.ERROR
        try:
            r = super().wait(timeout)
            outcome = Outcome.OK
            return r
        finally:
            _emit(WAKE, self._wisp_rid, outcome, 1)


# --- threads as units -------------------------------------------------------------------


def _thread_start(self: threading.Thread) -> None:
    rec = _r.RECORDER
    if rec is not None:
        try:
            n = rec.new_unit_id()
            self._wisp_unit = n  # type: ignore[attr-defined]
            self._wisp_parent = state().unit  # type: ignore[attr-defined]
            self._wisp_loc = rec.location_key(1)  # type: ignore[attr-defined]
            _ctx_capture(self)
            rec.emit(int(K.UNIT_CREATE), 0, n, 1)
        except Exception as exc:
            _fault("Thread.start", exc)
    _orig["Thread.start"](self)


def _ctx_capture(thread: threading.Thread) -> None:
    from willowisp.agent import context

    thread._wisp_ctx = context.current()  # type: ignore[attr-defined]
    thread._wisp_boundary = context.boundary.get()  # type: ignore[attr-defined]


def _thread_bootstrap_inner(self: threading.Thread) -> None:
    rec = _r.RECORDER
    n = getattr(self, "_wisp_unit", 0)
    st = None
    if rec is not None and n:
        try:
            parent = getattr(self, "_wisp_parent", 0)
            rec.define_unit(n, "thread", self.name, parent, os_tid=threading.get_native_id())
            st = rec.register_thread(n)
            from willowisp.agent import context

            context.restore(getattr(self, "_wisp_ctx", None))
            context.boundary.set(getattr(self, "_wisp_boundary", None))
            rec.emit(int(K.UNIT_START), 0, parent, 0)
        except Exception as exc:
            _fault("Thread._bootstrap_inner", exc)
    try:
        _orig["Thread._bootstrap_inner"](self)
    finally:
        if rec is not None and st is not None:
            try:
                rec.emit(int(K.UNIT_END), 0, getattr(self, "_wisp_status", EndStatus.OK), 0)
                st.alive = False
            except Exception:
                pass
        last = getattr(rows.tl, "st", None)  # also one made between recordings (api.arm)
        if last is not None:
            last.alive = False


def _thread_join(self: threading.Thread, timeout: float | None = None) -> None:
    rec = _r.RECORDER
    n = getattr(self, "_wisp_unit", 0)
    started = getattr(self, "_started", None)
    if (
        rec is None
        or not n
        or self is threading.current_thread()
        or (started is not None and not started.is_set())
    ):
        _orig["Thread.join"](self, timeout)
        return
    try:
        rid = getattr(self, "_wisp_join", 0)
        if not rid:
            rid = rec.new_resource(
                "join", 1, name=f"end of {self.name}", unit=n, key=rec.program_location_key()
            )
            self._wisp_join = rid  # type: ignore[attr-defined]
        waited = self.is_alive()
        if waited:
            rec.emit_user(BLOCK, rid, Reason.JOIN)
    except Exception as exc:
        _fault("Thread.join", exc)
        _orig["Thread.join"](self, timeout)
        return
    try:
        _orig["Thread.join"](self, timeout)
    finally:
        if self.is_alive():
            _emit_user(WAKE, rid, Outcome.TIMEOUT)
        else:
            _emit_user(int(K.JOIN_DONE), rid, n)


def _excepthook(args: Any) -> None:
    t = getattr(args, "thread", None)
    if t is not None:
        t._wisp_status = EndStatus.ERROR
    _orig["excepthook"](args)


# The module and class are patched through Any-typed names: the replacements are not of
# the original types (factories for classes, wrappers for methods), which is the point.
_threading: Any = threading
_Thread: Any = threading.Thread
_PATCHES: tuple[tuple[str, Any], ...] = (
    ("Lock", lambda: Lock),
    ("RLock", lambda: RLock),
    ("Condition", lambda: Condition),
    ("Semaphore", lambda: Semaphore),
    ("BoundedSemaphore", lambda: BoundedSemaphore),
    ("Event", lambda: Event),
    ("Barrier", lambda: Barrier),
    ("excepthook", lambda: _excepthook),
)
_THREAD_PATCHES: tuple[tuple[str, Any], ...] = (
    ("start", lambda: _thread_start),
    ("_bootstrap_inner", lambda: _thread_bootstrap_inner),
    ("join", lambda: _thread_join),
)


def install() -> None:
    """Replace the threading primitives. Idempotent."""
    if _orig:
        return
    for name, _ in _PATCHES:
        _orig[name] = getattr(_threading, name)
    for name, _ in _THREAD_PATCHES:
        _orig[f"Thread.{name}"] = getattr(_Thread, name)
    _threading._wisp_original_Condition = _orig["Condition"]
    for name, new in _PATCHES:
        setattr(_threading, name, new())
    for name, new in _THREAD_PATCHES:
        setattr(_Thread, name, new())


def uninstall() -> None:
    if not _orig:
        return
    for name, _ in _PATCHES:
        setattr(_threading, name, _orig[name])
    for name, _ in _THREAD_PATCHES:
        setattr(_Thread, name, _orig[f"Thread.{name}"])
    _orig.clear()
