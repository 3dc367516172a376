"""The row a hook writes and the per-thread state it is written into.

Hot path (every hook, in the program's own threads): one fixed 48-byte row -- time, kind,
unit, res, arg and a location key -- written into the calling thread's preallocated
``bytearray`` (``ThreadState.buf``). No object the garbage collector tracks is created per
event (keeping a tuple per event alive costs ~300 ns of GC work, more than the write
itself); the location key is ``id(code) << 16 | f_lasti``, resolved to file/line only when
the recorder flushes. The write is done by the optional C fast path (``FAST``, built from
``willowisp/_native.c``) when it is there, else by the same code in Python
(``Recorder.emit``, ``threads._py_write``), which stays the reference.

Everything here lives for the process, not for one recording: thread states stay in
thread-local storage across stop() and start(), code objects named by location keys
must stay alive while any recorder may resolve them, and resource and token numbers must
not repeat when a primitive outlives the recording it was made under. This module imports
no other part of the agent. Above it, ``standing.py`` (primitives kept between recordings)
reads ``recorder.RECORDER``, and the recorder reaches ``standing`` only when it starts, so
there is no import cycle at load time.

The hottest hooks (threads, aio) import these names into their own globals (``from
willowisp.agent.rows import tl, pack_into``): a global read is one dictionary lookup, an
attribute of another module two. That is safe only for names never rebound, which all of
these are; ``FAST`` is chosen once, at import. What start/stop rebind (``RECORDER``,
``GATE``) stays in ``recorder.py`` and is read through the module.
"""

from __future__ import annotations

import _thread
import itertools
import os
import struct
import sys
import threading
import time
import weakref
from types import CodeType
from typing import Any

ROW = struct.Struct("<qqqqqQ")  # time, kind, unit, res, arg, location key
ROW_SIZE = ROW.size
FIELDS = 6
ROWS_PER_BUFFER = 2048
BUFFER_BYTES = ROWS_PER_BUFFER * ROW_SIZE

mono = time.monotonic_ns
wall = time.time_ns
_getframe = sys._getframe
pack_into = ROW.pack_into


class ThreadState:
    """What one thread writes into. Owned by its thread; the flusher reads under a lock.

    Invariant: rows [flushed, used) of ``buf`` are complete and not yet flushed.
    ``unit`` is the unit events are attributed to (the thread, or the asyncio task whose
    step is running on it).
    """

    __slots__ = (
        "__weakref__",
        "alive",
        "buf",
        "dropped",
        "end",
        "flushed",
        "full",
        "ident",
        "rows_before",
        "thread_unit",
        "unit",
        "used",
    )

    def __init__(self, unit: int, buf: bytearray | None) -> None:
        self.unit = unit
        self.thread_unit = unit
        self.buf = buf if buf is not None else bytearray(0)
        self.used = 0  # byte offset of the next row
        self.end = len(self.buf)
        self.flushed = 0
        self.full: list[tuple[bytearray, int, int]] = []  # (buffer, from, to) awaiting flush
        self.dropped = 0
        self.rows_before = 0  # rows written into earlier buffers (boundary cost counts)
        self.alive = True
        self.ident = _thread.get_ident()


class _Local(threading.local):
    st: ThreadState


# Every thread state ever made, so a recorder started after stop() takes over the threads
# that outlived the previous one (their states live on in thread-local storage).
ALL_STATES: weakref.WeakSet[ThreadState] = weakref.WeakSet()
# Code objects whose ids appear in location keys, kept alive so the ids stay theirs. Keyed
# by id: hashing a code object hashes its constants, which costs more than the event.
CODE_IDS: dict[int, CodeType] = {}
# One for the life of the process. A plain threading.local (a subclass with __init__ costs
# twice as much per access): a thread's ``st`` is set when it starts through our Thread
# hook, or on its first event by ``recorder.state()``; hot paths catch the AttributeError
# inline.
tl = _Local()
# Resource numbers are unique for the life of the process, not per recorder: a primitive
# made before or under one recording keeps its number in the next (see standing.STANDING).
RES_IDS = itertools.count(1)
TOKENS = itertools.count(1)  # queue tokens, likewise: an item put under one recording

# The optional C fast path (willowisp/_native.c). WILLOWISP_PURE_PYTHON=1 forces the
# reference implementation (tests run both).
FAST: Any = None
if os.environ.get("WILLOWISP_PURE_PYTHON", "") in ("", "0"):
    try:
        from willowisp import _native as FAST
    except ImportError:
        FAST = None


def set_state(st: ThreadState) -> None:
    """Make ``st`` the calling thread's state, for both the Python and the C hot path."""
    tl.st = st
    if FAST is not None:
        FAST.set_state(st)


def register_code(code: CodeType) -> None:
    """Keep ``code`` alive so the location keys made from its id stay its own."""
    CODE_IDS[id(code)] = code


def location_key(depth: int) -> int:
    """The location key of the frame ``depth`` levels above the caller (0 if none)."""
    try:
        f = _getframe(depth + 1)
    except ValueError:
        return 0
    c = f.f_code
    CODE_IDS[id(c)] = c
    return (id(c) << 16) | (f.f_lasti & 0xFFFF)
