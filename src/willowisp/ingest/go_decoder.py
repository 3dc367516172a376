"""The Go event stream (what ``wisp-goimport`` writes, docs/import.md) decoded into one
process's records and events: goroutines as units, waits on resources keyed by what is
waited on and where, unblocks as notify/wake pairs, scheduling, GC, user annotations, and
— in agent mode — the Go agent's own events logged on the goroutine that did them. The
mapping and its trade-offs are described in :mod:`willowisp.ingest.go_trace`, which reads
the stream line by line and hands each line to :class:`Decoder` (one ``on_<type>`` method
per line type, :data:`HANDLERS`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from willowisp.errors import TraceFormatError
from willowisp.model.spec import FORMAT_MAJOR, FORMAT_MINOR, K, Outcome, Reason
from willowisp.wtrace.payload import AttrValue, DecodedEvents, Record
from willowisp.wtrace.reader import Chunk, TraceFile

NAME = "go"
STORED = "go-events"
AGENT_STORED = "go-exectrace"  # the Go agent's raw execution trace (see the module doc)
AGENT_RES_BASE = 1 << 31  # this decoder's resource numbers in agent mode
AGENT_LOC_BASE = 1 << 31  # ... and location numbers
AGENT_SEQ_BASE = 1 << 40  # ... and the first sequence number
AGENT_STREAM_SPAN = 1 << 24  # numbers per stream of one process (streams count from 1)
MAX_AGENT_HEADER = 4096
# Goroutines of the agent itself and of os/signal (which the agent starts): never the
# program's, so never stuck or leaked.
AGENT_FUNCS = ("github.com/willowisp/willowisp/agents/go/wisp.", "os/signal.")
# Event kinds a "wisp" log may carry: waits, locks, queues, notifications, data, hops.
_AGENT_KINDS = frozenset(
    int(k)
    for k in (
        K.UNIT_BLOCK,
        K.UNIT_WAKE,
        K.LOCK_ACQUIRED,
        K.LOCK_RELEASE,
        K.QUEUE_PUT,
        K.QUEUE_GET,
        K.SYNC_NOTIFY,
        K.JOIN_DONE,
        K.DATA_ACCESS,
        K.MSG_SEND,
        K.MSG_RECV,
        K.RPC_REPLY,
        K.RPC_RESPONSE,
        K.PROC_START,
    )
)
STREAM_FORMAT = 1  # the helper's "format" this reader understands

MAX_LINES = 20_000_000
MAX_ANNOTATIONS = 10_000  # tasks, regions and logs each, kept in the process record

R_PROCESS, R_UNIT, R_RESOURCE, R_LOCATION = 1, 2, 3, 4


class BadLine(Exception):
    """One stream line breaks the rules: skipped and counted."""


# What a wait is, from the runtime's reason: (resource kind, name, Reason).
_BY_REASON: dict[str, tuple[str, str, int]] = {
    "chan send": ("channel", "chan send", Reason.PUT),
    "chan receive": ("channel", "chan receive", Reason.GET),
    "select": ("select", "select", Reason.WAIT),
    "sync.(*Cond).Wait": ("condition", "sync.Cond", Reason.WAIT),
    "sleep": ("sleep", "sleep", Reason.SLEEP),
    "network": ("network", "network", Reason.IO),
}
# The sync function on a "sync" wait's stack → (kind, name, Reason); else a semaphore.
_SYNC_FUNCS: dict[str, tuple[str, str, int]] = {
    "sync.(*Mutex).Lock": ("lock", "sync.Mutex", Reason.ACQUIRE),
    "sync.(*RWMutex).Lock": ("rwlock", "sync.RWMutex", Reason.ACQUIRE),
    "sync.(*RWMutex).RLock": ("rwlock", "sync.RWMutex", Reason.ACQUIRE_SHARED),
    "sync.(*WaitGroup).Wait": ("waitgroup", "sync.WaitGroup", Reason.WAIT),
}
# For waits begun before the trace (their reason is unknown): the stack tells.
_REASON_BY_FUNC: dict[str, str] = {
    "runtime.chanrecv1": "chan receive",
    "runtime.chanrecv2": "chan receive",
    "runtime.chansend1": "chan send",
    "runtime.selectgo": "select",
    "runtime.block": "forever",
    "sync.(*Cond).Wait": "sync.(*Cond).Wait",
    "time.Sleep": "sleep",
}
# Resource kinds a goroutine wakes another on by doing something (sending, unlocking...).
_SYSTEM_REASONS = frozenset({"system goroutine wait", "GC background sweeper wait"})
_OK = int(Outcome.OK)
_MAX = 1 << 63
# plain ints for the hot path (IntEnum members are slower to store and to convert)
_RUN, _YIELD, _BLOCK, _NOTIFY, _WAKE = (
    int(K.UNIT_RUN),
    int(K.UNIT_YIELD),
    int(K.UNIT_BLOCK),
    int(K.SYNC_NOTIFY),
    int(K.UNIT_WAKE),
)
_SEND, _RPC = int(K.MSG_SEND), int(Reason.RPC)
_RESPONSE = int(K.RPC_RESPONSE)
MAX_OPEN_CALLS = 100_000  # requests awaiting their reply, remembered (Decoder.callers)
SYNC_KINDS = frozenset(
    {"channel", "select", "condition", "lock", "rwlock", "waitgroup", "semaphore"}
)


def classify(reason: str, funcs: list[str]) -> tuple[str, str, int]:
    """A wait's (resource kind, resource name, Reason) from the runtime's reason string and
    the functions on its stack (top first)."""
    if not reason:
        reason = next((_REASON_BY_FUNC[f] for f in funcs if f in _REASON_BY_FUNC), "")
        if not reason and any(f.startswith("sync.") for f in funcs):
            reason = "sync"
        if not reason and any(f.startswith("internal/poll.") for f in funcs):
            reason = "network"
    if reason in _BY_REASON:
        return _BY_REASON[reason]
    if reason == "forever" or reason.endswith("(nil chan)") or "no cases" in reason:
        kind = "select" if "runtime.block" in funcs or "select" in reason else "channel"
        return kind, reason, Reason.WAIT
    if reason == "sync" or reason.startswith("sync."):
        for f in funcs:
            if f in _SYNC_FUNCS:
                return _SYNC_FUNCS[f]
        name = next((f for f in funcs if f.startswith("sync.")), "sync")
        return "semaphore", name, Reason.ACQUIRE
    return "notify", reason or "unknown wait (began before the trace)", Reason.WAIT


@dataclass(slots=True)
class _G:
    """A goroutine as the decoder knows it."""

    unit: int  # its unit number in the process (dense, from 1)
    goid: int
    name: str
    parent: int = 0  # creating unit number
    loc: int = 0  # where it was created
    started: bool = False
    sys: bool = False
    waiting: int = 0  # resource number of the wait in progress, 0 if none
    waiting_kind: str = ""
    agent: bool = False  # agent mode: one of the agent's own goroutines (its waits are not written)
    presumed: bool = False  # agent mode: sys only because it predates the agent (see on_exist)
    agent_wait: int = 0  # agent mode: the resource of an open "wisp" unit.block, 0 if none
    absorbed: bool = False  # agent mode: a runtime block inside agent_wait awaits its unblock
    ended: bool = False


@dataclass(slots=True)
class Decoder:
    path: str
    locs: dict[int, tuple[str, str, int]] = field(default_factory=dict)  # id -> func, file, line
    stacks: dict[int, list[str]] = field(default_factory=dict)  # id -> functions, top first
    # (reason, stack, place) -> (resource, Reason, kind): a busy trace repeats a few waits
    waits: dict[tuple[str, int, int], tuple[int, int, str]] = field(default_factory=dict)
    gs: dict[int, _G] = field(default_factory=dict)  # goid -> goroutine (ever seen)
    resources: dict[tuple[str, str, int], int] = field(default_factory=dict)
    res_records: list[Record] = field(default_factory=list)
    # event columns: kind, unit, time, res, arg, loc
    # Flat: six ints per event (kind, unit, time, res, arg, loc), reshaped once at the end.
    rows: list[int] = field(default_factory=list)
    go_version: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    live_sys: set[int] = field(default_factory=set)
    clock_pairs: int = 0
    gc_cycles: int = 0
    stw_pauses: int = 0
    stw_ns: int = 0
    stw_began: int = -1
    tasks: list[dict[str, Any]] = field(default_factory=list)
    regions: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    dropped_annotations: int = 0
    last_time: int = 0
    # agent mode (a go-exectrace stream): the agent's process id, else "" (an import)
    agent_process: str = ""
    unit_base: int = 0  # unit number = base + ... (agent mode: base 1 + goroutine id)
    res_base: int = 0
    loc_base: int = 0
    first_seq: int = 1
    time_shift: int | None = None  # agent mode: mono - trace, from the first clock snapshot
    stopper: int = -1  # agent mode: the goroutine that logged "stop"
    # agent mode: rpc resource -> the goroutine that sent the request and waits for its
    # reply. Invariant: an entry lives from the send to the reply (a call never answered
    # keeps its entry; at most MAX_OPEN_CALLS are kept).
    callers: dict[int, _G] = field(default_factory=dict)

    # -- helpers ------------------------------------------------------------------------

    # The hot path: a busy trace has hundreds of thousands of run/block/unblock lines, so
    # these checks are written for speed (``type(x) is int`` also refuses booleans).

    def time(self, line: dict[str, Any]) -> int:
        t = line.get("time")
        if type(t) is not int or t < 0 or t >= 1 << 63:
            raise BadLine(f"time {t!r} is not a non-negative integer")
        if self.time_shift:
            t = max(0, min(t + self.time_shift, _MAX - 1))
        # The reader orders events; keep the columns non-decreasing whatever happens.
        self.last_time = max(self.last_time, t)
        return self.last_time

    def goroutine(self, line: dict[str, Any], key: str = "g") -> _G:
        g = line.get(key)
        found = self.gs.get(g) if type(g) is int else None
        if found is not None:
            return found
        if type(g) is not int or g < 0:
            raise BadLine(f"{key} {g!r} is not a goroutine id")
        # named later or never: the stream did not introduce it
        name = f"goroutine #{g}"
        if self.agent_process:
            if g >= (1 << 32) - 1:
                raise BadLine(f"goroutine id {g} is too large for a unit number")
            unit = self.unit_base + g
            if g == 1:
                # Goroutine 1 runs runtime.main: the program's main. The agent starts the
                # tracer during init, so its first stack would name an init function.
                name = "main.main #1"
        else:
            unit = len(self.gs) + 1
        found = self.gs[g] = _G(unit, g, name)
        return found

    def known(self, line: dict[str, Any], key: str) -> _G | None:
        g = line.get(key)
        return self.gs.get(g) if isinstance(g, int) and not isinstance(g, bool) else None

    def loc(self, line: dict[str, Any], key: str = "at") -> int:
        v = line.get(key, 0)
        return self.loc_base + v if isinstance(v, int) and v in self.locs else 0

    def emit(self, kind: int, unit: int, t: int, res: int = 0, arg: int = 0, loc: int = 0) -> None:
        self.rows.extend((int(kind), unit, t, res, arg, loc))

    def start(self, g: _G, t: int) -> None:
        if not g.started:
            g.started = True
            self.emit(K.UNIT_START, g.unit, t, 0, g.parent)

    def resource(self, kind: str, name: str, loc: int) -> int:
        key = (kind, name, loc)
        r = self.resources.get(key)
        if r is None:
            r = self.resources[key] = self.res_base + len(self.resources) + 1
            attrs: list[tuple[str, AttrValue]] = [("kind", kind), ("name", name)]
            if loc:
                attrs.append(("loc", loc))
            self.res_records.append(Record(R_RESOURCE, r, tuple(attrs)))
        return r

    def annotate(self, into: list[dict[str, Any]], item: dict[str, Any]) -> None:
        if len(into) < MAX_ANNOTATIONS:
            into.append(item)
        else:
            self.dropped_annotations += 1

    # -- lines --------------------------------------------------------------------------

    def header(self, line: dict[str, Any]) -> None:
        fmt = line.get("format")
        if fmt != STREAM_FORMAT:
            raise TraceFormatError(
                f"wisp-goimport stream format {fmt!r}; this reader reads format {STREAM_FORMAT}"
                " (rebuild the helper from the same release)"
            )
        self.go_version = str(line.get("go", ""))

    def on_loc(self, line: dict[str, Any]) -> None:
        i, func, file, ln = line.get("id"), line.get("func"), line.get("file"), line.get("line")
        if not (type(i) is int and 0 < i < 1 << 32 and isinstance(func, str)):
            raise BadLine("a loc line without an id and a function")
        self.locs[i] = (
            func,
            file if isinstance(file, str) else "",
            ln if type(ln) is int and 0 <= ln < 1 << 31 else 0,
        )

    def on_stack(self, line: dict[str, Any]) -> None:
        i, locs = line.get("id"), line.get("locs")
        if type(i) is not int or not isinstance(locs, list):
            raise BadLine("a stack line without an id and a list of locs")
        self.stacks[i] = [self.locs[x][0] for x in locs if type(x) is int and x in self.locs]

    def on_sync(self, line: dict[str, Any]) -> None:
        trace_t, wall = line.get("trace"), line.get("wall")
        if self.agent_process:
            mono = line.get("mono")
            if type(trace_t) is int and type(mono) is int:
                self.clock_pairs += 1
                if self.time_shift is None:
                    self.time_shift = mono - trace_t
            return  # the agent writes the anchors
        if type(trace_t) is int and type(wall) is int and 0 <= trace_t < _MAX and 0 < wall < _MAX:
            self.emit(K.CLOCK_ANCHOR, 0, trace_t, 0, wall)
            self.clock_pairs += 1

    def on_create(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        g = self.goroutine(line)
        fn = line.get("fn")
        if isinstance(fn, str) and fn:
            g.name = f"{fn} #{g.goid}"
        g.agent = self.agent_func(fn)
        g.sys = line.get("sys") is True or g.agent
        g.loc = self.loc(line)
        creator = self.known(line, "by")
        if creator is not None and creator is not g:
            g.parent = creator.unit
            self.start(creator, t)
            self.emit(K.UNIT_CREATE, creator.unit, t, 0, g.unit, g.loc)

    def on_exist(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        g = self.goroutine(line)
        fn = line.get("fn")
        if isinstance(fn, str) and fn:
            g.name = f"{fn} #{g.goid}"
        g.agent = self.agent_func(fn)
        g.sys = line.get("sys") is True or g.agent
        if self.agent_process and g.goid != 1 and not (isinstance(fn, str) and fn):
            # Agent mode: this goroutine was there before the agent started its tracer,
            # which `auto` does during the program's init, so it is the runtime's (the
            # scavenger, say, which may never block in a short trace and so never show
            # its function). Presumed so until a wait's stack names a program function.
            g.sys = g.presumed = True
        self.start(g, t)

    def on_run(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        g = self.goroutine(line)
        if g.started:
            self.rows.extend((_RUN, g.unit, t, 0, 0, 0))
        else:
            self.start(g, t)

    def on_stop(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        g = self.goroutine(line)
        self.start(g, t)
        self.emit(K.UNIT_YIELD, g.unit, t)

    def on_block(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        g = self.goroutine(line)
        reason = line.get("reason", "")
        if type(reason) is not str:
            raise BadLine("a block line without a reason string")
        if "fn" in line or reason in _SYSTEM_REASONS:
            self.name_from_block(g, line, reason)
        if g.agent_wait or g.agent or (g.sys and self.agent_process) or self.in_agent(line):
            # the runtime's side of a wait the agent already wrote, a wait of the runtime's
            # own goroutines (GC workers), or a wait inside the agent itself (its flusher,
            # its signal watcher, wisp.Stop, a definition waiting for the agent's buffer):
            # none of them the program's
            g.absorbed = True
            return
        at = self.loc(line)
        sid = line.get("stack", 0)
        key = (reason, sid if type(sid) is int else 0, at)
        wait = self.waits.get(key) if key[1] else None
        if wait is None:
            wait = self.classify(reason, line, at)
            if key[1]:
                self.waits[key] = wait
        res, why, kind = wait
        if not g.started:
            self.start(g, t)
        self.rows.extend((_BLOCK, g.unit, t, res, why, at))
        g.waiting, g.waiting_kind = res, kind

    def name_from_block(self, g: _G, line: dict[str, Any], reason: str) -> None:
        fn = line.get("fn")
        if isinstance(fn, str) and fn and g.name.startswith("goroutine #"):
            g.name = f"{fn} #{g.goid}"
            g.agent = self.agent_func(fn)
            # agent mode: a goroutine met running whose stack starts in the runtime is one
            # of the runtime's (a GC worker), as the helper says of the ones it saw created
            runtime_own = bool(self.agent_process) and fn.startswith(("runtime.", "runtime/trace."))
            if g.presumed:
                g.sys = g.presumed = False
            g.sys = g.sys or g.agent or runtime_own
        if reason in _SYSTEM_REASONS:
            g.sys = True

    def classify(self, reason: str, line: dict[str, Any], at: int) -> tuple[int, int, str]:
        sid, stk = line.get("stack", 0), line.get("stk", [])
        if type(sid) is int and sid:
            funcs = self.stacks.get(sid, [])
        elif isinstance(stk, list):
            funcs = [self.locs[i][0] for i in stk if type(i) is int and i in self.locs]
        else:
            raise BadLine("a block line whose stack is not a list")
        kind, name, why = classify(reason, funcs)
        return self.resource(kind, name, at), int(why), kind

    def on_unblock(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        g = self.goroutine(line)
        if g.absorbed:
            g.absorbed = False
            return
        res, kind = g.waiting, g.waiting_kind
        if not res:
            raise BadLine(f"goroutine {g.goid} woken while not waiting")
        g.waiting, g.waiting_kind = 0, ""
        by = line.get("by")
        waker = self.gs.get(by) if type(by) is int else None
        if waker is not None and waker is not g and kind in SYNC_KINDS:
            if not waker.started:
                self.start(waker, t)
            # The pair that makes the NOTIFY edge: adjacent, same time, same resource.
            self.rows.extend((_NOTIFY, waker.unit, t, res, 1, self.loc(line)))
            self.rows.extend((_WAKE, g.unit, t, res, _OK, 0))
        else:
            self.rows.extend((_WAKE, g.unit, t, 0 if kind in SYNC_KINDS else res, _OK, 0))

    def on_end(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        g = self.goroutine(line)
        self.start(g, t)
        g.waiting = 0
        g.ended = True
        self.emit(K.UNIT_END, g.unit, t, 0, 0)

    def on_gc(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        g = self.known(line, "g")
        unit = g.unit if g is not None and g.started else 0
        if line.get("phase") == "begin":
            self.gc_cycles += 1
            self.emit(K.GC_BEGIN, unit, t, 0, self.gc_cycles)
        else:
            self.emit(K.GC_END, unit, t, 0, 0)

    def on_stw(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        if line.get("phase") == "begin":
            self.stw_began = t
        elif self.stw_began >= 0:
            self.stw_pauses += 1
            self.stw_ns += t - self.stw_began
            self.stw_began = -1

    def on_task(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        item = _pick(line, ("phase", "id", "parent", "type", "g"))
        self.annotate(self.tasks, {"time": t, **item})

    def on_region(self, line: dict[str, Any]) -> None:
        t = self.time(line)
        item = _pick(line, ("phase", "task", "type", "g"))
        self.annotate(self.regions, {"time": t, **item})

    def on_log(self, line: dict[str, Any]) -> None:
        if self.agent_process and line.get("cat") in ("wisp", "wisp-calibrate"):
            if line.get("cat") == "wisp":
                self.on_agent_event(line)
            return  # "wisp-calibrate": the agent timing its own cost at start
        t = self.time(line)
        item = _pick(line, ("task", "cat", "msg", "g"))
        self.annotate(self.logs, {"time": t, **item})

    def on_live(self, line: dict[str, Any]) -> None:
        g = self.known(line, "g")
        if g is not None and line.get("sys") is True:
            self.live_sys.add(g.unit)

    def on_summary(self, line: dict[str, Any]) -> None:
        self.summary = line

    # -- agent mode ----------------------------------------------------------------------

    def agent_func(self, fn: object) -> bool:
        return bool(self.agent_process) and isinstance(fn, str) and fn.startswith(AGENT_FUNCS)

    def in_agent(self, line: dict[str, Any]) -> bool:
        """Agent mode: is the wait's innermost non-standard frame the agent's own code?"""
        at = line.get("at")
        place = self.locs.get(at) if self.agent_process and type(at) is int else None
        return place is not None and place[0].startswith(AGENT_FUNCS[0])

    def on_agent_event(self, line: dict[str, Any]) -> None:
        """A "wisp" user log: one of the agent's events on the goroutine that logged it."""
        t = self.time(line)
        g = self.goroutine(line)
        msg = line.get("msg")
        if msg == "stop":
            self.stopper = g.goid
            return
        parts = msg.split() if isinstance(msg, str) else []
        if not 3 <= len(parts) <= 4 or not all(p.lstrip("-").isdigit() for p in parts):
            raise BadLine(f"agent event {msg!r} is not 'kind resource arg [location]'")
        kind, res, arg = int(parts[0]), int(parts[1]), int(parts[2])
        # Its place: the agent's own location number when it gives one, else where the
        # program called into the agent (the log's "at": wisp-goimport reads it from the
        # stack the tracer records with every user log).
        loc = int(parts[3]) if len(parts) == 4 else 0
        if kind not in _AGENT_KINDS or not 0 <= res < AGENT_RES_BASE:
            raise BadLine(f"agent event {msg!r}: unknown kind or resource out of range")
        if not -_MAX <= arg < _MAX or not 0 <= loc < AGENT_LOC_BASE:
            raise BadLine(f"agent event {msg!r}: argument or location out of range")
        if len(parts) == 3:
            loc = self.loc(line)
        if not g.started:
            self.start(g, t)
        if kind == _SEND and arg == _RPC:
            # The client's send and its wait for the reply in one log (one stack capture
            # less per call): msg.send, then unit.block with reason rpc.
            self.rows.extend((kind, g.unit, t, res, 0, loc))
            kind = _BLOCK
            if len(self.callers) < MAX_OPEN_CALLS:
                self.callers[res] = g
        elif kind == _RESPONSE:
            sender = self.callers.pop(res, g)
            if sender is not g and not sender.ended:
                # The reply was logged where the response's body was finished (read to its
                # end or closed, agents/go/wisp/body.go), on another goroutine: it still
                # ends the wait of the goroutine that sent the request (unless that one
                # has ended, which ended its wait).
                g = sender
                if g.agent_wait != res:
                    self.rows.extend((kind, g.unit, t, res, arg, loc))
                    return
        self.rows.extend((kind, g.unit, t, res, arg, loc))
        g.agent_wait = res if kind == _BLOCK else 0
        if kind != _BLOCK:
            g.absorbed = False

    # -- the process ---------------------------------------------------------------------

    def runtime_units(self) -> list[int]:
        """The runtime's and tracer's goroutines, and the one that stopped the trace."""
        units = {g.unit for g in self.gs.values() if g.sys} | self.live_sys
        stopper = self.known(self.summary, "stopper")
        if self.agent_process:
            stopper = self.gs.get(self.stopper)
        if stopper is not None:
            units.add(stopper.unit)
        return sorted(units)

    def trace_file(self, data: bytes) -> TraceFile:
        complete = self.summary.get("complete") is True
        events = _columns(self.rows, self.first_seq, self.sched_omitted_units())
        omitted = len(self.rows) // 6 - len(events.kind)
        attrs: list[tuple[str, AttrValue]]
        if self.agent_process:
            # Only what the trace adds: the agent's own process record says the rest.
            attrs = [("process_id", self.agent_process), ("runtime", "go")]
        else:
            attrs = [
                ("process_id", hashlib.sha256(b"go-events\0" + data).hexdigest()[:32]),
                ("pid", 0),
                ("host", ""),
                ("service", Path(self.path).stem or "go"),
                ("runtime", "go"),
                ("runtime_version", f"go{self.go_version}" if self.go_version else ""),
                ("imported", NAME),
            ]
        attrs += [
            ("complete", 1 if complete else 0),
            ("runtime_units", ",".join(str(u) for u in self.runtime_units())),
            ("go_stw_pauses", self.stw_pauses),
            ("go_stw_ns", self.stw_ns),
            ("go_gc_cycles", self.gc_cycles),
            ("go_runtime_sched_omitted", omitted),
        ]
        for key, items in (
            ("go_tasks", self.tasks),
            ("go_regions", self.regions),
            ("go_logs", self.logs),
        ):
            if items:
                attrs.append((key, json.dumps(items, separators=(",", ":"))))
        records = [Record(R_PROCESS, 0, tuple(attrs))]
        for i, (func, file, ln) in self.locs.items():
            records.append(
                Record(
                    R_LOCATION, self.loc_base + i, (("file", file), ("line", ln), ("func", func))
                )
            )
        for g in sorted(self.gs.values(), key=lambda g: g.unit):
            unit_attrs: list[tuple[str, AttrValue]] = [
                ("kind", "goroutine"),
                ("name", g.name),
                ("parent", g.parent),
            ]
            if g.loc:
                unit_attrs.append(("loc", g.loc))
            records.append(Record(R_UNIT, g.unit, tuple(unit_attrs)))
        records += self.res_records
        return TraceFile(
            self.path,
            FORMAT_MAJOR,
            FORMAT_MINOR,
            [Chunk(0, 0, records, events)],
            size=len(data),
        )

    def sched_omitted_units(self) -> list[int]:
        """The goroutines whose scheduling (``unit.run``/``unit.yield``) is left out: the
        runtime's and the agent's own, as the trace's end knows them (a goroutine met before
        its function is only named by a later wait, so this is decided once, at the end).

        The sweeper, the scavenger and the GC workers are scheduled constantly:
        ``runtime.bgsweep`` alone can be half of a short program's events, and how many
        there are swings tenfold between runs with the heap. Their scheduling says nothing
        about the program (their waits are not written either); they keep their
        ``unit.start`` and ``unit.end``, and the process record counts what was left out
        (``go_runtime_sched_omitted``)."""
        return sorted({g.unit for g in self.gs.values() if g.sys} | self.live_sys)


