"""Processes: fork safety and parent -> child links.

``os.fork``: the child gets a new process id, fresh buffers and its own flusher (the
parent's threads do not exist there and its unflushed rows are the parent's to write); the
parent writes ``proc.spawn`` and the child ``proc.start`` on a spawn resource whose span id
links them. ``os._exit`` flushes first (it skips atexit). ``subprocess``: the child's
environment gets ``TRACEPARENT`` (the OTel environment carrier) and
``WILLOWISP_PARENT_PROCESS``; a child running an agent writes ``proc.start`` from it.

``multiprocessing``: ``Process.start`` (so Pool workers too) names the launch after the
process; a fork is then linked as above, and a spawned interpreter (``spawn`` children, the
resource tracker, the forkserver) gets the link and the parent's service name in its
environment for the length of the launch (``util.spawnv_passfds`` passes none of its own).
In the child, ``Process._bootstrap`` renames the unit running it after the Process
(``SpawnPoolWorker-1``); the helpers' units (resource tracker, forkserver) are marked the
runtime's own.
Trade-off: a program thread reading ``os.environ`` during that launch sees the variables too.
"""

from __future__ import annotations

import _thread
import os
import subprocess
import sys
from typing import Any

from willowisp.agent import context, post_import
from willowisp.agent import recorder as _r
from willowisp.model.spec import K
from willowisp.wire.traceparent import TraceContext

_orig: dict[str, Any] = {}
_os: Any = os  # os._exit is replaced through an Any-typed name (its type says NoReturn)
_fork_ctx: list[TraceContext] = []
_installed_fork = False
# The multiprocessing launch the calling thread is inside (``Process.start``): its trace
# context and the process name, read by the fork and spawn hooks below it. Set and cleared
# by _mp_start on its own thread only; cleared in a forked child, which inherits it.
_launch = _thread._local()
# Serializes the spawn hook's temporary changes to os.environ with the environment copy
# subprocess children get, so neither sees the other's half-done state.
_env_lock = _thread.allocate_lock()
_waiting: list[post_import.Waiting] = []  # hooks on modules the program has not imported


def _spawn_resource(rec: _r.Recorder, ctx: TraceContext, what: str, depth: int) -> int:
    return rec.new_resource(
        "spawn",
        depth + 1,
        name=what,
        trace_id=ctx.trace_id,
        span_id=ctx.span_id,
        sampled=1 if ctx.sampled else 0,
    )


def _before_fork() -> None:
    rec = _r.RECORDER
    if rec is None:
        return
    try:
        launch = getattr(_launch, "value", None)
        ctx, what = launch if launch is not None else (context.outgoing(), "fork")
        _fork_ctx[:] = [ctx]
        rid = _spawn_resource(rec, ctx, what, 3)
        rec.emit_user(int(K.PROC_SPAWN), rid, 0)
        rec.flush()
    except Exception as exc:
        rec.fault("os.fork", exc)


def _after_fork_child() -> None:
    _launch.value = None  # the parent's launch, not this process's
    rec = _r.RECORDER
    if rec is None:
        return
    try:
        ctx = _fork_ctx[0] if _fork_ctx else None
        parent_pid = rec.pid
        if ctx is not None:
            os.environ["TRACEPARENT"] = ctx.header()
        child = rec.reset_after_fork()
        context.reload_from_env()
        if ctx is not None:
            announce_start(child, parent_pid)
        from willowisp.agent import control

        control.after_fork(child)  # the child's own `willowisp ctl` channel
    except Exception:  # the child must live on even if the agent cannot
        _r.RECORDER = None


def announce_start(rec: _r.Recorder, parent_pid: int) -> None:
    """Write proc.start if this process inherited a context (TRACEPARENT)."""
    ctx = context.current()
    if ctx is None:
        return
    rid = rec.new_resource(
        "spawn",
        0,
        name="start",
        trace_id=ctx.trace_id,
        parent_span_id=ctx.span_id,
        sampled=1 if ctx.sampled else 0,
    )
    rec.emit(int(K.PROC_START), rid, parent_pid, 0)


