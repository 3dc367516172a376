"""Importing JDK Flight Recorder recordings (``.jfr``, or the JSON ``jfr print --json`` writes).

A binary recording is turned into JSON once, by the JDK (:func:`prepare`; found through
``JAVA_HOME``, then ``PATH``): by a small exporter compiled with the JDK's ``javac`` that
writes the JSON shape of ``jfr print --json`` with only what decode reads (a tenth of the
bytes: ``jfr print --json`` writes ~9 KB per event, so ten busy seconds are gigabytes),
else by ``jfr print --json`` itself. That JSON is what a ``.wtrace`` stores, so decoding
later needs no JDK, and decode reads either. :func:`decode` maps one recording to one
process (runtime ``java``) whose times are JFR's own wall-clock timestamps, converted
exactly to ns; no boot id is known, so the process is its own clock domain.

Mapping:

* **units** are Java threads keyed by ``javaThreadId`` (stable for the life of the JVM, unlike
  OS thread ids); a thread seen in ``jdk.VirtualThread*`` events or marked ``virtual`` is a
  ``virtual-thread``. ``jdk.ThreadStart`` gives ``unit.start`` and, with its
  ``parentThread``, the parent's ``unit.create``; ``jdk.ThreadEnd`` / ``VirtualThreadEnd``
  give ``unit.end``.
* **``jdk.JavaMonitorEnter``** (a contended ``synchronized``): ``unit.block(ACQUIRE)`` on a
  ``monitor`` resource at its start, ``lock.acquired`` at start + duration; its
  ``previousOwner`` released the monitor then, so that thread gets a ``lock.release`` at the
  same instant, ordered first: the release -> acquire happens-before edge. JFR records only
  contended entries, so how long the new owner kept the monitor is known only if a later
  entry names it as previous owner; otherwise its hold is closed where it began (a
  zero-length hold) rather than invented, so no wait-for edge rests on a guess.
* **``jdk.JavaMonitorWait``** (``Object.wait``): a ``WAIT`` on the monitor, ended by
  ``unit.wake`` (``TIMEOUT`` if ``timedOut``); its ``notifier`` gets a ``sync.notify`` just
  before the wake (never after the notifier's own end), the notify -> wake edge.
* **``jdk.ThreadPark``**: a ``WAIT`` on a ``condition`` named by ``parkedClass`` + address
  (a blocker-less park waits on the process's ``LockSupport.park`` resource); JFR does not
  say who unparked, so there is no edge. **``jdk.ThreadSleep``**: a ``SLEEP``.
  **``jdk.VirtualThreadPinned``**: a ``unit.run`` naming the carrier thread when JFR gives
  it (a scheduling event that ends no wait); the count is the process's ``jfr_pinned``.
* **``jdk.ThreadDump``** text: a thread stuck forever never produces a ``JavaMonitorEnter``,
  so the last dump's facts become events: each ``- locked <addr>`` (not the monitor the
  thread is ``waiting on``, which ``wait`` released) is a ``lock.acquired`` at the earliest
  dump of the final run of dumps that shows it, and each ``- waiting to lock <addr>`` a
  ``unit.block(ACQUIRE)`` with no end (still waiting). The deadlock analysis then finds any
  cycle from the wait-for graph; the dump's own "Found one Java-level deadlock" text is kept
  as the process's ``jfr_deadlock_report``, as corroboration only.

Monitors: JFR's ``address`` is the VM's monitor, a thread dump's ``<0x...>`` the object; the
dump's deadlock section pairs the two, and where it does they are one resource (named by
the object address a person sees in dumps). Elsewhere a monitor is keyed by class and
address, so an address the VM reuses for another object of the same class after deflation
would merge two monitors; names carry the address, so finding ids vary between runs.

Locations: the top stack frame outside the JDK (``java.``, ``jdk.``, ``sun.``, ...; hidden
lambda frames skipped). JFR gives a class and line but no file name, so the file is the
class's top-level name with ``.java`` under its package path; a dump gives the file itself.

An event that breaks these rules is skipped and counted in a note; input with no usable
JFR content is one :class:`TraceFormatError`, the only error raised.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.ingest.jfr_dump import Dump, parse_dump
from willowisp.model.spec import FORMAT_MAJOR, FORMAT_MINOR, K, Outcome, Reason
from willowisp.wtrace.payload import AttrValue, DecodedEvents, Record
from willowisp.wtrace.reader import Chunk, TraceFile

NAME = "jfr"
STORED = "jfr-json"
MAGIC = b"FLR\x00"
MAX_JSON_BYTES = 512 * 1024 * 1024  # the parsed objects take ~8 times this in memory
MAX_EVENTS = 5_000_000
MAX_DUMPS = 1_000  # thread dumps kept (the last ones): only the final run of them matters
MAX_DUMP_CHARS = 8 * 1024 * 1024
JFR_TIMEOUT_S = 600.0
STACK_DEPTH = 12

# The event types decode uses: `jfr print --events` keeps only these (fast, small).
EVENTS = (
    "jdk.JVMInformation",
    "jdk.ThreadStart",
    "jdk.ThreadEnd",
    "jdk.ThreadSleep",
    "jdk.ThreadPark",
    "jdk.JavaMonitorEnter",
    "jdk.JavaMonitorWait",
    "jdk.VirtualThreadStart",
    "jdk.VirtualThreadEnd",
    "jdk.VirtualThreadPinned",
    "jdk.ThreadDump",
)

R_PROCESS, R_UNIT, R_RESOURCE, R_LOCATION = 1, 2, 3, 4
_JSON_HEAD = re.compile(rb'\A(?:\xef\xbb\xbf)?\s*\{\s*"recording"\s*:\s*\{\s*"events"\s*:')
_JDK_PREFIXES = ("java/", "javax/", "jdk/", "sun/", "com/sun/")


class _BadEvent(Exception):
    """One event breaks the rules: skipped and counted."""


# -- the importer interface ---------------------------------------------------------------


def sniff(head: bytes) -> bool:
    """A binary recording (``FLR\\0``) or ``jfr print --json`` output."""
    return head.startswith(MAGIC) or _JSON_HEAD.match(head) is not None


def prepare(data: bytes, path: str) -> tuple[str, bytes]:
    """The JSON to store: a binary recording converted by the JDK, or the JSON as given.

    A binary recording goes through this module's exporter (:data:`EXPORTER_SOURCE`, run by
    the JDK's ``java``; the JSON shape of ``jfr print --json`` with only the fields decode
    reads, about a tenth of the size) and, when no ``javac`` is there to build it, through
    ``jfr print --json``. Raises TraceFormatError when the content is neither, when no JDK
    is installed (the message names the fix) or when the JDK rejects the recording.
    """
    if data.startswith(MAGIC):
        return STORED, _convert(data, path)
    if _JSON_HEAD.match(data[:65536]):
        return STORED, data
    raise TraceFormatError(f"{path}: not a JFR recording (no FLR header, no jfr JSON)")


def decode(stored_format: str, data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    """The stored JSON -> one process (a TraceFile) and notes about skipped events."""
    if stored_format != STORED:
        raise TraceFormatError(f"{path}: stored format {stored_format!r} is not {STORED!r}")
    events = _events(data, path)
    rec = _Recording()
    total = skipped = 0
    first = ""
    for e in events:
        etype = e.get("type") if isinstance(e, dict) else None
        handler = _HANDLERS.get(etype) if isinstance(etype, str) else None
        if handler is None:
            continue  # another event type: not ours to judge
        total += 1
        try:
            handler(rec, _values(e))
        except _BadEvent as exc:
            skipped += 1
            first = first or f"{e.get('type')}: {exc}"
    if total == 0:
        raise TraceFormatError(f"{path}: no JFR thread, monitor or park events in the recording")
    if skipped == total:
        raise TraceFormatError(f"{path}: every one of {total} JFR events is malformed ({first})")
    notes = []
    if skipped:
        notes.append(
            f"{path}: {skipped} of {_plural(total, 'JFR event')} skipped as malformed "
            f"(first: {first}); the others were imported"
        )
    rec.apply_dumps()
    return [rec.trace_file(path, len(data))], notes


# -- running the jfr tool -----------------------------------------------------------------


def jdk_tool(name: str) -> str | None:
    """A JDK executable (``jfr``, ``java``, ``javac``): ``$JAVA_HOME/bin``, else ``PATH``."""
    home = os.environ.get("JAVA_HOME", "")
    if home:
        candidate = os.path.join(home, "bin", name)
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name)


def _convert(data: bytes, path: str) -> bytes:
    java, tool = jdk_tool("java"), jdk_tool("jfr")
    # javac from java's own JDK: a newer javac's classes would not load in an older java
    javac = os.path.join(os.path.dirname(os.path.realpath(java)), "javac") if java else None
    if javac is not None and not os.access(javac, os.X_OK):
        javac = None
    if tool is None and (java is None or javac is None):
        raise TraceFormatError(
            f"{path}: reading a JFR recording needs a JDK (its jfr tool, or java and javac), "
            "and none was found: install a JDK 11+ and set JAVA_HOME to it (or put its bin/ "
            "on PATH)"
        )
    with tempfile.TemporaryDirectory(prefix="wisp-jfr-") as tmp:
        src, err = os.path.join(tmp, "in.jfr"), os.path.join(tmp, "stderr")
        with open(src, "wb") as f:
            f.write(data)
        classes = _exporter(java, javac) if java and javac else None
        if classes is not None and java is not None:
            cmd = [java, "-XX:+UseSerialGC", "-cp", classes, EXPORTER_CLASS, src]
            cmd += [",".join(EVENTS), str(STACK_DEPTH)]
        else:
            assert tool is not None
            cmd = [tool, "print", "--json", "--stack-depth", str(STACK_DEPTH)]
            cmd += ["--events", ",".join(EVENTS), src]
        with open(err, "w+b") as errors:
            out, status = _run_bounded(cmd, errors, path)
            errors.seek(0)
            why = errors.read(65536).decode("utf-8", "replace").strip().splitlines()
    if status != 0:
        msg = why[-1] if why else f"exit status {status}"
        raise TraceFormatError(f"{path}: the JDK could not read the recording: {msg[:200]}")
    return out


def _exporter(java: str, javac: str) -> str | None:
    """The exporter's class folder, compiled once per JDK into Willowisp's cache; None if
    it cannot be built (a JRE without javac, an unwritable cache)."""
    key = hashlib.sha256(f"{EXPORTER_SOURCE}\0{os.path.realpath(javac)}".encode()).hexdigest()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(cache, "willowisp", "jfr-export", key[:16])
    if os.path.exists(os.path.join(folder, f"{EXPORTER_CLASS}.class")):
        return folder
    try:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".build-", dir=os.path.dirname(folder))
        source = os.path.join(tmp, f"{EXPORTER_CLASS}.java")
        with open(source, "w", encoding="utf-8") as f:
            f.write(EXPORTER_SOURCE)
        built = subprocess.run(
            [javac, "-nowarn", "-d", tmp, source],
            capture_output=True,
            timeout=JFR_TIMEOUT_S,
            check=False,
        )
        if built.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        os.remove(source)
        try:
            os.rename(tmp, folder)
        except OSError:  # another import built it at the same time
            shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return folder


def _run_bounded(cmd: list[str], errors: Any, path: str) -> tuple[bytes, int]:
    """Run the tool, reading at most MAX_JSON_BYTES of its output within JFR_TIMEOUT_S."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
    except OSError as exc:
        raise TraceFormatError(f"{path}: cannot run {cmd[0]}: {exc.strerror or exc}") from exc
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(JFR_TIMEOUT_S, expire)
    timer.start()
    parts: list[bytes] = []
    size = 0
    try:
        assert proc.stdout is not None
        while block := proc.stdout.read(1 << 20):
            size += len(block)
            if size > MAX_JSON_BYTES:
                raise TraceLimitError(
                    f"{path}: `jfr print --json` wrote over {MAX_JSON_BYTES >> 20} MiB; record "
                    "fewer events (a threshold above 0 ms, or a shorter recording)"
                )
            parts.append(block)
        status = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    if expired.is_set():
        raise TraceFormatError(f"{path}: `jfr print --json` took over {JFR_TIMEOUT_S:.0f} s")
    return b"".join(parts), status


