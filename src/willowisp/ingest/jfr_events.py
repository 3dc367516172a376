"""JFR events (the JSON the importer stores, see :mod:`willowisp.ingest.jfr`) → one
process: threads and virtual threads as units, monitor enters and waits, parks and sleeps
as waits on resources, thread dumps applied at the end, and the records and event columns
of a :class:`TraceFile`. One ``_<event>`` handler per JFR event type (:data:`HANDLERS`);
the mapping and its trade-offs are described in the importer's module doc."""

from __future__ import annotations

import bisect
import calendar
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from willowisp.ingest.jfr_dump import Dump, parse_dump
from willowisp.model.spec import FORMAT_MAJOR, FORMAT_MINOR, K, Outcome, Reason
from willowisp.wtrace.payload import AttrValue, DecodedEvents, Record
from willowisp.wtrace.reader import Chunk, TraceFile

R_PROCESS, R_UNIT, R_RESOURCE, R_LOCATION = 1, 2, 3, 4
_JDK_PREFIXES = ("java/", "javax/", "jdk/", "sun/", "com/sun/")
NAME = "jfr"  # the importer's name, in each process record it makes
STACK_DEPTH = 12
MAX_DUMPS = 1_000  # thread dumps kept (the last ones): only the final run of them matters
MAX_DUMP_CHARS = 8 * 1024 * 1024


class BadEvent(Exception):
    """One event breaks the rules: skipped and counted."""


def values(e: dict[str, Any]) -> dict[str, Any]:
    v = e.get("values")
    if not isinstance(v, dict):
        raise BadEvent("no values object")
    return v


_TIME = re.compile(
    r"(-?\d{4,9})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d\d:\d\d(?::\d\d)?)"
)
_DURATION = re.compile(r"PT(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?)(\d+)(?:\.(\d{1,9}))?S)?")
_MAX_TIME = (1 << 63) - 1


def wall_ns(v: Any) -> int:
    """An ISO-8601 timestamp with offset (``OffsetDateTime.toString()``) -> ns since the epoch.

    Hot: once per event. The seconds part of consecutive events repeats, so it is parsed
    once per distinct prefix (up to the fraction) and cached.
    """
    if not isinstance(v, str):
        raise BadEvent(f"startTime {_repr(v)} is not an ISO-8601 time")
    dot = v.find(".", 16, 22)
    if dot > 0:
        end = dot + 1
        while end < len(v) and v[end].isdigit() and end - dot <= 9:
            end += 1
        head, frac, zone = v[:dot], v[dot + 1 : end], v[end:]
    else:
        head, frac, zone = v, "", ""
    secs = _SECONDS.get((head, zone))
    if secs is None or not frac.isdigit():
        return _wall_ns_slow(v)
    return secs * 1_000_000_000 + int(frac.ljust(9, "0"))


_SECONDS: dict[tuple[str, str], int] = {}  # (head, zone) -> epoch seconds; see wall_ns


def _wall_ns_slow(v: str) -> int:
    m = _TIME.fullmatch(v)
    if m is None:
        raise BadEvent(f"startTime {_repr(v)} is not an ISO-8601 time")
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    second = int(m.group(6) or 0)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise BadEvent(f"startTime {_repr(v)} is not a valid time")
    secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        parts = [int(x) for x in zone[1:].split(":")]
        secs -= sign * (parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0))
    ns = secs * 1_000_000_000 + int((m.group(7) or "").ljust(9, "0"))
    if not 0 < ns <= _MAX_TIME:
        raise BadEvent(f"startTime {_repr(v)} is out of range")
    if m.group(7) and len(_SECONDS) < 100_000:
        dot = v.index(".", 16)
        end = dot + 1 + len(m.group(7))
        _SECONDS[(v[:dot], v[end:])] = secs
    return ns


