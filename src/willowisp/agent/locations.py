"""Source locations: from the hot path's location keys to file, line and function, and the
names of resources taken from the line that created them.

A key is ``id(code) << 16 | f_lasti``: the hot path records it without touching line
tables; the flusher turns each new key into a ``location`` record once. The code objects
behind the ids are kept alive in ``rows.CODE_IDS`` so an id always names its own code.
Trade-off: ``f_lasti`` is cut to 16 bits, so in a function of more than 64 KiB of bytecode
a line can be wrong.
"""

from __future__ import annotations

import ast
import itertools
import linecache
import os
import re
import threading
from types import CodeType

from willowisp.wtrace.payload import Record

R_LOCATION = 4
_ASSIGN = re.compile(r"^\s*(?:self\.|cls\.)?([^\W\d][\w.]*)\s*(?::[^=]+)?=(?!=)")
# ``app["cache_lock"] = asyncio.Lock()`` (aiohttp's app state, a registry dict): the key
_KEYED = re.compile(r"""^\s*[^\W\d][\w.]*\[\s*(['"])([^'"\\\]]{1,80})\1\s*\]\s*=(?!=)""")
_AGENT_DIR = os.path.dirname(os.path.abspath(__file__))
_STDLIB_DIRS = tuple({os.path.dirname(os.__file__), os.path.dirname(threading.__file__)})


class Locations:
    """Location numbers of one process. ``ids`` maps key -> number (0: unknown); the C
    flusher reads it directly. Owned by the flusher."""

    def __init__(self, code_ids: dict[int, CodeType]) -> None:
        self.ids: dict[int, int] = {0: 0}
        self._code_ids = code_ids
        self._next = itertools.count(1)

    def resolve(self, keys: set[int]) -> list[Record]:
        """Number the new keys; the location records to write before events use them."""
        out = []
        for k in keys:
            code, lasti = self._code(k)
            if code is None:
                self.ids[k] = 0
                continue
            n = next(self._next)
            self.ids[k] = n
            out.append(
                Record(
                    R_LOCATION,
                    n,
                    (
                        ("file", code.co_filename),
                        ("line", line_of(code, lasti)),
                        ("func", code.co_qualname),
                    ),
                )
            )
        return out

    def name_from_source(self, key: int, kind: str) -> str:
        """Name a resource after the variable its creating line assigns it to
        (``state_lock = threading.Lock()`` -> ``state_lock``), else ``kind@file:line``."""
        code, lasti = self._code(key)
        if code is None:
            return kind
        line = line_of(code, lasti)
        text = linecache.getline(code.co_filename, line)
        unpacked = _unpacked_name(text, _column_of(code, lasti, line))
        if unpacked:
            return unpacked
        m = _ASSIGN.match(text)
        if m:
            return m.group(1)
        m = _KEYED.match(text)
        if m:
            return m.group(2)
        return f"{kind}@{os.path.basename(code.co_filename)}:{line}"

    def _code(self, key: int) -> tuple[CodeType | None, int]:
        u = key & 0xFFFFFFFFFFFFFFFF
        return self._code_ids.get(u >> 16), u & 0xFFFF


def _column_of(code: CodeType, lasti: int, line: int) -> int:
    """The start column (UTF-8 bytes) of the expression the instruction at ``lasti``
    belongs to (the call creating a resource), if it lies on ``line`` alone; else -1."""
    pos = next(itertools.islice(code.co_positions(), lasti // 2, None), None)
    if pos is None or pos[0] != line or pos[1] != line or pos[2] is None:
        return -1
    return pos[2]


def _unpacked_name(text: str, column: int) -> str:
    """On a line making several values, the target that receives the one starting at
    ``column``: in a one-line unpacking ``a, b = Lock(), Lock()`` (``b`` for the second
    call), or among statements joined by ``;`` (``a = Lock(); b = Lock()``); "" for any
    other line.

    Without this both locks would get one name (the regex below finds the first target),
    and a story about two locks would read as one."""
    if column < 0:
        return ""
    stripped = text.strip()
    indent = len(text) - len(text.lstrip())
    try:
        tree = ast.parse(stripped)
    except (SyntaxError, ValueError):
        return ""  # part of a statement spanning several lines
    assigns = [stmt for stmt in tree.body if isinstance(stmt, ast.Assign)]
    if not assigns or (
        len(tree.body) == 1 and not isinstance(assigns[0].value, (ast.Tuple, ast.List))
    ):
        return ""  # one plain assignment: the regex names it
    column -= indent
    for stmt in assigns:
        for name, value in _pairs(stmt):
            end = value.end_col_offset if value.end_col_offset is not None else -1
            if value.col_offset <= column < end and isinstance(name, (ast.Name, ast.Attribute)):
                return re.sub(r"^(?:self|cls)\.", "", ast.unparse(name))
    return ""


def _pairs(stmt: ast.Assign) -> list[tuple[ast.expr, ast.expr]]:
    """(target, value) pairs of an assignment: each element of an unpacking, or the single
    target and its value."""
    if isinstance(stmt.value, (ast.Tuple, ast.List)):
        values = stmt.value.elts
        return [
            (name, value)
            for target in stmt.targets
            if isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) == len(values)
            for name, value in zip(target.elts, values, strict=True)
        ]
    return [(target, stmt.value) for target in stmt.targets[:1]]


def line_of(code: CodeType, lasti: int) -> int:
    """The source line of the instruction at byte offset ``lasti``."""
    line = code.co_firstlineno
    for start, end, ln in code.co_lines():
        if start <= lasti < end:
            return ln if ln is not None else line
        if ln is not None and start <= lasti:
            line = ln
    return line


def is_internal_file(filename: str) -> bool:
    """The standard library or the agent itself: frames to skip when locating an event."""
    if filename.startswith(_AGENT_DIR):
        return True
    if filename.startswith("<"):  # <frozen ...> is the stdlib; <string>, <stdin> the program
        return filename.startswith("<frozen")
    return filename.startswith(_STDLIB_DIRS) and "-packages" not in filename