# -- the exporter -------------------------------------------------------------------------

# The JSON shape of `jfr print --json` with only what decode reads: threads (names and ids),
# classes by name, timestamps and durations as ISO-8601, and stack frames down to the first
# one outside the JDK. `jfr print --json` writes ~9 KB per event (each frame carries its
# class loader, package and module); this writes ~0.8 KB, and faster. Compiled once per
# JDK by its javac (JDK 17+ syntax), cached under ~/.cache/willowisp/jfr-export/. Its source
# ships as package data (ingest/java/WispJfrExport.java).
EXPORTER_CLASS = "WispJfrExport"
EXPORTER_SOURCE = (
    resources.files("willowisp.ingest")
    .joinpath("java", f"{EXPORTER_CLASS}.java")
    .read_text("utf-8")
)


# -- JSON values --------------------------------------------------------------------------


def _events(data: bytes, path: str) -> list[Any]:
    if len(data) > MAX_JSON_BYTES:
        raise TraceLimitError(f"{path}: over the {MAX_JSON_BYTES}-byte bound for JFR JSON")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"{path}: not JFR JSON: not UTF-8 text ({exc.reason})") from exc
    except (ValueError, RecursionError) as exc:
        raise TraceFormatError(f"{path}: not JFR JSON (truncated or malformed: {exc})") from exc
    events = doc.get("recording") if isinstance(doc, dict) else None
    events = events.get("events") if isinstance(events, dict) else None
    if not isinstance(events, list):
        raise TraceFormatError(f"{path}: not JFR JSON: no recording.events list")
    if len(events) > MAX_EVENTS:
        raise TraceLimitError(f"{path}: more than {MAX_EVENTS} JFR events (the bound)")
    return events


