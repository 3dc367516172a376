"""``race``: conflicting accesses to shared data that nothing orders.

Two accesses conflict when they touch the same data (``data`` resources with the same
name, from any process), come from different units and at least one writes. They race when
neither happens before the other: no path of program order, lock hand-offs, queue items,
notifications, joins, requests, replies or messages leads from one to the other
(:class:`willowisp.causality.reach.ReachIndex`). A database transaction is a lock
(``BEGIN IMMEDIATE … COMMIT``, a write's implicit transaction: see docs/agent-python.md), so
a read-modify-write inside one is ordered against the others and does not race.

Database rows: a resource naming a row (``row`` set) conflicts with accesses to the same
row and with accesses to its whole table (``row`` empty: an insert, a scan); two different
rows do not. HTTP requests count only when their caller is in the trace (the hop is
linked): requests from a browser or an unsampled caller carry no order the trace could
show, and would all look concurrent. For the same reason accesses of processes recorded in
``hops`` mode are left out (their agents do not record them either): only boundary
instances are recorded there, and what orders one instance after another is outside.

**Which pairs are checked.** Accesses are bucketed per piece of data and sorted by time.
In a bucket of at most ``SMALL`` accesses every conflicting pair is checked; in a larger
one, each access is checked against the latest earlier conflicting access of each other
unit (if that one is ordered before it, so is everything the unit did earlier), for at most
``MAX_UNITS`` units, the busiest: a finding then says how much was left out. The pairs go
to the index in one vectorised call, in both directions (time order is not trusted to be
causal order across clocks).

**Findings.** One per (data, pair of code places): both sides' unit, service, statement
and source line, how many unordered pairs had that shape, and the story: the two
accesses, what both follow (their nearest common predecessor, found by walking the
happens-before graph backwards from each), which locks each side held, and that neither
reaches the other. The id is built from what survives a re-run: the data's stable name
(a database file's base name and table, not its folder or the row's keyed hash), both
places, statements, modes and services.

**Which service did which side is timing.** Two services running the same handler (read
at line 47, write at line 49) race as "A reads, B writes" in one run and "B reads, A
writes" in the next, whichever wrote first. When the trace shows each service also doing
the other side's access, the two are one bug: the id is chosen from both variants
(:func:`~willowisp.analysis.finding.canonical_identity`), so it is the same in every run.
Services that never do each other's side keep the id of the one pairing they have.
"""

from __future__ import annotations

import bisect
import heapq
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.analysis.finding import Finding, ResourceRef, UnitRef, canonical_identity
from willowisp.analysis.naming import (
    at,
    event_where,
    fmt_duration,
    plural,
    possessive,
    resource_name,
    unit_label,
    unit_names,
    unit_ref,
)
from willowisp.causality.link import Causality
from willowisp.causality.reach import ReachIndex, sorted_unique
from willowisp.causality.waits import Holds, holds
from willowisp.ingest.tables import NO_INDEX, Resource
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K

I64 = npt.NDArray[np.int64]

SMALL = 32  # buckets up to this size: every conflicting pair is checked
MAX_UNITS = 64  # in larger buckets, units whose latest accesses are checked (the busiest)
MAX_ROW_BUCKETS = 1000  # rows a table-wide access is checked against, per table
MAX_ANCESTORS = 2_000  # synchronization points visited per side for the explanation
MAX_FINDINGS = 200  # per trace; the rest are counted in the last one's note
REQUEST_LOOKBACK = 256  # events searched back from an HTTP access for its msg.recv
WRITE = 1


@dataclass(frozen=True, slots=True)
class Data:
    """What the analysis needs of one data resource."""

    base: str  # the name without the row: what groups conflicting accesses
    row: str  # '' for the whole table (or data that has no rows)
    statement: str
    stable: str  # the name as the finding id sees it (see the module doc)
    store: str  # sqlite, file, redis, http, api, ...


