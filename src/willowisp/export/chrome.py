"""An analysis as Chrome trace-event JSON (``{"traceEvents": [...]}``).

The mapping (docs/export.md has it for users):

- one ``pid`` per process, 1..N in process order, named ``service (pid N, host)`` by a
  ``process_name`` metadata event; one ``tid`` per unit, 1..M within its process, named
  ``kind name`` by ``thread_name``. Both are small integers: viewers truncate ids to 32
  bits, so real pids, process ids and unit numbers go into names and args only. Events
  done by no unit (agent metadata) sit on tid 0 of their process, named ``(process)``,
  and only when an exported event needs it. ``process_name`` also carries
  ``args.runtime``, which ``willowisp import`` reads back.
- ``ts``/``dur`` in microseconds (floats, ns precision) of the adjusted, clock-aligned
  time, shifted so that the earliest event is at 0.
- a wait (``unit.block`` to the event that ended it) is an ``X`` slice named by what was
  waited on: ``lock state_lock``, ``rpc GET /price``; a lock hold (acquire to release) is
  an ``X`` slice ``hold lock state_lock``. Slices still open at the end of the trace end
  at its last event of any kind (a final flush or clock anchor counts: the wait was still
  open then) and say so in ``args.still``.
- an imported span (a unit of kind ``span``) is an ``X`` slice, ``cat`` ``span``, on its
  thread's tid (a Chrome slice) or its process' ``spans`` tid, nested in its parent span,
  and has no tid of its own (``willowisp.export.span_tree`` decides where).
- every cross-unit happens-before edge of the analysis is one flow (v2): two zero-length
  ``X`` slices at its two events, with the same ``bind_id``, ``flow_out`` on the cause and
  ``flow_in`` on the effect. Flow v2 binds to the event that carries it (v1 ``s``/``f``
  bind to whichever slice encloses them, which is ambiguous at zero length); Perfetto's
  JSON importer and chrome://tracing (Catapult, which reads Chrome's own
  ``TRACE_EVENT_WITH_FLOW`` output) both read it. One pair per edge: an event with two
  edges (a notify that wakes two units) gets two anchors.
- every other event of a unit is a thread-scoped instant (``"i"``, ``"s": "t"``) named by
  its kind (``msg.send GET /price``); findings are global instants (``"s": "g"``) named by
  their kind, with the summary and explanation in ``args``, at their earliest event.

Strings from the trace are cut to ``MAX_STR`` characters; ``json.dumps`` does the escaping.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.analysis.engine import Analysis
from willowisp.analysis.naming import event_where, resource_name, track_label
from willowisp.analysis.stuck import runtime_units_of
from willowisp.causality.graph import EdgeKind
from willowisp.causality.waits import holds, wait_outcome, waits
from willowisp.export.span_tree import PROCESS, Item, Spans, place, spans
from willowisp.ingest.tables import Process
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K, Reason
from willowisp.outfile import is_special, write_special

MAX_STR = 1000
# Events that are not drawn as instants: waits and holds draw them, or they are bookkeeping.
_NOT_INSTANTS = {int(K.UNIT_BLOCK), int(K.LOCK_ACQUIRED), int(K.LOCK_RELEASE)}
_BOOKKEEPING = {int(K.CLOCK_ANCHOR), int(K.AGENT_FLUSH)}
_SPAN_BOUNDS = {int(K.UNIT_START), int(K.UNIT_END)}  # a span's slice draws these


def cut(text: object, limit: int = MAX_STR) -> str:
    """``text`` as a string of at most ``limit`` characters (an ellipsis marks a cut)."""
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def kind_name(code: int) -> str:
    """``msg.send`` for K.MSG_SEND: the spec's dotted event kind name."""
    try:
        return K(code).name.lower().replace("_", ".", 1)
    except ValueError:
        return f"kind {code}"


def _process_args(p: Process, max_str: int) -> dict[str, Any]:
    """``process_name``'s args: the label, and the runtime, which the importer reads back."""
    args = {"name": cut(p.track_name(), max_str)}
    if p.runtime:
        args["runtime"] = cut(p.runtime, max_str)
    return args