def _values(e: dict[str, Any]) -> dict[str, Any]:
    v = e.get("values")
    if not isinstance(v, dict):
        raise _BadEvent("no values object")
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
        raise _BadEvent(f"startTime {_repr(v)} is not an ISO-8601 time")
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
        raise _BadEvent(f"startTime {_repr(v)} is not an ISO-8601 time")
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    second = int(m.group(6) or 0)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise _BadEvent(f"startTime {_repr(v)} is not a valid time")
    secs = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        parts = [int(x) for x in zone[1:].split(":")]
        secs -= sign * (parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0))
    ns = secs * 1_000_000_000 + int((m.group(7) or "").ljust(9, "0"))
    if not 0 < ns <= _MAX_TIME:
        raise _BadEvent(f"startTime {_repr(v)} is out of range")
    if m.group(7) and len(_SECONDS) < 100_000:
        dot = v.index(".", 16)
        end = dot + 1 + len(m.group(7))
        _SECONDS[(v[:dot], v[end:])] = secs
    return ns


def duration_ns(v: Any) -> int:
    """A ``java.time.Duration`` string (``PT0.015S``, ``PT1M2S``, ``PT-0.5S``) -> ns."""
    m = _DURATION.fullmatch(v) if isinstance(v, str) and v != "PT" else None
    if m is None:
        raise _BadEvent(f"duration {_repr(v)} is not an ISO-8601 duration")
    hours, minutes = int(m.group(1) or 0), int(m.group(2) or 0)
    whole = int(m.group(4) or 0) * 1_000_000_000 + int((m.group(5) or "").ljust(9, "0"))
    seconds = -whole if m.group(3) else whole
    return (hours * 3600 + minutes * 60) * 1_000_000_000 + seconds


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _plural(n: int, word: str) -> str:
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


