"""Clock domains: which processes share a clock, and how the others line up with them.

Merging. Two processes share a domain only when the facts their agents recorded prove it:
equal ``boot_id`` (non-empty: an unknown boot proves nothing), equal time namespace, the
same fake-time library (or none), no simulated offset on either, and anchors that agree
within 50 us. Anchors are compared pairwise at the nearest monotonic times (the processes
share a monotonic clock if the keys match), using the median difference so one anchor taken
across an NTP step does not split a host in two. Host name is a label, never a key: two
containers on one host may well differ, two machines may share a name.

Aligning. Offsets come from causal constraints only (:mod:`willowisp.causality.offsets`),
never from timestamp proximity: each cross-domain happens-before edge bounds the
difference between two domains' offsets. The result per domain is an interval, its midpoint
(the offset used to put the domain on the reference line) and its half-width (the
uncertainty). Raw times stay untouched; ``adjusted = raw + offset`` is a separate column.
Drift is measured from the same edges cut into time windows when they show it (the offset
moved during the run), else from the domain's own anchors; offsets stay constant either way.

The reference domain is, in order: the one ``--reference`` names (a process id prefix, a pid
or a service name), the one holding the process ``willowisp run`` started, the one with the
most cross-domain constraints (ties: more processes, then more events, then first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.causality.offsets import Interval, drift, solve_edges
from willowisp.errors import UsageError
from willowisp.ingest.anchors import Anchors, drift_ns_per_s
from willowisp.ingest.trace import Trace

SAME_CLOCK_NS = 50_000  # anchors of one clock agree within this (contract)
ANCHOR_DRIFT_METHOD = "anchors: least-squares line of wall against monotonic time"

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ClockDomain:
    """One clock and the processes reading it, placed on the reference line."""

    index: int
    id: str  # "D1", "D2", ... in the order of each domain's first process
    processes: tuple[int, ...]  # process indices
    reference: bool
    simulated: bool  # a process in it had WILLOWISP_CLOCK_OFFSET_NS set
    interval: Interval  # offsets allowed by the causal constraints
    offset_ns: int  # the offset used: the interval's midpoint (0 for the reference)
    # How fast the domain's clock drifts, and how that was measured (drift_method): from
    # the causal edges when time windows of them disagree on the offset (DRIFT_METHOD), else
    # from its own anchors (wall against monotonic time, ANCHOR_DRIFT_METHOD).
    drift_ns_per_s: int
    drift_method: str
    constraints: int  # cross-domain causal edges that touch it
    slack_ns: int  # how inconsistent the constraints were (0 when consistent)

    @property
    def uncertainty_ns(self) -> int | None:
        return self.interval.half_width


@dataclass(frozen=True, slots=True)
class ClockAlignment:
    domains: tuple[ClockDomain, ...]
    domain_of_proc: npt.NDArray[np.int32]
    reference: int  # domain index
    adjusted: I64  # per event: raw + its domain's offset
    # The tightest constraint per ordered domain pair (a, b): o_a - o_b <= bound, and the
    # edge (src event in a -> dst event in b) it comes from. The evidence findings cite.
    evidence: dict[tuple[int, int], tuple[int, int, int]]

    def offset_of_proc(self, p: int) -> int:
        return self.domains[int(self.domain_of_proc[p])].offset_ns


def group_processes(trace: Trace) -> list[list[int]]:
    """Processes per clock domain, in order of their first process (see module doc)."""
    n = len(trace.processes)
    anchors = [trace.anchors(p) for p in range(n)]
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    by_key: dict[tuple[str, str, str], list[int]] = {}
    for p in trace.processes:
        if p.boot_id and p.simulated_offset_ns == 0 and len(anchors[p.index]):
            by_key.setdefault((p.boot_id, p.time_ns, p.fake_time), []).append(p.index)
    for members in by_key.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if find(a) != find(b) and anchors_agree(anchors[a], anchors[b]):
                    parent[find(b)] = find(a)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def anchors_agree(a: Anchors, b: Anchors, tolerance_ns: int = SAME_CLOCK_NS) -> bool:
    """Do two processes' wall - monotonic offsets agree at matching monotonic times?"""
    if len(a) == 0 or len(b) == 0:
        return False
    j = np.clip(np.searchsorted(b.mono, a.mono), 0, len(b) - 1)
    j_prev = np.maximum(j - 1, 0)
    nearest = np.where(np.abs(b.mono[j_prev] - a.mono) < np.abs(b.mono[j] - a.mono), j_prev, j)
    diff = np.abs(a.offset - b.offset[nearest])
    return bool(np.median(diff) <= tolerance_ns)