def data_of(res: Resource) -> Data:
    attrs = dict(res.attrs)
    row = str(attrs.get("row", "") or "")
    name = res.name or f"data #{res.number}"
    base = name[: -len(row) - 2] if row and name.endswith(f"[{row}]") else name
    statement = str(attrs.get("statement", "") or "")
    return Data(base, row, statement, _stable(base, attrs), str(attrs.get("store", "") or ""))


def _stable(base: str, attrs: Mapping[str, object]) -> str:
    """The data's name without what changes between runs: a database's or file's folder
    (often a temporary one), an HTTP server's host and port."""
    store = str(attrs.get("store", "") or "")
    table = str(attrs.get("table", "") or "")
    if table and "#" in base:
        where = base.split(":", 1)[-1].rsplit("#", 1)[0]
        return f"{store or 'db'}:{os.path.basename(where)}#{table}"
    if store == "file" or base.startswith("file:"):
        return "file:" + os.path.basename(base.split(":", 1)[-1])
    if store == "http" or base.startswith("http:"):
        rest = base.split(":", 1)[-1]
        return "http:" + ("/" + rest.split("/", 1)[1] if "/" in rest else rest)
    return base


def find(c: Causality) -> list[Finding]:
    trace = c.trace
    ev = trace.events
    acc = np.flatnonzero((ev.kind == K.DATA_ACCESS) & (ev.res >= 0) & (ev.unit >= 0))
    hops_mode = [p.index for p in trace.processes if dict(p.attrs).get("mode") == "hops"]
    if hops_mode and len(acc):  # see the module doc: too little is recorded to order them
        acc = acc[~np.isin(ev.proc[acc], hops_mode)]
    if not len(acc):
        return []
    data = {int(r): data_of(trace.resources[int(r)]) for r in np.unique(ev.res[acc])}
    acc = _without_outside_requests(c, acc, data)
    pairs, notes = _candidates(trace, c.clocks.adjusted, acc, data)
    if not len(pairs):
        return []
    index = ReachIndex.build(c, sorted_unique(pairs.ravel()))
    a, b = pairs[:, 0], pairs[:, 1]
    racy = ~index.ordered(a, b) & ~index.ordered(b, a)
    a, b = a[racy], b[racy]
    if not len(a):
        return []
    return _Teller(c, index, data, notes, acc).findings(a, b)


def _without_outside_requests(c: Causality, acc: I64, data: dict[int, Data]) -> I64:
    """Drop the accesses of HTTP requests whose caller is not in the trace (the hop is not
    linked): a browser's or an unsampled caller's requests carry no order the trace could
    show, so they would all look concurrent. The agent writes a request's access right
    after its ``msg.recv``, on the same unit."""
    ev = c.trace.events
    http = np.array([data[int(r)].store == "http" for r in ev.res[acc]], dtype=bool)
    if not http.any():
        return acc
    linked = set(c.hops.recv[c.hops.linked & (c.hops.recv >= 0)].tolist())
    keep = ~http
    for i in np.flatnonzero(http).tolist():
        e = int(acc[i])
        u, lo = int(ev.unit[e]), int(c.trace.proc_bounds[int(ev.proc[e])])
        for x in range(e - 1, max(lo, e - REQUEST_LOOKBACK) - 1, -1):
            if int(ev.unit[x]) == u:
                keep[i] = int(ev.kind[x]) == K.MSG_RECV and x in linked
                break
    kept: I64 = acc[keep]
    return kept


