"""``willowisp.access``: tell the agent about an access to shared data it cannot see.

The agent records databases, files, Redis keys and HTTP resources by itself
(docs/agent-python.md, "Data accesses"); anything else a program shares (a cache entry, an
object in a store the agent does not hook, a global dictionary) it can name here, and the
race analysis treats it the same way: two accesses to the same name from different units,
at least one a write, with no happens-before order between them, are a race. Three
spellings::

    willowisp.access("cart:42", "write")       # a plain call: one access, here

    with willowisp.access("cart:42", "read"):  # a context manager: one access on entry
        total = sum(cart.values())

    @willowisp.access("cart:42", "write")      # a decorator: one access per call
    def add_item(...): ...

A plain call records when its result is dropped, which for a call made as a statement is
at once, on the same line: the object cannot know at construction whether ``with`` or a
decorator will follow. So keep the result only to use it.

Cheap when nothing records: without a running agent each spelling does nothing beyond
creating the small object, and importing this module imports nothing of the agent.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

MODES = {"read": 0, "write": 1}
CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect
F = TypeVar("F", bound=Callable[..., Any])


def _recorder() -> Any:
    module = sys.modules.get("willowisp.agent.recorder")
    return getattr(module, "RECORDER", None) if module is not None else None


def _location(code: Any, lasti: int) -> int:
    """The agent's location key for a code object and instruction offset."""
    module = sys.modules.get("willowisp.agent.recorder")
    if module is None:
        return 0
    module.CODE_IDS[id(code)] = code  # kept alive so its id stays its own
    return int((id(code) << 16) | (lasti & 0xFFFF))


def _record(name: str, mode: int, key: int) -> None:
    rec = _recorder()
    if rec is None:
        return
    try:
        from willowisp.agent import data_access as d

        if d.enabled(rec):
            rid = d.resource(rec, d.cut(name), store="api", key=key)
            d.access(rec, rid, mode, key)
    except Exception as exc:  # the agent never raises into the program
        rec.fault("willowisp.access", exc)


class Access:
    """One declared access; see the module doc for the three ways to use it."""

    __slots__ = ("_key", "_mode", "_name", "_used")

    def __init__(self, name: str, mode: int, key: int) -> None:
        self._name = name
        self._mode = mode
        self._key = key  # where the program called access()
        self._used = False  # used by `with` or as a decorator: no access when dropped

    def __enter__(self) -> Access:
        self._used = True
        _record(self._name, self._mode, self._key)
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, fn: F) -> F:
        """As a decorator: an access at each call, located at the function's definition (its
        first line, which is the first decorator's)."""
        self._used = True
        name, mode = self._name, self._mode
        code = getattr(fn, "__code__", None)

        def key() -> int:
            return _location(code, 0) if code is not None else 0

        if code is not None and code.co_flags & CO_COROUTINE:

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                _record(name, mode, key())
                return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            _record(name, mode, key())
            return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    def __del__(self) -> None:
        if not self._used:
            self._used = True
            _record(self._name, self._mode, self._key)

    def __repr__(self) -> str:
        mode = "write" if self._mode else "read"
        return f"willowisp.access({self._name!r}, {mode!r})"


def access(name: str, mode: str = "write") -> Access:
    """Declare a ``"read"`` or ``"write"`` of the shared data called ``name`` (its first
    200 characters). Raises ValueError for another mode; never raises from recording."""
    code = MODES.get(mode)
    if code is None:
        raise ValueError(f"willowisp.access mode {mode!r}: expected 'read' or 'write'")
    key = 0
    if _recorder() is not None:
        caller = sys._getframe(1)
        key = _location(caller.f_code, caller.f_lasti)
    return Access(str(name), code, key)