def align(trace: Trace, src: I64, dst: I64, reference: str | None = None) -> ClockAlignment:
    """Domains, offsets and the adjusted-time column.

    ``src``/``dst`` are the event indices of cross-process happens-before edges (hops and
    spawns). Raises UsageError when ``reference`` names no process, or processes in
    different domains.
    """
    groups = group_processes(trace)
    dom = np.zeros(len(trace.processes), dtype=np.int32)
    for d, members in enumerate(groups):
        dom[members] = d
    ev = trace.events
    da, db = dom[ev.proc[src]], dom[ev.proc[dst]]
    cross = da != db
    da, db, src, dst = da[cross], db[cross], src[cross], dst[cross]
    bound = ev.raw[dst] - ev.raw[src]
    evidence = _tightest(da, db, bound, src, dst)
    touching = np.bincount(np.concatenate([da, db]), minlength=len(groups))
    ref = _reference(trace, groups, dom, touching, reference)
    a64, b64 = da.astype(np.int64), db.astype(np.int64)
    solution = solve_edges(len(groups), ref, a64, b64, bound)
    drifts = drift(len(groups), ref, a64, b64, bound, ev.raw[src])
    domains = []
    for d, members in enumerate(groups):
        interval = Interval(0, 0) if d == ref else solution.intervals[d]
        seen = drifts[d]
        if seen is None:
            rate = round(drift_ns_per_s([trace.anchors(p) for p in members]))
            method = ANCHOR_DRIFT_METHOD
        else:
            rate, method = seen.ns_per_s, seen.method
        domains.append(
            ClockDomain(
                index=d,
                id=f"D{d + 1}",
                processes=tuple(members),
                reference=d == ref,
                simulated=any(trace.processes[p].simulated_offset_ns != 0 for p in members),
                interval=interval,
                offset_ns=interval.midpoint,
                drift_ns_per_s=rate,
                drift_method=method,
                constraints=int(touching[d]),
                slack_ns=solution.slack_ns,
            )
        )
    offsets = np.array([d.offset_ns for d in domains], dtype=np.int64)
    adjusted = ev.raw + offsets[dom[ev.proc]] if len(ev) else ev.raw.copy()
    return ClockAlignment(tuple(domains), dom, ref, adjusted, evidence)


def _tightest(
    da: npt.NDArray[np.int32], db: npt.NDArray[np.int32], bound: I64, src: I64, dst: I64
) -> dict[tuple[int, int], tuple[int, int, int]]:
    """The smallest bound per ordered (a, b) domain pair (the only one that matters), with
    the edge it comes from."""
    if len(bound) == 0:
        return {}
    order = np.lexsort((bound, db, da))
    a_s, b_s = da[order], db[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (a_s[1:] != a_s[:-1]) | (b_s[1:] != b_s[:-1])
    rows = order[first]
    return {
        (int(da[i]), int(db[i])): (int(src[i]), int(dst[i]), int(bound[i])) for i in rows.tolist()
    }


def _reference(
    trace: Trace,
    groups: list[list[int]],
    dom: npt.NDArray[np.int32],
    touching: npt.NDArray[np.int64],
    spec: str | None,
) -> int:
    if spec:
        matches = [
            p.index
            for p in trace.processes
            if p.id.startswith(spec) or str(p.pid) == spec or p.service == spec
        ]
        if not matches:
            known = ", ".join(sorted({p.label() for p in trace.processes})) or "none"
            raise UsageError(f"--reference {spec!r} names no process (processes: {known})")
        doms = sorted({int(dom[p]) for p in matches})
        if len(doms) > 1:
            raise UsageError(
                f"--reference {spec!r} matches processes in {len(doms)} clock "
                "domains; give a process id prefix"
            )
        return doms[0]
    for p in trace.processes:
        if p.run_root:
            return int(dom[p.index])
    if not groups:
        return 0
    bounds = trace.proc_bounds
    sizes = [sum(int(bounds[p + 1] - bounds[p]) for p in g) for g in groups]
    return max(range(len(groups)), key=lambda d: (int(touching[d]), len(groups[d]), sizes[d], -d))