def _popen_init(self: subprocess.Popen[Any], args: Any, *a: Any, **kw: Any) -> None:
    rec = _r.RECORDER
    rid = 0
    if rec is not None:
        try:
            ctx = context.outgoing()
            env = kw.get("env")
            with _env_lock:
                env = dict(os.environ if env is None else env)
            env["TRACEPARENT"] = ctx.header()
            env["WILLOWISP_PARENT_PROCESS"] = rec.process_id
            kw["env"] = env
            name = args if isinstance(args, str) else " ".join(map(str, args))
            rid = _spawn_resource(rec, ctx, name[:200], 2)
        except Exception as exc:
            rec.fault("subprocess.Popen", exc)
    _orig["Popen.__init__"](self, args, *a, **kw)
    if rid and rec is not None:
        try:
            rec.emit_user(int(K.PROC_SPAWN), rid, int(self.pid or 0))
        except Exception as exc:
            rec.fault("subprocess.Popen", exc)


# --- multiprocessing ----------------------------------------------------------------


def _mp_start(self: Any) -> None:
    """``Process.start``: the fork or spawn it makes is this Process's launch."""
    start = _orig["BaseProcess.start"]
    rec = _r.RECORDER
    if rec is None or getattr(_launch, "value", None) is not None:
        start(self)
        return
    try:
        _launch.value = (context.outgoing(), f"multiprocessing {self.name}")
    except Exception as exc:
        rec.fault("multiprocessing.Process.start", exc)
    try:
        start(self)
    finally:
        _launch.value = None


def _spawnv_passfds(path: Any, args: Any, passfds: Any) -> int:
    """``multiprocessing.util.spawnv_passfds``: a new interpreter, linked through the
    environment (the only channel it has) and named with the parent's service."""
    spawn = _orig["spawnv_passfds"]
    rec = _r.RECORDER
    if rec is None:
        return int(spawn(path, args, passfds))
    rid, env = 0, {}
    try:
        # A helper the launch starts first (the resource tracker) is a launch of its own.
        launch = getattr(_launch, "value", None)
        helper = _helper(args)
        if launch is None or helper:
            launch = (context.outgoing(), helper or "multiprocessing")
        ctx, what = launch
        rid = _spawn_resource(rec, ctx, what, 2)
        env = {
            "TRACEPARENT": ctx.header(),
            "WILLOWISP_PARENT_PROCESS": rec.process_id,
            "WILLOWISP_SERVICE": rec.config.service,
        }
    except Exception as exc:
        rec.fault("multiprocessing spawn", exc)
    with _env_lock:
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            pid = int(spawn(path, args, passfds))
        finally:
            _restore_env(saved)
    if rid:
        try:
            rec.emit_user(int(K.PROC_SPAWN), rid, pid)
        except Exception as exc:
            rec.fault("multiprocessing spawn", exc)
    return pid