def duration_ns(v: Any) -> int:
    """A ``java.time.Duration`` string (``PT0.015S``, ``PT1M2S``, ``PT-0.5S``) -> ns."""
    m = _DURATION.fullmatch(v) if isinstance(v, str) and v != "PT" else None
    if m is None:
        raise BadEvent(f"duration {_repr(v)} is not an ISO-8601 duration")
    hours, minutes = int(m.group(1) or 0), int(m.group(2) or 0)
    whole = int(m.group(4) or 0) * 1_000_000_000 + int((m.group(5) or "").ljust(9, "0"))
    seconds = -whole if m.group(3) else whole
    return (hours * 3600 + minutes * 60) * 1_000_000_000 + seconds


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _class_name(v: Any) -> str:
    """A RecordedClass (or a name) as a dotted Java name; '' if absent."""
    name = v.get("name") if isinstance(v, dict) else v
    return name.replace("/", ".") if isinstance(name, str) else ""


# -- the recording ------------------------------------------------------------------------

# Rank of an event among those at the same ns (and its tie-break within a unit): a
# release before the acquire it enables, a notify before the wake it causes, a unit's
# start first and end last.
_CREATE, _START, _RELEASE, _NOTIFY, _ENDWAIT, _BLOCK, _AFTER, _END = range(8)

ThreadKey = tuple[str, int]


@dataclass(slots=True)
class _Enter:
    """One contended monitor entry: who, on what, when it got in, from whom."""

    unit: int
    res: int
    acquired: int
    previous: int  # the unit that released it, 0 if JFR did not say


class Recording:
    """Accumulates one recording's units, resources, locations and event rows."""

    def __init__(self) -> None:
        self.attrs: dict[str, AttrValue] = {"runtime": "java", "imported": NAME}
        self.unit_of: dict[ThreadKey, int] = {}
        self.units: dict[int, dict[str, AttrValue]] = {}
        self.res_of: dict[tuple[Any, ...], int] = {}
        self.resources: dict[int, dict[str, AttrValue]] = {}
        self.loc_of: dict[tuple[str, int, str], int] = {}
        # Invariant: every row's unit, res and loc are keys of the tables above (or 0).
        self.rows: list[tuple[int, int, int, int, int, int, int]] = []  # time, rank, u, k, r, a, l
        self.enters: list[_Enter] = []
        self.ended: dict[int, int] = {}  # unit -> its unit.end time
        self.dumps: list[Dump] = []
        # (unit, monitor) holds a dump shows still open that began at a contended entry
        self.held: set[tuple[int, int]] = set()
        self.pinned = 0
        # unit -> (start, end) of each wait it was recorded in (end _MAX_TIME: still waiting
        # at the end); only read to place the rows in `foreign` (see _place_foreign)
        self.blocked: dict[int, list[tuple[int, int]]] = {}
        # rows of one unit stamped with another's time (an event JFR recorded in the other
        # thread), moved out of the unit's waits at the end; same shape as `rows`
        self.foreign: list[tuple[int, int, int, int, int, int, int]] = []

    # units, resources, locations

    def unit(self, thread: Any, *, virtual: bool = False) -> int:
        if not isinstance(thread, dict):
            raise BadEvent("no thread")
        jid, oid = _int(thread.get("javaThreadId")), _int(thread.get("osThreadId"))
        key: ThreadKey
        if jid is not None and 0 < jid < 1 << 62:
            key = ("java", jid)
        elif oid is not None and 0 < oid < 1 << 62:
            key = ("os", oid)
        else:
            raise BadEvent("a thread with neither javaThreadId nor osThreadId")
        name = thread.get("javaName") or thread.get("osName") or f"thread {key[1]}"
        virtual = virtual or thread.get("virtual") is True
        return self.unit_for(key, str(name), virtual, oid)

    def unit_for(self, key: ThreadKey, name: str, virtual: bool, os_tid: int | None) -> int:
        u = self.unit_of.get(key)
        if u is None:
            u = self.unit_of[key] = len(self.unit_of) + 1
            self.units[u] = {"kind": "thread", "name": name, "parent": 0}
            if key[0] == "java":
                self.units[u]["java_thread_id"] = key[1]
            if os_tid and 0 < os_tid < 1 << 62:
                self.units[u]["os_tid"] = os_tid
        if virtual:
            self.units[u]["kind"] = "virtual-thread"
        return u

    def resource(self, key: tuple[Any, ...], kind: str, name: str) -> int:
        r = self.res_of.get(key)
        if r is None:
            r = self.res_of[key] = len(self.res_of) + 1
            self.resources[r] = {"kind": kind, "name": name}
        return r

    def monitor(self, cls: str, address: int) -> int:
        return self.resource(("monitor", address, cls), "monitor", f"{cls}@{address:#x}")

    def location(self, place: tuple[str, int, str] | None) -> int:
        if place is None:
            return 0
        n = self.loc_of.get(place)
        if n is None:
            n = self.loc_of[place] = len(self.loc_of) + 1
        return n

    def frame_loc(self, v: dict[str, Any]) -> int:
        return self.location(_top_frame(v.get("stackTrace")))

    def row(
        self, t: int, rank: int, u: int, kind: int, r: int = 0, a: int = 0, loc: int = 0
    ) -> None:
        self.rows.append((t, rank, u, int(kind), r, a, loc))

    # events

    def wait(self, v: dict[str, Any]) -> tuple[int, int, int, int]:
        """(unit, start, end, location) of an event with a duration."""
        u = self.unit(v.get("eventThread"))
        t0 = wall_ns(v.get("startTime"))
        d = duration_ns(v.get("duration"))
        if d < 0:
            raise BadEvent(f"negative duration {_repr(v.get('duration'))}")
        return u, t0, t0 + d, self.frame_loc(v)

    def foreign_row(
        self, t: int, rank: int, u: int, kind: int, r: int = 0, a: int = 0, loc: int = 0
    ) -> None:
        """A row of u's at or before t, a time JFR took in another thread."""
        self.foreign.append((t, rank, u, int(kind), r, a, loc))

    def blocked_in(self, u: int, t0: int, t1: int) -> None:
        """Unit u waited from t0 to t1: it called nothing (no Thread.start) in between."""
        self.blocked.setdefault(u, []).append((t0, t1))

    def apply_dumps(self) -> None:
        _apply_dumps(self)

    def trace_file(self, path: str, size: int) -> TraceFile:
        return _trace_file(self, path, size)