class _Recording:
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

    # units, resources, locations

    def unit(self, thread: Any, *, virtual: bool = False) -> int:
        if not isinstance(thread, dict):
            raise _BadEvent("no thread")
        jid, oid = _int(thread.get("javaThreadId")), _int(thread.get("osThreadId"))
        key: ThreadKey
        if jid is not None and 0 < jid < 1 << 62:
            key = ("java", jid)
        elif oid is not None and 0 < oid < 1 << 62:
            key = ("os", oid)
        else:
            raise _BadEvent("a thread with neither javaThreadId nor osThreadId")
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
            raise _BadEvent(f"negative duration {_repr(v.get('duration'))}")
        return u, t0, t0 + d, self.frame_loc(v)

    def apply_dumps(self) -> None:
        _apply_dumps(self)

    def trace_file(self, path: str, size: int) -> TraceFile:
        return _trace_file(self, path, size)


def _jvm_information(rec: _Recording, v: dict[str, Any]) -> None:
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


def _thread_start(rec: _Recording, v: dict[str, Any]) -> None:
    t = wall_ns(v.get("startTime"))
    if v.get("thread") is None and v.get("eventThread") is None:
        return  # a VM-internal thread JFR names no Java thread for: nothing to map
    u = rec.unit(v.get("thread") or v.get("eventThread"))
    parent = v.get("parentThread")
    p = rec.unit(parent) if isinstance(parent, dict) else 0
    if p and p != u:
        rec.units[u]["parent"] = p
        rec.row(t, _CREATE, p, K.UNIT_CREATE, 0, u, rec.frame_loc(v))
    rec.row(t, _START, u, K.UNIT_START, 0, p if p != u else 0)


