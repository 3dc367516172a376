"""``--delay TARGET=DURATION``: what a delay names and how much.

TARGET is ``KIND:PATTERN`` or a bare PATTERN (tried as a unit, a resource, then a hop; it
must match exactly one of those kinds):

- ``unit:NAME`` — the units NAME names (see "Names" below) start DURATION later;
- ``resource:NAME`` — the resources NAME names (see "Names" below): every hold of an owned lock
  (lock, rlock, rwlock, monitor) that ends lasts DURATION longer (added before the release
  that ends it; a hold never released, as in a deadlock, has no end to move and is counted
  as such), a request's reply arrives DURATION later, every other operation on it (a
  semaphore release, a queue put, a data access, a message) takes DURATION more. A name
  that matches a resource is accepted even when nothing on it can move;
- ``hop:TEXT`` — requests and messages whose hop (``client-service->server-service``, or
  the operation's name such as ``GET /price``) contains TEXT: each arrives DURATION later
  at its server or consumer (so everything the server does for it, and the reply, moves;
  its recorded transit is kept whole even where the receiver looked busy when it was
  sent, since those steps may have been the unrecorded hand-off of this very request);
- ``event:PROCESS:SEQ`` — one event (its id; a unique prefix of the process id is
  enough) happens DURATION later than recorded.

DURATION: a number and a unit, ``ns``, ``us``/``µs``, ``ms`` or ``s`` (``50ms``, ``1.5s``).

Names (``unit:``, ``resource:``, and the replay script's ``unit`` command, so all three
agree): exactly NAME, case-sensitive, first; only when nothing has that name, a glob over
whole names if NAME has ``*``, ``?`` or ``[`` (``unit:worker-*``), else every name that
contains it, ignoring case. ``~TEXT`` always means "contains TEXT, ignoring case"; an
empty name is an error. What matched is always listed: a short name like ``A`` must not
quietly take ``MainThread`` and ``Task-2`` with it, nor ``db`` take ``db_pool``.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field

import numpy as np

from willowisp.analysis.engine import Analysis
from willowisp.analysis.naming import resource_name
from willowisp.causality.waits import OWNED_LOCKS, holds
from willowisp.errors import UsageError
from willowisp.model.spec import K

UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
MAX_DELAY_NS = 3600 * 1_000_000_000
NAMES_LISTED = 10  # matched names a delay's line lists before "and N more"
_GLOB = re.compile(r"[*?\[]")
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ns|us|µs|ms|s)\s*$")


@dataclass(frozen=True)
class Delay:
    text: str  # as given
    kind: str  # unit | resource | hop | event
    pattern: str
    ns: int


@dataclass
class Resolved:
    """Per event: extra ns before it (its own work), and per hop-edge event (the reply or
    delivery end): extra ns on the incoming edge. What each delay matched, for the report."""

    before: dict[int, int] = field(default_factory=dict)
    on_edge_into: dict[int, int] = field(default_factory=dict)
    matched: list[str] = field(default_factory=list)


def parse_delay(text: str) -> Delay:
    target, sep, amount = text.rpartition("=")
    if not sep or not target.strip():
        raise UsageError(f"--delay {text!r}: expected TARGET=DURATION, e.g. hop:orders=50ms")
    m = _DURATION.match(amount)
    if not m:
        raise UsageError(f"--delay {text!r}: {amount!r} is not a duration like 50ms or 1.5s")
    ns = round(float(m.group(1)) * UNITS[m.group(2)])
    if ns > MAX_DELAY_NS:
        raise UsageError(f"--delay {text!r}: at most one hour")
    kind, colon, pattern = target.partition(":")
    if colon and kind in ("unit", "resource", "hop", "event"):
        return Delay(text, kind, pattern.strip(), ns)
    return Delay(text, "", target.strip(), ns)


def resolve(a: Analysis, delays: list[Delay]) -> Resolved:
    out = Resolved()
    for d in delays:
        if d.kind:
            count = _apply(a, d, d.kind, out)
            if not count:
                raise UsageError(no_match(a, d, d.kind))
            continue
        hits = {k: _apply(a, d, k, Resolved()) for k in ("unit", "resource", "hop")}
        kinds = [k for k, n in hits.items() if n]
        if not kinds:
            raise UsageError(f"--delay {d.text!r}: no unit, resource or hop matches")
        if len(kinds) > 1:
            raise UsageError(
                f"--delay {d.text!r}: {d.pattern!r} names a {' and a '.join(kinds)}; "
                f"say which, e.g. {kinds[0]}:{d.pattern}"
            )
        _apply(a, d, kinds[0], out)
    return out


def _add(table: dict[int, int], i: int, ns: int) -> None:
    table[i] = table.get(i, 0) + ns


def _apply(a: Analysis, d: Delay, kind: str, out: Resolved) -> int:
    """Add ``d`` as ``kind`` to ``out``; how many places it matched."""
    trace = a.trace
    ev = trace.events
    want = d.pattern.lower()
    if kind == "unit":
        units, how = match_units(a, d.pattern)
        rows = np.flatnonzero(np.isin(ev.unit, units)) if units else np.zeros(0, np.int64)
        firsts: list[int] = (
            np.unique(ev.unit[rows], return_index=True)[1].tolist() if len(rows) else []
        )
        for f in firsts:
            _add(out.before, int(rows[f]), d.ns)
        if units:
            out.matched.append(
                f"{d.text}: {len(units)} unit(s) start later ({how}): {_unit_list(a, units)}"
            )
        return len(units)
    if kind == "resource":
        res, how = match_resources(a, d.pattern)
        return _resource(a, d, res, how, out)
    if kind == "hop":
        return _hop(a, d, want, out)
    if kind == "event":
        proc, _, seq = d.pattern.rpartition(":")
        procs = [p.index for p in trace.processes if proc and p.id.startswith(proc)]
        if len(procs) != 1 or not seq.isdigit():
            return 0
        rows = np.flatnonzero((ev.proc == procs[0]) & (ev.seq == int(seq)))
        for i in rows.tolist():
            _add(out.before, i, d.ns)
        if len(rows):
            out.matched.append(f"{d.text}: 1 event later")
        return len(rows)
    raise UsageError(f"--delay {d.text!r}: unknown target kind {kind!r}")


def match_units(a: Analysis, pattern: str) -> tuple[list[int], str]:
    """The units ``unit:PATTERN`` names (in index order), and how they were matched."""
    return match_names([u.name or "" for u in a.trace.units], pattern, "unit")


def match_resources(a: Analysis, pattern: str) -> tuple[list[int], str]:
    """The resources ``resource:PATTERN`` names (in index order), and how they were
    matched. A resource's name is what the report shows (``resource_name``)."""
    trace = a.trace
    names = [resource_name(trace, r.index) for r in trace.resources]
    return match_names(names, pattern, "resource")