def chrome_trace(a: Analysis, max_str: int = MAX_STR) -> dict[str, Any]:
    """The Chrome trace-event JSON document of an analysis (see the module doc)."""
    trace = a.trace
    ev = trace.events
    adjusted = a.causality.clocks.adjusted
    n = len(ev)
    g = a.causality.graph
    # The events drawn: those of a unit but bookkeeping, and every flow endpoint.
    drawn = (ev.unit >= 0) & ~np.isin(ev.kind, list(_BOOKKEEPING))
    drawn[g.src] = True
    drawn[g.dst] = True
    times = adjusted[drawn] if drawn.any() else adjusted
    t0 = int(times.min()) if len(times) else 0
    # Open slices end where the recording does: its last event of any kind (a final clock
    # anchor or flush proves the process was still there, and the wait still open, then).
    t_end = max(int(adjusted.max()), t0) if n else 0

    def us(t: int) -> float:
        return round((t - t0) / 1000.0, 3)

    out: list[dict[str, Any]] = []
    # Processes and units.
    for p in trace.processes:
        out.append(
            {
                "ph": "M",
                "name": "process_name",
                "pid": p.index + 1,
                "tid": 0,
                "args": _process_args(p, max_str),
            }
        )
        out.append(
            {
                "ph": "M",
                "name": "process_sort_index",
                "pid": p.index + 1,
                "tid": 0,
                "args": {"sort_index": p.index + 1},
            }
        )
    sp = spans(trace)
    tid_of: list[int] = [0] * len(trace.units)
    per_proc: dict[int, int] = {}

    def new_tid(proc: int, name: str) -> int:
        tid = per_proc.get(proc, 0) + 1
        per_proc[proc] = tid
        out.append(
            {
                "ph": "M",
                "name": "thread_name",
                "pid": proc + 1,
                "tid": tid,
                "args": {"name": cut(name, max_str)},
            }
        )
        return tid

    own = runtime_units_of(trace)
    for u in trace.units:
        if not sp.is_slice(u.index):
            tid_of[u.index] = new_tid(u.proc, track_label(trace, u.index, u.index in own))
    w = waits(trace)
    h = holds(trace)
    lanes = _span_lanes(
        trace,
        sp,
        adjusted,
        t_end,
        (w.block.tolist(), w.end.tolist()),
        (h.acquire.tolist(), h.release.tolist()),
    )
    tid_at: dict[tuple[int, int, int], int] = {}  # (process, host, lane) -> tid
    for proc, host, lane in sorted(set(lanes.values())):
        base = track_label(trace, host) if host >= 0 else "spans"
        tid_at[proc, host, lane] = (
            tid_of[host]
            if host >= 0 and lane == 0
            else new_tid(proc, base if lane == 0 else f"{base} (overlap {lane})")
        )
    span_tid = {key: tid_at[at] for key, at in lanes.items()}
    agent_tracks: set[int] = set()

    def where_of(i: int) -> tuple[int, int]:
        u = int(ev.unit[i])
        pid = int(ev.proc[i]) + 1
        if u < 0:
            agent_tracks.add(pid)
            return pid, 0
        if sp.is_slice(u):
            return pid, span_tid["span", u]
        return pid, tid_of[u]

    def res_label(r: int) -> str:
        if r < 0:
            return ""
        return f"{trace.resources[r].kind} {resource_name(trace, r)}"

    def event_name(i: int) -> str:
        label = res_label(int(ev.res[i]))
        return cut(f"{kind_name(int(ev.kind[i]))} {label}".strip(), max_str)

    def event_args(i: int) -> dict[str, Any]:
        args: dict[str, Any] = {"event": str(trace.event_id(i))}
        w = event_where(trace, i)
        if w:
            args["where"] = cut(w, max_str)
        return args

    # Spans.
    for u in trace.units:
        if sp.is_slice(u.index):
            b, e = sp.start[u.index], sp.end[u.index]
            begin = int(adjusted[b])  # not t0: us() reads that one
            finish = max(int(adjusted[e]) if e >= 0 else t_end, begin)
            where = (u.proc + 1, span_tid["span", u.index])
            span_at = (us(begin), round((finish - begin) / 1000.0, 3))
            out.append(_span_event(trace, sp, u.index, where, span_at, max_str))
    # Waits.
    for b, e, r, reason in zip(
        w.block.tolist(), w.end.tolist(), w.res.tolist(), w.reason.tolist(), strict=True
    ):
        pid, tid = where_of(b)
        tid = span_tid.get(("wait", b), tid)
        end_t = int(adjusted[e]) if e >= 0 else t_end
        try:
            why = Reason(reason).name.lower()
        except ValueError:
            why = f"reason {reason}"
        name = res_label(r) or why
        args = event_args(b)
        args.update(reason=why, outcome=wait_outcome(trace, e))
        if e < 0:
            args["still"] = True
        out.append(
            {
                "ph": "X",
                "cat": "wait",
                "name": cut(name, max_str),
                "pid": pid,
                "tid": tid,
                "ts": us(int(adjusted[b])),
                "dur": round(max(end_t - int(adjusted[b]), 0) / 1000.0, 3),
                "args": args,
            }
        )
    # Lock holds.
    for acq, rel, r in zip(h.acquire.tolist(), h.release.tolist(), h.res.tolist(), strict=True):
        pid, tid = where_of(acq)
        tid = span_tid.get(("hold", acq), tid)
        end_t = int(adjusted[rel]) if rel >= 0 else t_end
        args = event_args(acq)
        if rel < 0:
            args["still"] = True
        out.append(
            {
                "ph": "X",
                "cat": "hold",
                "name": cut(f"hold {res_label(r)}", max_str),
                "pid": pid,
                "tid": tid,
                "ts": us(int(adjusted[acq])),
                "dur": round(max(end_t - int(adjusted[acq]), 0) / 1000.0, 3),
                "args": args,
            }
        )
    # Happens-before edges as flow v2 pairs.
    endpoints = np.zeros(n, dtype=bool)
    for k, (s, d, kind) in enumerate(
        zip(g.src.tolist(), g.dst.tolist(), g.kind.tolist(), strict=True)
    ):
        endpoints[s] = endpoints[d] = True
        edge = EdgeKind(kind).name.lower()
        bind = f"0x{k + 1:x}"
        for i, flag in ((s, "flow_out"), (d, "flow_in")):
            pid, tid = where_of(i)
            args = event_args(i)
            args["edge"] = edge
            out.append(
                {
                    "ph": "X",
                    "cat": f"hb.{edge}",
                    "name": event_name(i),
                    "pid": pid,
                    "tid": tid,
                    "ts": us(int(adjusted[i])),
                    "dur": 0,
                    "bind_id": bind,
                    flag: True,
                    "args": args,
                }
            )
    # Every other event of a unit: an instant.
    kinds = ev.kind
    for i in range(n):
        code = int(kinds[i])
        if endpoints[i] or not drawn[i] or code in _NOT_INSTANTS:
            continue
        doer = int(ev.unit[i])
        if code in _SPAN_BOUNDS and doer >= 0 and sp.is_slice(doer):
            continue  # the span's slice begins and ends there
        pid, tid = where_of(i)
        out.append(
            {
                "ph": "i",
                "s": "t",
                "cat": "event",
                "name": event_name(i),
                "pid": pid,
                "tid": tid,
                "ts": us(int(adjusted[i])),
                "args": event_args(i),
            }
        )
    for pid in sorted(agent_tracks):
        out.append(
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": 0, "args": {"name": "(process)"}}
        )
    # Findings.
    for f in a.findings:
        rows = trace.event_indices(f.events).values()
        ts = max(us(min(int(adjusted[i]) for i in rows)), 0.0) if rows else 0.0
        out.append(
            {
                "ph": "i",
                "s": "g",
                "cat": "finding",
                "name": f.kind,
                "pid": 0,
                "tid": 0,
                "ts": ts,
                "args": {
                    "id": f.id,
                    "severity": f.severity,
                    "summary": cut(f.summary, max_str),
                    "explanation": [cut(x, max_str) for x in f.explanation[:100]],
                    "units": [cut(u.name, max_str) for u in f.units[:50]],
                    "resources": [cut(f"{r.kind} {r.name}", max_str) for r in f.resources[:50]],
                },
            }
        )
    return {
        "traceEvents": out,
        "displayTimeUnit": "ns",
        "otherData": {"exporter": "willowisp", "clock": "adjusted", "t0_ns": t0},
    }