def _thread_end(rec: _Recording, v: dict[str, Any], *, virtual: bool = False) -> None:
    t = wall_ns(v.get("startTime"))
    if v.get("thread") is None and v.get("eventThread") is None:
        return  # as for its start
    u = rec.unit(v.get("thread") or v.get("eventThread"), virtual=virtual)
    rec.ended[u] = min(t, rec.ended.get(u, t))
    rec.row(t, _END, u, K.UNIT_END, 0, 0)


def _virtual_start(rec: _Recording, v: dict[str, Any]) -> None:
    t = wall_ns(v.get("startTime"))
    rec.row(t, _START, rec.unit(v.get("eventThread"), virtual=True), K.UNIT_START, 0, 0)


def _virtual_end(rec: _Recording, v: dict[str, Any]) -> None:
    _thread_end(rec, v, virtual=True)


def _monitor_enter(rec: _Recording, v: dict[str, Any]) -> None:
    u, t0, t1, loc = rec.wait(v)
    address = _int(v.get("address"))
    if address is None:
        raise _BadEvent("monitor address is not an integer")
    r = rec.monitor(_class_name(v.get("monitorClass")) or "Object", address)
    prev = v.get("previousOwner")
    p = rec.unit(prev) if isinstance(prev, dict) else 0
    rec.row(t0, _BLOCK, u, K.UNIT_BLOCK, r, Reason.ACQUIRE, loc)
    if p and p != u:
        rec.row(t1, _RELEASE, p, K.LOCK_RELEASE, r, 0)
    rec.row(t1, _ENDWAIT, u, K.LOCK_ACQUIRED, r, 0, loc)
    rec.enters.append(_Enter(u, r, t1, p if p != u else 0))


