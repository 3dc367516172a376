"""The agent's own threads take no signal meant for the program.

CPython runs signal handlers on the main thread only; the kernel hands a signal sent to the
process to any thread that does not block it. When that is one of the agent's threads, the
handler waits until the main thread next runs bytecode, so a main thread blocked in
``Event.wait()``, ``queue.get()`` or a lock would not see its Ctrl-C until the wait ended by
itself (seen: 60 s). So the agent's threads start with the asynchronous signals blocked:
they are blocked in the starting thread around the start (a new thread inherits the mask)
and unblocked again at once (one arriving meanwhile waits and is then delivered there).
Signals a thread causes itself (SIGSEGV, SIGPIPE, ...) stay unblocked.
"""

from __future__ import annotations

import _thread
import signal
from collections.abc import Callable
from typing import Any

_OWN = {
    signal.SIGKILL,
    signal.SIGSTOP,
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGTRAP,
    signal.SIGSYS,
    signal.SIGABRT,
    signal.SIGPIPE,
}
PROGRAM_SIGNALS = frozenset(signal.valid_signals()) - _OWN


def start(fn: Callable[..., Any], args: tuple[Any, ...] = ()) -> int:
    """``_thread.start_new_thread(fn, args)``, the new thread blocking PROGRAM_SIGNALS."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, PROGRAM_SIGNALS)
    try:
        return _thread.start_new_thread(fn, args)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
