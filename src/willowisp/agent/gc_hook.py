"""Garbage-collection pauses as runtime events (``gc.begin`` / ``gc.end``) on the unit that
was running when the collector stopped the world, so a pause between two awaits is visible
and never mistaken for the program's own latency."""

from __future__ import annotations

import _thread
import gc
from typing import Any

from willowisp.agent import recorder as _r
from willowisp.agent import rows
from willowisp.model.spec import K

_installed: list[Any] = []


def _callback(phase: str, info: dict[str, Any]) -> None:
    rec = _r.RECORDER
    if rec is None or _thread.get_ident() == rec._flusher_ident:
        return
    try:
        st = rows.tl.st  # only threads already known: a collection never makes a unit
    except AttributeError:
        return
    try:
        if phase == "start":
            rec.emit_for(st, st.unit, int(K.GC_BEGIN), 0, int(info.get("generation", 0)))
        else:
            rec.emit_for(st, st.unit, int(K.GC_END), 0, int(info.get("collected", 0)))
    except Exception:
        pass


def install() -> None:
    if not _installed:
        gc.callbacks.append(_callback)
        _installed.append(_callback)


def uninstall() -> None:
    while _installed:
        cb = _installed.pop()
        if cb in gc.callbacks:
            gc.callbacks.remove(cb)
