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
  give ``unit.end``. The new thread commits ThreadStart as it begins to run, so its time is
  the child's, after the parent's ``Thread.start`` call; a create that would fall inside a
  wait of the parent goes at that wait's start instead (the parent called ``start`` before
  it blocked), so it never ends the wait early; likewise a ``previousOwner``'s release and
  a ``notifier``'s notify, which carry the other thread's time (``_place_foreign``).
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

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from importlib import resources
from typing import Any

from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.ingest.jfr_events import (
    HANDLERS,
    NAME,
    STACK_DEPTH,
    BadEvent,
    Recording,
    duration_ns,
    plural,
    values,
    wall_ns,
)
from willowisp.wtrace.reader import TraceFile

__all__ = ["NAME", "STORED", "decode", "duration_ns", "jdk_tool", "prepare", "sniff", "wall_ns"]

STORED = "jfr-json"
MAGIC = b"FLR\x00"
MAX_JSON_BYTES = 512 * 1024 * 1024  # the parsed objects take ~8 times this in memory
MAX_EVENTS = 5_000_000
JFR_TIMEOUT_S = 600.0

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

_JSON_HEAD = re.compile(rb'\A(?:\xef\xbb\xbf)?\s*\{\s*"recording"\s*:\s*\{\s*"events"\s*:')


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
        whole = complete_chunks(data)
        if whole == 0:
            raise TraceFormatError(f"{ENDS_EARLY}: {_cut(data)}; no complete chunk to read")
        out = _convert(data[:whole], path)
        return STORED, out if whole == len(data) else _mark_cut(out, whole, len(data))
    if _JSON_HEAD.match(data[:65536]):
        return STORED, data
    raise TraceFormatError("not a JFR recording (no FLR header, no jfr JSON)")


