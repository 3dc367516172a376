"""Naming things for people: units, resources, places, durations and times in findings.

Every analysis tells its story with these, so the same unit or lock reads the same way in
every finding. Source places are ``file.py:LINE`` with the base name only: the same code
then reads the same on every machine and in every run (finding ids depend on it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from willowisp.analysis.finding import ResourceRef, UnitRef
from willowisp.causality.hops import request_path
from willowisp.ingest.trace import Trace


def unit_ref(trace: Trace, u: int) -> UnitRef:
    unit = trace.units[u]
    p = trace.processes[unit.proc]
    return UnitRef(str(trace.unit_id(u)), p.pid, p.host, p.service, p.runtime, unit.kind, unit.name)


def unit_label(trace: Trace, u: int) -> str:
    """``Thread-1 (pid 4242, orders, python)``; the kind is named when it is not a thread."""
    unit = trace.units[u]
    p = trace.processes[unit.proc]
    kind = "" if unit.kind == "thread" else unit.kind
    return f"{unit.name} ({', '.join(x for x in (kind, p.about(p.service or '?')) if x)})"


def track_label(trace: Trace, u: int, runtime_own: bool = False) -> str:
    """A unit's track in a viewer: ``thread worker-3``, ``goroutine main.consume #8``; a
    name that already says its kind (an unnamed tokio task, ``task 1``) is not prefixed
    again, and a runtime's or agent's own unit says so (``[runtime]``)."""
    unit = trace.units[u]
    label = unit.name if unit.name.startswith(f"{unit.kind} ") else f"{unit.kind} {unit.name}"
    return f"{label} [runtime]" if runtime_own else label


def unit_names(trace: Trace, units: Sequence[int]) -> dict[int, str]:
    """Short names for units mentioned together: the bare name where it is unambiguous,
    ``name of service`` (or ``name of service pid N``) where two share it."""
    out: dict[int, str] = {}
    names = [trace.units[u].name for u in units]
    for u in units:
        unit = trace.units[u]
        p = trace.processes[unit.proc]
        if names.count(unit.name) == 1:
            out[u] = unit.name
        else:
            same_service = [
                v
                for v in units
                if trace.units[v].name == unit.name
                and trace.processes[trace.units[v].proc].service == p.service
            ]
            out[u] = f"{unit.name} of {p.service}" + (
                f" pid {p.pid}" if len(same_service) > 1 else ""
            )
    return out


def event_where(trace: Trace, i: int) -> str:
    """The source place of event i, '' if the agent gave none."""
    loc = int(trace.events.loc[i]) if i >= 0 else -1
    return trace.locations[loc].where() if loc >= 0 else ""


HOP_KINDS = ("rpc", "message", "spawn")


def resource_where(trace: Trace, r: int) -> str:
    """Where the resource was created; for a request, where the program sent it.

    A request's resource is created inside the HTTP library (``client.py:1340`` says
    nothing), so for hop resources the place of the first event with a location (the
    program's ``urlopen`` call) comes first, and the creation place is the fallback.
    """
    res = trace.resources[r]
    first_event = ""
    if res.kind in HOP_KINDS or res.loc < 0:
        i = int(trace.first_located_event[r])
        first_event = trace.locations[int(trace.events.loc[i])].where() if i >= 0 else ""
    if res.kind in HOP_KINDS and first_event:
        return first_event
    return trace.locations[res.loc].where() if res.loc >= 0 else first_event


def resource_name(trace: Trace, r: int) -> str:
    """A request is ``METHOD /path`` (no host or port: those change per run); anything else
    its bound name, else ``kind #n``."""
    res = trace.resources[r]
    if res.kind in ("rpc", "message") and (res.method or res.target):
        return " ".join(x for x in (res.method, request_path(res.target)) if x)
    return res.name or f"{res.kind} #{res.number}"


# A standalone number in a command line (a port, a pid, a count), not a digit inside a word
# (``python3``, ``sha256``).
_NUMBER = re.compile(r"(?<![A-Za-z_\d])\d+")


def command_key(command: str) -> str:
    """A child process's command line as a key that survives a re-run: every path by its
    base name, every standalone number folded to ``N`` — ``/root/.cache/demo/go/inventory
    36305 39343`` is ``inventory N N``. Ports and temporary folders change per run; what
    program was started with what shape of arguments does not."""
    # a path cut short when the command line was recorded ends in "/": its last folder
    words = [w.rstrip("/").rsplit("/", 1)[-1] or w if "/" in w else w for w in command.split()]
    return _NUMBER.sub("N", " ".join(words))


def stable_name(trace: Trace, r: int) -> str:
    """:func:`resource_name`, with a spawned child's command line as :func:`command_key`:
    the name ``diff`` matches runs by."""
    if trace.resources[r].kind == "spawn":
        return command_key(resource_name(trace, r))
    return resource_name(trace, r)


def possessive(name: str) -> str:
    """``stock's``, ``orders'``."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def resource_ref(trace: Trace, r: int) -> ResourceRef:
    return ResourceRef(trace.resources[r].kind, resource_name(trace, r), resource_where(trace, r))


def at(where: str) -> str:
    """`` at bank.py:12`` or nothing."""
    return f" at {where}" if where else ""


def fmt_duration(ns: int, digits: int = 1) -> str:
    """A duration a person reads at a glance: 12 ns, 850.0 us, 3.2 ms, 2.0 s."""
    a = abs(ns)
    if a < 1_000:
        return f"{ns} ns"
    if a < 1_000_000:
        return f"{ns / 1e3:.{digits}f} µs"
    if a < 1_000_000_000:
        return f"{ns / 1e6:.{digits}f} ms"
    return f"{ns / 1e9:.{digits}f} s"


def fmt_wall(raw_ns: int) -> str:
    """Raw (wall) time as UTC with microseconds: ``12:00:00.123456``."""
    seconds, ns = divmod(raw_ns, 1_000_000_000)
    t = datetime.fromtimestamp(seconds, tz=UTC) + timedelta(microseconds=ns // 1000)
    return t.strftime("%H:%M:%S.%f")


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def join_words(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def services_of(trace: Trace, procs: Sequence[int]) -> str:
    """``orders, stock``: the distinct services of some processes, sorted."""
    return ", ".join(sorted({trace.processes[p].service or "?" for p in procs}))