def _jvm_information(rec: Recording, v: dict[str, Any]) -> None:
    pid = _int(v.get("pid"))
    if pid is not None and 0 < pid < 1 << 31:
        rec.attrs["pid"] = pid
    for key, attr in (("jvmVersion", "runtime_version"), ("javaArguments", "argv")):
        if isinstance(s := v.get(key), str) and s:
            rec.attrs[attr] = s[:1000]
    if isinstance(s := v.get("jvmStartTime"), str):
        rec.attrs["jvm_start"] = s
    args = v.get("javaArguments")
    main = args.split()[0] if isinstance(args, str) and args.split() else ""
    if main == "-jar" and isinstance(args, str) and len(args.split()) > 1:
        main = os.path.basename(args.split()[1])
    if main and not main.startswith("-"):
        rec.attrs["service"] = main.rsplit(".", 1)[-1] if not main.endswith(".jar") else main


def _thread_start(rec: Recording, v: dict[str, Any]) -> None:
    t = wall_ns(v.get("startTime"))
    if v.get("thread") is None and v.get("eventThread") is None:
        return  # a VM-internal thread JFR names no Java thread for: nothing to map
    u = rec.unit(v.get("thread") or v.get("eventThread"))
    parent = v.get("parentThread")
    p = rec.unit(parent) if isinstance(parent, dict) else 0
    if p and p != u:
        rec.units[u]["parent"] = p
        # JDK 17 and 25 commit this event in the new thread as it begins to run, with the
        # parent's stack at its Thread.start call: the time is the child's, a little after
        # the call, by which time the parent may already be waiting again. Placed later.
        by = v.get("eventThread")
        place = rec.row if isinstance(by, dict) and rec.unit(by) == p else rec.foreign_row
        place(t, _CREATE, p, K.UNIT_CREATE, 0, u, rec.frame_loc(v))
    rec.row(t, _START, u, K.UNIT_START, 0, p if p != u else 0)