def _span_event(
    trace: Trace, sp: Spans, u: int, where: tuple[int, int], times: tuple[float, float], m: int
) -> dict[str, Any]:
    """The ``X`` slice of span unit ``u`` at ``where`` (pid, tid), ``times`` (ts, dur) from
    its ``unit.start`` to its ``unit.end`` (to the end of the trace when it never ended)."""
    b, e = sp.start[u], sp.end[u]
    args: dict[str, Any] = {"event": str(trace.event_id(b)), "unit": str(trace.unit_id(u))}
    place = event_where(trace, b)
    if place:
        args["where"] = cut(place, m)
    if e < 0:
        args["still"] = True
    elif int(trace.events.arg[e]):
        args["error"] = True  # unit.end's status: the span's was ERROR
    name = trace.units[u].name or "span"
    ts, dur = times
    return {
        "ph": "X",
        "cat": "span",
        "name": cut(name, m),
        "pid": where[0],
        "tid": where[1],
        "ts": ts,
        "dur": dur,
        "args": args,
    }


def _span_lanes(
    trace: Trace,
    sp: Spans,
    adjusted: npt.NDArray[np.int64],
    t_end: int,
    waits_: tuple[Sequence[int], Sequence[int]],
    holds_: tuple[Sequence[int], Sequence[int]],
) -> dict[tuple[str, int], tuple[int, int, int]]:
    """Where each span slice, and each wait and hold of a span, is drawn: (process, host,
    lane) keyed by ("span", unit), ("wait", block event), ("hold", acquire event). The host
    is the span's thread unit, or -1 for its process' ``spans`` track (see span_tree)."""
    groups: dict[tuple[int, int], list[tuple[tuple[str, int], Item]]] = {}

    def at(i: int, end: int) -> tuple[int, int]:
        t0 = int(adjusted[i])
        return t0, max(int(adjusted[end]) if end >= 0 else t_end, t0)

    for u in trace.units:
        if sp.is_slice(u.index):
            t0, t1 = at(sp.start[u.index], sp.end[u.index])
            item = Item(t0, t1, u.index, sp.under[u.index], sp.depth[u.index])
            groups.setdefault((u.proc, sp.host[u.index]), []).append((("span", u.index), item))
    unit = trace.events.unit
    for what, (firsts, lasts) in (("wait", waits_), ("hold", holds_)):
        for i, end in zip(firsts, lasts, strict=True):
            v = int(unit[i])
            if v >= 0 and sp.is_slice(v):
                t0, t1 = at(i, end)
                group = (trace.units[v].proc, sp.host[v])
                groups.setdefault(group, []).append(
                    ((what, i), Item(t0, t1, -1, v, sp.depth[v] + 1))
                )
    out: dict[tuple[str, int], tuple[int, int, int]] = {}
    for (proc, host), members in groups.items():
        lanes = place([item for _, item in members])
        for (key, _), lane in zip(members, lanes.lane, strict=True):
            out[key] = (proc, host if host != PROCESS else -1, lane)
    return out


