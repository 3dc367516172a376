"""Hooks for the third-party HTTP libraries: requests, urllib3, httpx and aiohttp.

requests and urllib3 reach the network through ``http.client``; urllib3's connection class
gets hooks of its own (http_urllib3.py) that record what http.py records for
``http.client``, once, labelled with the library the program called and located at the
program's line rather than inside urllib3. httpx (http_httpx.py) and aiohttp
(http_aiohttp.py) have their own connections. Each is hooked right after the program
first imports it (post_import.py): the agent never imports a library the program does not
use, and a library that is not installed costs nothing but a dict lookup per import while
the hooks wait.

Patches are all or nothing per library side: a failure while patching puts back what that
side had replaced, and is an agent.fault when it happens at the program's import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from willowisp.agent import post_import

_MISSING = object()


class Patches:
    """The attributes replaced on library classes, in order, so ``undo`` can put them back.

    Invariant: every entry's class attribute is currently the wrapper made for it."""

    def __init__(self) -> None:
        self.done: list[tuple[type, str, Any]] = []  # (class, attribute, previous or _MISSING)

    def apply(self, *wraps: tuple[type, str, Callable[[Any], Any]]) -> None:
        """Replace each ``cls.attr`` by ``make(original)``; on any failure, none of them."""
        mark = len(self.done)
        try:
            for cls, attr, make in wraps:
                wrapper = make(getattr(cls, attr))
                self.done.append((cls, attr, cls.__dict__.get(attr, _MISSING)))
                setattr(cls, attr, wrapper)
        except BaseException:
            self.undo(mark)
            raise

    def undo(self, keep: int = 0) -> None:
        """Put back the replacements after the first ``keep``, latest first. The wrappers
        keep their originals, so calls in flight finish normally."""
        while len(self.done) > keep:
            cls, attr, previous = self.done.pop()
            if previous is _MISSING:
                delattr(cls, attr)
            else:
                setattr(cls, attr, previous)


_patches = Patches()
_waits: list[post_import.Waiting] = []  # waits for the program's first imports, until uninstall


def _patch_urllib3() -> None:
    from willowisp.agent import http_urllib3

    http_urllib3.patch(_patches)


def _patch_httpx() -> None:
    from willowisp.agent import http_httpx

    http_httpx.patch(_patches)


def _patch_aiohttp_client() -> None:
    from willowisp.agent import http_aiohttp

    http_aiohttp.patch_client(_patches)


def _patch_aiohttp_server() -> None:
    from willowisp.agent import http_aiohttp

    http_aiohttp.patch_server(_patches)


# (module to wait for, what patches it): the library's package, or for aiohttp's server the
# module that defines its request handler (``import aiohttp`` alone does not load it).
_HOOKS: tuple[tuple[str, Callable[[], None]], ...] = (
    ("urllib3", _patch_urllib3),
    ("httpx", _patch_httpx),
    ("aiohttp", _patch_aiohttp_client),
    ("aiohttp.web_protocol", _patch_aiohttp_server),
)


def install() -> None:
    """Hook each library now if the program has imported it, else right after it does.
    Idempotent. A failure now undoes everything and raises; a failure later, at the
    import, is an agent.fault and leaves that library unhooked."""
    if _patches.done or _waits:
        return
    try:
        for name, patch in _HOOKS:
            waiting = post_import.when_imported(name, patch, f"install httplibs {name}")
            if waiting is not None:
                _waits.append(waiting)
    except BaseException:
        uninstall()
        raise


def uninstall() -> None:
    """Stop waiting for the imports and put back what was hooked."""
    while _waits:
        post_import.cancel(_waits.pop())
    _patches.undo()
