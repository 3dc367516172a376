"""Ids carried inside a message body, at a JSON path the user declares.

Some systems put the context in the payload rather than in headers (a ``meta`` object in
an event, a job's arguments). The user names where each field lives, e.g.
``{"traceparent": "$.meta.traceparent"}``, and :class:`PayloadCarrier` reads and writes
those places in the decoded JSON document (dicts and lists).

Paths are a deliberately tiny subset of JSONPath: ``$`` then up to 16 steps, each
``.name``, ``['name']`` or ``[index]``. No wildcards, filters or expressions, and nothing
is evaluated: a path is compiled once at construction into a tuple of keys and indexes,
and an invalid one raises :class:`~willowisp.errors.UsageError` then, because it is
configuration. At read time a missing step or a value that is not a string simply yields
nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from willowisp.errors import UsageError

MAX_DEPTH = 16
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\['([^'\\]*)'\]|\[(\d{1,9})\]")

Step = str | int


def compile_path(path: str) -> tuple[Step, ...]:
    """The steps of ``path`` (``$.meta.traceparent`` -> ``("meta", "traceparent")``).

    Raises UsageError naming the path and the offset where it stops making sense.
    """
    if not path.startswith("$"):
        raise UsageError(f"JSON path {path!r}: expected it to start with '$'")
    steps: list[Step] = []
    pos = 1
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            raise UsageError(
                f"JSON path {path!r}: at offset {pos} expected .name, ['name'] or [index], "
                f"saw {path[pos : pos + 10]!r}"
            )
        name, quoted, index = m.groups()
        steps.append(int(index) if index is not None else (name if name is not None else quoted))
        pos = m.end()
        if len(steps) > MAX_DEPTH:
            raise UsageError(f"JSON path {path!r}: deeper than {MAX_DEPTH} steps")
    if not steps:
        raise UsageError(f"JSON path {path!r}: names the whole document, not a field in it")
    return tuple(steps)


def _step(node: Any, step: Step) -> Any:
    if isinstance(step, int):
        return node[step] if isinstance(node, list) and step < len(node) else None
    return node.get(step) if isinstance(node, dict) else None


class PayloadCarrier:
    """A decoded JSON document seen as a carrier through declared field paths."""

    def __init__(self, document: Any, paths: Mapping[str, str]) -> None:
        self.document = document  # the caller's decoded JSON, read and written in place
        # Compiled once; keys lowercase. Invariant: every tuple is 1..MAX_DEPTH steps.
        self.paths: dict[str, tuple[Step, ...]] = {
            k.lower(): compile_path(p) for k, p in paths.items()
        }

    def get(self, name: str) -> list[str]:
        """The string at ``name``'s path, or [] when the path is undeclared or absent."""
        steps = self.paths.get(name)
        if steps is None:
            return []
        node = self.document
        for s in steps:
            node = _step(node, s)
            if node is None:
                return []
        return [node] if isinstance(node, str) else []

    def names(self) -> Iterable[str]:
        """The declared names whose path currently holds a value."""
        return [n for n in self.paths if self.get(n)]

    def set(self, name: str, value: str) -> None:
        """Write ``value`` at ``name``'s path, creating missing objects on the way.

        Undeclared names are ignored (the payload has no place for them). Raises UsageError
        if the path runs through something that is not an object (or a list with that index).
        """
        steps = self.paths.get(name)
        if steps is None:
            return
        node = self.document
        for s in steps[:-1]:
            nxt = _step(node, s)
            if nxt is None and isinstance(s, str) and isinstance(node, dict):
                nxt = node[s] = {}
            if not isinstance(nxt, dict | list):
                raise UsageError(f"JSON path for {name!r}: step {s!r} does not lead to an object")
            node = nxt
        last = steps[-1]
        fits = (isinstance(last, str) and isinstance(node, dict)) or (
            isinstance(last, int) and isinstance(node, list) and last < len(node)
        )
        if not fits:
            raise UsageError(f"JSON path for {name!r}: cannot store at step {last!r}")
        node[last] = value
