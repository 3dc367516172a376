"""Starting and stopping the agent in a process: ``willowisp.start()`` / ``willowisp.stop()``,
and the path ``willowisp run`` uses (``start_from_env`` via sitecustomize).

``WILLOWISP_DISABLED=1`` leaves the program untouched: nothing is imported beyond this
module and no hook is installed.
"""

from __future__ import annotations

import _thread
import atexit
import importlib
import os
import signal
import sys
import time
from typing import Any

from willowisp.agent import context, standing
from willowisp.agent import recorder as _r
from willowisp.agent.config import AgentConfig, default_out, default_service, from_env
from willowisp.errors import UsageError

# Hook modules in install order; "full" installs all, "hops" only the wire ones.
FULL_HOOKS = (
    "threads",
    "queues",
    "futures",
    "aio",
    "gc_hook",
    "http",
    "httplibs",
    "rpc_grpc",
    "messaging",
    "procs",
    "data_sqlite",
    "data_dbapi",
    "data_files",
)
HOPS_HOOKS = ("http", "httplibs", "rpc_grpc", "messaging", "procs")
# The hooks arm() installs ahead of recording: those whose primitives a program makes at
# import time (a module-level ``lock = threading.Lock()``) and uses later.
ARMED_HOOKS = ("threads", "queues")
_WILLOWISP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_installed: list[Any] = []  # by start(), removed by stop()
_armed: list[Any] = []  # by arm(), kept across start()/stop() until disarm()


def disabled() -> bool:
    return os.environ.get("WILLOWISP_DISABLED", "") not in ("", "0")


def start(
    out: str | None = None,
    *,
    mode: str | None = None,
    service: str | None = None,
    trace_ratio: float | None = None,
    config: AgentConfig | None = None,
) -> _r.Recorder | None:
    """Start recording this process. Returns the recorder, or None when disabled.

    What is not given comes from the WILLOWISP_* variables (WILLOWISP_OUT, WILLOWISP_MODE,
    WILLOWISP_TRACE_RATIO, ...), else the defaults (full mode, every trace). Idempotent: a
    second call returns the running recorder. Raises UsageError for a bad mode or ratio
    given here; a bad WILLOWISP_* value is one line on stderr and no recording (the program
    goes on, as under ``willowisp run``); never raises after hooks are installed.
    """
    if disabled():
        return None
    if _r.RECORDER is not None:
        return _r.RECORDER
    if config is None:
        try:
            env = from_env()
        except UsageError as exc:
            sys.stderr.write(f"willowisp: agent not started in pid {os.getpid()}: {exc}\n")
            return None
        config = AgentConfig(
            out=out or os.environ.get("WILLOWISP_OUT") or default_out(),
            mode=env.mode if mode is None else mode,
            trace_ratio=env.trace_ratio if trace_ratio is None else trace_ratio,
            service=service or default_service(),
            boundaries=env.boundaries,
            clock_offset_ns=env.clock_offset_ns,
            run_pid=env.run_pid,
            flush_interval_s=env.flush_interval_s,
            max_buffer_bytes=env.max_buffer_bytes,
            collector=env.collector,
            token=env.token,
        )
    rec = _r.Recorder(config)
    rec.start()
    context.trace_ratio = config.trace_ratio
    context.reload_from_env()
    from willowisp.agent import boundaries, redact

    boundaries.configure(config.boundaries, config.mode)
    redact.configure(os.environ.get("WILLOWISP_REDACT", ""))
    # hops mode with boundaries records them at full fidelity: every hook, behind the gate
    full = config.mode == "full" or bool(config.boundaries)
    _install(rec, FULL_HOOKS if full else HOPS_HOOKS)
    if not _armed:
        _report_unseen_locks(rec)
    from willowisp.agent import procs

    try:
        procs.announce_start(rec, os.getppid())
    except Exception as exc:
        rec.fault("proc.start", exc)
    from willowisp.agent import control

    control.start_server(rec)  # `willowisp ctl`; never raises (a failure is a fault)
    atexit.register(_at_exit)
    _install_sigterm()
    return rec


def _install(rec: _r.Recorder, names: tuple[str, ...]) -> None:
    done = {m.__name__.rpartition(".")[2] for m in (*_armed, *_installed)}
    for name in names:
        if name in done:
            continue
        try:
            module = importlib.import_module(f"willowisp.agent.{name}")
            module.install()
            _installed.append(module)
        except Exception as exc:  # a hook that cannot install must not stop the program
            rec.fault(f"install {name}", exc)


