"""The text of a JFR ``jdk.ThreadDump`` event (the ``jstack`` / ``Thread.print`` format): who
holds which monitor, who waits to lock which, and the "Found one Java-level deadlock"
sections. A thread stuck forever never produces a ``JavaMonitorEnter``, so these dumps are
how :mod:`willowisp.ingest.jfr` sees it; this module only reads the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_REPORT_CHARS = 4096


@dataclass(slots=True)
class DumpThread:
    tid: int
    name: str
    state: str
    waiting_to_lock: list[tuple[int, str, tuple[str, int, str] | None]] = field(
        default_factory=list
    )
    locked: list[tuple[int, str, tuple[str, int, str] | None]] = field(default_factory=list)
    waiting_on: list[int] = field(default_factory=list)
    parking_for: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Dump:
    time: int
    threads: dict[int, DumpThread]
    deadlock: str  # the "Found one Java-level deadlock" sections, '' if none
    monitor_of: dict[int, int]  # object address -> monitor address (from those sections)


_DUMP_THREAD = re.compile(r'^"(?P<name>(?:[^"\\]|\\.)*)"\s+(?:#(?P<tid>\d{1,18}))?')
_DUMP_STATE = re.compile(r"^\s+java\.lang\.Thread\.State: (\S+)")
_DUMP_FRAME = re.compile(r"^\s+at (?P<cls>[\w$.<>/]+)\.(?P<m>[\w$<>]+)\((?P<src>[^)]*)\)")
_DUMP_LOCK = re.compile(
    r"^\s+- (?P<what>waiting to lock|waiting to re-lock in wait\(\)|locked|waiting on"
    r"|parking to wait for)\s+<0x(?P<addr>[0-9a-fA-F]+)>(?: \(a (?P<cls>[^)]+)\))?"
)
_DUMP_DEADLOCK_MONITOR = re.compile(
    r"monitor 0x(?P<mon>[0-9a-fA-F]+) \(object 0x(?P<obj>[0-9a-fA-F]+), a (?P<cls>[^)]+)\)"
)
_DEADLOCK_HEAD = "Found one Java-level deadlock"


def parse_dump(time: int, text: str) -> Dump:
    """The facts of one ``jdk.ThreadDump`` text (the format of ``jstack`` / ``Thread.print``)."""
    threads: dict[int, DumpThread] = {}
    current: DumpThread | None = None
    frame: tuple[str, int, str] | None = None
    cut = text.find(_DEADLOCK_HEAD)
    body, deadlock = (text, "") if cut < 0 else (text[:cut], text[cut:])
    for line in body.splitlines():
        if line.startswith('"'):
            m = _DUMP_THREAD.match(line)
            tid = m.group("tid") if m else None
            current = DumpThread(int(tid), m.group("name"), "") if m and tid else None
            if current is not None:
                threads[current.tid] = current
            frame = None
        elif current is None:
            continue
        elif m := _DUMP_STATE.match(line):
            current.state = m.group(1)
        elif m := _DUMP_FRAME.match(line):
            frame = _dump_place(m.group("cls"), m.group("m"), m.group("src"))
        elif m := _DUMP_LOCK.match(line):
            _dump_lock(current, m, frame)
    monitor_of = {
        int(m.group("obj"), 16): int(m.group("mon"), 16)
        for m in _DUMP_DEADLOCK_MONITOR.finditer(deadlock)
    }
    return Dump(time, threads, deadlock[:MAX_REPORT_CHARS], monitor_of)


def _dump_lock(t: DumpThread, m: re.Match[str], frame: tuple[str, int, str] | None) -> None:
    addr, cls, what = int(m.group("addr"), 16), m.group("cls") or "Object", m.group("what")
    if what == "locked":
        t.locked.append((addr, cls, frame))
    elif what == "waiting on":
        t.waiting_on.append(addr)
    elif what == "parking to wait for":
        t.parking_for.append(addr)
    else:
        t.waiting_to_lock.append((addr, cls, frame))


def _dump_place(cls: str, method: str, src: str) -> tuple[str, int, str] | None:
    """``Deadlock.grab(Deadlock.java:29)`` -> (file, line, func); None without a line."""
    src = src.rsplit("/", 1)[-1]  # drop "java.base@17.0.15/"
    file, _, line = src.rpartition(":")
    if not file or not line.isdigit():
        return None
    package = cls.rsplit(".", 1)[0].replace(".", "/") if "." in cls else ""
    return (f"{package}/{file}" if package else file, int(line), f"{cls}.{method}")