def match_names(names: list[str], pattern: str, what: str) -> tuple[list[int], str]:
    """The positions in ``names`` that PATTERN names, and how they were matched (for the
    report; ``what`` is the thing named, for that sentence).

    Exact name first, case-sensitive: ``A`` is the task named A, ``db`` the lock db, not
    everything with an "a" or a "db" in its name. Only when nothing has that name: a glob
    over whole names if PATTERN has glob characters, else a substring ignoring case.
    ``~TEXT`` asks for the substring match outright. An empty name matches nothing (it
    would be in every name)."""
    if not pattern.removeprefix("~"):
        return [], "an empty name"
    if pattern.startswith("~"):
        return _containing(names, pattern[1:]), f"name contains {pattern[1:]!r}, ignoring case"
    hits = [k for k, n in enumerate(names) if n == pattern]
    if hits:
        return hits, "exact name"
    if _GLOB.search(pattern):
        hits = [k for k, n in enumerate(names) if fnmatch.fnmatchcase(n, pattern)]
        return hits, f"name matches the glob {pattern!r}"
    how = f"no {what} is named exactly {pattern!r}; name contains it, ignoring case"
    return _containing(names, pattern), how


def _containing(names: list[str], part: str) -> list[int]:
    want = part.lower()
    return [k for k, n in enumerate(names) if want in n.lower()]


def _unit_list(a: Analysis, units: list[int]) -> str:
    """``A (svc)``, ``MainThread (front) x2``, ... at most NAMES_LISTED, then how many more."""
    trace = a.trace
    seen: dict[str, int] = {}
    for u in units:
        unit = trace.units[u]
        label = f"{unit.name or unit.kind} ({trace.processes[unit.proc].service or '?'})"
        seen[label] = seen.get(label, 0) + 1
    return _counted(seen)


def _resource_list(a: Analysis, res: list[int]) -> str:
    """``lock db``, ``rlock lock x3``, ... at most NAMES_LISTED, then how many more."""
    trace = a.trace
    seen: dict[str, int] = {}
    for r in res:
        label = f"{trace.resources[r].kind} {resource_name(trace, r)}"
        seen[label] = seen.get(label, 0) + 1
    return _counted(seen)