def arm() -> None:
    """Install the primitive hooks now, for recordings started later (the pytest plugin
    calls it before the test modules are imported).

    Locks, conditions, semaphores, events, barriers and queues the program creates from
    here on are resources: each recording started later defines those still alive, so a
    module-level ``lock = threading.Lock()`` is recorded in every test that uses it.
    Between recordings their events are dropped. Idempotent; a no-op when disabled.
    """
    if disabled() or _armed:
        return
    standing.keep_standing(True)
    if _r.RECORDER is None:
        standing.go_idle()
    for name in ARMED_HOOKS:
        module = importlib.import_module(f"willowisp.agent.{name}")
        module.install()
        _armed.append(module)


def armed() -> bool:
    """Has :func:`arm` installed the primitive hooks?"""
    return bool(_armed)


def disarm() -> None:
    """Undo :func:`arm` (after the last recording). Primitives made meanwhile keep working
    and stop recording."""
    while _armed:
        module = _armed.pop()
        if module not in _installed:
            module.uninstall()
    standing.keep_standing(False)


def _report_unseen_locks(rec: _r.Recorder) -> None:
    """One agent fault per lock the program made before the agent started and keeps in a
    module global: its acquisitions are not recorded, so what it orders looks unordered
    (a race it prevents is reported). Replacing the object is not sound (others hold it),
    so the honest thing is to say so. Only the program's own modules are looked at."""
    lock_types = {type(_thread.allocate_lock()): "Lock", type(_thread.RLock()): "RLock"}
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None) or ""
        if not path or rec.is_internal(path) or "-packages" + os.sep in path:
            continue
        if path.startswith(_WILLOWISP_DIR):
            continue
        try:
            items = list(vars(mod).items())
        except TypeError:
            continue
        for name, value in items:
            what = lock_types.get(type(value))
            if what:
                message = (
                    f"{name} in {os.path.basename(path)} is a threading.{what} made "
                    "before the agent started: its uses are not recorded, so what it "
                    "orders may be reported as a race (start the agent before it is made: "
                    "willowisp.start() first, willowisp run, or pytest --wisp)"
                )
                rec.unseen_locks.append(message)
                rec.fault("start", UnseenLockWarning(message))


class UnseenLockWarning(Warning):
    """A program's lock the agent cannot see (made before it started)."""


def install_full_hooks() -> None:
    """Install the concurrency hooks a ``hops`` process started without (``ctl enable``).
    Objects the program created before this point (its locks, queues) are not seen."""
    rec = _r.RECORDER
    if rec is not None:
        _install(rec, FULL_HOOKS)


def start_from_env() -> _r.Recorder | None:
    """What sitecustomize calls in every Python process ``willowisp run`` starts."""
    if disabled() or not os.environ.get("WILLOWISP_OUT"):
        return None
    return start(config=from_env())


def stop() -> None:
    """Remove the hooks, flush what is buffered, close the segment. Safe to call twice."""
    rec = _r.RECORDER
    if rec is None:
        return
    from willowisp.agent import control

    control.stop_server()
    while _installed:
        module = _installed.pop()
        try:
            module.uninstall()
        except Exception as exc:
            rec.fault(f"uninstall {module.__name__}", exc)
    try:
        rec.stop()
    finally:
        _r.RECORDER = None
        standing.go_idle()
        from willowisp.agent import boundaries

        boundaries.reset()


def _at_exit() -> None:
    """The interpreter is ending: its non-daemon threads are joined, but daemon threads (a
    ThreadingHTTPServer's handlers) still serve. The hooks stay and the last flush ends
    holding the GIL (``final_flush``); the callbacks registered after the agent's ran
    before it, and daemon threads stop at their next take of the GIL once finalization
    has begun, so they record nothing unwritten that a peer saw."""
    final_flush()


def _install_sigterm() -> None:
    """Flush on SIGTERM when the program has no handler of its own, then die as it would."""
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
    except (ValueError, OSError):
        return

    first: list[float] = []  # when the first SIGTERM came

    def _on_term(signum: int, frame: Any) -> None:
        # The handler runs on the main thread between two of its bytecodes (or, with the C
        # extension, on the agent's SIGTERM thread: see _route_sigterm), possibly inside
        # the agent's own critical section (a non-reentrant lock): flushing here could wait
        # on itself forever. So the flush runs on a thread of its own while the main thread
        # goes on and lets go; then the process dies of the signal's default action.
        # A second SIGTERM within DUPLICATE_TERM_S is the same stop said twice (a process
        # group signalled, and `willowisp run` or a supervisor passing it on too): ignored,
        # so the flush finishes; a later one ends the process at once.
        if first:
            if time.monotonic() - first[0] >= DUPLICATE_TERM_S:
                _die_of(signum)  # from any thread: the C path runs this off the main one
            return
        first.append(time.monotonic())

        def finish() -> None:
            try:
                die = _default_action_setter()
                final_flush()
            finally:
                _die_of(signum, die)

        try:
            _thread.start_new_thread(finish, ())
        except RuntimeError:
            # The interpreter is finalizing (a Pool's terminate() reaches a worker that is
            # already exiting): no thread can start now. Its atexit flush has run, runs on
            # this very thread, or is still to come, and the process ends right after it.
            return

    signal.signal(signal.SIGTERM, _on_term)
    _route_sigterm(_on_term)


