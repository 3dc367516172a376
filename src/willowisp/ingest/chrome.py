"""Importing Chrome trace-event JSON (chrome://tracing, Perfetto's JSON, our own export).

A Chrome trace is a flat list of events (``{"traceEvents": [...]}`` or a bare array, which
may lack its closing ``]``) on ``pid``/``tid`` tracks. It is turned into the loader's input,
one :class:`~willowisp.wtrace.reader.TraceFile` per ``pid``; everything downstream is the
ordinary path. The mapping (docs/import.md has it for users):

* **processes**: one per ``pid``; ``service`` from ``process_name``, ``runtime`` from a
  metadata event's ``args.runtime`` (else ""). The id hashes the file's contents with the
  pid, so importing the same file twice gives the same processes. The file's ``ts`` are one
  clock shared by every pid, so every process of one file gets the same synthetic
  ``boot_id`` (``chrome-json:<hash of the file>``) and one clock anchor whose wall reading
  is its time: :mod:`willowisp.causality.clock_domains` then puts them in one domain.
* **threads**: one unit of kind ``thread`` per (pid, tid), named by ``thread_name``.
* **slices** (``B``/``E``, ``X``): a unit of kind ``span`` created (``unit.create``) by the
  slice that encloses it on its thread, or by the thread's unit, starting and ending with
  the slice. ``B``/``E`` nest on one stack per thread with the ``X`` slices: an ``E`` closes
  the innermost open ``B``; an ``E`` with none open is skipped and counted; a ``B`` never
  closed ends at the trace's last time, its unit record says ``unclosed=1`` and a note
  counts them. **Async slices** (``b``/``e``, legacy ``S``/``F``) are spans too, matched by
  (cat, id, scope) (``id2.local`` and plain ids within the pid, ``id2.global`` across them),
  nested ones created by the outer one. **Instants** (``i``/``I``, async ``n``) are
  zero-length spans: thread-scoped ones under the enclosing slice, process-scoped ones as
  roots of their pid, global ones too (in the first pid when theirs has nothing else: our
  own export puts findings on pid 0).
* **flows** become happens-before edges: each hop of a flow is a ``msg.send`` on a
  ``message`` resource (protocol ``chrome-flow``) in the unit at its start and a
  ``msg.recv`` on another in the unit at its end, both with ``message_id`` = the flow id
  (``#n`` appended when the file reuses it, ``@<file hash>`` so two files never collide),
  which :mod:`willowisp.causality.messages` pairs, across pids too. Flow v1 ``s``/``t``
  bind to the slice enclosing them; ``f`` to the next slice starting on its thread
  (enclosing with ``"bp": "e"``, and the enclosing one when no slice follows); they match
  by (cat, name, id) in time order. Flow v2 (``bind_id`` or ``id`` with ``flow_out`` /
  ``flow_in`` on a slice) binds to that slice, at its start; an in is paired with the
  out of the same id, in time order (an in before its out waits for it).
* ``ts`` (µs) become ns exactly: numbers are read as decimals and rounded half to even;
  ``displayTimeUnit`` is only a display hint. A file written by ``willowisp export --to
  chrome`` is shifted back by its ``otherData.t0_ns`` and its ``service (pid N, host)`` /
  ``kind name`` labels are split back into fields.

Trade-offs: the whole file is parsed at once (``json.loads``; a truncated file is re-read
event by event up to the damage), which is simple and fast but holds the parsed objects in
memory, hence the 5M-event bound. Counters, samples, object snapshots and other phases with
no concurrency meaning are ignored and counted in a note. A malformed event is skipped and
counted; a file with no usable event is one :class:`TraceFormatError`.
"""

from __future__ import annotations

import decimal
import gc
import hashlib
import json
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.ingest.chrome_json import events_array, read_document, skip_space
from willowisp.model.spec import FORMAT_MAJOR, FORMAT_MINOR, UNIT_KINDS, K
from willowisp.wtrace.payload import AttrValue, DecodedEvents, Record
from willowisp.wtrace.reader import Chunk, TraceFile

