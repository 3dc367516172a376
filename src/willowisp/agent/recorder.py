"""The Python agent's recorder: one per process, its buffers' owner and its flusher.

Hot path (every hook, in the program's own threads): one fixed row per event, written into
the calling thread's preallocated buffer; the row layout, the thread states and the choice
of the C fast path are in ``rows.py``. ``Recorder.emit`` and its siblings here are the
Python reference for that write, and the slow path behind it (``overflow``).

Background (one thread, every ``flush_interval_s``, 50 ms by default): takes what each
thread wrote since the last flush, splits rows into the file's columns (C, or array
slicing), resolves new locations, adds the definitions made since (units, resources),
drops, faults, clock anchors and stats, and appends one chunk to the process's segment
file with a single ``write(2)``.

Bounds: each thread owns one buffer of ``rows.ROWS_PER_BUFFER`` rows; a full buffer is handed
to the flusher and replaced from a pool capped at ``AgentConfig.max_buffer_bytes`` in all.
When the cap is reached, events are dropped and counted per unit, never silently.
Everything runs under the GIL: a row is complete once it is written, and
``ThreadState.used`` only grows between swaps, which happen under ``_swap_lock``.

``RECORDER`` (the running recorder) and ``GATE`` are the module globals every hook reads on
its hot path as ``_r.RECORDER`` (``from willowisp.agent import recorder as _r``): they are
rebound while the program runs (start and stop; ``boundaries.configure`` sets ``GATE``), so
they are read through the module, never imported by name.
Primitives kept between recordings (api.arm()) are ``standing.py``'s.
"""

from __future__ import annotations

import _thread
import contextlib
import itertools
import os
import sys
import threading
import time
from array import array
from collections import deque
from types import FrameType
from typing import Any

from willowisp.agent import own_threads
from willowisp.agent.config import AgentConfig
from willowisp.agent.identity import process_attrs
from willowisp.agent.locations import Locations, is_internal_file
from willowisp.agent.output import Output
from willowisp.agent.rows import (
    ALL_STATES,
    BUFFER_BYTES,
    CODE_IDS,
    FAST,
    FIELDS,
    RES_IDS,
    ROW_SIZE,
    TOKENS,
    ThreadState,
    _getframe,
    location_key,
    mono,
    pack_into,
    register_code,
    set_state,
    tl,
    wall,
)
from willowisp.model.ids import new_process_id
from willowisp.model.spec import K
from willowisp.wtrace.framing import Compressors
from willowisp.wtrace.payload import AttrValue, EventBatch, PackedEvents, Record

ANCHOR_INTERVAL_NS = 1_000_000_000
FLUSH_SAMPLE = 256  # flushes with fewer events do not count towards the per-event cost
MAX_CARRIED = 100_000  # definition records kept while the disk refuses chunks
DRAIN_S = 1.0  # drain(): how long a process that never goes quiet is flushed at its end
DRAIN_SWITCH_S = 0.02  # drain(): the GIL switch interval while the process ends

# Record type codes (spec.RECORD_TYPES).
R_PROCESS, R_UNIT, R_RESOURCE, R_LOCATION, R_FAULT, R_STATS = 1, 2, 3, 4, 5, 6

# The running recorder; None between recordings. Set by Recorder.start (also a forked
# child's new one), cleared by api.stop, and by procs when a forked child's cannot start.
RECORDER: Recorder | None = None
# The boundary gate (agent/boundaries.py): in hops mode with boundaries, the ContextVar that
# must be set for a concurrency event to be written; None records everything.
GATE: Any = None


def state() -> ThreadState:
    """The calling thread's state, making the thread a unit on first use."""
    try:
        return tl.st
    except AttributeError:
        return _adopt()


def _adopt() -> ThreadState:
    rec = RECORDER
    if rec is None:  # a hook outlived the agent: a throwaway state, not kept for the thread
        return ThreadState(0, None)
    st = rec.adopt_current_thread()
    set_state(st)
    return st


