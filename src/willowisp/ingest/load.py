"""``load(paths) -> Trace``: many segment files of many processes into one columnar trace.

How it works:

1. Find and parse the files (:mod:`willowisp.ingest.files`); a file that cannot be read
   becomes an :class:`Unreadable` and the others go on.
2. Group segments by the ``process_id`` of their ``process`` record (a process writes
   several segments; a forked child has its own id). A segment whose process record was in
   a lost chunk is attached by its file name (pid and id prefix), else kept on its own.
3. Order each process's segments by segment number, then by the first sequence number
   they hold (the agent's own write order, which file names cannot give when a collector's
   file and the agent's fallback file are one segment), and drop repeated chunks: the native
   stream delivers a chunk at least once, so a chunk a collector wrote but never
   acknowledged is in the agent's fallback file too. A repeat has the same first sequence
   number, events and records as a chunk already seen; it is dropped and counted in
   ``notes``. A chunk that reuses a sequence number with different contents is damage, not
   a repeat: both are kept and a note says so.
4. Merge each process's definition records in that order (a later record for the same
   number overrides attribute by attribute: "the last one wins") and concatenate its event
   chunks. Events of unknown kinds are dropped and counted.
5. Number processes, units, resources and locations densely across the trace and rewrite
   the event columns to those global indices with one ``searchsorted`` per column and
   process: the only per-item Python work is per definition record, never per event.
6. Map monotonic time to raw (wall) time through the process's anchors, and sort each
   process's events by (time, sequence number).

Memory: the columns take about 50 bytes per event; each file's bytes are held only while
it is parsed. A million events load in well under a second of numpy work plus the time to
decompress and decode the chunks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.ingest.anchors import anchors_of, raw_times
from willowisp.ingest.files import discover, parse_segment_name, read_all
from willowisp.ingest.tables import (
    NO_INDEX,
    AgentStats,
    Fault,
    FileReport,
    Location,
    LocationIndex,
    Process,
    Resource,
    ResourceIndex,
    Unit,
    UnitIndex,
    Unreadable,
)
from willowisp.ingest.trace import Events, Trace
from willowisp.model.ids import ProcessId
from willowisp.model.spec import KIND_BY_CODE, K
from willowisp.wtrace.payload import AttrValue
from willowisp.wtrace.reader import Chunk, TraceFile

R_PROCESS, R_UNIT, R_RESOURCE, R_LOCATION, R_FAULT, R_STATS = 1, 2, 3, 4, 5, 6
_KNOWN = np.array(sorted(KIND_BY_CODE), dtype=np.uint8)
_NO_WALL = 1 << 62  # sorts processes without anchors last
_NO_SEQ = 1 << 64  # sorts a file without events after the files of its segment with some

AttrMap = dict[str, AttrValue]


def load(paths: Iterable[str | os.PathLike[str]]) -> Trace:
    """Load runs and trace files. Never raises for bad input: see ``Trace.unreadable``."""
    files, unreadable = discover(paths)
    notes: list[str] = []
    parsed, bad = read_all(files, notes)
    return build_trace(parsed, unreadable + bad, notes)


@dataclass(slots=True)
class _Parts:
    """A process being assembled from its segments (mutable, local to this module)."""

    id: str
    attrs: AttrMap = field(default_factory=dict)
    files: list[tuple[tuple[int, str], TraceFile]] = field(default_factory=list)
    # The chunks to use, in write order, repeats dropped (set by _unique_chunks).
    chunks: list[Chunk] = field(default_factory=list)
    units: dict[int, AttrMap] = field(default_factory=dict)
    resources: dict[int, AttrMap] = field(default_factory=dict)
    locations: dict[int, AttrMap] = field(default_factory=dict)
    faults: dict[int, AttrMap] = field(default_factory=dict)
    stats: AttrMap = field(default_factory=dict)
    cols: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    first_wall: int = _NO_WALL


def build_trace(
    parsed: list[TraceFile], unreadable: list[Unreadable], notes: list[str] | None = None
) -> Trace:
    """Assemble parsed files into a Trace (the part of ``load`` after reading); ``notes``
    are the reading's own (an importer's skipped spans), kept first."""
    notes = list(notes or [])
    reports: list[FileReport] = []
    unreadable = list(unreadable)
    empty: list[TraceFile] = []
    parts = _group(parsed, notes, empty)
    for tf in empty:  # no process, no event: its damage is all there is to say of it
        if tf.problems:
            unreadable.append(Unreadable(tf.path, f"{tf.problems[0]}; nothing readable in it"))
        elif tf.truncated:
            unreadable.append(Unreadable(tf.path, f"{tf.truncated}; nothing readable before it"))
    unknown = 0
    for p in parts.values():
        p.files.sort(key=lambda f: (f[0][0], _first_seq(f[1]), f[0][1]))
        notes.extend(_unique_chunks(p))
        _merge_records(p)
        for _, tf in p.files:
            reports.append(_report(tf, p.id))
            if tf.truncated:
                notes.append(f"{tf.path}: {tf.truncated}; the complete chunks before it were used")
            if tf.problems:
                more = f" (and {len(tf.problems) - 1} more)" if len(tf.problems) > 1 else ""
                unreadable.append(
                    Unreadable(
                        tf.path, f"{tf.problems[0]}{more}; the good chunks were used", partial=True
                    )
                )
        unknown += _columns(p)
    # The process `willowisp run` started first (its domain is the reference one), then by
    # start time on each one's own clock (skewed clocks may reorder these: only cosmetic).
    ordered = sorted(
        parts.values(), key=lambda p: (_int(p.attrs, "run_root", 0) != 1, p.first_wall, p.id)
    )
    return _number(ordered, reports, unreadable, merge_notes(notes), unknown)


# -- notes -----------------------------------------------------------------------------

# Counted things a note can name after its number ("3 duplicate spans", "2 of 5 spans").
_COUNTED = "span|record|chunk|event|request|stream|file|byte|unit|resource|line"
_WORD = r"(?!(?:at|in|of|on|to|from|for|by|after|before) )[a-z-]+ "  # an adjective, not "at"
_NOUN = re.compile(rf"\b(\d+) ((?:{_WORD})?)({_COUNTED})s?\b")
_IS_COUNT = re.compile(rf" (?:of \d+ )?(?:{_WORD})?(?:{_COUNTED})s?\b")
_DIGITS = re.compile(r"\d+")


def merge_notes(notes: list[str]) -> list[str]:
    """Notes that are the same but for their counts, merged into one line with the totals.

    A collector stores each retried OTLP request as its own stream, and each stream's
    importer notes its own "1 duplicate span dropped": 200 retries would be 199 identical
    lines. Notes are grouped by their text with every number blanked; in a group, the
    numbers that count something (``3 spans``, ``2 of 5 spans``) are summed and the nouns
    made to agree (``199 duplicate spans dropped``). A group whose other numbers differ (an
    id, a byte offset) is not one note repeated and is kept as it is; so is the leading
    ``path:``, whose digits count nothing. Order is that of each group's first note.
    """
    groups: dict[str, list[str]] = {}
    for note in notes:
        groups.setdefault(_DIGITS.sub("#", _NOUN.sub(r"\1 \2\3", note)), []).append(note)
    out: list[str] = []
    for group in groups.values():
        out.extend(_merged(group))
    return out


def _merged(group: list[str]) -> list[str]:
    """One note for ``group`` (notes alike but for numbers), or the group unchanged."""
    if len(group) == 1:
        return group
    path, first = _split(group[0])
    if any(_split(n)[0] != path for n in group):  # about different files or streams
        return group
    numbers = [[int(d) for d in _DIGITS.findall(_split(n)[1])] for n in group]
    counts = [bool(_IS_COUNT.match(first, m.end())) for m in _DIGITS.finditer(first)]
    if any(len({ns[i] for ns in numbers}) > 1 for i, counted in enumerate(counts) if not counted):
        return group
    totals = iter(
        sum(ns[i] for ns in numbers) if counted else numbers[0][i]
        for i, counted in enumerate(counts)
    )
    if not any(counts):  # nothing to total: say how often it was said
        return [f"{group[0]} ({len(group)} times)"]
    text = _DIGITS.sub(lambda _: str(next(totals)), first)
    text = _NOUN.sub(lambda m: f"{m[1]} {m[2]}{m[3]}{'' if m[1] == '1' else 's'}", text)
    return [path + text]


def _split(note: str) -> tuple[str, str]:
    """``("path: ", message)``: the leading path of a note, whose digits count nothing."""
    path, sep, message = note.partition(": ")
    return (path + sep, message) if sep else ("", note)


# -- grouping and merging --------------------------------------------------------------


def _process_attrs(tf: TraceFile) -> AttrMap:
    attrs: AttrMap = {}
    for chunk in tf.chunks:
        for rec in chunk.records:
            if rec.rtype == R_PROCESS:
                attrs.update(rec.attrs)
    return attrs


def _group(parsed: list[TraceFile], notes: list[str], empty: list[TraceFile]) -> dict[str, _Parts]:
    """Files by process id; a file with no process record goes to the process its name
    says, and one with no events either (a process that just began, or whose only chunks
    are damaged) to ``empty``."""
    parts: dict[str, _Parts] = {}
    orphans: list[TraceFile] = []
    for tf in parsed:
        attrs = _process_attrs(tf)
        pid = attrs.get("process_id")
        if not isinstance(pid, str) or not pid:
            orphans.append(tf)
            continue
        p = parts.setdefault(pid, _Parts(pid))
        p.attrs.update(attrs)
        p.files.append(((_int(attrs, "segment", 0), Path(tf.path).name), tf))
    for tf in orphans:
        name = parse_segment_name(tf.path)
        match = None
        if name is not None:
            match = next(
                (
                    p
                    for p in parts.values()
                    if p.id.startswith(name.prefix) and _int(p.attrs, "pid", -1) == name.pid
                ),
                None,
            )
        if match is None:
            if tf.events == 0:
                empty.append(tf)
                continue
            key = name.prefix if name is not None else f"file:{Path(tf.path).name}"
            match = parts.setdefault(key, _Parts(key))
            if name is not None:
                match.attrs.setdefault("pid", name.pid)
                match.attrs.setdefault("service", name.service)
        notes.append(
            f"{tf.path}: no process record (its first chunk was lost?); "
            f"attributed to process {match.id} by its file name"
        )
        n = name.n if name is not None else 0
        match.files.append(((n, Path(tf.path).name), tf))
    return parts


def _first_seq(tf: TraceFile) -> int:
    """The first sequence number a file holds (``_NO_SEQ`` for a file without events)."""
    return min((c.events.first_seq for c in tf.chunks if c.events is not None), default=_NO_SEQ)


def _unique_chunks(p: _Parts) -> list[str]:
    """Set ``p.chunks``: every chunk of the process's files in order, repeats dropped.
    Returns the notes to make (repeats dropped; clashes kept).

    Only chunks with events are compared: a repeated records-only chunk (a process record
    sent again at a reconnect) merges to the same definitions, so it is harmless. The key
    is the first sequence number (unique per chunk within a process); a chunk is a repeat
    only if its events and records are equal to those of a chunk kept under that key, so
    data is never dropped on a guess.
    """
    kept: dict[int, list[tuple[str, Chunk]]] = {}  # first_seq -> chunks kept with it
    repeats = 0
    clashes: list[str] = []
    p.chunks = []
    for _, tf in p.files:
        for c in tf.chunks:
            if c.events is not None:
                same = kept.setdefault(c.events.first_seq, [])
                if any(_same_contents(c, k) for _, k in same):
                    repeats += 1
                    continue
                if same:
                    path, first = same[0]
                    clashes.append(
                        f"chunk {c.index} of {tf.path} and chunk {first.index} of {path} "
                        f"both start at sequence number {c.events.first_seq}"
                    )
                same.append((tf.path, c))
            p.chunks.append(c)
    notes = []
    who = _who(p)
    if repeats:
        notes.append(
            f"{_plural(repeats, 'chunk')} of {who} seen twice (a collector restart: a "
            "chunk written but not acknowledged is in the agent's own file too); the "
            "repeats were dropped"
        )
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        notes.append(
            f"{who}: {clashes[0]}{more} with different contents (damage?); both were kept, "
            "so some events may be counted twice"
        )
    return notes


def _same_contents(a: Chunk, b: Chunk) -> bool:
    ea, eb = a.events, b.events
    assert ea is not None and eb is not None
    return (
        ea.first_seq == eb.first_seq
        and len(ea) == len(eb)
        and all(np.array_equal(getattr(ea, k), getattr(eb, k)) for k in _COLS)
        and a.records == b.records
    )


def _who(p: _Parts) -> str:
    """``process 9f2c1a2b… (orders, pid 4242)`` for notes made before numbering."""
    short = f"{p.id[:8]}…" if len(p.id) > 8 else p.id
    return f"process {short} ({_str(p.attrs, 'service', '?')}, pid {_int(p.attrs, 'pid', 0)})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _merge_records(p: _Parts) -> None:
    tables = {R_UNIT: p.units, R_RESOURCE: p.resources, R_LOCATION: p.locations, R_FAULT: p.faults}
    for chunk in p.chunks:
        for rec in chunk.records:
            table = tables.get(rec.rtype)
            if table is None:
                if rec.rtype == R_STATS:
                    p.stats = dict(rec.attrs)
            elif rec.rtype == R_UNIT and rec.get("provisional") == 1:
                # a guess (docs/format.md): it fills gaps, never replaces, in either order
                have = table.setdefault(rec.id, {})
                for key, value in rec.attrs:
                    if key != "provisional":
                        have.setdefault(key, value)
            else:
                table.setdefault(rec.id, {}).update(rec.attrs)


def _report(tf: TraceFile, process_id: str) -> FileReport:
    return FileReport(
        tf.path, process_id, tf.events, len(tf.chunks), tuple(tf.problems), tf.truncated
    )


_COLS = ("kind", "unit", "time", "res", "arg", "loc")
_DTYPES = {
    "kind": np.uint8,
    "unit": np.int64,
    "time": np.int64,
    "res": np.int64,
    "arg": np.int64,
    "loc": np.int64,
    "seq": np.int64,
    "raw": np.int64,
}


def _columns(p: _Parts) -> int:
    """Concatenate, filter, sort and time-map one process's events (local numbers)."""
    chunks = [c.events for c in p.chunks if c.events is not None]
    cols: dict[str, npt.NDArray[Any]] = {}
    for name in _COLS:
        arrays = [getattr(c, name) for c in chunks]
        cols[name] = (
            np.concatenate(arrays).astype(_DTYPES[name], copy=False)
            if arrays
            else np.zeros(0, _DTYPES[name])
        )
    seqs = [c.first_seq + np.arange(len(c), dtype=np.int64) for c in chunks]
    cols["seq"] = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
    known = np.isin(cols["kind"], _KNOWN)
    unknown = int(len(known) - np.count_nonzero(known))
    if unknown:
        cols = {k: v[known] for k, v in cols.items()}
    order = np.lexsort((cols["seq"], cols["time"]))
    cols = {k: v[order] for k, v in cols.items()}
    anchors = anchors_of(cols["kind"], cols["time"], cols["arg"])
    cols["raw"] = raw_times(anchors, cols["time"])
    if len(anchors):
        p.first_wall = int(anchors.wall[0])
    p.cols = cols
    return unknown


