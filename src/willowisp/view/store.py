"""Open a run for the viewer: from the results cache beside it when it is there, otherwise
load, analyze, build the view columns and cache them (see ``analysis/cache.py``: the same
key rules, JSON only — arrays travel as base64 of their little-endian bytes with a dtype
from a fixed list, read back with ``numpy.frombuffer``, never unpickled)."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from willowisp.analysis import cache
from willowisp.analysis.engine import Options, analyze
from willowisp.ingest import load
from willowisp.view.model import ViewData, build

VIEW_FORMAT = "willowisp.view-cache/3"  # 3: story parts, a list of events per step
_DTYPES = {"int64": "<i8", "int32": "<i4", "uint8": "u1", "float32": "<f4"}
_ARRAYS = tuple(
    f.name for f in fields(ViewData) if f.name not in ("meta", "times", "strings", "memo")
)


def open_view(
    paths: Sequence[str | os.PathLike[str]],
    options: Options | None = None,
    *,
    use_cache: bool = True,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[ViewData, list[str]]:
    """The view columns of these inputs, and one line per unreadable input."""
    options = options or Options()
    if not any(os.path.exists(p) for p in paths):
        progress = _quiet  # nothing there: the caller's error lines are all there is to say
    where = cache.slot(paths, options, "view") if use_cache else None
    doc = cache.load(where) if where is not None else None
    if doc is not None:
        data = decode(doc)
        if data is not None:
            progress("read the cached view")
            return data, list(data.meta.get("unreadable_lines", []))
    progress("loading")
    trace = load(paths)
    progress(f"loaded {len(trace.events):,} events; analyzing")
    a = analyze(trace, options)
    document = a.document()
    progress("building the view")
    data = build(a, document)
    data.meta["unreadable_lines"] = [
        f"{u['path']}: {u['error']}" for u in document["trace"]["unreadable_files"]
    ]
    if where is not None:
        cache.store(where, encode(data))
    return data, list(data.meta["unreadable_lines"])


def _quiet(line: str) -> None:
    pass


def encode(data: ViewData) -> dict[str, Any]:
    arrays = {name: _pack(getattr(data, name)) for name in _ARRAYS}
    arrays |= {f"times.{mode}": _pack(t) for mode, t in data.times.items()}
    return {"format": VIEW_FORMAT, "meta": data.meta, "strings": data.strings, "arrays": arrays}


def _pack(a: np.ndarray[Any, Any]) -> list[str]:
    kind = str(a.dtype)
    return [kind, base64.b64encode(np.ascontiguousarray(a, dtype=_DTYPES[kind]).data).decode()]


def decode(doc: dict[str, Any]) -> ViewData | None:
    """The columns of a cached view; None if the entry is not one (then rebuild)."""
    try:
        if doc.get("format") != VIEW_FORMAT:
            return None
        arrays = doc["arrays"]
        cols: dict[str, Any] = {name: _unpack(arrays[name]) for name in _ARRAYS}
        times = {
            key.split(".", 1)[1]: _unpack(value)
            for key, value in arrays.items()
            if key.startswith("times.")
        }
        data = ViewData(meta=doc["meta"], times=times, strings=doc["strings"], **cols)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    n = len(data.kind)
    per_event = (data.lane_of_event, data.res, data.proc, data.seq, data.loc, data.arg)
    if any(len(a) != n for a in per_event) or any(len(t) != n for t in data.times.values()):
        return None
    return data


def _unpack(value: Any) -> np.ndarray[Any, Any]:
    kind, text = value
    if kind not in _DTYPES:
        raise ValueError(f"dtype {kind!r}")
    raw = base64.b64decode(text, validate=True)
    return np.frombuffer(raw, dtype=_DTYPES[kind]).astype(kind, copy=False)  # read-only
