"""Processes: fork safety and parent -> child links.

``os.fork``: the child gets a new process id, fresh buffers and its own flusher (the
parent's threads do not exist there and its unflushed rows are the parent's to write); the
parent writes ``proc.spawn`` and the child ``proc.start`` on a spawn resource whose span id
links them. ``os._exit`` flushes first (it skips atexit). ``subprocess``: the child's
environment gets ``TRACEPARENT`` (the OTel environment carrier) and
``WILLOWISP_PARENT_PROCESS``; a child running an agent writes ``proc.start`` from it.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from willowisp.agent import context
from willowisp.agent import recorder as _r
from willowisp.model.spec import K
from willowisp.wire.traceparent import TraceContext

_orig: dict[str, Any] = {}
_os: Any = os  # os._exit is replaced through an Any-typed name (its type says NoReturn)
_fork_ctx: list[TraceContext] = []
_installed_fork = False


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
        ctx = context.outgoing()
        _fork_ctx[:] = [ctx]
        rid = _spawn_resource(rec, ctx, "fork", 3)
        rec.emit_user(int(K.PROC_SPAWN), rid, 0)
        rec.flush()
    except Exception as exc:
        rec.fault("os.fork", exc)


def _after_fork_child() -> None:
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


def uninstall() -> None:
    if _orig:
        subprocess.Popen.__init__ = _orig.pop("Popen.__init__")  # type: ignore[method-assign]
        _os._exit = _orig.pop("os._exit")
