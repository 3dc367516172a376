"""What-if, rendered: the outcome of ``whatif.simulate`` as JSON (``willowisp.whatif/1``)
and as the text ``replay --delay`` prints.

Rendering only: nothing here re-decides a time or an order. The JSON is built first and
the text is drawn from it, so the two can never disagree. Long lists are cut (the first
MAX_LISTED races, lock grants and stuck units; MAX_OPERATIONS operations in the JSON) while
the totals beside them count everything, so a reader always sees how much was left out.
Events are described as a person reads them (``who what on-what at where``); the
critical path is shown only where it changes unit, since a unit's own steps between two
hand-offs add nothing to why the run took as long as it did. When the run's end is a unit
idling out its recorded life, that path is one idle unit: the answer says so and shows the
path of the operation that changed most instead. Whatever the simulation decided
differently from the recording (a lock grant in the other order or never, a queue item
taken by another get) is listed, since only those may make anything earlier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from willowisp.analysis.engine import Analysis
from willowisp.analysis.naming import event_where, fmt_duration, resource_name
from willowisp.display import short_trace_id
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

if TYPE_CHECKING:  # only for annotations: the simulation imports this module's entry points
    from willowisp.replay.whatif import OperationTime, Outcome

MAX_LISTED = 20
MAX_OPERATIONS = 1000  # operations the JSON lists (changed first); the counts cover all


def who(trace: Trace, u: int) -> str:
    """``worker-3 (orders, python)``; the runtime left out when unknown (imported spans)."""
    unit = trace.units[u]
    p = trace.processes[unit.proc]
    return f"{unit.name or unit.kind} ({', '.join(x for x in (p.service or '?', p.runtime) if x)})"


def describe(a: Analysis, i: int) -> str:
    trace = a.trace
    ev = trace.events
    u, r = int(ev.unit[i]), int(ev.res[i])
    try:
        what = K(int(ev.kind[i])).name.lower().replace("_", ".", 1)
    except ValueError:
        what = f"kind {int(ev.kind[i])}"
    on = f" {trace.resources[r].kind} {resource_name(trace, r)}" if r >= 0 else ""
    where = event_where(trace, i)
    return f"{who(trace, u)} {what}{on}" + (f" at {where}" if where else "")


def report(a: Analysis, out: Outcome) -> dict[str, Any]:
    """The what-if result as JSON (``replay --delay ... --format json``)."""
    trace = a.trace

    def unit_name(u: int) -> str:
        return who(trace, u)

    def steps(path: list[int]) -> list[dict[str, Any]]:
        return [
            {
                "event": str(trace.event_id(i)),
                "at_ns": int(out.sim[i]),
                "offset_ns": int(out.sim[i]) - out.start,  # since the run's first event
                "what": describe(a, i),
            }
            for i in _summarize_path(a, path)
        ]

    def orders(flips: list[tuple[int, int]]) -> list[dict[str, Any]]:
        """Pairs of events that now run the other way round: the first, then the other."""
        return [{"first": describe(a, x), "then": describe(a, y)} for x, y in flips[:MAX_LISTED]]

    return {
        "schema": "willowisp.whatif/1",
        "note": "a timed re-simulation of one schedule, not a proof over all interleavings",
        "delays": out.matched,
        "makespan_ns": {"recorded": out.makespan_recorded, "simulated": out.makespan},
        # the unit whose own idle life ends the run (its end cannot move), else null
        "makespan_set_by_idle_unit": unit_name(out.idle_end) if out.idle_end >= 0 else None,
        "critical_path": steps(out.path),
        "operation_path": {"trace_id": out.op_path_trace, "steps": steps(out.op_path)}
        if out.op_path
        else None,
        "reordered": {
            "races": orders(out.race_flips),
            "races_total": len(out.race_flips),
            "lock_grants": orders(out.lock_flips),
            "lock_grants_total": len(out.lock_flips),
            "lock_grants_never": [
                {"first": describe(a, g) if g >= 0 else None, "waiter": describe(a, w)}
                for g, w in out.never_granted[:MAX_LISTED]
            ],
            "lock_grants_never_total": len(out.never_granted),
            "queue_items": [
                {"get": describe(a, g), "took": describe(a, p)}
                for g, p in out.items_flipped[:MAX_LISTED]
            ],
            "queue_items_total": len(out.items_flipped),
            "redecided_events": len(out.redecided),
        },
        "deadlock": [
            {
                "unit": unit_name(u),
                "waits_on": (
                    f"{trace.resources[r].kind} {resource_name(trace, r)}" if r >= 0 else "a reply"
                ),
                "holder_role": "serves it"
                if r >= 0 and trace.resources[r].kind == "rpc"
                else "holds it",
                "held_by": unit_name(h),
            }
            for u, r, h in out.cycle
        ],
        "stuck_units": [unit_name(u) for u in out.stuck_units[:MAX_LISTED]],
        **_operations_json(a, out.operations),
    }


def _operation_name(a: Analysis, root: int) -> str:
    """What a person calls an operation: the request, message or spawn at its root and the
    service that started it (``rpc GET /work from front``), else its root event."""
    trace = a.trace
    r = int(trace.events.res[root])
    if r < 0:
        return describe(a, root)
    service = trace.processes[int(trace.events.proc[root])].service or "?"
    return f"{trace.resources[r].kind} {resource_name(trace, r)} from {service}"


def _operations_json(a: Analysis, ops: list[OperationTime]) -> dict[str, Any]:
    changed = sum(1 for x in ops if x.change)
    unfinished = sum(1 for x in ops if x.change is None)
    never: dict[str, int] = {}  # what never finishes, by name: a delayed hop may be one
    for x in ops:
        if x.change is None:
            name = _operation_name(a, x.root)
            never[name] = never.get(name, 0) + 1
    return {
        "operations": [
            {
                "trace_id": x.trace_id,
                "name": _operation_name(a, x.root),
                "root": str(a.trace.event_id(x.root)),
                "end": str(a.trace.event_id(x.end)),
                "recorded_ns": x.recorded,
                "simulated_ns": x.simulated,
                "change_ns": x.change,
            }
            for x in ops[:MAX_OPERATIONS]
        ],
        "operations_total": len(ops),
        "operations_changed": changed,
        "operations_unfinished": unfinished,
        "operations_unfinished_names": never,
        "operations_unchanged": len(ops) - changed - unfinished,
    }


def _summarize_path(a: Analysis, path: list[int]) -> list[int]:
    """The path's events where it changes unit, plus its ends (at most 40)."""
    ev = a.trace.events
    keep = [
        i
        for k, i in enumerate(path)
        if k in (0, len(path) - 1) or ev.unit[i] != ev.unit[path[k - 1]]
    ]
    return keep if len(keep) <= 40 else keep[:20] + keep[-20:]