def write_json(doc: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``doc`` as compact JSON to ``path`` atomically (see :func:`write_bytes`)."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"
    write_bytes(text.encode("utf-8"), path)


def write_bytes(data: bytes, path: str | os.PathLike[str]) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, renamed,
    so a reader never sees half a file and an old file survives a failed export.

    The file gets the mode the umask gives a new file (0644 under the usual 0022), like
    ``import`` and any other tool's output: an export is made to be shared or uploaded, so
    ``mkstemp``'s private 0600 would be a surprise. Raises OSError (the folder is missing or
    not writable, the disk is full); nothing is left behind then.
    """
    target = Path(path)
    if is_special(target):  # /dev/null, /dev/stdout, a FIFO: written, never replaced
        write_special(target, data)
        return
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = _create_temp(folder, target.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_TEMP_TRIES = 100


def _create_temp(folder: Path, name: str) -> tuple[int, str]:
    """A new file ``.NAME.<random>.tmp`` in ``folder``, opened for writing, and its path.

    ``O_EXCL`` makes it ours (no symlink or earlier file is followed); mode 0666 lets the
    kernel apply the umask, which is what ``tempfile.mkstemp`` (always 0600) does not.
    """
    for _ in range(_TEMP_TRIES):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(f"{folder}: no free temporary name after {_TEMP_TRIES} tries")