NAME = "chrome"
MAX_BYTES = 1024**3  # the parsed objects take several times this
MAX_STR = 65_536  # names and labels longer than this are cut (ending in "…")
PROTOCOL = "chrome-flow"
_MAX_NS = 1 << 62

R_PROCESS, R_UNIT, R_RESOURCE = 1, 2, 3
# Event order at one time within a unit: start, receive, send, create a child, end.
_START, _RECV, _SEND, _CREATE, _END = 0, 1, 2, 3, 4
_ROW = 6  # values per event in _Proc.rows
_PHASES = frozenset("BEXiIbenSFTpstfM")
_ASYNC = {"b": "b", "S": "b", "e": "e", "F": "e", "n": "n", "T": "n", "p": "n"}
_OURS = re.compile(r"^(?P<service>.*) \(pid (?P<pid>-?\d{1,18}), (?P<host>.*)\)$", re.S)
_HEAD = re.compile(rb"^(?:\xef\xbb\xbf)?\s*([\[{])")


class _Bad(Exception):
    """One event breaks the format: skipped and counted."""


# -- the importer interface -------------------------------------------------------------


def sniff(head: bytes) -> bool:
    """Is this Chrome trace JSON? An object whose ``traceEvents`` is an array, or an array
    whose first element is an object with a string ``ph``. Decided on the first 64 KiB."""
    m = _HEAD.match(head)
    if m is None:
        return False
    text = head[m.start(1) :].decode("utf-8", errors="replace")  # the head may cut a char
    dec = json.JSONDecoder()
    if text[0] == "{":
        return events_array(text, dec)[0] >= 0
    try:
        first, _ = dec.raw_decode(text, skip_space(text, 1))
    except (ValueError, RecursionError):
        return False  # an element longer than the head: cannot tell
    return isinstance(first, dict) and isinstance(first.get("ph"), str)


def prepare(data: bytes, path: str) -> tuple[str, bytes]:
    """Chrome JSON is stored as it is: later decoding needs no tool."""
    return NAME, data