def _signed(ns: int) -> str:
    return f"{'+' if ns >= 0 else '-'}{fmt_duration(abs(ns))}"


def _operations_text(doc: dict[str, Any]) -> list[str]:
    """The operations whose end-to-end changed, largest change first, then counts."""
    total = doc["operations_total"]
    if not total:
        return ["operations (end-to-end, root to end): none recorded"]
    changed, unfinished = doc["operations_changed"], doc["operations_unfinished"]
    lines = [f"operations (end-to-end, root to end): {changed} of {total} changed"]
    for x in doc["operations"][: min(changed, MAX_LISTED)]:
        rec, new = x["recorded_ns"], x["simulated_ns"]
        lines.append(
            f"  {_signed(x['change_ns'])}  {x['name']}: {fmt_duration(rec)} → "
            f"{fmt_duration(new)} (trace {short_trace_id(x['trace_id'])})"
        )
    if changed > MAX_LISTED:
        lines.append(f"  and {changed - MAX_LISTED} more changed")
    if unfinished:
        names = doc["operations_unfinished_names"]
        said = [f"{k} x{n}" if n > 1 else k for k, n in list(names.items())[:MAX_LISTED]]
        lines.append(f"  {unfinished} never finish in the simulation (a wait below never "
                     f"ends): {', '.join(said)}")  # fmt: skip
    lines.append(f"  {doc['operations_unchanged']} unchanged")
    return lines