# -- global numbering -----------------------------------------------------------------


def _number(
    ordered: list[_Parts],
    reports: list[FileReport],
    unreadable: list[Unreadable],
    notes: list[str],
    unknown: int,
) -> Trace:
    processes: list[Process] = []
    units: list[Unit] = []
    resources: list[Resource] = []
    locations: list[Location] = []
    faults: list[Fault] = []
    columns: dict[str, list[npt.NDArray[Any]]] = {k: [] for k in (*_COLS, "seq", "raw", "proc")}
    for pi, p in enumerate(ordered):
        cols = p.cols
        processes.append(_process(pi, p))
        if len(cols["kind"]) and not np.any(cols["kind"] == K.CLOCK_ANCHOR):
            notes.append(
                f"{processes[-1].label()}: no clock anchors; its raw times are its "
                "monotonic times and its clock is not aligned with any other"
            )
        # Locations first: units and resources point to them.
        loc_nums = _numbers(
            cols["loc"],
            p.locations,
            [a.get("loc") for a in (*p.units.values(), *p.resources.values())],
        )
        loc_base = len(locations)
        loc_ix = _index(loc_nums, loc_base)
        for rank, n in enumerate(loc_nums):
            a = p.locations.get(n, {})
            locations.append(
                Location(
                    LocationIndex(loc_base + rank),
                    pi,
                    n,
                    _str(a, "file", "?"),
                    _int(a, "line", 0),
                    _str(a, "func"),
                )
            )
        unit_nums = _numbers(
            cols["unit"],
            p.units,
            [a.get("unit") for a in p.resources.values() if a.get("kind") == "join"],
        )
        unit_base = len(units)
        unit_ix = _index(unit_nums, unit_base)
        for rank, n in enumerate(unit_nums):
            a = p.units.get(n, {})
            units.append(
                Unit(
                    UnitIndex(unit_base + rank),
                    pi,
                    n,
                    _str(a, "kind", "unknown"),
                    _str(a, "name", f"unit {n}"),
                    UnitIndex(_global(unit_ix, a.get("parent"))),
                    _str(a, "coro"),
                    LocationIndex(_global(loc_ix, a.get("loc"))),
                )
            )
        res_nums = _numbers(cols["res"], p.resources, [])
        res_base = len(resources)
        for rank, n in enumerate(res_nums):
            a = p.resources.get(n, {})
            resources.append(
                _resource(
                    ResourceIndex(res_base + rank),
                    pi,
                    n,
                    a,
                    unit=_global(unit_ix, a.get("unit")),
                    loc=_global(loc_ix, a.get("loc")),
                )
            )
        for n, a in sorted(p.faults.items()):
            faults.append(Fault(pi, n, _str(a, "message"), _str(a, "where")))
        columns["unit"].append(_map(cols["unit"], unit_nums, unit_base))
        columns["res"].append(_map(cols["res"], res_nums, res_base))
        columns["loc"].append(_map(cols["loc"], loc_nums, loc_base))
        for k in ("kind", "time", "arg", "seq", "raw"):
            columns[k].append(cols[k])
        columns["proc"].append(np.full(len(cols["kind"]), pi, dtype=np.int32))
        p.cols = {}  # free the per-process copy as soon as it is in the lists
    events = (
        Events.empty()
        if not ordered
        else Events(
            proc=np.concatenate(columns["proc"]).astype(np.int32),
            unit=np.concatenate(columns["unit"]).astype(np.int32),
            kind=np.concatenate(columns["kind"]).astype(np.uint8),
            time=np.concatenate(columns["time"]).astype(np.int64),
            raw=np.concatenate(columns["raw"]).astype(np.int64),
            res=np.concatenate(columns["res"]).astype(np.int32),
            arg=np.concatenate(columns["arg"]).astype(np.int64),
            loc=np.concatenate(columns["loc"]).astype(np.int32),
            seq=np.concatenate(columns["seq"]).astype(np.int64),
        )
    )
    return Trace(
        events, processes, units, resources, locations, faults, reports, unreadable, notes, unknown
    )


