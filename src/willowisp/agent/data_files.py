"""Hooks for files the program opens: ``open()`` as a data access to the file.

``builtins.open`` (and ``io.open``, the same function, which ``pathlib`` calls) is replaced
by a callable object that opens the file and then records one access of
``file:<absolute path>``: a write when the mode writes (``w``, ``a``, ``x`` or ``+``:
opening for writing truncates or appends, and every later write goes through that file
object), a read otherwise. One event per open, not per ``write()``: the file objects are
C types the agent cannot wrap without slowing every read and write, and the open is where
the program decides to touch the file.

Only the program's own opens are recorded: the direct caller (or, for ``Path.open`` and
friends, the caller of ``pathlib``) must be neither the standard library, nor a package
under ``site-packages``, nor Willowisp (the agent, its segment writer), and the file must
not be one of the interpreter's own (under ``sys.prefix``) or a device (``/dev``,
``/proc``, ``/sys``). Descriptors (``open(fd)``) are not recorded. The cost for everyone
else is one frame look-up and a cached check of its file name.

The replacement is an object, not a function, on purpose: a function stored as a class
attribute (``opener = open``) would bind ``self`` when called through an instance, which the
builtin never does.
"""

from __future__ import annotations

import builtins
import functools
import io
import os
import sys
from typing import Any

from willowisp.agent import data_access as d
from willowisp.agent import recorder as _r
from willowisp.agent import rows

_SKIP_PREFIXES = ("/dev/", "/proc/", "/sys/")
# Willowisp itself (the segment writer opens files from willowisp/wtrace, not the agent).
_WILLOWISP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_library: dict[str, bool] = {}  # code file name -> not the program's (stdlib, packages, us)
_orig_open: Any = None
_installed: list[tuple[Any, str, Any]] = []  # (module, attribute, previous)


def _not_program(filename: str, rec: _r.Recorder) -> bool:
    v = _library.get(filename)
    if v is None:
        v = (
            rec.is_internal(filename)
            or "-packages" + os.sep in filename
            or filename.startswith(_WILLOWISP_DIR)
        )
        _library[filename] = v
    return v


def _interpreter_file(path: str) -> bool:
    return path.startswith(_SKIP_PREFIXES) or path.startswith(
        (sys.prefix + os.sep, sys.base_prefix + os.sep)
    )


class _Open:
    """``open`` that records the program's own opens (see the module doc)."""

    def __init__(self, original: Any) -> None:
        self._original = original
        functools.update_wrapper(self, original)

    def __call__(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = self._original(file, mode, *args, **kwargs)
        rec = _r.RECORDER
        if rec is not None and not isinstance(file, int):
            try:
                _record(rec, file, mode)
            except Exception as exc:
                rec.fault("open", exc)
        return f


def _is_pathlib(filename: str) -> bool:
    return filename.endswith(os.sep + "pathlib.py") or (os.sep + "pathlib" + os.sep) in filename


def _record(rec: _r.Recorder, file: Any, mode: str) -> None:
    try:
        frame = sys._getframe(2)
    except ValueError:
        # No Python caller: C code called open (3.11 prints a traceback's source lines
        # through io.open; a thread started on open itself). Not the program's own line.
        return
    # Path.open / read_text / write_bytes: the program called pathlib (a module up to 3.12,
    # a package with _local.py and _abc.py from 3.13); its caller is the one to judge
    for _ in range(4):
        if not _is_pathlib(frame.f_code.co_filename) or frame.f_back is None:
            break
        frame = frame.f_back
    name = frame.f_code.co_filename
    if _not_program(name, rec) or not d.enabled(rec):
        return
    path = os.path.abspath(os.fsdecode(file))
    if _interpreter_file(path):
        return
    writes = any(c in mode for c in "wax+")
    code = frame.f_code
    rows.CODE_IDS[id(code)] = code
    key = (id(code) << 16) | (frame.f_lasti & 0xFFFF)
    rid = d.resource(rec, d.cut(f"file:{path}"), store="file", statement=f"open {mode}", key=key)
    d.access(rec, rid, d.WRITE if writes else d.READ, key)


def install() -> None:
    """Replace ``builtins.open`` and ``io.open``. Idempotent."""
    global _orig_open
    if _installed:
        return
    _orig_open = builtins.open
    hook = _Open(_orig_open)
    _installed.append((builtins, "open", builtins.open))
    _installed.append((io, "open", io.open))
    builtins.open = hook
    io.open = hook


def uninstall() -> None:
    while _installed:
        module, attr, previous = _installed.pop()
        setattr(module, attr, previous)