def _columns(rows: list[int], first_seq: int = 1, quiet: list[int] | None = None) -> DecodedEvents:
    """The flat rows as columns, without the ``unit.run``/``unit.yield`` of the ``quiet``
    units (see :meth:`Decoder.sched_omitted_units`)."""
    cols = np.array(rows, dtype=np.int64).reshape(-1, 6).T
    if quiet:
        drop = np.isin(cols[0], (_RUN, _YIELD)) & np.isin(cols[1], quiet)
        cols = cols[:, ~drop]
    return DecodedEvents(
        first_seq=first_seq,
        kind=cols[0].astype(np.uint8),
        unit=cols[1].astype(np.uint32),
        time=cols[2].copy(),
        res=cols[3].astype(np.uint32),
        arg=cols[4].copy(),
        loc=cols[5].astype(np.uint32),
    )


HANDLERS = {
    "loc": Decoder.on_loc,
    "stack": Decoder.on_stack,
    "sync": Decoder.on_sync,
    "create": Decoder.on_create,
    "exist": Decoder.on_exist,
    "run": Decoder.on_run,
    "stop": Decoder.on_stop,
    "block": Decoder.on_block,
    "unblock": Decoder.on_unblock,
    "end": Decoder.on_end,
    "gc": Decoder.on_gc,
    "stw": Decoder.on_stw,
    "task": Decoder.on_task,
    "region": Decoder.on_region,
    "log": Decoder.on_log,
    "live": Decoder.on_live,
    "summary": Decoder.on_summary,
}


def _pick(line: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: line[k] for k in keys if k in line}