def _monitor_wait(rec: _Recording, v: dict[str, Any]) -> None:
    u, t0, t1, loc = rec.wait(v)
    address = _int(v.get("address"))
    if address is None:
        raise _BadEvent("monitor address is not an integer")
    r = rec.monitor(_class_name(v.get("monitorClass")) or "Object", address)
    notifier = v.get("notifier")
    n = rec.unit(notifier) if isinstance(notifier, dict) else 0
    timed_out = v.get("timedOut") is True
    rec.row(t0, _BLOCK, u, K.UNIT_BLOCK, r, Reason.WAIT, loc)
    if n and n != u and not timed_out:
        # the notify happened inside the wait; before the wake, and not after n ended
        rec.rows.append((t1, _NOTIFY, n, int(K.SYNC_NOTIFY), r, 1, 0))
    rec.row(t1, _ENDWAIT, u, K.UNIT_WAKE, r, Outcome.TIMEOUT if timed_out else Outcome.OK)


def _thread_park(rec: _Recording, v: dict[str, Any]) -> None:
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
    rec.row(t1, _ENDWAIT, u, K.UNIT_WAKE, r, Outcome.TIMEOUT if timed_out else Outcome.OK)


def _thread_sleep(rec: _Recording, v: dict[str, Any]) -> None:
    u, t0, t1, loc = rec.wait(v)
    r = rec.resource(("sleep",), "sleep", "Thread.sleep")
    rec.row(t0, _BLOCK, u, K.UNIT_BLOCK, r, Reason.SLEEP, loc)
    rec.row(t1, _ENDWAIT, u, K.UNIT_WAKE, r, Outcome.OK)


def _virtual_pinned(rec: _Recording, v: dict[str, Any]) -> None:
    u, t0, _, loc = rec.wait(v)
    rec.units[u]["kind"] = "virtual-thread"
    carrier = v.get("carrierThread")
    c = rec.unit(carrier) if isinstance(carrier, dict) else 0
    rec.row(t0, _START + 1, u, K.UNIT_RUN, 0, c, loc)
    rec.pinned += 1
    if isinstance(reason := v.get("pinnedReason"), str) and "jfr_pinned_reason" not in rec.attrs:
        rec.attrs["jfr_pinned_reason"] = reason[:200]


def _thread_dump(rec: _Recording, v: dict[str, Any]) -> None:
    t = wall_ns(v.get("startTime"))
    text = v.get("result")
    if not isinstance(text, str):
        raise _BadEvent("thread dump without its text")
    rec.dumps.append(parse_dump(t, text[:MAX_DUMP_CHARS]))
    if len(rec.dumps) > MAX_DUMPS:
        del rec.dumps[0]


_HANDLERS = {
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


def _apply_dumps(rec: _Recording) -> None:
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


def _dump_monitor(rec: _Recording, addr: int, cls: str, monitor_of: dict[int, int]) -> int:
    """The resource of an object a dump names: JFR's monitor where the deadlock section
    pairs them (renamed by the object address, which is what a person sees in dumps)."""
    mon = monitor_of.get(addr)
    if mon is None:
        return rec.resource(("object", addr, cls), "monitor", f"{cls}@{addr:#x}")
    r = rec.monitor(cls.replace("/", "."), mon)
    rec.resources[r]["name"] = f"{cls}@{addr:#x}"
    return r


def _held_since_enter(rec: _Recording, u: int, r: int) -> bool:
    """Is the last contended entry into ``r`` u's own? Then that entry began the hold the
    dump shows, and it stays open (see _closing_releases)."""
    last = [e for e in rec.enters if e.res == r]
    if last and max(last, key=lambda e: e.acquired).unit == u:
        rec.held.add((u, r))
        return True
    return False


def _closing_releases(rec: _Recording) -> None:
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


def _trace_file(rec: _Recording, path: str, size: int) -> TraceFile:
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


def _clamp_notifies(rec: _Recording) -> None:
    """A notifier's sync.notify never after its own unit.end (a joined thread notifies its
    joiner as it ends, and JFR may stamp the joiner's wake a little later)."""
    if not rec.ended:
        return
    for i, (t, _, u, k, r, a, loc) in enumerate(rec.rows):
        if k == K.SYNC_NOTIFY and u in rec.ended and t >= rec.ended[u]:
            rec.rows[i] = (rec.ended[u], _CREATE, u, k, r, a, loc)
