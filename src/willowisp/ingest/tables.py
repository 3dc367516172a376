"""The small tables of a loaded trace: processes, units, resources, locations, faults.

Events are columns (see :mod:`willowisp.ingest.trace`); everything an event points to is a
row here, a frozen slotted value. Rows are numbered densely across the whole trace (a
"global index"), ordered by process and then by the number the agent gave them, so the
event columns can refer to them with one integer and analyses can gather their attributes
with numpy fancy indexing over small arrays built from these lists.

Inside a ``.wtrace`` file, 0 means "none" for unit, resource and location numbers; once
loaded, "none" is :data:`NO_INDEX` (-1), because 0 is a valid global index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

from willowisp.model.ids import EventId, ProcessId, UnitId, event_id, unit_id
from willowisp.wtrace.payload import AttrValue

UnitIndex = NewType("UnitIndex", int)  # dense index into Trace.units
ResourceIndex = NewType("ResourceIndex", int)  # dense index into Trace.resources
LocationIndex = NewType("LocationIndex", int)  # dense index into Trace.locations

NO_INDEX = -1
NO_UNIT = UnitIndex(NO_INDEX)  # an event done by no unit (agent metadata), a unit unknown
NO_RESOURCE = ResourceIndex(NO_INDEX)
NO_LOCATION = LocationIndex(NO_INDEX)

Attrs = tuple[tuple[str, AttrValue], ...]


@dataclass(frozen=True, slots=True)
class AgentStats:
    """The running totals of the last ``stats`` record a process wrote."""

    events: int = 0
    dropped: int = 0
    faults: int = 0
    cost_ns_per_event: int = 0
    by_boundary: str = ""  # JSON: the agent's cost per boundary (agent/boundaries.py)
    # the record's other attributes, each agent's own counters (Java's jfr_pinned, ...)
    extra: Attrs = ()


@dataclass(frozen=True, slots=True)
class Process:
    """One running program, merged from all its segment files."""

    index: int
    id: ProcessId
    pid: int
    host: str
    service: str
    runtime: str
    boot_id: str
    time_ns: str  # time-namespace identity
    fake_time: str  # fake-time library preloaded, '' if none
    simulated_offset_ns: int
    run_root: bool  # the process `willowisp run` itself started
    parent_process_id: str
    traceparent: str
    files: tuple[str, ...]  # its segments, in segment order
    stats: AgentStats
    attrs: Attrs  # the whole process record, for fields not lifted above

    def label(self) -> str:
        """``orders (pid 4242)``: how a person recognises the process (``orders`` alone when
        no pid is known: spans imported from a tracer carry none)."""
        return f"{self.service or '?'} ({self.pid_text})" if self.pid else self.service or "?"

    @property
    def pid_text(self) -> str:
        """``pid 4242``, or '' when no pid is known (imported spans)."""
        return f"pid {self.pid}" if self.pid else ""

    def track_name(self) -> str:
        """``orders (pid 4242, host-a)`` for a viewer's process track; what is unknown (an
        imported span's pid, a host) is left out."""
        known = ", ".join(x for x in (self.pid_text, self.host) if x)
        return f"{self.service or '?'} ({known})" if known else self.service or "?"

    def about(self, *more: str) -> str:
        """``pid 4242, orders, python``: the pid (when known), then ``more``, then the
        runtime (when known), comma separated: the parenthesis after a unit's name."""
        return ", ".join(x for x in (self.pid_text, *more, self.runtime) if x)


@dataclass(frozen=True, slots=True)
class Unit:
    """An execution unit: thread, asyncio task, goroutine, ..."""

    index: UnitIndex
    proc: int
    number: int  # the agent's unit number, unique within the process
    kind: str  # "unknown" when events name a unit that no record defines
    name: str
    parent: UnitIndex  # the creating unit, NO_UNIT if unknown
    coro: str
    loc: LocationIndex  # where it was created

    def id(self, process: Process) -> UnitId:
        return unit_id(process.id, self.number)


@dataclass(frozen=True, slots=True)
class Resource:
    """Something units wait on or synchronise through: a lock, a queue, an rpc, ..."""

    index: ResourceIndex
    proc: int
    number: int
    kind: str  # "unknown" when events name a resource that no record defines
    name: str
    loc: LocationIndex  # where it was created
    unit: UnitIndex  # for join resources: the unit whose end is awaited
    trace_id: str
    span_id: str
    parent_span_id: str
    protocol: str
    library: str
    method: str
    target: str
    peer: str
    attrs: Attrs  # the whole record


@dataclass(frozen=True, slots=True)
class Location:
    """A place in a program's source."""

    index: LocationIndex
    proc: int
    number: int
    file: str
    line: int
    func: str

    def where(self) -> str:
        """``bank.py:12``: the base name, so the same code reads the same on every machine."""
        base = self.file.replace("\\", "/").rsplit("/", 1)[-1] or "?"
        return f"{base}:{self.line}"


@dataclass(frozen=True, slots=True)
class Fault:
    """An error the agent caught inside itself (a ``fault`` record)."""

    proc: int
    number: int
    message: str
    where: str


@dataclass(frozen=True, slots=True)
class FileReport:
    """One trace file that was read: what it held and what was wrong with it."""

    path: str
    process_id: str
    events: int
    chunks: int
    problems: tuple[str, ...]  # corrupt chunks that were skipped
    truncated: str  # non-empty: the file ends inside a chunk (a note, not an error)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A bad input: not a trace, a newer format, an OS error, or corrupt chunks.

    ``partial`` is True when the file was damaged but its good chunks were still used.
    """

    path: str
    message: str
    partial: bool = False


def make_event_id(process: Process, seq: int) -> EventId:
    return event_id(process.id, seq)
