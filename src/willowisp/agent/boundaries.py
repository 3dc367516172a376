"""Declared boundaries in the running agent: which work is recorded at full fidelity.

A boundary instance begins when a server hook takes an inbound hop its entry matches (or one
whose ``tracestate`` carries ``wisp=b-<id>`` of a boundary this runtime belongs to) and ends
when the handler replies. While it lasts, :data:`context.boundary` holds it: a ContextVar,
so asyncio tasks the handler starts inherit it, and the Thread hook passes it to threads.

``full`` mode records everything anyway; boundaries there only count what they cost.
``hops`` mode with boundaries installs the concurrency hooks too and turns on the *gate*:
concurrency events are written only while ``context.boundary`` is set (hop and agent events
always are). The gate is one ContextVar read in the C fast path (``_native.set_gate``) or
in Python (``recorder.GATE``).

``willowisp ctl PID enable|disable BOUNDARY`` reaches :func:`enable` / :func:`disable`
through the control channel: a boundary switched off stops opening new instances (the ones
in flight finish); one switched on in a ``hops`` process without the concurrency hooks
installs them then (locks created before that are not seen, and the docs say so).

Cost: every instance counts the events its handling thread wrote between entry and exit
(a thread's row counter); what they cost is that count times the agent's measured cost per
event, split into the hook's share and the encoder's.
"""

from __future__ import annotations

import contextvars
import json
import threading
from dataclasses import dataclass
from typing import Any

from willowisp.agent import context, rows
from willowisp.agent import recorder as _r
from willowisp.errors import UsageError
from willowisp.model.boundary import Boundary, parse_boundary
from willowisp.wire.codec import Getter
from willowisp.wire.tracecontext import TRACECONTEXT, W3CContext
from willowisp.wire.traceparent import TraceContext
from willowisp.wire.tracestate import EMPTY, TraceState

RUNTIME = "python"
STATE_KEY = "wisp"  # tracestate member: wisp=b-<boundary id>


@dataclass(slots=True)
class Declared:
    """One boundary this process knows, with its switch and its counters."""

    boundary: Boundary
    enabled: bool = True
    source: str = "config"  # config, ctl, or propagated (learned from tracestate)
    entries: int = 0  # instances opened by an inbound hop matching the entry
    propagated: int = 0  # instances opened by a caller's wisp tracestate member
    active: int = 0  # instances in flight
    events: int = 0  # events written inside finished instances

    @property
    def name(self) -> str:
        return self.boundary.name


@dataclass(slots=True)
class Instance:
    """One boundary instance in flight (the value of ``context.boundary``)."""

    declared: Declared
    st: rows.ThreadState
    rows_at_entry: int
    message: bool = False  # opened by a received message: lasts until the next one


Token = contextvars.Token[Any]

_lock = threading.Lock()
_declared: list[Declared] = []
_by_id: dict[str, Declared] = {}
_mode = "full"
_gate_on = False


def configure(specs: tuple[str, ...], mode: str) -> None:
    """At agent start: the boundaries of the configuration (already validated by the CLI;
    a bad one here becomes an agent fault, never an exception in the program)."""
    global _mode
    with _lock:
        _declared.clear()
        _by_id.clear()
        _mode = mode
    for spec in specs:
        try:
            _add(parse_boundary(spec, source="WILLOWISP_BOUNDARIES"), "config")
        except UsageError as exc:
            rec = _r.RECORDER
            if rec is not None:
                rec.fault("boundaries", exc)
    if mode == "hops" and _declared:
        gate(True)


def reset() -> None:
    """At agent stop: forget everything and turn the gate off."""
    with _lock:
        _declared.clear()
        _by_id.clear()
    gate(False)


def gate(on: bool) -> None:
    """Record concurrency events only inside boundaries (``on``), or everywhere."""
    global _gate_on
    _gate_on = on
    _r.GATE = context.boundary if on else None
    if rows.FAST is not None:
        rows.FAST.set_gate(context.boundary if on else None)


def _add(b: Boundary, source: str) -> Declared:
    with _lock:
        for d in _declared:
            if d.boundary.entry == b.entry:
                return d
        d = Declared(b, source=source)
        _declared.append(d)
        _by_id[b.id] = d
        return d


def _find(name: str) -> Declared | None:
    key = name.strip()
    with _lock:
        for d in _declared:
            if key in (d.name, d.boundary.spec, d.boundary.id, "b-" + d.boundary.id):
                return d
    return None


# --- what the control channel calls -------------------------------------------------------


def enable(spec_or_name: str) -> str:
    """Switch a boundary to full fidelity: a known one by name (its entry), spec or id, or a
    new one from a full SPEC. Returns its name; UsageError for a bad spec."""
    d = _find(spec_or_name)
    if d is None:
        b = parse_boundary(spec_or_name, source="enable")
        d = _add(b, "ctl")
    d.enabled = True
    if _mode == "hops":
        _ensure_concurrency_hooks()
        gate(True)
    return d.name


def disable(name: str) -> str:
    """Stop opening new instances of a boundary (those in flight finish). Returns its name."""
    d = _find(name)
    if d is None:
        known = ", ".join(repr(x.name) for x in _declared) or "none"
        raise UsageError(f"no boundary {name!r} in this process (known: {known})")
    d.enabled = False
    return d.name