def decode(stored_format: str, data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    """Chrome trace JSON → one TraceFile per pid, and notes (skipped, ignored, unpaired).

    Raises TraceFormatError when the bytes hold no usable event, TraceLimitError (one) when
    they are over the size or event-count bounds.
    """
    if stored_format != NAME:
        raise TraceFormatError(f"stored format {stored_format!r} is not {NAME!r}")
    if len(data) > MAX_BYTES:
        raise TraceLimitError(f"{len(data)} bytes is over the {MAX_BYTES}-byte bound")
    # Millions of acyclic objects (the parsed JSON, events, records) would set off the
    # cyclic collector's full passes over them again and again: 44 % of the time measured
    # on a 1M-event file. Nothing here makes cycles, so it is paused, and restored.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _decode(data, path)
    finally:
        if paused:
            gc.enable()


def _decode(data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    doc = read_document(data, path)
    notes = [doc.truncated] if doc.truncated else []
    tag = hashlib.blake2b(data, digest_size=16).hexdigest()
    imp = _Import(tag, doc.ours, doc.shift)
    events = imp.read(doc.events)
    if not events and not imp.procs:
        raise TraceFormatError(f"no usable Chrome trace event{imp.why_none(len(doc.events))}")
    imp.walk(events)
    notes.extend(imp.notes(path, len(doc.events)))
    return imp.trace_files(path, len(data)), notes


# -- one event --------------------------------------------------------------------------


class _Ev(NamedTuple):
    """One valid event, its fields checked and times in ns (a tuple: millions are made)."""

    ts: int
    seq: int  # position in the file: ties at one time keep file order
    ph: str  # legacy async phases are given their nestable names (S -> b, F -> e, T -> n)
    pid: int | str
    tid: int | str
    name: str
    cat: str
    dur: int = 0  # X only
    key: str = ""  # async and flow v1: the id; flow v2: the bind id
    scope: str = ""  # instants: t, p or g; async and flow ids: "" per pid, else its scope
    bp: str = ""  # flow v1 binding point
    flow_in: bool = False
    flow_out: bool = False
    args: dict[str, Any] | None = None  # metadata events only


def _repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _ns(v: Any, what: str) -> int:
    """µs (an int, or a decimal as the JSON wrote it) → ns, rounded half to even."""
    if type(v) is int:  # the common case first: most producers write integers
        ns = v * 1000
    elif isinstance(v, decimal.Decimal | float):
        try:
            d = decimal.Decimal(v)
            if d.is_finite() and d.adjusted() > 24:  # before making an int of 1e999999
                raise _Bad(f"{what} {_repr(v)} is out of range")
            ns = round(d.scaleb(3))
        except (ArithmeticError, ValueError) as exc:
            raise _Bad(f"{what} {_repr(v)} is not a finite number") from exc
    else:
        raise _Bad(f"{what} {_repr(v)} is not a number")
    if not 0 <= ns < _MAX_NS:
        raise _Bad(f"{what} {_repr(v)} is out of range")
    return ns


def _ident(v: Any, what: str) -> int | str:
    if type(v) is int and -(1 << 63) <= v < 1 << 64:
        return v
    if v is None:
        return 0
    if type(v) is str and len(v) <= 256:
        return v
    raise _Bad(f"{what} {_repr(v)} is not an integer or a short string")


def _text(v: Any, what: str) -> str:
    if type(v) is str:
        return v if len(v) <= MAX_STR else cut(v)
    if v is None:
        return ""
    raise _Bad(f"{what} {_repr(v)} is not a string")


def cut(s: str, limit: int = MAX_STR) -> str:
    """``s`` cut to ``limit`` characters, ending in "…" when it was cut."""
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _id_text(v: Any, what: str) -> str:
    if isinstance(v, bool) or not isinstance(v, int | str) or (isinstance(v, str) and not v):
        raise _Bad(f"{what} {_repr(v)} is not an integer or a string")
    s = str(v)
    if len(s) > 256:
        raise _Bad(f"{what} is longer than 256 characters")
    return s.lower() if s.startswith(("0x", "0X")) else s


def _async_id(raw: dict[str, Any], pid: int | str) -> tuple[str, str]:
    """(id text, scope) of an async or flow event: id2.global is global, the rest per pid."""
    id2 = raw.get("id2")
    if isinstance(id2, dict):
        if "global" in id2:
            return _id_text(id2["global"], "id2.global"), "global"
        if "local" in id2:
            return _id_text(id2["local"], "id2.local"), f"pid {pid}"
        raise _Bad("id2 has neither local nor global")
    if "id" not in raw:
        raise _Bad("no id")
    return _id_text(raw["id"], "id"), ""


def _event(raw: Any, seq: int, shift: int) -> _Ev | None:
    """A checked event (``shift`` added to its time); None for a phase with no meaning
    here. Raises _Bad. Hot: one call per event, so tuples are built whole, once."""
    if type(raw) is not dict:
        raise _Bad(f"an event that is not an object ({type(raw).__name__})")
    get = raw.get
    ph = get("ph")
    if type(ph) is not str:
        raise _Bad(f"ph {_repr(ph)} is not a string")
    if ph not in _PHASES:
        return None
    pid = _ident(get("pid"), "pid")
    tid = _ident(get("tid"), "tid")
    name = _text(get("name"), "name")
    cat = _text(get("cat"), "cat")
    args = get("args")
    if args is not None and type(args) is not dict:
        raise _Bad(f"args {_repr(args)} is not an object")
    if ph == "M":
        return _new(_Ev, (0, seq, ph, pid, tid, name, cat, 0, "", "", "", False, False, args or {}))
    ts = _ns(get("ts"), "ts") + shift
    if ph in ("X", "B"):
        dur = _ns(get("dur"), "dur") if ph == "X" else 0
        key, fin, fout = _flow_v2(raw) if "flow_in" in raw or "flow_out" in raw else _NO_FLOW
        return _new(_Ev, (ts, seq, ph, pid, tid, name, cat, dur, key, "", "", fin, fout, None))
    if ph == "E":
        return _new(_Ev, (ts, seq, ph, pid, tid, name, cat, 0, "", "", "", False, False, None))
    if ph in "iI":
        scope = get("s", "t")
        if scope not in ("t", "p", "g"):
            raise _Bad(f"instant scope {_repr(scope)} is not t, p or g")
        return _Ev(ts, seq, "i", pid, tid, name, cat, scope=scope)
    key, scope = _async_id(raw, pid)
    if ph in _ASYNC:
        return _Ev(ts, seq, _ASYNC[ph], pid, tid, name, cat, key=key, scope=scope)
    bp = get("bp", "")
    return _Ev(ts, seq, ph, pid, tid, name, cat, key=key, scope=scope, bp=bp)


_new = tuple.__new__  # a NamedTuple from a whole tuple, without its keyword handling
_NO_FLOW = ("", False, False)


def _flow_v2(raw: dict[str, Any]) -> tuple[str, bool, bool]:
    """(bind id, flow_in, flow_out) of a slice that says it carries a flow."""
    fin, fout = raw.get("flow_in", False), raw.get("flow_out", False)
    if type(fin) is not bool or type(fout) is not bool:
        raise _Bad("flow_in / flow_out is not a boolean")
    if not (fin or fout):
        return _NO_FLOW
    bind = raw.get("bind_id", raw.get("id"))
    if bind is None:
        raise _Bad("flow_in / flow_out without a bind_id")
    return _id_text(bind, "bind_id"), fin, fout


# -- processes, threads and units -------------------------------------------------------


@dataclass(slots=True)
class _Proc:
    key: int | str  # the file's pid
    service: str = ""
    host: str = ""
    pid: int = 0
    runtime: str = ""
    # Unit records: [kind, name, parent, unclosed]; unit n is units[n - 1].
    units: list[list[Any]] = field(default_factory=list)
    resources: list[tuple[tuple[str, AttrValue], ...]] = field(default_factory=list)
    # Events in emission order, _ROW values each (time, rank, kind, unit, res, arg), sorted
    # by (time, rank) at the end. One flat stdlib array: one append per event, and numpy
    # reads it without a copy per value.
    rows: array[int] = field(default_factory=lambda: array("q"))

    def emit(self, kind: int, unit: int, t: int, rank: int, res: int = 0, arg: int = 0) -> None:
        self.rows.extend((t, rank, kind, unit, res, arg))

    def new_unit(self, kind: str, name: str, parent: int) -> int:
        self.units.append([kind, name, parent, 0])
        return len(self.units)

    def span(self, name: str, parent: int, t: int) -> int:
        """A span unit created by ``parent`` (0: none) that starts at ``t``."""
        u = self.new_unit("span", name, parent)
        if parent:
            self.emit(K.UNIT_CREATE, parent, t, _CREATE, arg=u)
        self.emit(K.UNIT_START, u, t, _START, arg=parent)
        return u

    def end(self, u: int, t: int) -> None:
        self.emit(K.UNIT_END, u, t, _END)


@dataclass(slots=True)
class _Open:
    """A slice open on a thread: its unit and end (None for a ``B`` until its ``E``)."""

    unit: int
    end: int | None


@dataclass(slots=True)
class _Thread:
    proc: _Proc
    tid: int | str
    unit: int = 0  # 0 until its first event (threads only named have no events)
    name: str = ""
    # Invariant: slices in begin order; each one began inside the one below it.
    stack: list[_Open] = field(default_factory=list)
    # Flow v1 ends waiting for the next slice to begin here, with where they bind if
    # none does (the slice enclosing the ``f``).
    pending: list[tuple[_Hop, _Point]] = field(default_factory=list)

    def enclosing(self, t: int) -> int:
        """The unit of the innermost slice open at ``t`` (its end included), else the
        thread's. Slices that ended before ``t`` are dropped from the stack."""
        return self._top(t)

    def parent_for_begin(self, t: int) -> int:
        """Like ``enclosing`` but a slice ending exactly at ``t`` is a sibling, not a
        parent, of one beginning at ``t``."""
        return self._top(t + 1)

    def _top(self, after: int) -> int:
        st = self.stack
        while st:
            end = st[-1].end
            if end is None or end >= after:
                return st[-1].unit
            st.pop()
        return self.unit


@dataclass(slots=True)
class _Point:
    proc: _Proc
    unit: int
    time: int


@dataclass(slots=True)
class _Hop:
    """One hop of a flow: a send at ``src`` and a receive at ``dst`` (None until bound)."""

    src: _Point
    dst: _Point | None
    name: str
    cat: str
    flow_id: str


# -- the import -------------------------------------------------------------------------


class _Import:
    """The walk over one file's events, in time order, building processes and hops."""

    def __init__(self, tag: str, ours: bool, shift: int) -> None:
        self.tag = tag
        self.ours = ours  # labels are our exporter's: split them back into fields
        self.shift = shift
        self.procs: dict[int | str, _Proc] = {}
        self.threads: dict[tuple[int | str, int | str], _Thread] = {}
        self.hops: list[_Hop] = []
        # Open async slices per (cat, id, scope): a stack of (process, unit).
        self.async_open: dict[tuple[str, str, str], list[tuple[_Proc, int]]] = {}
        self.flow_v1: dict[tuple[str, str, str, str], _Point] = {}
        # Flow v2 per bind id: an out waiting for its in, or ins that came first.
        self.v2_out: dict[str, _Point] = {}
        self.v2_in: dict[str, list[_Point]] = {}
        self.v2_names: dict[str, tuple[str, str]] = {}  # (name, cat) of a waiting out
        self.global_instants: list[_Ev] = []
        self.bad = 0
        self.first_bad = ""
        self.ignored: Counter[str] = Counter()
        self.unpaired: Counter[str] = Counter()
        self.unclosed = 0
        self.t_end = 0

    # -- reading

    def read(self, raw_events: list[Any]) -> list[_Ev]:
        """Check every event; metadata is applied at once, the others returned in time
        order (file order at equal times)."""
        out: list[_Ev] = []
        meta: list[_Ev] = []
        shift = self.shift
        for seq, raw in enumerate(raw_events):
            try:
                ev = _event(raw, seq, shift)
            except _Bad as exc:
                self.bad += 1
                self.first_bad = self.first_bad or f"event {seq}: {exc}"
                continue
            if ev is None:
                ph = raw["ph"]
                self.ignored[ph if len(ph) <= 8 else ph[:8] + "…"] += 1
            elif ev.ph == "M":
                meta.append(ev)
            else:
                out.append(ev)
        for ev in meta:
            self._metadata(ev)
        out.sort()  # by (ts, seq): file order at equal times
        self.t_end = max((e.ts + e.dur for e in out), default=0)
        return out

    def _proc(self, pid: int | str) -> _Proc:
        p = self.procs.get(pid)
        if p is None:
            p = self.procs[pid] = _Proc(pid)
            p.pid = pid if isinstance(pid, int) and 0 <= pid < 1 << 63 else 0
        return p

    def _thread(self, pid: int | str, tid: int | str) -> _Thread:
        th = self.threads.get((pid, tid))
        if th is None:
            th = self.threads[pid, tid] = _Thread(self._proc(pid), tid)
        return th

    def _metadata(self, ev: _Ev) -> None:
        args = ev.args or {}
        proc = self._proc(ev.pid)
        runtime = args.get("runtime")
        if isinstance(runtime, str) and runtime:
            proc.runtime = cut(runtime, 64)
        name = args.get("name")
        if not isinstance(name, str):
            return
        if ev.name == "process_name":
            m = _OURS.match(name) if self.ours else None
            if m:
                proc.service, proc.host = cut(m["service"]), cut(m["host"])
                proc.pid = max(int(m["pid"]), 0)
            else:
                proc.service = cut(name)
        elif ev.name == "thread_name":
            self._thread(ev.pid, ev.tid).name = cut(name)
        # process_sort_index, thread_sort_index, process_labels, ...: display order only

    # -- the walk

    def walk(self, events: list[_Ev]) -> None:
        for ev in events:
            ph = ev.ph
            if ph in "BX":
                self._begin(ev)
            elif ph == "E":
                self._end_b(ev)
            elif ph in "iI":
                self._instant(ev)
            elif ph == "b":
                self._async_begin(ev)
            elif ph == "e":
                self._async_end(ev)
            elif ph == "n":
                self._async_instant(ev)
            else:
                self._flow_v1(ev)
        self._finish()

    def _started(self, th: _Thread, t: int) -> _Thread:
        if not th.unit:
            kind, name = self._thread_label(th)
            th.unit = th.proc.new_unit(kind, name, 0)
            th.proc.emit(K.UNIT_START, th.unit, t, _START)
        return th

    def _thread_label(self, th: _Thread) -> tuple[str, str]:
        name = th.name or f"tid {th.tid}"
        if self.ours and " " in name:
            kind, rest = name.split(" ", 1)
            if kind in UNIT_KINDS:
                return kind, rest
        return "thread", name

    def _begin(self, ev: _Ev) -> None:
        th = self._started(self._thread(ev.pid, ev.tid), ev.ts)
        parent = th.parent_for_begin(ev.ts)
        u = th.proc.span(ev.name, parent, ev.ts)
        if ev.ph == "X":
            th.proc.end(u, ev.ts + ev.dur)
            th.stack.append(_Open(u, ev.ts + ev.dur))
        else:
            th.stack.append(_Open(u, None))
        here = _Point(th.proc, u, ev.ts)
        for hop, _ in th.pending:
            hop.dst = here
        th.pending.clear()
        if ev.flow_in:
            self._v2_in(ev, here)
        if ev.flow_out:
            self._v2_out(ev, here)

    def _end_b(self, ev: _Ev) -> None:
        th = self.threads.get((ev.pid, ev.tid))
        st = th.stack if th else []
        if th:
            th.parent_for_begin(ev.ts)  # drops the X slices that ended by now
        i = len(st) - 1
        while i >= 0 and st[i].end is not None:
            i -= 1
        if th is None or i < 0:
            self.unpaired["E"] += 1
            return
        th.proc.end(st[i].unit, ev.ts)
        del st[i:]

    def _instant(self, ev: _Ev) -> None:
        if ev.scope == "t":
            th = self._started(self._thread(ev.pid, ev.tid), ev.ts)
            parent = th.enclosing(ev.ts)
            proc = th.proc
        elif ev.scope == "p":
            proc, parent = self._proc(ev.pid), 0
        else:
            self.global_instants.append(ev)  # placed once every pid is known
            return
        u = proc.span(ev.name, parent, ev.ts)
        proc.end(u, ev.ts)

    def _async_key(self, ev: _Ev) -> tuple[str, str, str]:
        scope = ev.scope or f"pid {ev.pid}"
        return ev.cat, ev.key, scope

    def _async_begin(self, ev: _Ev) -> None:
        th = self._started(self._thread(ev.pid, ev.tid), ev.ts)
        stack = self.async_open.setdefault(self._async_key(ev), [])
        same = stack and stack[-1][0] is th.proc
        parent = stack[-1][1] if same else th.enclosing(ev.ts)
        stack.append((th.proc, th.proc.span(ev.name, parent, ev.ts)))

    def _async_end(self, ev: _Ev) -> None:
        stack = self.async_open.get(self._async_key(ev))
        if not stack:
            self.unpaired["e"] += 1
            return
        proc, u = stack.pop()
        proc.end(u, ev.ts)

    def _async_instant(self, ev: _Ev) -> None:
        stack = self.async_open.get(self._async_key(ev))
        if not stack:
            self._instant(ev._replace(scope="t"))  # an instant of its thread, then
            return
        proc, parent = stack[-1]
        proc.end(proc.span(ev.name, parent, ev.ts), ev.ts)

    def _flow_v1(self, ev: _Ev) -> None:
        th = self._started(self._thread(ev.pid, ev.tid), ev.ts)
        here = _Point(th.proc, th.enclosing(ev.ts), ev.ts)
        key = (ev.cat, ev.name, ev.key, ev.scope)
        if ev.ph == "s":
            if key in self.flow_v1:
                self.unpaired["s"] += 1  # the earlier start never finished
            self.flow_v1[key] = here
            return
        start = self.flow_v1.pop(key, None)
        if start is None:
            self.unpaired[ev.ph] += 1
            if ev.ph == "t":
                self.flow_v1[key] = here  # a step may still start the rest of the flow
            return
        hop = _Hop(start, here, ev.name, ev.cat, ev.key)
        self.hops.append(hop)
        if ev.ph == "t":
            self.flow_v1[key] = here
        elif ev.bp != "e":
            hop.dst = None  # the next slice to begin on this thread
            th.pending.append((hop, here))

    def _v2_out(self, ev: _Ev, here: _Point) -> None:
        key = ev.key
        waiting = self.v2_in.get(key)
        if waiting:  # an in came first (times out of order): it was this out's
            self.hops.append(_Hop(here, waiting.pop(0), ev.name, ev.cat, key))
            return
        if key in self.v2_out:
            self.unpaired["flow_out"] += 1  # the earlier out never had its in
        self.v2_out[key] = here
        self.v2_names[key] = (ev.name, ev.cat)

    def _v2_in(self, ev: _Ev, here: _Point) -> None:
        start = self.v2_out.pop(ev.key, None)
        if start is None:
            self.v2_in.setdefault(ev.key, []).append(here)
            return
        name, cat = self.v2_names.pop(ev.key, ("", ""))
        self.hops.append(_Hop(start, here, name, cat, ev.key))

    def _finish(self) -> None:
        """Close what the trace left open, bind flows still waiting for a slice, place
        global instants: in their pid if it has other events, else in the first pid (a
        global instant belongs to no process; our own export puts findings on pid 0)."""
        for ev in self.global_instants:
            proc = self.procs.get(ev.pid) or next(iter(self.procs.values()), None)
            proc = proc or self._proc(ev.pid)
            proc.end(proc.span(ev.name, 0, ev.ts), ev.ts)
        for th in self.threads.values():
            for hop, fallback in th.pending:
                hop.dst = fallback  # no slice began on the thread after the f
            th.pending.clear()
            for o in th.stack:
                if o.end is None:
                    self._close(th.proc, o.unit)
        for stack in self.async_open.values():
            for proc, u in stack:
                self._close(proc, u)
        left = {
            "s": len(self.flow_v1),
            "flow_out": len(self.v2_out),
            "flow_in": sum(len(v) for v in self.v2_in.values()),
        }
        self.unpaired.update({k: n for k, n in left.items() if n})

    def _close(self, proc: _Proc, u: int) -> None:
        proc.end(u, self.t_end)
        proc.units[u - 1][3] = 1
        self.unclosed += 1

    # -- output

    def why_none(self, total: int) -> str:
        """Why a file gave no usable event, in the words of the skip note."""
        if self.bad:
            return (
                f": {self.bad} of {_plural(total, 'event')} skipped as malformed "
                f"(first: {self.first_bad})"
            )
        if self.ignored:
            return f" (only phases with no concurrency meaning: {_counts(self.ignored)})"
        return " (the file holds none)"

    def notes(self, path: str, total: int) -> list[str]:
        out: list[str] = []
        if self.bad:
            out.append(
                f"{path}: {self.bad} of {_plural(total, 'event')} skipped as malformed "
                f"(first: {self.first_bad}); the others were imported"
            )
        if self.ignored:
            n = sum(self.ignored.values())
            out.append(
                f"{path}: ignored {_plural(n, 'event')} of phases with no concurrency "
                f"meaning ({_counts(self.ignored)})"
            )
        if self.unpaired:
            n = sum(self.unpaired.values())
            out.append(
                f"{path}: ignored {_plural(n, 'event')} that matched no other end "
                f"({_counts(self.unpaired)})"
            )
        if self.unclosed:
            out.append(
                f"{path}: {_plural(self.unclosed, 'slice')} never ended; closed at the "
                "trace's last time and marked unclosed"
            )
        return out

    def trace_files(self, path: str, size: int) -> list[TraceFile]:
        for th in self.threads.values():
            if not th.unit:  # named by metadata, no event of its own: still a unit
                kind, name = self._thread_label(th)
                th.unit = th.proc.new_unit(kind, name, 0)
        reuse: Counter[str] = Counter()
        for hop in self.hops:
            assert hop.dst is not None
            reuse[hop.flow_id] += 1
            n = reuse[hop.flow_id]
            message_id = f"{hop.flow_id}{'' if n == 1 else f'#{n}'}@{self.tag[:16]}"
            for point, ek, rank in ((hop.src, K.MSG_SEND, _SEND), (hop.dst, K.MSG_RECV, _RECV)):
                point.proc.resources.append(_message(hop, message_id))
                r = len(point.proc.resources)
                point.proc.emit(ek, point.unit, point.time, rank, res=r)
        return [self._trace_file(p, path, size) for p in self.procs.values()]

    def _trace_file(self, p: _Proc, path: str, size: int) -> TraceFile:
        pid_key = json.dumps([type(p.key).__name__, p.key])
        process_id = hashlib.sha256(f"chrome\0{self.tag}\0{pid_key}".encode()).hexdigest()[:32]
        attrs: dict[str, AttrValue] = {
            "process_id": process_id,
            "pid": p.pid,
            "host": p.host,
            "service": p.service,
            "runtime": p.runtime,
            "boot_id": f"chrome-json:{self.tag}",
            "imported": NAME,
        }
        records = [Record(R_PROCESS, 0, tuple(attrs.items()))]
        for n, (kind, name, parent, unclosed) in enumerate(p.units, 1):
            a: tuple[tuple[str, AttrValue], ...] = (
                ("kind", kind),
                ("name", name),
                ("parent", parent),
            )
            records.append(Record(R_UNIT, n, (*a, ("unclosed", 1)) if unclosed else a))
        for n, res_attrs in enumerate(p.resources, 1):
            records.append(Record(R_RESOURCE, n, res_attrs))
        rows = np.frombuffer(p.rows, dtype=np.int64).reshape(-1, _ROW)
        rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))]
        t0 = int(rows[0, 0]) if len(rows) else self.shift
        n = len(rows) + 1

        def column(c: int, dtype: Any, first: int) -> Any:
            out = np.empty(n, dtype=dtype)
            out[0] = first  # the clock anchor: wall time = time
            out[1:] = rows[:, c]
            return out

        events = DecodedEvents(
            first_seq=1,
            kind=column(2, np.uint8, K.CLOCK_ANCHOR),
            unit=column(3, np.uint32, 0),
            time=column(0, np.int64, t0),
            res=column(4, np.uint32, 0),
            arg=column(5, np.int64, t0),
            loc=np.zeros(n, dtype=np.uint32),
        )
        return TraceFile(
            path, FORMAT_MAJOR, FORMAT_MINOR, [Chunk(0, 0, records, events)], size=size
        )


def _message(hop: _Hop, message_id: str) -> tuple[tuple[str, AttrValue], ...]:
    return (
        ("kind", "message"),
        ("name", hop.name or f"flow {hop.flow_id}"),
        ("protocol", PROTOCOL),
        ("destination", hop.cat),
        ("target", hop.cat),
        ("message_id", message_id),
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _counts(c: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