def _thread_end(rec: Recording, v: dict[str, Any], *, virtual: bool = False) -> None:
    t = wall_ns(v.get("startTime"))
    if v.get("thread") is None and v.get("eventThread") is None:
        return  # as for its start
    u = rec.unit(v.get("thread") or v.get("eventThread"), virtual=virtual)
    rec.ended[u] = min(t, rec.ended.get(u, t))
    rec.row(t, _END, u, K.UNIT_END, 0, 0)


def _virtual_start(rec: Recording, v: dict[str, Any]) -> None:
    t = wall_ns(v.get("startTime"))
    rec.row(t, _START, rec.unit(v.get("eventThread"), virtual=True), K.UNIT_START, 0, 0)


def _virtual_end(rec: Recording, v: dict[str, Any]) -> None:
    _thread_end(rec, v, virtual=True)


def _monitor_enter(rec: Recording, v: dict[str, Any]) -> None:
    u, t0, t1, loc = rec.wait(v)
    address = _int(v.get("address"))
    if address is None:
        raise BadEvent("monitor address is not an integer")
    r = rec.monitor(_class_name(v.get("monitorClass")) or "Object", address)
    prev = v.get("previousOwner")
    p = rec.unit(prev) if isinstance(prev, dict) else 0
    rec.row(t0, _BLOCK, u, K.UNIT_BLOCK, r, Reason.ACQUIRE, loc)
    rec.blocked_in(u, t0, t1)
    if p and p != u:
        # at the entrant's time: the owner may be waiting by then (a parent that left
        # Thread.start, whose monitor the child enters as it starts, and went to sleep)
        rec.foreign_row(t1, _RELEASE, p, K.LOCK_RELEASE, r, 0)
    rec.row(t1, _ENDWAIT, u, K.LOCK_ACQUIRED, r, 0, loc)
    rec.enters.append(_Enter(u, r, t1, p if p != u else 0))


def _monitor_wait(rec: Recording, v: dict[str, Any]) -> None:
    u, t0, t1, loc = rec.wait(v)
    address = _int(v.get("address"))
    if address is None:
        raise BadEvent("monitor address is not an integer")
    r = rec.monitor(_class_name(v.get("monitorClass")) or "Object", address)
    notifier = v.get("notifier")
    n = rec.unit(notifier) if isinstance(notifier, dict) else 0
    timed_out = v.get("timedOut") is True
    rec.row(t0, _BLOCK, u, K.UNIT_BLOCK, r, Reason.WAIT, loc)
    rec.blocked_in(u, t0, t1)
    if n and n != u and not timed_out:
        # the notify happened inside the wait; before the wake, and not after n ended
        rec.foreign_row(t1, _NOTIFY, n, K.SYNC_NOTIFY, r, 1)
    rec.row(t1, _ENDWAIT, u, K.UNIT_WAKE, r, Outcome.TIMEOUT if timed_out else Outcome.OK)


def _thread_park(rec: Recording, v: dict[str, Any]) -> None:
    u, t0, t1, loc = rec.wait(v)
    cls = _class_name(v.get("parkedClass"))
    address = _int(v.get("address")) or 0
    if cls or address:
        name = f"{cls or 'Object'}@{address:#x}"
        r = rec.resource(("park", address, cls), "condition", name)
    else:
        r = rec.resource(("park",), "notify", "LockSupport.park")
    timeout = v.get("timeout")
    limit = duration_ns(timeout) if isinstance(timeout, str) else 0
    timed_out = 0 < limit <= t1 - t0
    rec.row(t0, _BLOCK, u, K.UNIT_BLOCK, r, Reason.WAIT, loc)
    rec.blocked_in(u, t0, t1)
    rec.row(t1, _ENDWAIT, u, K.UNIT_WAKE, r, Outcome.TIMEOUT if timed_out else Outcome.OK)