def _counted(seen: dict[str, int]) -> str:
    shown = [f"{k} x{n}" if n > 1 else k for k, n in list(seen.items())[:NAMES_LISTED]]
    more = len(seen) - NAMES_LISTED
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _resource(a: Analysis, d: Delay, res: list[int], how: str, out: Resolved) -> int:
    """Delay what happens on the resources ``res``; how many resources matched (a resource
    with nothing to move still matches: the report says why nothing moved)."""
    trace = a.trace
    if not res:
        return 0
    replies = _replies_later(a, d, res, out)
    held, never = _holds_longer(a, d, res, out)
    ev = trace.events
    ops = 0
    for i in np.flatnonzero(np.isin(ev.res, res)).tolist():
        k = int(ev.kind[i])
        kind = trace.resources[int(ev.res[i])].kind
        if kind == "rpc" or kind in OWNED_LOCKS or k in (K.UNIT_BLOCK, K.LOCK_ACQUIRED):
            continue  # a request's reply moves instead; an owned lock's hold is lengthened
        _add(out.before, i, d.ns)
        ops += 1
    parts = []
    if held or never:
        parts.append(f"{held} hold(s) lengthened")
    if never:
        parts.append(f"{never} never released (still held when the trace ended: nothing to move)")
    if ops:
        parts.append(f"{ops} operations slower")
    if replies:
        parts.append(f"{replies} replies later")
    if not parts:
        parts.append("nothing recorded on it to move")
    took = f"{len(res)} resource(s) ({how}): {_resource_list(a, res)}"
    out.matched.append(f"{d.text}: {took}; " + ", ".join(parts))
    return len(res)


def _replies_later(a: Analysis, d: Delay, res: list[int], out: Resolved) -> int:
    hops = a.causality.hops
    replies = 0
    for r in res:
        if a.trace.resources[r].kind != "rpc":
            continue
        for row in np.flatnonzero(hops.client == r).tolist():
            end = int(hops.response[row])
            if end >= 0:
                _add(out.on_edge_into, end, d.ns)
                replies += 1
    return replies


def _holds_longer(a: Analysis, d: Delay, res: list[int], out: Resolved) -> tuple[int, int]:
    """Each hold of a matched owned lock ends ``d`` later: the delay goes before the release
    that ends it (an rlock's inner releases stay put). A hold never released cannot last
    longer. Returns (holds lengthened, holds never released)."""
    h = holds(a.trace)
    mine = np.isin(h.res, res)
    release = h.release[mine]
    for i in release[release >= 0].tolist():
        _add(out.before, i, d.ns)
    return int(np.count_nonzero(release >= 0)), int(np.count_nonzero(release < 0))


def no_match(a: Analysis, d: Delay, kind: str) -> str:
    """The error for a target that names nothing: with the names that come closest, or a
    few that exist, so the user sees what the trace calls things."""
    trace = a.trace
    if kind == "unit":
        names = [u.name for u in trace.units if u.name]
    elif kind == "resource":
        names = [resource_name(trace, r.index) for r in trace.resources]
    else:
        names = []
    names = list(dict.fromkeys(names))
    msg = f"--delay {d.text!r}: no {kind} matches {d.pattern!r}"
    if not names:
        return msg
    close = difflib.get_close_matches(d.pattern, names, n=5, cutoff=0.6)
    if close:
        return msg + f"; did you mean {', '.join(map(repr, close))}?"
    some = sorted(names, key=lambda n: (len(n), n))[:5]
    return msg + f"; {len(names)} {kind} names exist, e.g. {', '.join(map(repr, some))}"


def _hop(a: Analysis, d: Delay, want: str, out: Resolved) -> int:
    trace = a.trace
    hops = a.causality.hops
    count = 0
    for row in np.flatnonzero(hops.linked).tolist():
        names = []
        for side in (int(hops.client[row]), int(hops.server[row])):
            if side >= 0:
                names.append(resource_name(trace, side).lower())
        services = [
            trace.processes[int(trace.events.proc[e])].service.lower()
            for e in (int(hops.send[row]), int(hops.recv[row]))
            if e >= 0
        ]
        label = "->".join(services)
        if not any(want in n for n in [*names, label]):
            continue
        recv = int(hops.recv[row])
        if recv >= 0:
            _add(out.on_edge_into, recv, d.ns)
            count += 1
    if count:
        out.matched.append(f"{d.text}: {count} hop(s) slower")
    return count