def _path_text(doc: dict[str, Any], out: Outcome) -> list[str]:
    """The run's critical path, or, when that is one idle unit, the path of the operation
    that changed most (the one whose steps say why it changed)."""
    where = "where it changes unit; times since the run's first event"
    if doc["makespan_set_by_idle_unit"]:
        op = doc["operation_path"]
        if op is None:
            return ["critical path: only the idle unit above (no operation changed)"]
        lines = [f"critical path of the operation that changed most, trace "
                 f"{short_trace_id(op['trace_id'])} ({where}):"]  # fmt: skip
        return lines + [f"  +{fmt_duration(s['offset_ns'])} {s['what']}" for s in op["steps"]]
    lines = [f"critical path ({where}):"]
    lines += [f"  +{fmt_duration(s['offset_ns'])} {s['what']}"
              for s in doc["critical_path"]] if out.path else ["  (empty)"]  # fmt: skip
    if out.path and int(out.sim[out.path[0]]) > out.start:
        lines.append("  (it begins there: no recorded event caused its first step, which keeps "
                     "its recorded time)")  # fmt: skip
    return lines


def _redecided_text(races: dict[str, Any]) -> list[str]:
    """Grants and items the simulation gave differently: the only things that may make an
    event earlier than recorded."""
    lines = []
    if races["lock_grants_never_total"]:
        lines.append(f"lock grants the recording made and the simulation never does: "
                     f"{races['lock_grants_never_total']}")  # fmt: skip
        for r in races["lock_grants_never"]:
            first = f"now first: {r['first']}\n    " if r["first"] else ""
            lines.append(f"  {first}never:    {r['waiter']}")
    if races["queue_items_total"]:
        lines.append(f"queue items taken by another get: {races['queue_items_total']}")
        lines += [f"  {r['get']}\n    took {r['took']}" for r in races["queue_items"]]
    return lines


def text(a: Analysis, out: Outcome) -> list[str]:
    doc = report(a, out)
    lines = ["what-if (a timed re-simulation of one schedule, not a proof over all interleavings)"]
    lines += [f"  delay {m}" for m in doc["delays"]]
    rec, new = doc["makespan_ns"]["recorded"], doc["makespan_ns"]["simulated"]
    change = _signed(new - rec)
    lines.append(f"makespan: {fmt_duration(rec)} recorded → {fmt_duration(new)} ({change})")
    idle = doc["makespan_set_by_idle_unit"]
    if idle:
        lines.append(f"  (uninformative: the run ends when {idle} ends, which lives its "
                     "recorded length from its start whatever the delay does; nothing "
                     "recorded ends it sooner or later)")  # fmt: skip
    lines += _operations_text(doc)
    lines += _path_text(doc, out)
    races = doc["reordered"]
    if races["races_total"]:
        lines.append(f"races the delay exposes: {races['races_total']} conflicting pair(s) "
                     "now run in the other order")  # fmt: skip
        lines += [f"  now first: {r['first']}\n    then:     {r['then']}" for r in races["races"]]
    else:
        lines.append("races the delay exposes: none (every conflicting pair kept its order)")
    if races["lock_grants_total"]:
        lines.append(f"lock grants in the other order: {races['lock_grants_total']}")
        lines += [f"  now first: {r['first']}\n    then:     {r['then']}"
                  for r in races["lock_grants"]]  # fmt: skip
    lines += _redecided_text(races)
    if doc["deadlock"]:
        lines.append("deadlock: the simulated run cannot finish; a wait cycle:")
        lines += [f"  {d['unit']} waits on {d['waits_on']}, which {d['held_by']} "
                  f"{d['holder_role'].split()[0]}" for d in doc["deadlock"]]  # fmt: skip
    else:
        lines.append("deadlock: none (no wait cycle)")
    return lines