def _thread_sleep(rec: Recording, v: dict[str, Any]) -> None:
    u, t0, t1, loc = rec.wait(v)
    r = rec.resource(("sleep",), "sleep", "Thread.sleep")
    rec.row(t0, _BLOCK, u, K.UNIT_BLOCK, r, Reason.SLEEP, loc)
    rec.blocked_in(u, t0, t1)
    rec.row(t1, _ENDWAIT, u, K.UNIT_WAKE, r, Outcome.OK)


def _virtual_pinned(rec: Recording, v: dict[str, Any]) -> None:
    u, t0, _, loc = rec.wait(v)
    rec.units[u]["kind"] = "virtual-thread"
    carrier = v.get("carrierThread")
    c = rec.unit(carrier) if isinstance(carrier, dict) else 0
    rec.row(t0, _START + 1, u, K.UNIT_RUN, 0, c, loc)
    rec.pinned += 1
    if isinstance(reason := v.get("pinnedReason"), str) and "jfr_pinned_reason" not in rec.attrs:
        rec.attrs["jfr_pinned_reason"] = reason[:200]


def _thread_dump(rec: Recording, v: dict[str, Any]) -> None:
    t = wall_ns(v.get("startTime"))
    text = v.get("result")
    if not isinstance(text, str):
        raise BadEvent("thread dump without its text")
    rec.dumps.append(parse_dump(t, text[:MAX_DUMP_CHARS]))
    if len(rec.dumps) > MAX_DUMPS:
        del rec.dumps[0]


HANDLERS = {
    "jdk.JVMInformation": _jvm_information,
    "jdk.ThreadStart": _thread_start,
    "jdk.ThreadEnd": _thread_end,
    "jdk.VirtualThreadStart": _virtual_start,
    "jdk.VirtualThreadEnd": _virtual_end,
    "jdk.JavaMonitorEnter": _monitor_enter,
    "jdk.JavaMonitorWait": _monitor_wait,
    "jdk.ThreadPark": _thread_park,
    "jdk.ThreadSleep": _thread_sleep,
    "jdk.VirtualThreadPinned": _virtual_pinned,
    "jdk.ThreadDump": _thread_dump,
}


def _top_frame(stack: Any) -> tuple[str, int, str] | None:
    """(file, line, func) of the top frame outside the JDK, else the top frame with a line."""
    frames = stack.get("frames") if isinstance(stack, dict) else None
    fallback = None
    for f in frames if isinstance(frames, list) else ():
        method = f.get("method") if isinstance(f, dict) else None
        if not isinstance(method, dict):
            continue
        line = _int(f.get("lineNumber"))
        cls = method.get("type")
        cname = cls.get("name") if isinstance(cls, dict) else None
        if line is None or line < 0 or not isinstance(cname, str) or method.get("hidden") is True:
            continue
        cname = cname.replace(".", "/")  # jfr print gives internal names, the exporter dotted
        place = (_source_file(cname), line, f"{cname.replace('/', '.')}.{method.get('name')}")
        if not cname.startswith(_JDK_PREFIXES):
            return place
        fallback = fallback or place
    return fallback


def _source_file(internal_name: str) -> str:
    """``com/x/Foo$Bar`` -> ``com/x/Foo.java`` (javac's convention; JFR has no file name)."""
    package, _, simple = internal_name.rpartition("/")
    top = simple.split("$", 1)[0] or simple
    return f"{package}/{top}.java" if package else f"{top}.java"


# -- thread dumps -------------------------------------------------------------------------


