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
uncertainty). Raw times stay untouched; adjusted time is a separate column.

Drift. When time windows of the same edges show a domain's offset moving during the run
(:mod:`willowisp.causality.drift`), its offset becomes a line: ``adjusted = raw + offset +
floor(drift * (raw - ref) / 1e9)``, the offset stated at the domain's reference time
``ref``, and its interval widened by what the rate's own uncertainty allows. Without such
evidence the offset is constant and the reported drift is the domain's own anchors' (wall
against monotonic time), which is not applied: raw times already follow the wall clock.
Every adjustment is traceable: the causal edges whose bounds sum to each end of the
interval the offset is the midpoint of (``ClockDomain.lower``/``upper``), and the windows
that showed the drift.

The reference domain is, in order: the one ``--reference`` names (a process id prefix, a pid
or a service name), the one holding the process ``willowisp run`` started, the one with the
most cross-domain constraints (ties: more processes, then more events, then first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from willowisp.causality.drift import FIT_METHOD, Drift, drift, fit_model
from willowisp.causality.offsets import Interval, Solution, solve_edges
from willowisp.errors import UsageError
from willowisp.ingest.anchors import Anchors, drift_ns_per_s
from willowisp.ingest.trace import Trace

SAME_CLOCK_NS = 50_000  # anchors of one clock agree within this (contract)
ANCHOR_DRIFT_METHOD = "anchors: least-squares line of wall against monotonic time"

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Link:
    """One causal edge behind a bound: ``o[cause's domain] - o[effect's domain] <=
    bound_ns``, with the applied drift model's corrections in the bound."""

    cause: int  # event index
    effect: int  # event index
    bound_ns: int


@dataclass(frozen=True, slots=True)
class ClockDomain:
    """One clock and the processes reading it, placed on the reference line."""

    index: int
    id: str  # "D1", "D2", ... in the order of each domain's first process
    processes: tuple[int, ...]  # process indices
    reference: bool
    simulated: bool  # a process in it had WILLOWISP_CLOCK_OFFSET_NS set
    # Offsets allowed by the causal constraints (at drift_ref_ns when the drift is applied,
    # then also every offset a rate the edges allow needs: honest, so it may be wider).
    interval: Interval
    offset_ns: int  # the offset used: the midpoint of ``placed`` (0 for the reference)
    # The interval under the applied model alone; without drift the same as ``interval``.
    # Its ends are the sums of ``lower`` / ``upper`` (plus slack per link).
    placed: Interval
    # How fast the domain's clock drifts, and how that was measured (drift_method): from
    # the causal edges when time windows of them disagree on the offset (then applied), else
    # from its own anchors (wall against monotonic time, ANCHOR_DRIFT_METHOD; not applied).
    drift_ns_per_s: int
    drift_method: str
    constraints: int  # cross-domain causal edges that touch it
    slack_ns: int  # how inconsistent the constraints were (0 when consistent)
    drift_applied: bool = False  # adjusted time follows the line, not a constant
    drift_ref_ns: int | None = None  # raw time at which offset_ns holds (None: constant)
    # Rates the edges allow (None on an unbounded side); None when not applied or when no
    # rate explains them (then slack_ns says by how much).
    drift_allowed: tuple[int | None, int | None] | None = None
    drift_evidence: Drift | None = None  # the two windows that showed the drift
    lower: tuple[Link, ...] = ()  # from D to the reference: their bounds sum to -placed.lo
    upper: tuple[Link, ...] = ()  # from D to the reference: their bounds sum to placed.hi

    @property
    def uncertainty_ns(self) -> int | None:
        return self.interval.half_width

    def correction_ns(self, raw_ns: int) -> int:
        """What the drift adds at raw time ``raw_ns`` (0 for a constant offset)."""
        if not self.drift_applied or self.drift_ref_ns is None:
            return 0
        q, r = divmod(raw_ns - self.drift_ref_ns, 1_000_000_000)
        return self.drift_ns_per_s * q + (self.drift_ns_per_s * r) // 1_000_000_000

    def adjust(self, raw_ns: int) -> int:
        """A raw time of this domain on the reference line (what ``adjusted`` holds)."""
        return raw_ns + self.offset_ns + self.correction_ns(raw_ns)


@dataclass(frozen=True, slots=True)
class ClockAlignment:
    domains: tuple[ClockDomain, ...]
    domain_of_proc: npt.NDArray[np.int32]
    reference: int  # domain index
    adjusted: I64  # per event: raw + its domain's offset (+ its drift correction)
    # The tightest constraint per ordered domain pair (a, b): o_a - o_b <= bound (under the
    # applied drift model), and the edge (src event in a -> dst event in b) it comes from.
    # The evidence findings cite.
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


def align(
    trace: Trace,
    src: I64,
    dst: I64,
    reference: str | None = None,
    hints: tuple[I64, I64] | None = None,
) -> ClockAlignment:
    """Domains, offsets and the adjusted-time column.

    ``src``/``dst`` are the event indices of cross-process happens-before edges (hops and
    spawns): facts, which bound the offsets. ``hints`` are edges that usually hold but are
    not facts (an imported server span's end taken as its reply): they never bound an
    offset, but where the facts bound a domain on one side only, the offset used is the
    middle of what facts and hints allow together (when they agree). Raises UsageError
    when ``reference`` names no process, or processes in different domains.
    """
    groups = group_processes(trace)
    dom = np.zeros(len(trace.processes), dtype=np.int32)
    for d, members in enumerate(groups):
        dom[members] = d
    ev = trace.events
    da, db = dom[ev.proc[src]], dom[ev.proc[dst]]
    cross = da != db
    da, db, src, dst = da[cross], db[cross], src[cross], dst[cross]
    raw_a, raw_b = ev.raw[src], ev.raw[dst]
    touching = np.bincount(np.concatenate([da, db]), minlength=len(groups))
    ref = _reference(trace, groups, dom, touching, reference)
    a64, b64 = da.astype(np.int64), db.astype(np.int64)
    n = len(groups)
    # Drift is tested under the constant model; where found, a line is fitted and the
    # bounds are rewritten for it, so one solve places constant offsets and lines alike.
    detected = drift(n, ref, a64, b64, raw_b - raw_a, raw_a)
    model = fit_model(n, ref, a64, b64, raw_a, raw_b, detected)
    bound = model.bounds(a64, b64, raw_a, raw_b)
    evidence = _tightest(da, db, bound, src, dst)
    placed = solve_edges(n, ref, a64, b64, bound)
    honest = (
        solve_edges(n, ref, a64, b64, model.widened(a64, b64, raw_a, raw_b, bound))
        if model.any
        else placed
    )
    hinted = _hinted(trace, dom, model, n, ref, (a64, b64, raw_a, raw_b, bound), hints)
    domains = []
    for d, members in enumerate(groups):
        tight = Interval(0, 0) if d == ref else placed.intervals[d]
        interval = Interval(0, 0) if d == ref else _hull(tight, honest.intervals[d])
        # Later detection rounds may line more domains than the first found: the model's
        # own record is what was applied.
        applied = bool(model.lined[d])
        seen = model.detected[d] if applied else None
        fit = model.fits[d]
        if seen is None:
            rate = round(drift_ns_per_s([trace.anchors(p) for p in members]))
            method = ANCHOR_DRIFT_METHOD
        else:
            rate = int(model.rate[d])
            method = FIT_METHOD if fit is not None else seen.method
        domains.append(
            ClockDomain(
                index=d,
                id=f"D{d + 1}",
                processes=tuple(members),
                reference=d == ref,
                simulated=any(trace.processes[p].simulated_offset_ns != 0 for p in members),
                interval=interval,
                offset_ns=_offset(tight, hinted.intervals[d] if hinted is not None else None),
                placed=tight,
                drift_ns_per_s=rate,
                drift_method=method,
                constraints=int(touching[d]),
                slack_ns=placed.slack_ns,
                drift_applied=applied,
                drift_ref_ns=int(model.ref_ns[d]) if applied else None,
                drift_allowed=fit.allowed if applied and fit is not None else None,
                drift_evidence=seen,
                lower=_links(placed, evidence, d, upper=False),
                upper=_links(placed, evidence, d, upper=True),
            )
        )
    offsets = np.array([d.offset_ns for d in domains], dtype=np.int64)
    event_dom = dom[ev.proc]
    adjusted = ev.raw + offsets[event_dom] if len(ev) else ev.raw.copy()
    if model.any and len(ev):
        adjusted += model.correction_of(event_dom, ev.raw)
    return ClockAlignment(tuple(domains), dom, ref, adjusted, evidence)


def _hinted(
    trace: Trace,
    dom: npt.NDArray[np.int32],
    model: Any,
    n: int,
    ref: int,
    facts: tuple[I64, I64, I64, I64, I64],
    hints: tuple[I64, I64] | None,
) -> Solution | None:
    """The offsets facts and hints allow together (hints that contradict the facts are
    relaxed with them by the least slack that makes both consistent: a server span that
    ends just after its client had the answer), or None when no hint crosses domains."""
    if hints is None or len(hints[0]) == 0:
        return None
    ev = trace.events
    hs, hd = hints
    ha, hb = dom[ev.proc[hs]], dom[ev.proc[hd]]
    cross = ha != hb
    if not cross.any():
        return None
    ha64, hb64 = ha[cross].astype(np.int64), hb[cross].astype(np.int64)
    raw_ha, raw_hb = ev.raw[hs[cross]], ev.raw[hd[cross]]
    a64, b64, _, _, bound = facts
    return solve_edges(
        n,
        ref,
        np.concatenate([a64, ha64]),
        np.concatenate([b64, hb64]),
        np.concatenate([bound, model.bounds(ha64, hb64, raw_ha, raw_hb)]),
    )


def _offset(facts: Interval, hinted: Interval | None) -> int:
    """The offset used: the facts' estimate, unless they bound it on one side only and
    facts and hints together close the interval: then its middle, moved inside the facts'
    interval when the hints pull it out (the facts win)."""
    if facts.lo is not None and facts.hi is not None:
        return facts.estimate
    if hinted is None or hinted.lo is None or hinted.hi is None:
        return facts.estimate
    mid = hinted.midpoint
    if facts.lo is not None:
        mid = max(mid, facts.lo)
    if facts.hi is not None:
        mid = min(mid, facts.hi)
    return mid


def _hull(a: Interval, b: Interval) -> Interval:
    """The smallest interval holding both (None: unbounded on that side in either)."""
    lo = None if a.lo is None or b.lo is None else min(a.lo, b.lo)
    hi = None if a.hi is None or b.hi is None else max(a.hi, b.hi)
    return Interval(lo, hi)


def _links(
    solution: Solution,
    evidence: dict[tuple[int, int], tuple[int, int, int]],
    d: int,
    *,
    upper: bool,
) -> tuple[Link, ...]:
    """The edges whose bounds sum to one end of D's interval (see Solution.chain)."""
    out = []
    for pair in solution.chain(d, upper):
        src, dst, bound = evidence[pair]
        out.append(Link(src, dst, bound))
    return tuple(out)


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