def status() -> dict[str, Any]:
    """The agent's counters and its own cost per boundary, JSON-serialisable."""
    rec = _r.RECORDER
    hook_ns, encode_ns = rec.cost_split() if rec is not None else (0, 0)
    out: dict[str, Any] = {
        "pid": rec.pid if rec is not None else 0,
        "process_id": rec.process_id if rec is not None else "",
        "service": rec.config.service if rec is not None else "",
        "runtime": RUNTIME,
        "mode": _mode,
        "gate": _gate_on,
        "events": rec.events if rec is not None else 0,
        "dropped": rec.total_dropped if rec is not None else 0,
        "faults": rec.fault_count if rec is not None else 0,
        "cost_ns_per_event": hook_ns + encode_ns,
        "sink": _sink(rec),
        "boundaries": [],
    }
    for d in list(_declared):
        out["boundaries"].append(
            {
                "name": d.name,
                "spec": d.boundary.spec,
                "id": d.boundary.id,
                "enabled": d.enabled,
                "source": d.source,
                **_costs(d, hook_ns, encode_ns),
            }
        )
    return out


def _sink(rec: Any) -> dict[str, Any]:
    """Where the agent's chunks go: the collector (streaming, or on the fallback file while
    it reconnects) or a segment file."""
    writer = getattr(getattr(rec, "out", None), "writer", None)
    status = getattr(writer, "status", None)
    if callable(status):
        return dict(status())
    return {"kind": "file", "path": getattr(writer, "path", "") or ""}


def _costs(d: Declared, hook_ns: int, encode_ns: int) -> dict[str, int]:
    return {
        "entries": d.entries,
        "propagated": d.propagated,
        "active": d.active,
        "events": d.events,
        "hook_ns": d.events * hook_ns,
        "serialize_ns": d.events * encode_ns,
        "cost_ns": d.events * (hook_ns + encode_ns),
    }


def by_boundary_json() -> str:
    """For the stats record: ``{name: {spec, source, entries, propagated, active, events,
    hook_ns, serialize_ns, cost_ns}}`` (``source``: config, ctl)."""
    rec = _r.RECORDER
    if not _declared or rec is None:
        return ""
    hook_ns, encode_ns = rec.cost_split()
    return json.dumps(
        {
            d.name: {"spec": d.boundary.spec, "source": d.source, **_costs(d, hook_ns, encode_ns)}
            for d in list(_declared)
        },
        sort_keys=True,
    )


# --- what the server hooks call ------------------------------------------------------------


def enter(protocol: str, method: str, target: str, state_member: str = "") -> Token | None:
    """An inbound hop was taken: open the first enabled boundary it starts, if any. Returns
    the token for :func:`leave` (None: nothing opened). ``state_member`` is the ``wisp``
    member of the inbound tracestate (``b-<id>``), through which a caller inside a boundary
    carries it to this runtime."""
    if not _declared or context.boundary.get() is not None:
        return None
    found: Declared | None = None
    for d in _declared:
        if d.enabled and d.boundary.matches(protocol, method, target):
            found = d
            found.entries += 1
            break
    if found is None and state_member.startswith("b-"):
        d2 = _by_id.get(state_member[2:])
        if d2 is not None and d2.enabled and d2.boundary.allows(RUNTIME):
            found = d2
            found.propagated += 1
    if found is None:
        return None
    st = _r.state()
    found.active += 1
    return context.boundary.set(Instance(found, st, rows_of(st)))


def enter_message(protocol: str, destination: str, state_member: str = "") -> bool:
    """A consumer took a message: close the instance the previous message opened on this
    unit's context, if any, and open one if this message starts a boundary (or carries
    one). Returns whether one is open now."""
    cur = context.boundary.get()
    if isinstance(cur, Instance) and cur.message:
        context.boundary.set(None)
        _close(cur)
    token = enter(protocol, "", destination, state_member)
    if token is None:
        return False
    inst = context.boundary.get()
    if isinstance(inst, Instance):
        inst.message = True
    return True


def _close(inst: Instance) -> None:
    d = inst.declared
    d.active = max(0, d.active - 1)
    d.events += max(0, rows_of(inst.st) - inst.rows_at_entry)


def w3c(ctx: TraceContext, state: TraceState = EMPTY) -> W3CContext:
    """The W3C context to inject into an outgoing hop: with the ``wisp`` member when the
    hop is made inside a boundary."""
    member = outgoing_member()
    return W3CContext(ctx, state.with_entry(STATE_KEY, member) if member else state)


def member_of(carriers: list[Getter]) -> str:
    """The ``wisp`` tracestate member an inbound hop carries ('' if none)."""
    for carrier in carriers:
        found = TRACECONTEXT.extract(carrier)
        if found is not None:
            return found.tracestate.get(STATE_KEY) or ""
    return ""


def leave(token: Token | None) -> None:
    """The handler replied: close the instance ``enter`` opened and count its events."""
    if token is None:
        return
    inst = context.boundary.get()
    try:
        context.boundary.reset(token)
    except ValueError:  # left from another context: it is not current there
        context.boundary.set(None)
    if isinstance(inst, Instance):
        _close(inst)


def forced_attrs(flags: int) -> dict[str, Any]:
    """Attributes of a server resource recorded because it opened a boundary: the boundary,
    and ``caller_sampled=0`` when the caller had not sampled the trace (so its side of the
    hop was not recorded: ``analyze`` does not call that a broken link)."""
    inst = context.boundary.get()
    out: dict[str, Any] = {}
    if isinstance(inst, Instance):
        out["boundary"] = inst.declared.name
    if not flags & 1:
        out["caller_sampled"] = 0
    return out


def outgoing_member() -> str:
    """The tracestate ``wisp`` value for an outgoing hop made inside a boundary, else ''."""
    inst = context.boundary.get()
    return "b-" + inst.declared.boundary.id if isinstance(inst, Instance) else ""


def rows_of(st: rows.ThreadState) -> int:
    return st.rows_before + st.used // rows.ROW_SIZE


def _ensure_concurrency_hooks() -> None:
    from willowisp.agent import api

    api.install_full_hooks()