def _apply_dumps(rec: Recording) -> None:
    """The last dump's held and awaited monitors as events (see the module doc)."""
    if not rec.dumps:
        return
    dumps = sorted(rec.dumps, key=lambda d: d.time)
    last = dumps[-1]
    reports = [d.deadlock for d in dumps if d.deadlock]
    if reports:
        rec.attrs["jfr_deadlock_report"] = reports[-1]
    monitor_of: dict[int, int] = {}
    for d in dumps:
        monitor_of.update(d.monitor_of)
    last_time: dict[int, int] = {}
    for t, _, u, *_ in rec.rows:
        last_time[u] = max(t, last_time.get(u, t))
    for tid, th in last.threads.items():
        released = set(th.waiting_on)
        held = [x for x in th.locked if x[0] not in released]
        if not held and not th.waiting_to_lock:
            continue
        known = rec.unit_of.get(("java", tid))
        if known is not None and (known in rec.ended or last_time.get(known, 0) > last.time):
            continue  # JFR's own events know better than a dump taken before them
        u = rec.unit_for(("java", tid), th.name, False, None)
        for addr, cls, place in held:
            since = _since(dumps, tid, addr, "locked")
            r = _dump_monitor(rec, addr, cls, monitor_of)
            if not _held_since_enter(rec, u, r):
                rec.row(since, _ENDWAIT, u, K.LOCK_ACQUIRED, r, 0, rec.location(place))
        for addr, cls, place in th.waiting_to_lock:
            since = _since(dumps, tid, addr, "waiting_to_lock")
            r = _dump_monitor(rec, addr, cls, monitor_of)
            rec.row(since, _BLOCK, u, K.UNIT_BLOCK, r, Reason.ACQUIRE, rec.location(place))
            rec.blocked_in(u, since, _MAX_TIME)


def _since(dumps: list[Dump], tid: int, addr: int, field_name: str) -> int:
    """The time of the earliest dump of the final run of dumps in which the thread shows
    ``addr`` in ``field_name``."""
    since = dumps[-1].time
    for d in reversed(dumps):
        th = d.threads.get(tid)
        if th is None or addr not in [a for a, *_ in getattr(th, field_name)]:
            break
        since = d.time
    return since


def _dump_monitor(rec: Recording, addr: int, cls: str, monitor_of: dict[int, int]) -> int:
    """The resource of an object a dump names: JFR's monitor where the deadlock section
    pairs them (renamed by the object address, which is what a person sees in dumps)."""
    mon = monitor_of.get(addr)
    if mon is None:
        return rec.resource(("object", addr, cls), "monitor", f"{cls}@{addr:#x}")
    r = rec.monitor(cls.replace("/", "."), mon)
    rec.resources[r]["name"] = f"{cls}@{addr:#x}"
    return r


def _held_since_enter(rec: Recording, u: int, r: int) -> bool:
    """Is the last contended entry into ``r`` u's own? Then that entry began the hold the
    dump shows, and it stays open (see _closing_releases)."""
    last = [e for e in rec.enters if e.res == r]
    if last and max(last, key=lambda e: e.acquired).unit == u:
        rec.held.add((u, r))
        return True
    return False


def _closing_releases(rec: Recording) -> None:
    """Close each contended entry's hold: at the next entry naming it previous owner (that
    release is already a row), else where it began, unless a dump shows it still held."""
    by_res: dict[int, list[_Enter]] = {}
    for e in rec.enters:
        by_res.setdefault(e.res, []).append(e)
    for entries in by_res.values():
        entries.sort(key=lambda e: e.acquired)
        for i, e in enumerate(entries):
            nxt = entries[i + 1] if i + 1 < len(entries) else None
            if nxt is not None and nxt.previous == e.unit:
                continue
            if nxt is None and (e.unit, e.res) in rec.held:
                continue
            rec.row(e.acquired, _AFTER, e.unit, K.LOCK_RELEASE, e.res, 0)


# -- the trace file -----------------------------------------------------------------------