def decode(stored_format: str, data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    """The stored JSON -> one process (a TraceFile) and notes about skipped events."""
    if stored_format != STORED:
        raise TraceFormatError(f"stored format {stored_format!r} is not {STORED!r}")
    doc = _document(data)
    events = _events(doc)
    rec = Recording()
    total = skipped = dumps = 0
    first = ""
    for e in events:
        etype = e.get("type") if isinstance(e, dict) else None
        handler = HANDLERS.get(etype) if isinstance(etype, str) else None
        if handler is None:
            continue  # another event type: not ours to judge
        total += 1
        dumps += etype == "jdk.ThreadDump"
        try:
            handler(rec, values(e))
        except BadEvent as exc:
            skipped += 1
            first = first or f"{e.get('type')}: {exc}"
    if total == 0:
        raise TraceFormatError("no JFR thread, monitor or park events in the recording")
    if skipped == total:
        raise TraceFormatError(f"every one of {total} JFR events is malformed ({first})")
    notes = []
    if skipped:
        notes.append(
            f"{path}: {skipped} of {plural(total, 'JFR event')} skipped as malformed "
            f"(first: {first}); the others were imported"
        )
    if not dumps:
        notes.append(
            f"{path}: no jdk.ThreadDump events: threads stuck for good on a monitor or a lock"
            " are invisible to this recording (JFR writes an event only when a wait ends);"
            " record with settings=default, whose thread dumps show them"
        )
    notes += _recording_notes(doc, path, virtual=_has_virtual(rec))
    rec.apply_dumps()
    return [rec.trace_file(path, len(data))], notes


# -- what the recording could not hold ----------------------------------------------------

ENDS_EARLY = "a JFR recording that ends early (truncated or still being written)"
CHUNK_HEADER_BYTES = 68
_VIRTUAL_EVENTS = ("jdk.VirtualThreadStart", "jdk.VirtualThreadEnd")


def complete_chunks(data: bytes) -> int:
    """How many leading bytes of a binary recording are whole chunks: every chunk header
    (``FLR\\0``, versions, then its own size as a big-endian u64) says how long the chunk is,
    so a file cut by a copy, a full disk or a JVM still writing it is cut inside the last
    one. A header that makes no sense is left for the JDK to judge (it names the damage)."""
    at = 0
    while at < len(data):
        if len(data) - at < CHUNK_HEADER_BYTES:
            # a second chunk's header cut short; a first one is left to the JDK too (a
            # few bytes of anything that start FLR\\0 are not a recording to speak of)
            return at if at and MAGIC.startswith(data[at : at + 4]) else len(data)
        size = int.from_bytes(data[at + 8 : at + 16], "big")
        if data[at : at + 4] != MAGIC or size < CHUNK_HEADER_BYTES:
            return len(data)
        if at + size > len(data):
            return at
        at += size
    return at


def _cut(data: bytes) -> str:
    """Where the chunk that is cut begins and how much of it is there, for the message."""
    at = complete_chunks(data)
    if len(data) - at < CHUNK_HEADER_BYTES:
        return f"the file ends at byte {len(data)}, inside the header of the chunk at byte {at}"
    size = int.from_bytes(data[at + 8 : at + 16], "big")
    return f"its chunk at byte {at} is {size} bytes long, the file ends at byte {len(data)}"


def _mark_cut(out: bytes, whole: int, size: int) -> bytes:
    """The exporter's JSON with a top-level ``willowisp.truncated`` member, so that decode —
    now, or later from the ``.wtrace`` that stores it — says the recording was cut."""
    body = out.rstrip()
    if not body.endswith(b"}"):
        return out  # not the JSON object decode expects: decode will say so
    mark = json.dumps({"truncated": {"kept": whole, "size": size}})
    return body[:-1] + b', "willowisp": ' + mark.encode() + b"}\n"


def _has_virtual(rec: Recording) -> bool:
    return any(u.get("kind") == "virtual-thread" for u in rec.units.values())


def _recording_notes(doc: dict[str, Any], path: str, virtual: bool) -> list[str]:
    notes = []
    mark = doc.get("willowisp")
    cut = mark.get("truncated") if isinstance(mark, dict) else None
    if isinstance(cut, dict) and isinstance(cut.get("kept"), int):
        notes.append(
            f"{path}: {ENDS_EARLY}: read its complete chunks, the first {cut['kept']} of "
            f"{cut.get('size')} bytes; the events after them are lost"
        )
    recording = doc.get("recording")
    enabled = recording.get("enabled") if isinstance(recording, dict) else None
    off = [e for e in _VIRTUAL_EVENTS if isinstance(enabled, dict) and enabled.get(e) is False]
    if off:
        # Whether the program ran any cannot be told (that is what was not recorded), so
        # the note is given whenever the JVM had the events and the settings left them out.
        seen = (
            "; the ones seen show only in their other events, with no start or end"
            if virtual
            else ""
        )
        notes.append(
            f"{path}: virtual threads were not recorded: {' and '.join(off)} disabled in its"
            f" settings (as in the JDK's default and profile settings){seen}; record with"
            " the settings file docs/import.md shows (wisp.jfc) to see them"
        )
    return notes


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
            "reading a JFR recording needs a JDK (its jfr tool, or java and javac), "
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
        raise TraceFormatError(f"the JDK could not read the recording: {msg[:200]}")
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
        raise TraceFormatError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from exc
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
                    f"`jfr print --json` wrote over {MAX_JSON_BYTES >> 20} MiB; record "
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
        raise TraceFormatError(f"`jfr print --json` took over {JFR_TIMEOUT_S:.0f} s")
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


def _document(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_JSON_BYTES:
        raise TraceLimitError(f"over the {MAX_JSON_BYTES}-byte bound for JFR JSON")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise TraceFormatError(f"not JFR JSON: not UTF-8 text ({exc.reason})") from exc
    except (ValueError, RecursionError) as exc:
        raise TraceFormatError(f"not JFR JSON (truncated or malformed: {exc})") from exc
    if not isinstance(doc, dict):
        raise TraceFormatError("not JFR JSON: no recording.events list")
    return doc


def _events(doc: dict[str, Any]) -> list[Any]:
    events = doc.get("recording")
    events = events.get("events") if isinstance(events, dict) else None
    if not isinstance(events, list):
        raise TraceFormatError("not JFR JSON: no recording.events list")
    if len(events) > MAX_EVENTS:
        raise TraceLimitError(f"more than {MAX_EVENTS} JFR events (the bound)")
    return events