def _restore_env(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _helper(args: Any) -> str:
    """Which of multiprocessing's helper processes a spawn starts ('' for none)."""
    command = " ".join(map(str, args))
    for helper in _HELPERS:
        if f"multiprocessing.{helper}" in command:
            return f"multiprocessing {helper}"
    return ""


def _mp_bootstrap(self: Any, *args: Any, **kwargs: Any) -> Any:
    """In the child, whatever the start method: its unit takes the Process's name."""
    _name_unit(str(self.name), runtime=False)
    return _orig["BaseProcess._bootstrap"](self, *args, **kwargs)


def _helper_main(module: str) -> Any:
    """A helper process's ``main`` (the resource tracker, the forkserver): its unit named,
    and the runtime's own (it lives until the program ends and does none of its work)."""

    def main(*args: Any, **kwargs: Any) -> Any:
        _name_unit(f"multiprocessing.{module}", runtime=True)
        return _orig[f"{module}.main"](*args, **kwargs)

    return main


def _name_unit(name: str, *, runtime: bool) -> None:
    rec = _r.RECORDER
    if rec is None:
        return
    try:
        unit = _r.state().unit
        rec.define_unit(unit, "thread", name, 0)  # a later record of the unit wins
        if runtime:
            rec.mark_runtime_unit(unit)
    except Exception as exc:
        rec.fault("multiprocessing child", exc)


# The modules are patched through Any-typed names: typeshed leaves out the private names
# (``_bootstrap``, ``spawnv_passfds``) and types the methods as not assignable.
def _module(name: str) -> Any:
    return sys.modules[name]


def _patch_process() -> None:
    base = _module("multiprocessing.process").BaseProcess
    _orig["BaseProcess.start"] = base.start
    _orig["BaseProcess._bootstrap"] = base._bootstrap
    base.start = _mp_start
    base._bootstrap = _mp_bootstrap


def _patch_util() -> None:
    util = _module("multiprocessing.util")
    _orig["spawnv_passfds"] = util.spawnv_passfds
    util.spawnv_passfds = _spawnv_passfds


def _patch_helper(module: str) -> Any:
    def patch() -> None:
        helper = _module(f"multiprocessing.{module}")
        _orig[f"{module}.main"] = helper.main
        helper.main = _helper_main(module)

    return patch


_HELPERS = ("resource_tracker", "forkserver")
_MP_PATCHES = (
    ("multiprocessing.process", _patch_process),
    ("multiprocessing.util", _patch_util),
    *((f"multiprocessing.{m}", _patch_helper(m)) for m in _HELPERS),
)


def _install_multiprocessing() -> None:
    """Patched on the program's first import of each module (never imported for it)."""
    for name, patch in _MP_PATCHES:
        waiting = post_import.when_imported(name, patch, "install procs multiprocessing")
        if waiting is not None:
            _waiting.append(waiting)


def _uninstall_multiprocessing() -> None:
    while _waiting:
        post_import.cancel(_waiting.pop())
    # what a patch took, by module and attribute (each restored if it was patched)
    patched = [
        ("multiprocessing.process", "BaseProcess", "start", "BaseProcess.start"),
        ("multiprocessing.process", "BaseProcess", "_bootstrap", "BaseProcess._bootstrap"),
        ("multiprocessing.util", "", "spawnv_passfds", "spawnv_passfds"),
        *((f"multiprocessing.{m}", "", "main", f"{m}.main") for m in _HELPERS),
    ]
    for module, owner, attr, key in patched:
        if key in _orig and module in sys.modules:
            target = _module(module)
            setattr(getattr(target, owner) if owner else target, attr, _orig.pop(key))


def _exit(status: int) -> None:
    """os._exit skips atexit (forked children, multiprocessing workers end this way):
    flush what this process recorded first, while its other threads still run, and end
    it before any of them runs again (``api.final_flush``)."""
    try:
        from willowisp.agent import api

        api.final_flush()
    except Exception:
        pass
    real_exit(status)


def real_exit(status: int) -> None:
    """The interpreter's own ``os._exit``, hooked or not (it keeps the GIL to the end)."""
    _orig.get("os._exit", os._exit)(status)


def install() -> None:
    global _installed_fork
    if not _installed_fork:
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_child)
        _installed_fork = True
    if not _orig:
        _orig["Popen.__init__"] = subprocess.Popen.__init__
        _orig["os._exit"] = os._exit
        subprocess.Popen.__init__ = _popen_init  # type: ignore[method-assign]
        _os._exit = _exit
        _install_multiprocessing()


def uninstall() -> None:
    if _orig:
        subprocess.Popen.__init__ = _orig.pop("Popen.__init__")  # type: ignore[method-assign]
        _os._exit = _orig.pop("os._exit")
        _uninstall_multiprocessing()
