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
from willowisp.ingest.otlp_json import looks_like_json, read_otlp
from willowisp.ingest.tables import Unreadable
from willowisp.wtrace.reader import TraceFile, is_wtrace, read_file

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

    A file that is not a ``.wtrace`` but starts like JSON is imported as OTLP JSON
    (:mod:`willowisp.ingest.otlp_json`), sniffed by content; its notes (spans skipped) go
    to ``notes``.
    """
    parsed: list[TraceFile] = []
    problems: list[Unreadable] = []
    for path in files:
        try:
            if not is_wtrace(path) and _starts_like_json(path):
                imported, more = read_otlp(path)
                parsed.extend(imported)
                if notes is not None:
                    notes.extend(more)
                continue
            parsed.append(read_file(path))
        except TraceFormatError as exc:
            problems.append(Unreadable(path, str(exc)))
        except OSError as exc:
            problems.append(Unreadable(path, exc.strerror or str(exc)))
    return parsed, problems


def _starts_like_json(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return looks_like_json(f.read(64))
    except OSError:
        return False
