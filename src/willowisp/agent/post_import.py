"""Running a hook right after the program first imports a module, so that the agent never
imports, only to patch it, a module the program does not use.

Some hooked modules are costly to import: asyncio takes ~10 ms, ``http.server`` pulls in
``email``, ``socketserver`` and ``mimetypes``, ``http.client`` pulls in ``ssl``. A hook
calls ``when_imported(name, then)`` at install: ``then`` runs at once if the module is
already imported, else right after the program's first import of it has executed, in the
importing thread, before that ``import`` statement returns.

While any hook waits, one meta-path finder sits first on ``sys.meta_path``. For an awaited
name it finds the module's spec through the other finders and wraps its loader for that one
load; the module gets its real loader back as soon as it has executed, so the program never
sees the wrapper (``module.__loader__`` and ``__spec__.loader`` are the real ones).

Trade-off: the finder is asked first about every import while a hook waits (one dict lookup
for a name nobody awaits), and a module whose loader has no ``exec_module`` (a legacy
``load_module`` loader) is imported unwrapped: its hooks never run. A failed import of an
awaited module drops its hooks: the module is not in ``sys.modules`` to be patched.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from willowisp.agent import recorder as _r


class Waiting:
    """A hook waiting for the first import of module ``name``; pass it to ``cancel``."""

    __slots__ = ("name", "then", "where")

    def __init__(self, name: str, then: Callable[[], None], where: str) -> None:
        self.name = name
        self.then = then
        self.where = where  # names the agent.fault if ``then`` raises after the import


# Hooks waiting for their module's first import, by module name, in the order they came.
# Changed (under the GIL) by when_imported, cancel and the import of an awaited module.
# Invariant: _FINDER is on sys.meta_path exactly while _waiting is not empty.
_waiting: dict[str, list[Waiting]] = {}


def when_imported(name: str, then: Callable[[], None], where: str) -> Waiting | None:
    """Run ``then()`` right after module ``name`` is first imported, or now if it already is.

    Now: returns None, and an exception ``then`` raises reaches the caller (installing a hook,
    it can report it). Later: returns the ``Waiting`` to ``cancel``; an exception ``then``
    raises is recorded as an ``agent.fault`` at ``where`` and never reaches the program.
    """
    if name in sys.modules:
        then()
        return None
    waiting = Waiting(name, then, where)
    _waiting.setdefault(name, []).append(waiting)
    _place_finder()
    return waiting


def cancel(waiting: Waiting) -> None:
    """Stop waiting; nothing happens if the hook already ran or its module failed to import."""
    hooks = _waiting.get(waiting.name)
    if hooks is not None and waiting in hooks:
        hooks.remove(waiting)
        if not hooks:
            del _waiting[waiting.name]
    _place_finder()


def _place_finder() -> None:
    if _waiting:
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
    elif _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def _run(hooks: list[Waiting]) -> None:
    for waiting in hooks:
        try:
            waiting.then()
        except Exception as exc:  # the program's import must succeed whatever a hook does
            rec = _r.RECORDER
            if rec is not None:
                rec.fault(waiting.where, exc)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds an awaited module through the other finders and wraps its loader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _waiting:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _LoaderThen(spec.loader, fullname)
                return spec
        return None


class _LoaderThen(importlib.abc.Loader):
    """The real loader, then the module's waiting hooks, for one load."""

    def __init__(self, loader: Any, name: str) -> None:
        self.loader = loader
        self.name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        try:
            self.loader.exec_module(module)
        finally:
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader
            hooks = _waiting.pop(self.name, [])
            _place_finder()
        _run(hooks)  # only once the module executed without error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


_FINDER = _Finder()
