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
    if not data:
        raise TraceFormatError("empty")
    name = fmt or sniff(data[:HEAD_BYTES])
    if name in (None, "otlp-proto") and fmt is None and is_perfetto(data[:HEAD_BYTES], path):
        # Without this it got the generic "name it with --from" hint, and no --from helps.
        raise TraceFormatError(
            "a Perfetto protobuf trace: willowisp exports to Perfetto (export --to perfetto) "
            "but does not import that form; Perfetto's JSON trace-event form is read "
            "(--from chrome)"
        )
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


def is_perfetto(head: bytes, path: str) -> bool:
    """A Perfetto protobuf trace: named ``.pftrace`` / ``.perfetto-trace``, or shaped like
    one: a ``Trace`` message, i.e. field 1 (``packet``) repeated, whose first TracePacket
    holds a field numbered above 3. OTLP's ``TracesData`` has the same outer shape, but a
    ResourceSpans has only fields 1-3, so that field tells the two apart. Asked only of a
    file no text importer claims (a Perfetto JSON file is ``chrome``, whatever its name)."""
    if path.endswith((".pftrace", ".perfetto-trace")):
        return True
    if not head.startswith(b"\x0a"):
        return False
    size, i = _varint(head, 1)
    if size is None or size == 0:
        return False
    end = min(i + size, len(head))
    while i < end:
        key, i = _varint(head, i)
        if key is None or key >> 3 == 0:
            return False
        if key >> 3 > 3:
            return True
        i = _skip(head, i, key & 7)
        if i < 0:
            return False
    return False


def _varint(data: bytes, i: int) -> tuple[int | None, int]:
    """The base-128 varint at ``i`` and the index after it; None if cut or over 64 bits."""
    n = 0
    for shift in range(0, 64, 7):
        if i >= len(data):
            return None, i
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
    return None, i


def _skip(data: bytes, i: int, wire: int) -> int:
    """The index after a field's value of wire type ``wire``; -1 if it is not valid."""
    if wire == 0:
        n, i = _varint(data, i)
        return -1 if n is None else i
    if wire == 1:
        return i + 8
    if wire == 5:
        return i + 4
    if wire == 2:
        n, i = _varint(data, i)
        return -1 if n is None else i + n
    return -1  # groups (3, 4) are not in Perfetto's packets; 6 and 7 do not exist


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