def _numbers(col: npt.NDArray[Any], defined: dict[int, AttrMap], extra: list[Any]) -> list[int]:
    """Sorted numbers of a table: those defined by records and those referenced."""
    used = set(np.unique(col[col > 0]).tolist())
    used.update(defined)
    used.update(int(x) for x in extra if isinstance(x, int) and x > 0)
    used.discard(0)
    return sorted(used)


def _map(col: npt.NDArray[Any], numbers: list[int], base: int) -> npt.NDArray[np.int32]:
    """Local numbers → global indices (0 → NO_INDEX). Every nonzero number is in ``numbers``."""
    if not numbers:
        return np.full(len(col), NO_INDEX, dtype=np.int32)
    nums = np.asarray(numbers, dtype=np.int64)
    out = np.searchsorted(nums, col) + base
    return np.where(col > 0, out, NO_INDEX).astype(np.int32)


def _global(index: dict[int, int], n: Any) -> int:
    return index.get(n, NO_INDEX) if isinstance(n, int) else NO_INDEX


def _index(numbers: list[int], base: int) -> dict[int, int]:
    return {n: base + rank for rank, n in enumerate(numbers)}


def _process(index: int, p: _Parts) -> Process:
    a, s = p.attrs, p.stats
    return Process(
        index=index,
        id=ProcessId(p.id),
        pid=_int(a, "pid", 0),
        host=_str(a, "host"),
        service=_str(a, "service"),
        runtime=_str(a, "runtime"),
        boot_id=_str(a, "boot_id"),
        time_ns=_str(a, "time_ns"),
        fake_time=_str(a, "fake_time"),
        simulated_offset_ns=_int(a, "simulated_offset_ns", 0),
        run_root=_int(a, "run_root", 0) == 1,
        parent_process_id=_str(a, "parent_process_id"),
        traceparent=_str(a, "traceparent"),
        files=tuple(tf.path for _, tf in p.files),
        stats=AgentStats(
            _int(s, "events", 0),
            _int(s, "dropped", 0),
            _int(s, "faults", 0),
            _int(s, "cost_ns_per_event", 0),
            _str(s, "by_boundary"),
            tuple(sorted((k, v) for k, v in s.items() if k not in _STATS_FIELDS)),
        ),
        attrs=tuple(sorted(a.items())),
    )


_STATS_FIELDS = frozenset(("events", "dropped", "faults", "cost_ns_per_event", "by_boundary"))

_RES_STRS = (
    "name",
    "trace_id",
    "span_id",
    "parent_span_id",
    "protocol",
    "library",
    "method",
    "target",
    "peer",
)


def _resource(
    index: ResourceIndex, proc: int, n: int, a: AttrMap, *, unit: int, loc: int
) -> Resource:
    # One comprehension for the string fields: this runs once per request in a busy trace.
    name, trace_id, span_id, parent, protocol, library, method, target, peer = (
        v if isinstance(v := a.get(k), str) else "" for k in _RES_STRS
    )
    return Resource(
        index=index,
        proc=proc,
        number=n,
        kind=_str(a, "kind", "unknown"),
        name=name,
        loc=LocationIndex(loc),
        unit=UnitIndex(unit),
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        protocol=protocol,
        library=library,
        method=method,
        target=target,
        peer=peer,
        attrs=tuple(a.items()),
    )


def _int(a: AttrMap, key: str, default: int) -> int:
    v = a.get(key)
    return v if isinstance(v, int) else default


def _str(a: AttrMap, key: str, default: str = "") -> str:
    v = a.get(key)
    return v if isinstance(v, str) else default