def gated_out(kind: int) -> bool:
    """The Python twin of the C gate: skip a concurrency event outside every boundary."""
    return GATE is not None and (kind < 20 or 30 <= kind < 40) and GATE.get() is None


class Recorder:
    """One per process (a fork gets a new one). Created by :func:`willowisp.agent.api.start`."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.process_id = new_process_id()
        self.pid = os.getpid()
        self._swap_lock = _thread.allocate_lock()
        self._pool: list[bytearray] = []
        self._allocated = 0
        self.states: list[ThreadState] = []
        self._unit_ids = itertools.count(1)
        self._fault_ids = itertools.count(1)
        self.tokens = TOKENS  # process-wide: an item put under one recording, taken later
        # Definitions made since the last flush: (type, id, attrs, creation location key).
        self._pending: deque[tuple[int, int, dict[str, AttrValue], int]] = deque()
        self._locs = Locations(CODE_IDS)
        self._locations = self._locs.ids  # location key -> number; read by the C flusher
        self._faults: deque[tuple[int, str, str]] = deque()
        self._stdlib_cache: dict[str, bool] = {}
        self._internal_codes: dict[int, bool] = {}
        self._seq = 1
        self.events = 0
        self.total_dropped = 0
        self.fault_count = 0
        self.cost_ns_per_event = 0
        self._flush_ns = 0  # encoder time spent on flushes of at least FLUSH_SAMPLE events
        self._flush_events = 0  # events in those flushes
        self._last_anchor = 0
        self.out = Output(config, self.process_id, self._stream_fault)
        self._unwritten_drops: dict[int, int] = {}  # per unit, from refused chunks
        self._carry: list[Record] = []  # definitions of refused chunks, for the next one
        self._compressors = Compressors()
        self._stop = _thread.allocate_lock()
        self._stop.acquire()
        self._flusher_ident = 0
        self._flusher_done = _thread.allocate_lock()
        self._write_lock = _thread.allocate_lock()
        self.started_mono = mono()
        self.main_unit = 0
        # What api.start found the agent cannot see (module-level locks made before it).
        self.unseen_locks: list[str] = []
        # Units that are the runtime's, not the program's (multiprocessing's resource
        # tracker): only grow, through mark_runtime_unit.
        self._runtime_units: list[int] = []

    # --- identity -----------------------------------------------------------------

    def process_attrs(self) -> dict[str, AttrValue]:
        attrs = process_attrs(self.config, self.process_id, self.out.segment)
        if self._runtime_units:
            attrs["runtime_units"] = ",".join(map(str, self._runtime_units))
        return attrs

    def mark_runtime_unit(self, unit: int) -> None:
        """Name ``unit`` the runtime's own in the process record (the next chunk has one)."""
        self._runtime_units.append(unit)
        self._last_anchor = 0

    # --- units, resources, locations ------------------------------------------------

    def new_buffer(self) -> bytearray | None:
        """A buffer from the pool, a new one if under the cap, else None (drop)."""
        if self._pool:
            return self._pool.pop()
        if self._allocated + BUFFER_BYTES > self.config.max_buffer_bytes:
            return None
        self._allocated += BUFFER_BYTES
        return bytearray(BUFFER_BYTES)

    def new_unit_id(self) -> int:
        return next(self._unit_ids)

    def define_unit(
        self,
        n: int,
        kind: str,
        name: str,
        parent: int,
        depth: int = 0,
        *,
        key: int = 0,
        **extra: AttrValue,
    ) -> None:
        """Define unit ``n``, created ``depth`` frames above the caller (0: no location), or at
        the location ``key`` captured earlier (``location_key`` / ``program_location_key``)."""
        attrs: dict[str, AttrValue] = {"kind": kind, "name": name, "parent": parent}
        attrs.update(extra)
        if not key and depth:
            key = self.location_key(depth + 1)
        self._pending.append((R_UNIT, n, attrs, key))

    def register_thread(self, unit: int) -> ThreadState:
        """Give the calling thread a state for ``unit`` and put it on the flush list."""
        with self._swap_lock:
            st = ThreadState(unit, self.new_buffer())
        self.states.append(st)
        ALL_STATES.add(st)
        set_state(st)
        return st

    def _take_over_threads(self) -> None:
        """After a stop() and a new start(): threads that outlived the previous recorder keep
        their thread-local state; give each a unit and a buffer here so nothing is lost."""
        me = _thread.get_ident()
        names = {t.ident: t.name for t in threading.enumerate()}
        for st in list(ALL_STATES):
            if not st.alive or st.ident == me or st.ident not in names:
                continue
            n = self.new_unit_id()
            self.define_unit(n, "thread", names[st.ident], 0)
            with self._swap_lock:
                buf = self.new_buffer()
                st.buf = buf if buf is not None else bytearray(0)
                st.used = st.flushed = st.dropped = 0
                st.end = len(st.buf)
                st.full = []
                st.unit = st.thread_unit = n
            self.states.append(st)

    def adopt_current_thread(self) -> ThreadState:
        """A thread we did not start records for the first time: make it a unit."""
        n = self.new_unit_id()
        t = threading.current_thread()
        name = t.name if not isinstance(t, threading._DummyThread) else f"thread-{t.ident}"
        self.define_unit(n, "thread", name, 0, os_tid=threading.get_native_id())
        with self._swap_lock:
            st = ThreadState(n, self.new_buffer())
        self.states.append(st)
        ALL_STATES.add(st)
        return st

    def new_resource(
        self, kind: str, depth: int, name: str = "", *, key: int = 0, **extra: AttrValue
    ) -> int:
        """Define a resource created ``depth`` frames above the caller (or at the location
        ``key`` captured earlier, when given); returns its number."""
        rid = next(RES_IDS)
        attrs: dict[str, AttrValue] = {"kind": kind}
        if name:
            attrs["name"] = name
        attrs.update(extra)
        self._pending.append((R_RESOURCE, rid, attrs, key or self.location_key(depth + 1)))
        return rid

    def update_resource(self, rid: int, **attrs: AttrValue) -> None:
        """Add attributes to resource ``rid`` learned after it was defined (a broker's message
        id known once the send returns): a later record for the same id, which readers merge
        attribute by attribute."""
        self._pending.append((R_RESOURCE, rid, dict(attrs), 0))

    def program_depth(self) -> int:
        """Frames above the caller to the program's innermost frame (0 if there is none)."""
        f: FrameType | None = _getframe(1)
        depth = 0
        while f is not None and self.is_internal(f.f_code.co_filename):
            f = f.f_back
            depth += 1
        return depth if f is not None else 0

    def program_location_key(self) -> int:
        """The location key of the program's innermost frame (0 if none), for later use."""
        f = self.user_frame(1)
        if f is None:
            return 0
        c = f.f_code
        CODE_IDS[id(c)] = c
        return (id(c) << 16) | (f.f_lasti & 0xFFFF)

    def location_key(self, depth: int) -> int:
        """The location key of the frame ``depth`` levels above the caller (0 if none)."""
        return location_key(depth + 1)

    def user_frame(self, depth: int) -> FrameType | None:
        """The first frame at or above ``depth`` that is not in the standard library or us."""
        try:
            f: FrameType | None = _getframe(depth + 1)
        except ValueError:
            return None
        while f is not None and self.is_internal(f.f_code.co_filename):
            f = f.f_back
        return f

    def is_internal(self, filename: str) -> bool:
        """True for the standard library and the agent itself (cached per file name)."""
        v = self._stdlib_cache.get(filename)
        if v is None:
            v = is_internal_file(filename)
            self._stdlib_cache[filename] = v
        return v

    def created_by_internal_code(self, depth: int) -> bool:
        """Was the caller ``depth`` frames up in the standard library (not the program)?"""
        try:
            f = _getframe(depth + 1)
        except ValueError:
            return False
        return self.is_internal(f.f_code.co_filename)

    # --- recording (non-inlined) ------------------------------------------------------

    def emit(self, kind: int, res: int, arg: int, depth: int) -> None:
        """Record one event at the location ``depth`` frames above the caller (0: none)."""
        if FAST is not None:
            FAST.record(kind, res, arg, depth + 1 if depth else 0)
            return
        if GATE is not None and gated_out(kind):
            return
        t = mono()
        st = state()
        i = st.used
        if depth:
            f = _getframe(depth + 1)
            c = f.f_code
            CODE_IDS[id(c)] = c
            key = (id(c) << 16) | (f.f_lasti & 0xFFFF)
        else:
            key = 0
        if i < st.end:
            pack_into(st.buf, i, t, kind, st.unit, res, arg, key)
            st.used = i + ROW_SIZE
        else:
            self.overflow(st, t, kind, res, arg, key)

    def emit_user(self, kind: int, res: int, arg: int) -> None:
        """Record one event located at the nearest frame of the program itself.

        For hooks reached through library code (``put_nowait`` -> ``put`` -> ``_put``) where
        a fixed depth would point into the standard library.
        """
        if FAST is not None:
            FAST.record_user(kind, res, arg)
            return
        if GATE is not None and gated_out(kind):
            return
        t = mono()
        f: FrameType | None = _getframe(1)
        internal = self._internal_codes  # id(code) -> is internal (ids of kept code objects)
        while f is not None:
            c = f.f_code
            v = internal.get(id(c))
            if v is None:
                v = internal[id(c)] = self.is_internal(c.co_filename)
                CODE_IDS[id(c)] = c  # keep it alive so its id stays its own
            if not v:
                break
            f = f.f_back
        key = 0
        if f is not None:
            c = f.f_code
            key = (id(c) << 16) | (f.f_lasti & 0xFFFF)
        st = state()
        i = st.used
        if i < st.end:
            pack_into(st.buf, i, t, kind, st.unit, res, arg, key)
            st.used = i + ROW_SIZE
        else:
            self.overflow(st, t, kind, res, arg, key)

    def emit_for(
        self, st: ThreadState, unit: int, kind: int, res: int, arg: int, key: int = 0
    ) -> None:
        """Record an event attributed to ``unit`` (not necessarily st.unit)."""
        if GATE is not None and gated_out(kind):
            return
        self.emit_for_any(st, unit, kind, res, arg, key)

    def emit_for_any(
        self, st: ThreadState, unit: int, kind: int, res: int, arg: int, key: int = 0
    ) -> None:
        """``emit_for`` past the boundary gate: for events the caller has decided on."""
        t = mono()
        i = st.used
        if i < st.end:
            pack_into(st.buf, i, t, kind, unit, res, arg, key)
            st.used = i + ROW_SIZE
        else:
            saved, st.unit = st.unit, unit
            self.overflow(st, t, kind, res, arg, key)
            st.unit = saved

    def overflow(self, st: ThreadState, t: int, kind: int, res: int, arg: int, key: int) -> None:
        """Slow path: the thread's buffer is full. Swap it for a fresh one, or drop."""
        with self._swap_lock:
            st.rows_before += st.used // ROW_SIZE
            if st.used > st.flushed:
                st.full.append((st.buf, st.flushed, st.used))
            buf = self.new_buffer()
            if buf is None:
                st.buf, st.used, st.end, st.flushed = bytearray(0), 0, 0, 0
                st.dropped += 1
                return
            st.buf, st.used, st.end, st.flushed = buf, 0, len(buf), 0
        pack_into(st.buf, 0, t, kind, st.unit, res, arg, key)
        st.used = ROW_SIZE

    def fault(self, where: str, exc: BaseException) -> None:
        """An error inside a hook: count it, keep it for the trace, never re-raise."""
        try:
            self.fault_count += 1
            fid = next(self._fault_ids)
            self._faults.append((fid, where, f"{type(exc).__name__}: {exc}"[:500]))
            st = state()
            self.emit_for(st, st.unit, K.AGENT_FAULT, 0, fid)
        except Exception:  # pragma: no cover - the last line of defence
            pass

    # --- flushing -------------------------------------------------------------------

    def start(self) -> None:
        global RECORDER
        RECORDER = self
        if FAST is not None:
            FAST.set_callbacks(
                ThreadState,
                _adopt,
                self.overflow,
                register_code,
                lambda code: self.is_internal(code.co_filename),
            )
        self.main_unit = self.new_unit_id()
        self.define_unit(
            self.main_unit,
            "thread",
            threading.current_thread().name,
            0,
            os_tid=threading.get_native_id(),
        )
        self.register_thread(self.main_unit)
        self._take_over_threads()
        # Imported here: standing reads RECORDER, so it loads after this module.
        from willowisp.agent import standing

        for rid, attrs, key in standing.alive():  # primitives made before this start
            self._pending.append((R_RESOURCE, rid, attrs, key))
        self._calibrate()
        self.out.open()
        self._last_anchor = 0  # the segment gets the process record and an anchor
        self.flush()
        self._flusher_done.acquire()
        own_threads.start(self._run_flusher)

    def _stream_fault(self) -> int:
        """A fault the stream writer records itself: counted here; its id."""
        self.fault_count += 1
        return next(self._fault_ids)

    def _run_flusher(self) -> None:
        self._flusher_ident = _thread.get_ident()
        try:
            while not self._stop.acquire(True, self.config.flush_interval_s):
                try:
                    self.flush()
                except Exception as exc:  # never let the flusher die silently
                    self._faults.append((next(self._fault_ids), "flusher", repr(exc)[:500]))
                    self.fault_count += 1
        finally:
            self._flusher_done.release()

    def stop(self) -> None:
        """Stop the flusher and write everything still buffered."""
        self._stop_flusher()
        try:
            self.flush()
        except Exception as exc:  # at exit: never a traceback in the program's stderr
            self.fault("stop", exc)
        self.out.close()

    def drain(self) -> None:
        """The last flush of a process that ends right after it (``os._exit``, SIGTERM):
        stop the flusher, then flush until a pass finds nothing new (or ``DRAIN_S`` has
        passed), and return *holding the GIL*. The caller must end the process before it
        runs anything that lets the GIL go.

        Why: the program's other threads go on while the agent flushes (a server thread
        answers one more request while ``write(2)`` runs). An event they record after the
        last flush would be lost without a trace, yet what it did -- a reply -- was seen
        by its peer. Each pass's write lets them run; the next pass takes what they
        recorded meanwhile. The last check is pure Python, well inside one switch interval,
        so no other thread runs Python between it and the end: a reply sent after it came
        from a request whose receipt is written. A program that records without pause never
        goes quiet: after ``DRAIN_S`` what its threads recorded during the last write is
        counted and said on stderr (nowhere else is left). The segment file needs no close
        (``os.write`` keeps nothing in user space); the collector stream is closed after
        the first pass, and what comes after that is counted the same way.
        """
        self._stop_flusher()
        self.out.drop_reserve()
        # Long enough that no waiting thread asks for the GIL during the final check, short
        # enough that a thread spinning in Python holds each pass up by at most that much.
        sys.setswitchinterval(DRAIN_SWITCH_S)
        deadline = time.monotonic() + DRAIN_S
        try:
            streaming = bool(self.config.collector)
            while True:
                self.flush()
                if streaming:
                    self.out.close()
                    break
                if not self._unflushed():
                    if not self.out.lost_on_write:
                        return
                    self.out.say_lost()  # a full disk: said once, then one more pass
                    self.out.lost_on_write = 0
                    continue
                if time.monotonic() >= deadline:
                    break
            self._say_unwritten()
        except Exception as exc:  # at exit: never a traceback in the program's stderr
            self.fault("drain", exc)

    def _unflushed(self) -> bool:
        """Is anything recorded that no chunk holds yet? Pure Python: keeps the GIL."""
        if self._pending or self._faults:
            return True
        return any(st.used > st.flushed or st.full or st.dropped for st in self.states)

    def _say_unwritten(self) -> None:
        """Events recorded after the last chunk that could be written: one line on stderr
        with their count (nowhere else is left to say it)."""
        late = 0
        for st in self.states:
            late += (st.used - st.flushed) // ROW_SIZE + st.dropped
            late += sum((e - a) // ROW_SIZE for _, a, e in st.full)
        if late:
            with contextlib.suppress(Exception):
                sys.stderr.write(
                    f"willowisp: {late} events of {self.config.service} (pid {self.pid}) "
                    "were recorded after its last flush and are not in the recording\n"
                )

    def _stop_flusher(self) -> None:
        if self._stop.locked():
            self._stop.release()
            if self._flusher_ident and self._flusher_ident != _thread.get_ident():
                with contextlib.suppress(RuntimeError):
                    self._flusher_done.acquire(True, 2.0)

    def _take_rows(self) -> tuple[bytearray, list[tuple[int, int]]]:
        """Collect every thread's unflushed rows; returns them and per-unit drop counts."""
        parts = bytearray()
        drops: list[tuple[int, int]] = []
        dead: list[ThreadState] = []
        for st in list(self.states):
            with self._swap_lock:
                full, st.full = st.full, []
                buf, a, b = st.buf, st.flushed, st.used
                st.flushed = b
                dropped, st.dropped = st.dropped, 0
            for fb, fa, fe in full:
                parts += memoryview(fb)[fa:fe]
                self._recycle(fb)
            if b > a:
                parts += memoryview(buf)[a:b]
            if dropped:
                drops.append((st.thread_unit, dropped))
            if not st.alive and st.used == st.flushed and not st.full:
                dead.append(st)
        for st in dead:
            with contextlib.suppress(ValueError):
                self.states.remove(st)
            with self._swap_lock:
                if st.end:
                    self._recycle(st.buf)
                st.buf, st.used, st.end, st.flushed = bytearray(0), 0, 0, 0
        return parts, drops

    def _recycle(self, buf: bytearray) -> None:
        if len(buf) == BUFFER_BYTES:
            self._pool.append(buf)

    def flush(self) -> None:
        """Write one chunk with everything recorded since the previous flush."""
        if not self._write_lock.acquire(False):
            return  # another flush is running (stop() racing the flusher)
        try:
            self._flush_locked()
        finally:
            self._write_lock.release()

    def _flush_locked(self) -> None:
        t0 = time.perf_counter_ns()
        now = mono()
        rows, drops = self._take_rows()
        anchor_due = self._last_anchor == 0 or now - self._last_anchor >= ANCHOR_INTERVAL_NS
        if not (rows or drops or anchor_due or self._pending or self._faults):
            return  # nothing happened: no chunk
        if self._unwritten_drops:  # lost with a chunk the disk refused: said now
            drops = [*self._unwritten_drops.items(), *drops]
            self._unwritten_drops = {}
        records: list[Record] = self._carry
        self._carry = []
        if anchor_due:
            records.append(Record(R_PROCESS, 0, tuple(self.process_attrs().items())))
        # Definitions first: their creation locations may be new, too.
        pending = []
        while self._pending:
            pending.append(self._pending.popleft())
        def_keys = {p[3] for p in pending if p[3]}
        batch = self._columns(rows, def_keys, records)
        for rtype, rid, attrs, key in pending:
            if key:
                attrs["loc"] = self._locations.get(key, 0)
                if rtype == R_RESOURCE and "name" not in attrs:
                    suffix = str(attrs.pop("name_suffix", ""))
                    attrs["name"] = self._locs.name_from_source(key, str(attrs["kind"])) + suffix
            records.append(Record(rtype, rid, tuple(attrs.items())))
        while self._faults:
            records.append(_fault_record(self._faults.popleft()))
        n_program = len(batch)
        if anchor_due:
            # the agent's events after it carry its time: the anchor reads the clock anew,
            # and an agent.flush stamped `now` would come after it in the file but before
            # it in time
            now = max(now, self._append_anchor(batch))
            self._last_anchor = now
        for unit, count in drops:
            batch.append(K.AGENT_DROP, unit, now, 0, count, 0)
            self.total_dropped += count
        batch.append(K.AGENT_FLUSH, 0, now, 0, n_program, 0)
        self.events += n_program
        self._seq += len(batch)
        records.append(self._stats_record(self.total_dropped))
        w_ = self.out.writer
        if w_ is None:
            return
        try:
            w_.write_chunk(records, batch)
        except OSError as exc:  # a full disk, a quota: the program goes on, the loss is counted
            self._write_refused(exc, records, rows, drops)
            return
        self.out.written()
        if n_program >= FLUSH_SAMPLE:
            self._flush_ns += time.perf_counter_ns() - t0
            self._flush_events += n_program
        if self.out.full() and self.out.open():
            self._last_anchor = 0  # the new segment gets the process record and an anchor

    def _write_refused(
        self,
        exc: OSError,
        records: list[Record],
        rows: bytearray,
        drops: list[tuple[int, int]],
    ) -> None:
        """A chunk the file system refused (the writer cut it off again). Its events are
        dropped and counted per unit, said in the next chunk that gets written (and on
        stderr at exit); its definitions and faults are kept for that chunk, so the events
        after it still name their units and resources."""
        units = array("q")
        units.frombytes(rows)
        lost = self._unwritten_drops
        for unit in units[2::FIELDS]:
            lost[unit] = lost.get(unit, 0) + 1
        for unit, count in drops:
            lost[unit] = lost.get(unit, 0) + count
            self.total_dropped -= count  # added again when the drop events are written
        kept = [r for r in records if r.rtype in (R_UNIT, R_RESOURCE, R_LOCATION, R_FAULT)]
        self._carry = kept[-MAX_CARRIED:] + self._carry
        self._last_anchor = 0  # the next chunk carries the process record and an anchor
        if self.out.refused(exc, len(rows) // ROW_SIZE):  # one fault per spell of refusals
            self.fault("write", exc)
        if self.out.drop_reserve():  # the room kept for this: say what was lost, now
            self._write_news()

    def _write_news(self) -> None:
        """A small chunk with only the news of the loss: the process record, a clock
        anchor, the faults, one drop event per unit and the stats. Events recorded since
        wait for the next flush (they may not fit)."""
        w_ = self.out.writer
        if w_ is None:
            return
        faults = list(self._faults)
        records = [Record(R_PROCESS, 0, tuple(self.process_attrs().items()))]
        records += map(_fault_record, faults)
        batch = EventBatch(first_seq=self._seq)
        at = self._append_anchor(batch)
        lost = self._unwritten_drops
        for unit, count in lost.items():
            batch.append(K.AGENT_DROP, unit, at, 0, count, 0)
        records.append(self._stats_record(self.total_dropped + sum(lost.values())))
        try:
            w_.write_chunk(records, batch)
        except OSError:
            return  # not even that fits: the line at exit says it
        for _ in faults:
            self._faults.popleft()
        self.total_dropped += sum(lost.values())
        self._unwritten_drops = {}
        self._seq += len(batch)
        self._last_anchor = at

    def _append_anchor(self, batch: EventBatch | PackedEvents) -> int:
        """A clock anchor (monotonic time, wall time) at the end of ``batch``; its time."""
        m1 = mono()
        w = wall() + self.config.clock_offset_ns
        m2 = mono()
        at = (m1 + m2) // 2
        batch.append(K.CLOCK_ANCHOR, 0, at, 0, w, 0)
        return at

    def _stats_record(self, dropped: int) -> Record:
        return Record(
            R_STATS,
            0,
            (
                ("events", self.events),
                ("dropped", dropped),
                ("faults", self.fault_count),
                ("cost_ns_per_event", self._cost()),
                *_boundary_stats(),
            ),
        )

    def _columns(
        self, rows: bytearray, def_keys: set[int], records: list[Record]
    ) -> EventBatch | PackedEvents:
        """Rows -> the file's columns, resolving new locations (their records go first)."""
        loc_of = self._locations
        loc_of[0] = 0
        if FAST is not None:
            cols = FAST.columns(rows, loc_of)
            new_keys = set(cols[6]) | def_keys.difference(loc_of)
            new_keys.discard(0)
            if new_keys:
                records += self._locs.resolve(new_keys)
                if cols[6]:
                    cols = FAST.columns(rows, loc_of)
            return PackedEvents(self._seq, len(rows) // ROW_SIZE, *cols[:6])
        arr = array("q")
        arr.frombytes(rows)
        keys = arr[5::FIELDS]
        new_keys = set(keys).difference(loc_of)
        new_keys.update(def_keys.difference(loc_of))
        new_keys.discard(0)
        if new_keys:
            records += self._locs.resolve(new_keys)
        batch = EventBatch(first_seq=self._seq)
        batch.kind = array("B", arr[1::FIELDS])
        batch.unit = array("I", arr[2::FIELDS])
        batch.time = arr[0::FIELDS]
        batch.res = array("I", arr[3::FIELDS])
        batch.arg = arr[4::FIELDS]
        batch.loc = array("I", map(loc_of.__getitem__, keys))
        return batch

    def cost_split(self) -> tuple[int, int]:
        """The measured cost of one event: (in the hook, in the encoder)."""
        share = self._flush_ns // self._flush_events if self._flush_events else 0
        return int(self.cost_ns_per_event), int(share)

    def _cost(self) -> int:
        """The hot path's measured cost plus the encoder's share per event. The share is
        taken from flushes big enough that a chunk's fixed cost (headers, the process
        record, a system call) does not pass for a per-event one."""
        share = self._flush_ns // self._flush_events if self._flush_events else 0
        return int(self.cost_ns_per_event + share)

    def _calibrate(self) -> None:
        """Measure this machine's cost of one recorded event, for the stats record."""
        st = ThreadState(0, bytearray(ROW_SIZE * 512))
        saved = tl.st
        set_state(st)  # a scratch state: these rows are never flushed
        try:
            t0 = time.perf_counter_ns()
            for _ in range(512):
                self.emit(K.LOCK_ACQUIRED, 1, 0, 1)
            self.cost_ns_per_event = (time.perf_counter_ns() - t0) // 512
        finally:
            set_state(saved)

    # --- fork ---------------------------------------------------------------------

    def reset_after_fork(self) -> Recorder:
        """In a forked child: a new process with the forking thread as its only unit."""
        child = Recorder(self.config)
        parent_id = self.process_id
        os.environ["WILLOWISP_PARENT_PROCESS"] = parent_id
        child.start()
        return child


def _fault_record(fault: tuple[int, str, str]) -> Record:
    number, where, message = fault
    return Record(R_FAULT, number, (("message", message), ("where", where)))


def _boundary_stats() -> tuple[tuple[str, AttrValue], ...]:
    """The stats record's ``by_boundary`` attribute, when the process has boundaries."""
    from willowisp.agent import boundaries

    text = boundaries.by_boundary_json()
    return (("by_boundary", text),) if text else ()
