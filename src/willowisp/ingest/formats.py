"""The importers, by name, and which one a file is: sniffed from its content.

Every foreign format has one module in this package exposing the same four things:

* ``NAME`` — what ``willowisp import --from`` calls it;
* ``sniff(head)`` — does the file's first 64 KiB look like this format (content, never
  the extension alone);
* ``prepare(data, path)`` — the ``(stored format, bytes)`` to keep: usually the input as it
  is; for formats that need an outside tool to read (a Go execution trace, a binary JFR
  recording) the tool's output, so that reading a ``.wtrace`` later needs no toolchain;
* ``decode(stored_format, data, path)`` — the stored bytes as processes (one
  :class:`~willowisp.wtrace.reader.TraceFile` each) and notes about skipped records.

``willowisp import`` keeps the stored bytes in ``embedded`` records (docs/format.md) and
the reader decodes them with the same ``decode``; ``willowisp analyze FILE`` on a foreign
file runs ``prepare`` and ``decode`` directly. Either way the processes join the ordinary
load path, so imported and recorded events link to each other.

Modules are imported when first needed: an importer whose module cannot be imported (a
build without it) is absent from the list, not an error at start-up.
"""

from __future__ import annotations

import gc
import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.wtrace.reader import TraceFile

HEAD_BYTES = 64 * 1024
MAX_INPUT_BYTES = 1024 * 1024 * 1024  # a foreign file is parsed whole; bound what that costs

# (name, module): the order is the sniffing order — the most specific formats first.
_IMPORTERS: tuple[tuple[str, str], ...] = (
    ("go", "go_trace"),
    ("jfr", "jfr"),
    ("otlp-json", "otlp_json"),
    ("jaeger", "jaeger"),
    ("zipkin", "zipkin"),
    ("chrome", "chrome"),
    ("otlp-proto", "otlp_proto"),
)
# stored format -> importer name, where they differ
_STORED = {"go-events": "go", "go-exectrace": "go", "jfr-json": "jfr"}


@dataclass(frozen=True, slots=True)
class Prepared:
    """A foreign file ready to decode or to embed."""

    path: str
    name: str  # the importer
    stored: str  # the stored format (what ``decode`` takes)
    data: bytes


def _module(name: str) -> ModuleType | None:
    for n, mod in _IMPORTERS:
        if n == name:
            try:
                return importlib.import_module(f"willowisp.ingest.{mod}")
            except ModuleNotFoundError as exc:
                if exc.name == f"willowisp.ingest.{mod}":
                    return None
                raise
    return None


def names() -> list[str]:
    """The importers this build has, in sniffing order."""
    return [n for n, _ in _IMPORTERS if _module(n) is not None]


def sniff(head: bytes) -> str | None:
    """The importer whose format the content starts like, None if none claims it."""
    for name in names():
        mod = _module(name)
        if mod is not None and mod.sniff(head):
            return name
    return None


def read_input(path: str) -> bytes:
    """A foreign file's bytes, bounded. Raises OSError or TraceLimitError."""
    size = os.path.getsize(path)
    if size > MAX_INPUT_BYTES:
        raise TraceLimitError(f"{size} bytes is over the {MAX_INPUT_BYTES}-byte import bound")
    with open(path, "rb") as f:
        data = f.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise TraceLimitError(f"over the {MAX_INPUT_BYTES}-byte import bound")
    return data


def prepare(path: str, fmt: str | None = None) -> Prepared:
    """Read and identify ``path`` (or take ``fmt``'s word for it) and prepare what to keep.
    Raises OSError or TraceFormatError (one line naming the problem)."""
    data = read_input(path)
    name = fmt or sniff(data[:HEAD_BYTES])
    if name is None:
        known = ", ".join(names())
        raise TraceFormatError(
            f"not a .wtrace file, nor one Willowisp imports ({known}); if it is one of "
            "those, name it with willowisp import --from"
        )
    mod = _module(name)
    if mod is None:
        raise TraceFormatError(f"no importer for {name!r} in this build")
    stored, kept = mod.prepare(data, path)
    return Prepared(path, name, stored, kept)


def decode(stored: str, data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    """Stored bytes of a format → processes and notes. Raises TraceFormatError."""
    mod = _module(_STORED.get(stored, stored))
    if mod is None:
        raise TraceFormatError(f"embedded data of format {stored!r}, which this build cannot read")
    with paused_gc():
        files, notes = mod.decode(stored, data, path)
    return list(files), list(notes)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while an input is parsed.

    Parsing a large JSON export allocates tens of millions of objects, none of them garbage
    and none in cycles; the collector would walk them all again and again (it is 75 % of
    the time on a million-span file). Reference counting still frees everything.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def read_foreign(path: str, fmt: str | None = None) -> tuple[list[TraceFile], list[str]]:
    """A foreign file straight to processes and notes (``analyze FILE``)."""
    p = prepare(path, fmt)
    return decode(p.stored, p.data, path)