def _route_sigterm(handler: Any) -> None:
    """Make every SIGTERM run ``handler``, whichever thread the kernel hands it and whatever
    the main thread is doing. CPython runs it on the main thread only, when that thread next
    runs bytecode: blocked in an untimed wait (``Event().wait()``, ``join()``) it never
    would, and the process the default action would have killed lives on. Sending the signal
    on to the main thread does not close that: one taken while the main thread is on its way
    into the wait (between dropping the GIL and sleeping) is lost all the same (seen: 1 run
    in 5). So with the C extension its handler (``_native.forward_sigterm``) takes every
    SIGTERM in place of CPython's and wakes an agent thread that runs ``handler``.
    Without it nothing is done: blocking SIGTERM in the program's threads instead (so the
    kernel picks the main thread) was tried and dropped, because every program such a
    thread starts (``subprocess``, ``os.system``, ``posix_spawn``) inherits the mask and
    then cannot be stopped with SIGTERM. Never raises: at worst the old behaviour."""
    from willowisp.agent import rows

    fast = rows.FAST
    if fast is None or not hasattr(fast, "wait_sigterm"):  # an extension built before it
        return
    try:
        if not fast.forward_sigterm():
            return
        _start_sigterm_thread(fast, handler)
    except (OSError, RuntimeError):  # no thread: CPython's own handler again
        signal.signal(signal.SIGTERM, handler)
        return
    # A child forked by os.fork() has only the forking thread: it needs its own.
    os.register_at_fork(after_in_child=lambda: _restart_sigterm_thread(fast, handler))


def _start_sigterm_thread(fast: Any, handler: Any) -> None:
    """The agent's thread that runs ``handler`` once per SIGTERM the C handler took. It
    blocks the program's signals (own_threads), so the kernel never picks it."""
    from willowisp.agent import own_threads

    def run() -> None:
        try:
            while True:
                handler(fast.wait_sigterm(), None)
        except Exception:  # never a traceback in the program's stderr
            return

    own_threads.start(run)


def _restart_sigterm_thread(fast: Any, handler: Any) -> None:
    """In a forked child whose SIGTERM handler is still the C one: a thread of its own."""
    try:
        if fast.sigterm_forwarded():
            _start_sigterm_thread(fast, handler)
    except (OSError, RuntimeError):
        pass


DUPLICATE_TERM_S = 2.0


def final_flush() -> None:
    """Before the process ends at once (SIGTERM's default action, ``os._exit``): write
    everything recorded, the program's threads still running and recording, and return
    holding the GIL (``Recorder.drain``): the caller ends the process next, before anything
    lets the GIL go. The hooks stay: a request a server thread answers while the agent
    flushes is recorded and written, not lost."""
    rec = _r.RECORDER
    if rec is None:
        return
    from willowisp.agent import control

    control.stop_server()
    rec.drain()


def _default_action_setter() -> Any:
    """libc's ``signal`` through ctypes.PyDLL, which (unlike CDLL) keeps the GIL during the
    call: made before the final flush, called after it (see ``_die_of``)."""
    try:
        import ctypes

        setter = ctypes.PyDLL(None).signal
        setter.restype = ctypes.c_void_p
        setter.argtypes = (ctypes.c_int, ctypes.c_void_p)
        return setter
    except Exception:
        return None


def _die_of(signum: int, set_default: Any = None) -> None:
    """End the process by ``signum``'s default action, from any thread (Python lets only
    the main thread set a handler, so libc's signal() restores the default); if that cannot
    be done, exit with the status a shell gives such a death. Neither the setter nor
    ``os.kill`` nor the original ``os._exit`` lets the GIL go: no thread of the program runs
    after the final flush."""
    try:
        if set_default is None:
            set_default = _default_action_setter()
        if set_default is not None:
            set_default(signum, None)  # SIG_DFL is 0
            os.kill(os.getpid(), signum)
    finally:
        from willowisp.agent import procs

        procs.real_exit(128 + signum)


__all__ = ["arm", "disarm", "final_flush", "start", "start_from_env", "stop"]
_ = sys