def _candidates(
    trace: Trace, adjusted: I64, acc: I64, data: dict[int, Data]
) -> tuple[npt.NDArray[np.int64], dict[str, str]]:
    """Pairs (earlier, later) of conflicting accesses to check, and per data name a note
    on what was left unchecked."""
    ev = trace.events
    res = ev.res[acc]
    bases = sorted({d.base for d in data.values()})
    base_id = {b: i for i, b in enumerate(bases)}
    rows = sorted({(d.base, d.row) for d in data.values() if d.row})
    row_id = {r: i + 1 for i, r in enumerate(rows)}  # 0: the whole table
    res_base = {r: base_id[d.base] for r, d in data.items()}
    res_row = {r: row_id.get((d.base, d.row), 0) for r, d in data.items()}
    group = np.array([res_base[int(r)] for r in res], dtype=np.int64)
    row = np.array([res_row[int(r)] for r in res], dtype=np.int64)
    notes: dict[str, str] = {}
    # A whole-table access conflicts with each row of its table: copy it into each row's
    # bucket (few tables have both; the rows checked are capped).
    items, buckets = [acc], [group * (len(rows) + 1) + row]
    for g in np.unique(group[row == 0]):
        table_wide = acc[(group == g) & (row == 0)]
        its_rows = np.unique(row[(group == g) & (row > 0)])
        if len(its_rows) > MAX_ROW_BUCKETS:
            notes[bases[int(g)]] = (
                f"whole-table accesses checked against {MAX_ROW_BUCKETS} of {len(its_rows):,} rows"
            )
            its_rows = its_rows[:MAX_ROW_BUCKETS]
        for r in its_rows:
            items.append(table_wide)
            buckets.append(np.full(len(table_wide), int(g) * (len(rows) + 1) + int(r)))
    item = np.concatenate(items)
    bucket = np.concatenate(buckets)
    order = np.lexsort((item, adjusted[item], bucket))
    item, bucket = item[order], bucket[order]
    unit = ev.unit[item].astype(np.int64)
    write = ev.arg[item] == WRITE
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    ends = np.append(starts[1:], len(item))
    sizes = ends - starts
    out = [_small_pairs(item, bucket, unit, write, sizes)]
    for lo, hi in zip(starts[sizes > SMALL].tolist(), ends[sizes > SMALL].tolist(), strict=True):
        found, left_out = _large_pairs(item[lo:hi], unit[lo:hi], write[lo:hi])
        out.append(found)
        if left_out:
            name = bases[int(bucket[lo]) // (len(rows) + 1)]
            notes[name] = f"{left_out} units' accesses not checked (busiest {MAX_UNITS} were)"
    pairs = np.concatenate(out) if out else np.zeros((0, 2), np.int64)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if len(pairs):  # unique pairs: one int64 key each (sorting rows is much slower)
        span = np.int64(len(ev) + 1)
        key = sorted_unique(pairs[:, 0] * span + pairs[:, 1])
        pairs = np.stack([key // span, key % span], axis=1)
    return pairs, notes


def _conflict(unit: I64, write: npt.NDArray[np.bool_], i: I64, j: I64) -> npt.NDArray[np.bool_]:
    ok: npt.NDArray[np.bool_] = (unit[i] != unit[j]) & (write[i] | write[j])
    return ok


def _small_pairs(
    item: I64, bucket: I64, unit: I64, write: npt.NDArray[np.bool_], sizes: I64
) -> npt.NDArray[np.int64]:
    """Every conflicting pair within buckets of at most SMALL accesses: row i with row i+k
    for k = 1..SMALL-1 when both are in the same bucket."""
    small = np.repeat(sizes <= SMALL, sizes)
    out = []
    n = len(item)
    for k in range(1, min(SMALL, n)):
        i = np.arange(n - k)
        j = i + k
        keep = small[i] & (bucket[i] == bucket[j])
        if not keep.any():
            break
        i, j = i[keep], j[keep]
        ok = _conflict(unit, write, i, j)
        out.append(np.stack([item[i[ok]], item[j[ok]]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def _large_pairs(
    item: I64, unit: I64, write: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], int]:
    """Each access with the latest earlier conflicting access of each other unit (the
    busiest MAX_UNITS units), and how many units were left out."""
    units, counts = np.unique(unit, return_counts=True)
    busiest = units[np.argsort(-counts, kind="stable")[:MAX_UNITS]]
    pos = np.arange(len(item))
    out = []
    for u in busiest.tolist():
        mine = unit == u
        last_any = np.maximum.accumulate(np.where(mine, pos, -1))
        last_write = np.maximum.accumulate(np.where(mine & write, pos, -1))
        prev_any = np.concatenate([[-1], last_any[:-1]])
        prev_write = np.concatenate([[-1], last_write[:-1]])
        cand = np.where(write, prev_any, prev_write)
        ok = ~mine & (cand >= 0)
        out.append(np.stack([item[cand[ok]], item[ok]], axis=1))
    return np.concatenate(out), max(0, len(units) - MAX_UNITS)


class _Teller:
    """Groups unordered pairs into findings and tells each one's story."""

    def __init__(
        self,
        c: Causality,
        index: ReachIndex,
        data: dict[int, Data],
        notes: dict[str, str],
        acc: I64,
    ) -> None:
        self.c, self.trace, self.index, self.data, self.notes = c, c.trace, index, data, notes
        self.acc = acc  # every access the analysis looked at
        self._present: set[tuple[str, str]] | None = None  # see sides_present
        self._holds: Holds | None = None
        self._dsts_by_unit: dict[int, list[int]] | None = None
        self._edges: tuple[list[int], list[int]] | None = None

    def side(self, e: int, service: str | None = None) -> str:
        """What identifies one side of a race across runs; ``service`` in place of the
        access's own, to ask what the side would be had the other service done it."""
        ev, trace = self.trace.events, self.trace
        d = self.data[int(ev.res[e])]
        if service is None:
            service = trace.processes[int(ev.proc[e])].service
        mode = "write" if int(ev.arg[e]) == WRITE else "read"
        return f"{service}|{event_where(trace, e)}|{d.statement}|{mode}"

    def identity(self, a: int, b: int) -> tuple[str, ...]:
        """The finding's identity, the same whichever service did which side (see the
        module doc): with the services swapped too when each did the other's access."""
        trace, ev = self.trace, self.trace.events
        da, db = self.data[int(ev.res[a])], self.data[int(ev.res[b])]
        # a row's and its whole table's stable names agree; min() is for when they do not
        stable = min(da.stable, db.stable)
        variants = [("race", stable, *sorted((self.side(a), self.side(b))))]
        sva = trace.processes[int(ev.proc[a])].service
        svb = trace.processes[int(ev.proc[b])].service
        if sva != svb:
            xa, xb = self.side(a, svb), self.side(b, sva)
            present = self.sides_present()
            if (da.base, xa) in present and (db.base, xb) in present:
                variants.append(("race", stable, *sorted((xa, xb))))
        return canonical_identity("race", variants)

    def sides_present(self) -> set[tuple[str, str]]:
        """(data base, side) of every access looked at: which service did what where.
        One representative per distinct (resource, process, location, mode), so millions
        of accesses cost one vectorised ``unique``."""
        if self._present is None:
            ev = self.trace.events
            e = self.acc
            shape = np.stack([ev.res[e], ev.proc[e], ev.loc[e], ev.arg[e] == WRITE], axis=1)
            _, first = np.unique(shape, axis=0, return_index=True)
            self._present = {
                (self.data[int(ev.res[x])].base, self.side(x)) for x in e[first].tolist()
            }
        return self._present

    def side_ids(self, e: I64) -> I64:
        """Per access, a number for what ``side`` says (equal strings, equal numbers):
        built from small per-process, per-location and per-resource tables, so grouping
        millions of pairs needs no Python per pair."""
        trace, ev = self.trace, self.trace.events
        dense: dict[str, int] = {}
        svc = np.array([dense.setdefault(p.service, len(dense)) for p in trace.processes])
        dense = {}
        where = np.array(
            [dense.setdefault(loc.where(), len(dense)) for loc in trace.locations] + [len(dense)]
        )  # the last entry: no location (index -1)
        dense = {}
        stmt = {r: dense.setdefault(d.statement, len(dense)) for r, d in self.data.items()}
        stmt_of = np.array([stmt[int(r)] for r in ev.res[e]], dtype=np.int64)
        key = svc[ev.proc[e]].astype(np.int64)
        key = key * (len(where) + 1) + where[ev.loc[e]]
        key = key * (len(dense) + 1) + stmt_of
        ids: I64 = key * 2 + (ev.arg[e] == WRITE)
        return ids

    def findings(self, a: I64, b: I64) -> list[Finding]:
        ev, adj = self.trace.events, self.c.clocks.adjusted
        # earlier side first, by adjusted time
        swap = adj[b] < adj[a]
        a, b = np.where(swap, b, a), np.where(swap, a, b)
        bases: dict[str, int] = {}
        base_of = {r: bases.setdefault(d.base, len(bases)) for r, d in self.data.items()}
        base = np.array([base_of[int(r)] for r in ev.res[a]], dtype=np.int64)
        sa, sb = self.side_ids(a), self.side_ids(b)
        lo, hi = np.minimum(sa, sb), np.maximum(sa, sb)
        # groups: (data, unordered pair of sides); in each, the pair whose later access
        # comes first is the example
        order = np.lexsort((b, adj[b], hi, lo, base))
        key = np.stack([base[order], lo[order], hi[order]], axis=1)
        new = np.concatenate([[True], (key[1:] != key[:-1]).any(axis=1)])
        starts = np.flatnonzero(new)
        counts = np.diff(np.append(starts, len(order)))
        first = order[starts]
        shown = np.argsort(adj[b[first]], kind="stable")[:MAX_FINDINGS]
        out = [self.finding(int(a[first[g]]), int(b[first[g]]), int(counts[g])) for g in shown]
        if len(starts) > MAX_FINDINGS and out:
            more = len(starts) - MAX_FINDINGS
            out[-1] = out[-1].with_extra(note=f"{more} more race findings not listed")
        return out

    def finding(self, a: int, b: int, count: int) -> Finding:
        trace, ev = self.trace, self.trace.events
        ua, ub = int(ev.unit[a]), int(ev.unit[b])
        da, db = self.data[int(ev.res[a])], self.data[int(ev.res[b])]
        name = trace.resources[int(ev.res[b if db.row else a])].name or db.base
        short = unit_names(trace, [ua, ub])
        procs = {int(ev.proc[a]), int(ev.proc[b])}
        services = {trace.processes[p].service or "?" for p in procs}
        who = {u: self.process_name(u) if len(procs) > 1 else short[u] for u in (ua, ub)}
        if len(procs) > 1 and len(services) == 1:  # two processes of one service
            who = {u: f"{who[u]} (pid {trace.processes[trace.units[u].proc].pid})" for u in who}
        verb = {e: "writes" if int(ev.arg[e]) == WRITE else "reads" for e in (a, b)}
        wa, wb = event_where(trace, a), event_where(trace, b)
        summary = (
            f"race on {name}: {who[ua]} {verb[a]} it{at(wa)} and {who[ub]} {verb[b]} it{at(wb)} "
            f"with nothing ordering them"
        )
        if count > 1:
            summary += f" ({plural(count, 'time')})"
        lines = [
            f"{unit_label(trace, ua)} {verb[a]} {name}{at(wa)}" + _stmt(da.statement),
            f"{unit_label(trace, ub)} {verb[b]} it{at(wb)}"
            + _stmt(db.statement)
            + f", {fmt_duration(int(self.c.clocks.adjusted[b] - self.c.clocks.adjusted[a]))} "
            "later",
        ]
        common = self.common_predecessor(a, b)
        if common >= 0:
            cu = int(ev.unit[common])
            lines.append(
                f"both come after {self.who(cu, who)} {describe(trace, common)}"
                f"{at(event_where(trace, common))}; from there one path leads to each access"
            )
        else:
            lines.append(
                f"nothing before them links {who[ua]} and {who[ub]} (within the "
                f"{MAX_ANCESTORS:,} latest synchronization points before each)"
            )
        lines += self.locks_line(a, b, who)
        lines.append(
            f"neither access happens before the other: no lock, message, request, queue or "
            f"join leads from {possessive(who[ua])} {verb[a][:-1]} to "
            f"{possessive(who[ub])} {verb[b][:-1]} or back → race"
        )
        note = self.notes.get(da.base)
        if note:
            lines.append(f"(not every pair was checked on this data: {note})")
        identity = self.identity(a, b)
        accesses = [self.access_json(e) for e in (a, b)]
        events = [a, b] + ([common] if common >= 0 else [])
        return Finding(
            kind="race",
            severity="warning",
            summary=summary,
            identity=identity,
            units=(unit_ref(trace, ua), unit_ref(trace, ub)),
            resources=(ResourceRef("data", name, wa),),
            events=tuple(str(trace.event_id(e)) for e in events),
            explanation=tuple(lines),
            extra=(("count", count), ("accesses", accesses)),
        )

    def process_name(self, u: int) -> str:
        return self.trace.processes[self.trace.units[u].proc].service or "?"

    def who(self, u: int, short: dict[int, str]) -> str:
        """A unit the story has not named yet: ``MainThread of orch``."""
        if u in short:
            return short[u]
        unit = self.trace.units[u]
        return f"{unit.name} of {self.trace.processes[unit.proc].service or '?'}"

    def access_json(self, e: int) -> dict[str, object]:
        trace, ev = self.trace, self.trace.events
        u: UnitRef = unit_ref(trace, int(ev.unit[e]))
        return {
            "unit": u.id,
            "service": u.service,
            "runtime": u.runtime,
            "mode": "write" if int(ev.arg[e]) == WRITE else "read",
            "statement": self.data[int(ev.res[e])].statement,
            "where": event_where(trace, e),
            "event": str(trace.event_id(e)),
        }

    # --- the story -------------------------------------------------------------------------

    def common_predecessor(self, a: int, b: int) -> int:
        """The latest event that happens before both ``a`` and ``b``, NO_INDEX if none.

        Walks back from each over synchronization points, keeping per unit the latest
        position reached (everything of that unit up to it happens before the start); the
        common predecessors in a unit are those up to the smaller of the two positions."""
        reach_a, reach_b = self.ancestors(a), self.ancestors(b)
        adj = self.c.clocks.adjusted
        best = NO_INDEX
        for u, pa in reach_a.items():
            pb = reach_b.get(u)
            if pb is None:
                continue
            e = min(pa, pb)
            if best < 0 or (int(adj[e]), e) > (int(adj[best]), best):
                best = e
        return best

    def ancestors(self, start: int) -> dict[int, int]:
        """Per unit, the latest event of it that happens before ``start`` (exclusive),
        among the MAX_ANCESTORS latest synchronization points before it: the walk goes
        back in adjusted time (a heap), so the nearest predecessors are found first."""
        ev, adj = self.trace.events, self.c.clocks.adjusted
        latest: dict[int, int] = {}
        seen: set[int] = {start}
        todo: list[tuple[int, int]] = []

        def push(x: int) -> None:
            if x >= 0 and x not in seen:
                seen.add(x)
                heapq.heappush(todo, (-int(adj[x]), -x))

        for x in self.incoming(start):
            push(x)
        push(self.previous_point(int(ev.unit[start]), start))
        visited = 0
        while todo and visited < MAX_ANCESTORS:
            e = -heapq.heappop(todo)[1]
            visited += 1
            u = int(ev.unit[e])
            if latest.get(u, NO_INDEX) < e:
                latest[u] = e
            for x in self.incoming(e):
                push(x)
            push(self.previous_point(u, e))
        return latest

    def previous_point(self, u: int, e: int) -> int:
        """The latest event of unit u before e where an edge arrives, NO_INDEX if none."""
        points = self.dsts_by_unit().get(u)
        if points is None:
            return NO_INDEX
        i = bisect.bisect_left(points, e) - 1
        return points[i] if i >= 0 else NO_INDEX

    def incoming(self, e: int) -> list[int]:
        """Sources of the edges into e (Python lists: the walk asks thousands of times)."""
        if self._edges is None:
            self._edges = (self.index.dst.tolist(), self.index.src.tolist())
        dst, src = self._edges
        return src[bisect.bisect_left(dst, e) : bisect.bisect_right(dst, e)]

    def dsts_by_unit(self) -> dict[int, list[int]]:
        if self._dsts_by_unit is None:
            dst = sorted_unique(self.index.dst)
            units = self.trace.events.unit[dst]
            order = np.argsort(units, kind="stable")
            dst, units = dst[order], units[order]
            starts = np.flatnonzero(np.concatenate([[True], units[1:] != units[:-1]]))
            starts = starts[starts < len(dst)].tolist()  # no edges at all: no unit either
            ends = [*starts[1:], len(dst)] if starts else []
            self._dsts_by_unit = {
                int(units[lo]): dst[lo:hi].tolist() for lo, hi in zip(starts, ends, strict=True)
            }
        return self._dsts_by_unit

    def locks_line(self, a: int, b: int, short: dict[int, str]) -> list[str]:
        """Which locks each side held at its access, when either held one."""
        held = {e: self.locks_held(e) for e in (a, b)}
        if not held[a] and not held[b]:
            return []
        ev = self.trace.events
        parts = []
        for e in (a, b):
            u = int(ev.unit[e])
            what = "write" if int(ev.arg[e]) == WRITE else "read"
            inside = "inside lock " + ", ".join(held[e]) if held[e] else "inside no lock"
            parts.append(f"{possessive(short[u])} {what} was {inside}")
        return ["; ".join(parts) + "; no lock covered both"]

    def locks_held(self, e: int) -> list[str]:
        if self._holds is None:
            self._holds = holds(self.trace)
        h = self._holds
        u = int(self.trace.events.unit[e])
        mine = (h.unit == u) & (h.acquire < e) & ((h.release > e) | (h.release < 0))
        names = {resource_name(self.trace, int(r)) for r in h.res[mine]}
        return sorted(names)


def _stmt(statement: str) -> str:
    return f": {statement}" if statement else ""


def describe(trace: Trace, e: int) -> str:
    """A synchronization event as what its unit did: "sent POST /sell", "started Thread-2"."""
    ev = trace.events
    kind, r, arg = int(ev.kind[e]), int(ev.res[e]), int(ev.arg[e])
    rname = resource_name(trace, r) if r >= 0 else ""
    if kind == K.UNIT_CREATE:
        child = trace.unit_index(ev.proc[[e]], np.array([arg]))[0]
        return f"started {trace.units[int(child)].name}" if child >= 0 else "started a unit"
    words: dict[int, str] = {
        K.UNIT_START: "began",
        K.UNIT_END: "ended",
        K.LOCK_ACQUIRED: f"acquired {rname}",
        K.LOCK_RELEASE: f"released {rname}",
        K.QUEUE_PUT: f"put an item on {rname}",
        K.QUEUE_GET: f"took an item from {rname}",
        K.SYNC_NOTIFY: f"signalled {rname}",
        K.SYNC_ARRIVE: f"arrived at {rname}",
        K.UNIT_WAKE: f"was woken on {rname}",
        K.JOIN_DONE: f"joined {rname}",
        K.MSG_SEND: f"sent {rname}",
        K.MSG_RECV: f"received {rname}",
        K.RPC_REPLY: f"replied to {rname}",
        K.RPC_RESPONSE: f"got the reply to {rname}",
        K.PROC_SPAWN: "started a child process",
        K.PROC_START: "started as a child process",
    }
    return words.get(kind, "went on")