def _trace_file(rec: Recording, path: str, size: int) -> TraceFile:
    _place_foreign(rec)
    _closing_releases(rec)
    _clamp_notifies(rec)
    # columns: time, rank, unit, kind, res, arg, loc; in (time, rank, unit) order
    rows = np.array(rec.rows, dtype=np.int64).reshape(-1, 7)
    rows = rows[np.lexsort((rows[:, 2], rows[:, 1], rows[:, 0]))]
    t0 = int(rows[0, 0]) if len(rows) else 1
    if rec.pinned:
        rec.attrs["jfr_pinned"] = rec.pinned
    rec.attrs.setdefault("pid", 0)
    rec.attrs.setdefault("service", "java")
    identity = json.dumps(
        [rec.attrs.get("pid"), rec.attrs.get("jvm_start", ""), rec.attrs.get("argv", ""), t0]
    )
    rec.attrs["process_id"] = hashlib.sha256(b"jfr\0" + identity.encode()).hexdigest()[:32]
    records = [Record(R_PROCESS, 0, tuple(rec.attrs.items()))]
    records += [Record(R_UNIT, u, tuple(a.items())) for u, a in rec.units.items()]
    records += [Record(R_RESOURCE, r, tuple(a.items())) for r, a in rec.resources.items()]
    records += [
        Record(R_LOCATION, n, (("file", f), ("line", line), ("func", fn)))
        for (f, line, fn), n in rec.loc_of.items()
    ]
    n = len(rows) + 1
    kind = np.empty(n, dtype=np.uint8)
    unit = np.empty(n, dtype=np.uint32)
    time = np.empty(n, dtype=np.int64)
    res = np.empty(n, dtype=np.uint32)
    arg = np.empty(n, dtype=np.int64)
    loc = np.empty(n, dtype=np.uint32)
    kind[0], unit[0], time[0], res[0], arg[0], loc[0] = K.CLOCK_ANCHOR, 0, t0, 0, t0, 0
    time[1:], unit[1:], kind[1:] = rows[:, 0], rows[:, 2], rows[:, 3]
    res[1:], arg[1:], loc[1:] = rows[:, 4], rows[:, 5], rows[:, 6]
    events = DecodedEvents(first_seq=1, kind=kind, unit=unit, time=time, res=res, arg=arg, loc=loc)
    return TraceFile(path, FORMAT_MAJOR, FORMAT_MINOR, [Chunk(0, 0, records, events)], size=size)


def _place_foreign(rec: Recording) -> None:
    """Each row stamped with another thread's time in its own unit's program order.

    A ThreadStart the child committed says only that the parent called ``Thread.start``
    before that time; a monitor entry, that the previous owner let go before the entrant
    got in; a wait's notifier, that it notified before the waiter woke. If the unit was
    then inside a recorded wait, it did so before the wait began (a blocked thread calls
    nothing; ``Object.wait`` lets its monitor go as it begins), so the row goes at the
    wait's start, ranked before its ``unit.block``: left at the other thread's time it
    would sit inside the wait, and a wait ends at its unit's next event, so it would end
    there (a 100 ms sleep cut to microseconds). Outside any wait the time stays: it is the
    latest the act can have been, and the nearest the recording gives."""
    starts: dict[int, list[int]] = {}
    reach: dict[int, list[int]] = {}  # running maximum of the ends, in start order
    for u, spans in rec.blocked.items():
        spans.sort()
        starts[u] = [b for b, _ in spans]
        ends, top = [], -1
        for _, e in spans:
            top = max(top, e)
            ends.append(top)
        reach[u] = ends
    for t, rank, u, k, r, a, loc in rec.foreign:
        at = _before_waits(t, starts[u], reach[u], rec.blocked[u]) if u in starts else t
        rec.rows.append((at, rank, u, k, r, a, loc))


def _before_waits(t: int, starts: list[int], reach: list[int], spans: list[tuple[int, int]]) -> int:
    """``t``, or the start of the earliest wait (sorted ``spans``) that holds it, waits
    that begin inside that one included: the row must precede all of them. A wait holds
    ``t`` if it began before ``t`` and had not ended before ``t`` (at its end the wake
    comes after any such row of the same instant)."""
    j = bisect.bisect_left(starts, t) - 1
    while j >= 0 and reach[j] >= t:
        b, e = spans[j]
        if e >= t:
            t = b
        j -= 1
    return t


def _clamp_notifies(rec: Recording) -> None:
    """A notifier's sync.notify never after its own unit.end (a joined thread notifies its
    joiner as it ends, and JFR may stamp the joiner's wake a little later)."""
    if not rec.ended:
        return
    for i, (t, _, u, k, r, a, loc) in enumerate(rec.rows):
        if k == K.SYNC_NOTIFY and u in rec.ended and t >= rec.ended[u]:
            rec.rows[i] = (rec.ended[u], _CREATE, u, k, r, a, loc)
