"""Finding and reading trace files: PATH arguments in, parsed files and problems out.

A PATH is a run folder (searched recursively for ``*.wtrace``) or a file. Every problem is
turned into data here — an :class:`Unreadable` naming the path and one line saying what is
wrong — so one bad file never stops the others and callers decide how to report it. Only
``TraceFormatError`` (and subclasses) and ``OSError`` are expected from the reader; they are
the whole list of ways a file can fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from willowisp.errors import TraceFormatError
from willowisp.ingest import formats
from willowisp.ingest.spans import require_usable_input, shared_spans
from willowisp.ingest.tables import Unreadable
from willowisp.wtrace.payload import Record
from willowisp.wtrace.reader import (
    Chunk,
    TraceFile,
    is_wtrace,
    iter_chunks,
    load_file,
    read_header,
    require_a_chunk,
)

R_PROCESS, R_EMBEDDED = 1, 7
# Bounds on joining embedded streams (docs/format.md, "Limits"). Each piece sits in a chunk
# of at most 64 MiB, but a stream of many pieces has no size of its own: without a bound, a
# few kilobytes of zstd pieces of spaces join into gigabytes in memory.
MAX_STREAM_BYTES = 256 * 1024**2  # one embedded stream, joined
MAX_LOAD_BYTES = 1024**3  # all embedded streams joined by one read_all
# Streams whose reader can use a cut copy: a Go execution trace is complete up to its
# last generation, and the program may have exited without stopping the tracer.
_READ_CUT = frozenset({"go-exectrace"})

# <service>-<pid>-<first 8 hex digits of the process id>-<n>.wtrace (docs/format.md)
SEGMENT_NAME = re.compile(
    r"^(?P<service>.+)-(?P<pid>\d+)-(?P<prefix>[0-9a-f]{8})-(?P<n>\d+)\.wtrace$"
)


@dataclass(frozen=True, slots=True)
class SegmentName:
    """What a segment's file name says (used only when its process record was lost)."""

    service: str
    pid: int
    prefix: str
    n: int


def parse_segment_name(path: str) -> SegmentName | None:
    m = SEGMENT_NAME.match(Path(path).name)
    if m is None:
        return None
    return SegmentName(m["service"], int(m["pid"]), m["prefix"], int(m["n"]))


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[Unreadable]]:
    """Expand PATH arguments into trace files (sorted within each folder, no duplicates)."""
    files: list[str] = []
    problems: list[Unreadable] = []
    seen: set[str] = set()
    for raw in paths:
        path = os.fspath(raw)
        p = Path(path)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*.wtrace") if f.is_file())
            if not found:
                problems.append(Unreadable(path, "no .wtrace files in this folder"))
        elif p.exists():
            found = [path]
        else:
            problems.append(Unreadable(path, "no such file or directory"))
            continue
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, problems


def read_all(
    files: Iterable[str], notes: list[str] | None = None
) -> tuple[list[TraceFile], list[Unreadable]]:
    """Parse each file; one that cannot be parsed at all becomes an Unreadable.

    A file that is not a ``.wtrace`` is imported by the importer its content names
    (:mod:`willowisp.ingest.formats`); the ``embedded`` streams of a ``.wtrace`` (what
    ``import`` and ``collect`` store) are decoded the same way. Spans from every input go
    into one set (:func:`~willowisp.ingest.spans.shared_spans`), so a service's spans from
    several files or requests are one process. Importers' notes (records skipped) go to
    ``notes``.
    """
    parsed: list[TraceFile] = []
    problems: list[Unreadable] = []
    said = notes if notes is not None else []
    budget = EmbeddedBudget()
    with shared_spans() as spans:
        for path in files:
            _read_one(path, parsed, problems, said, budget)
        parsed += spans.trace_files()
    return parsed, problems


def _read_one(
    path: str,
    parsed: list[TraceFile],
    problems: list[Unreadable],
    said: list[str],
    budget: EmbeddedBudget,
) -> None:
    try:
        if not path.endswith(".wtrace") and not is_wtrace(path):
            imported, more = formats.read_foreign(path)
            require_usable_input()  # a file of spans that are all bad is unreadable
            parsed.extend(imported)
            said.extend(more)
            return
        tf, streams = read_wtrace(path, budget)
    except TraceFormatError as exc:
        problems.append(Unreadable(path, str(exc)))
        return
    except OSError as exc:
        problems.append(Unreadable(path, exc.strerror or str(exc)))
        return
    if streams is None:
        parsed.append(tf)
        return
    if _has_native(tf):
        parsed.append(tf)
    for stream, fmt, why in budget.refused:  # none of it was used: unreadable, not damaged
        problems.append(Unreadable(f"{path} (embedded stream {stream}, {fmt})", why))
    budget.refused.clear()
    for stream, fmt, data, complete in streams:
        where = f"{path} (embedded stream {stream}, {fmt})"
        if not complete and fmt not in _READ_CUT:
            problems.append(
                Unreadable(where, "its last piece is missing (the writer stopped?)", True)
            )
            continue
        if not complete:
            said.append(
                f"{where}: ends early (the program stopped without finishing it, or the agent "
                "could not write the rest: see its faults); "
                "read up to its last complete part"
            )
        try:
            imported, more = formats.decode(fmt, data, path)
        except TraceFormatError as exc:
            problems.append(Unreadable(where, str(exc), True))
            continue
        parsed.extend(imported)
        said.extend(more)


