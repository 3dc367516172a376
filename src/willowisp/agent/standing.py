"""Standing primitives: the locks, conditions and queues kept across recordings.

``api.arm()`` (the pytest plugin, from before the test modules are imported to the end of
the session) installs the primitive hooks before any recorder runs and keeps them across
every start()/stop(). A module-level ``lock = threading.Lock()`` is then made while no
recorder runs, yet used under each test's recording. So every primitive the program makes
while armed gets a process-wide resource number (``rows.RES_IDS``) and an entry in
``STANDING``, and each recorder defines the entries still alive when it starts
(``Recorder.start``). Without arm() nothing is kept: one recording per process (the
`willowisp run` case) defines its primitives as they are made.

Between recordings (``go_idle``) the hooks still fire; the C fast path then drops their
rows instead of buffering them for a recorder that is gone.

Trade-off: a weak reference per primitive (its callback forgets the entry) so the table
never keeps the program's objects alive, paid only while armed.
"""

from __future__ import annotations

import weakref
from types import CodeType
from typing import Any

from willowisp.agent import recorder as _r
from willowisp.agent.locations import is_internal_file
from willowisp.agent.rows import (
    ALL_STATES,
    FAST,
    RES_IDS,
    ThreadState,
    _getframe,
    location_key,
    register_code,
    set_state,
)
from willowisp.wtrace.payload import AttrValue

# Primitives (locks, conditions, queues) defined in every recording while they live, when
# the hooks stay installed across recordings (api.arm()). rid -> (attributes, creation
# location key, weak reference whose callback forgets the entry). None: not kept (one
# recording per process, the `willowisp run` case). Changed only by keep_standing,
# new_primitive and the weak references' callbacks.
# Invariant: while not None, holds every primitive made since arm() that is still alive.
STANDING: dict[int, tuple[dict[str, AttrValue], int, weakref.ref[Any]]] | None = None
# File name -> made by the standard library or the agent (is_internal_file), cached.
_internal_files: dict[str, bool] = {}


def recording_primitives() -> bool:
    """Should a primitive the program creates now be a resource (recorded, or kept)?"""
    # STANDING first: a global read, where RECORDER is another module's attribute; while
    # armed (the case that makes primitives between recordings) it settles the answer.
    return STANDING is not None or _r.RECORDER is not None


def new_primitive(obj: Any, kind: str, depth: int, name_suffix: str = "") -> int:
    """The resource number of primitive ``obj`` created ``depth`` frames above the caller:
    defined in the running recording, and kept in STANDING (while ``obj`` lives) for the
    recordings still to come. 0 when neither records."""
    rec = _r.RECORDER
    if rec is None and STANDING is None:
        return 0
    extra: dict[str, AttrValue] = {"name_suffix": name_suffix} if name_suffix else {}
    if rec is None:
        rid = next(RES_IDS)
    elif name_suffix:
        rid = rec.new_resource(kind, depth + 1, name_suffix=name_suffix)
    else:
        rid = rec.new_resource(kind, depth + 1)
    if STANDING is not None:
        attrs: dict[str, AttrValue] = {"kind": kind, **extra}
        STANDING[rid] = (attrs, location_key(depth + 1), weakref.ref(obj, _forgetter(rid)))
    return rid


def _forgetter(rid: int) -> Any:
    def forget(_: object) -> None:
        standing = STANDING
        if standing is not None:
            standing.pop(rid, None)

    return forget


def alive() -> list[tuple[int, dict[str, AttrValue], int]]:
    """(rid, attributes, creation location key) of every standing primitive still alive,
    for a recorder that starts now to define (a copy: the caller may change it)."""
    return [(rid, dict(attrs), key) for rid, (attrs, key, _) in list((STANDING or {}).items())]


def created_by_internal_code(depth: int) -> bool:
    """Was the caller ``depth`` frames up in the standard library or the agent? (With or
    without a running recorder.)"""
    try:
        f = _getframe(depth + 1)
    except ValueError:
        return False
    name = f.f_code.co_filename
    v = _internal_files.get(name)
    if v is None:
        v = _internal_files[name] = is_internal_file(name)
    return v


def keep_standing(on: bool) -> None:
    """Start (an empty registry) or stop keeping primitives across recordings."""
    global STANDING
    STANDING = {} if on else None


def go_idle() -> None:
    """No recorder runs: the C fast path drops what hooks still record (a lock made before
    or between recordings) instead of buffering it for a recorder that is gone."""
    if FAST is not None:
        FAST.set_callbacks(ThreadState, _idle_adopt, _drop_row, register_code, _idle_internal)


def _idle_adopt() -> ThreadState:
    """A thread's first event while no recorder runs: an empty state (every row overflows
    and is dropped), known to the next recorder, which gives it a unit and a buffer."""
    st = ThreadState(0, None)
    ALL_STATES.add(st)
    set_state(st)
    return st


def _drop_row(st: ThreadState, t: int, kind: int, res: int, arg: int, key: int) -> None:
    """The idle overflow: there is nowhere to write the row to."""


def _idle_internal(code: CodeType) -> bool:
    return is_internal_file(code.co_filename)