class EmbeddedBudget:
    """How many more bytes of embedded streams may be joined, per stream and per load.

    One budget serves one load (a ``read_all``), so many files of modest streams cannot add
    up to more than ``per_load`` either. ``refused`` lists the streams that passed a bound —
    (number, format, why) — for the caller to report; their pieces were let go at once.
    """

    def __init__(self, per_stream: int = MAX_STREAM_BYTES, per_load: int = MAX_LOAD_BYTES):
        self.per_stream = per_stream
        self.per_load = per_load
        # Bytes the load may still hold: pieces held by open streams and joined streams
        # spend it (so many streams open at once cannot add up past it either); a refused
        # stream gives its pieces back, as they are let go. Invariant: 0 <= load_left.
        self.load_left = per_load
        self.refused: list[tuple[int, str, str]] = []

    def take(self, stream_size: int, piece: int) -> str:
        """Spend ``piece`` bytes of a stream now ``stream_size`` long; or, when that passes
        a bound, spend nothing and say why."""
        if stream_size > self.per_stream:
            return f"decompressed, it is over the {_size(self.per_stream)} bound on one stream"
        if piece > self.load_left:
            return (
                f"decompressed, it would pass the {_size(self.per_load)} bound on all "
                "embedded streams read together"
            )
        self.load_left -= piece
        return ""


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n}-byte"


@dataclass(slots=True)
class _Open:
    """A stream whose last piece has not been seen yet."""

    fmt: str
    parts: list[bytes]
    size: int = 0
    refused: bool = False  # passed a bound: later pieces are dropped until its last one


def read_wtrace(
    path: str, budget: EmbeddedBudget | None = None
) -> tuple[TraceFile, list[tuple[int, str, bytes, bool]] | None]:
    """Read a ``.wtrace`` one chunk at a time, joining its embedded streams as they come:
    the file without them, and its streams as :func:`split_embedded` gives them (None when
    it has no embedded record, so the file is as :func:`~willowisp.wtrace.reader.read_file`
    gives it).

    Memory is one decoded chunk plus the bounds of ``budget``: a piece past a bound is
    dropped as soon as it is decoded, not after the whole file is. Raises what ``read_file``
    raises.
    """
    data = load_file(path)
    tf = read_header(data, path)
    splitter = EmbeddedSplitter(budget if budget is not None else EmbeddedBudget())
    read = 0
    for chunk in iter_chunks(data, tf):
        read += 1
        splitter.feed(chunk)  # takes the pieces out first: the chunk kept is small
        tf.chunks.append(chunk)
    require_a_chunk(tf, read)
    return tf, splitter.finish() if splitter.saw_embedded else None


def split_embedded(
    tf: TraceFile, budget: EmbeddedBudget | None = None
) -> tuple[list[tuple[int, str, bytes, bool]], TraceFile | None]:
    """A file's embedded streams — (number, format, bytes, complete), in the order they
    complete — and the file without them (None when nothing else is left in it).

    A stream that passes a bound of ``budget`` (by default one of its own, for this file
    alone) is not joined: it is left out of the result and added to ``budget.refused``.
    """
    splitter = EmbeddedSplitter(budget if budget is not None else EmbeddedBudget())
    for chunk in tf.chunks:
        splitter.feed(chunk)
    return splitter.finish(), tf if _has_native(tf) else None


def _has_native(tf: TraceFile) -> bool:
    return any(
        c.events is not None or any(r.rtype == R_PROCESS for r in c.records) for c in tf.chunks
    )


class EmbeddedSplitter:
    """Takes the embedded pieces out of chunks fed to it, in file order, and joins them
    into streams within ``budget``; ``finish`` gives the streams."""

    def __init__(self, budget: EmbeddedBudget) -> None:
        self.budget = budget
        self.saw_embedded = False
        self._done: list[tuple[int, str, bytes, bool]] = []
        self._open: dict[int, _Open] = {}

    def feed(self, chunk: Chunk) -> None:
        """Leave only the chunk's other records in it."""
        if not any(r.rtype == R_EMBEDDED for r in chunk.records):
            return
        self.saw_embedded = True
        kept = []
        for r in chunk.records:
            if r.rtype == R_EMBEDDED:
                self._piece(r)
            else:
                kept.append(r)
        chunk.records = kept

    def _piece(self, r: Record) -> None:
        fmt, data = r.get("format", ""), r.get("data", b"")
        s = self._open.pop(r.id, None) or _Open(fmt if isinstance(fmt, str) else "", [])
        _add_piece(s, r.id, data if isinstance(data, bytes) else b"", self.budget)
        if r.get("more", 0) == 1:
            self._open[r.id] = s
        elif not s.refused:
            self._done.append(_joined(r.id, s, True))

    def finish(self) -> list[tuple[int, str, bytes, bool]]:
        """The streams, in the order they completed, then those never completed."""
        done = self._done + [_joined(n, s, False) for n, s in self._open.items() if not s.refused]
        self._done, self._open = [], {}
        return done


def _add_piece(s: _Open, number: int, data: bytes, budget: EmbeddedBudget) -> None:
    if s.refused:
        return
    s.size += len(data)
    why = budget.take(s.size, len(data))
    if why:
        # Let the pieces go now: holding them until the stream ends is the bomb.
        budget.load_left += s.size - len(data)
        s.parts.clear()
        s.refused = True
        budget.refused.append((number, s.fmt, f"{why}; left unread"))
        return
    s.parts.append(data)


def _joined(number: int, s: _Open, complete: bool) -> tuple[int, str, bytes, bool]:
    data = b"".join(s.parts)
    s.parts.clear()
    return number, s.fmt, data, complete
