"""Drift: clocks whose offset moves during the run, found from causal edges and followed.

A constant offset per domain is the first model (:mod:`willowisp.causality.offsets`). Over a
long run it fails for a clock that runs fast or slow against the reference: 50 ppm is 3 ms a
minute, far more than a request's latency, so a constant offset either misorders the late
hops or the early ones. This module tests the constant model, fits a line where it fails,
and turns the line back into difference constraints so the same solver places it.

1. **Detection** (:func:`drift`). The edges are cut into ``DRIFT_WINDOWS`` equal spans of
   time and each span is solved on its own. When one span's lower bound for a domain is
   above another span's upper bound, no constant offset satisfies both: the domain drifts.
   A first rate is the least-squares slope through the midpoints of the windows.
2. **Fit** (:func:`fit_model`). For each drifting domain, from the reference outwards (by
   the length of the chains its bounds come from), with every other domain placed by its
   current offset and rate, the domain's own edges say
   ``o + r * tau >= L`` (an edge into it) and ``o + r * tau <= U`` (an edge out of it), with
   ``tau`` its event's raw time minus the domain's reference time. Those are half-planes in
   (o, r); the rate chosen is the one that leaves the widest band of offsets (a Chebyshev
   line through the band, not a least-squares one: the point is that every hop ends up
   ordered, with the largest margin). Detection then runs again on the corrected bounds,
   since a large drift's inconsistency hides smaller ones, and what it finds is fitted
   too, until a round finds nothing.
3. **Apply.** ``adjusted = raw + offset + floor(rate * (raw - ref) / 1e9)`` with the rate
   in integer ns/s and ``ref`` the domain's reference time (the middle of its edges' span),
   so the reported numbers reproduce every adjusted time exactly. An edge a-event ->
   b-event then says ``o_A - o_B <= raw_b - raw_a + corr_B(raw_b) - corr_A(raw_a)``:
   :meth:`DriftModel.bounds` rewrites the bounds and the offsets solver does the rest.

Honesty. The rates a domain's edges allow form an interval too (where the band is not
empty, with the other ends loosened by their own offset uncertainty); its half-width ``dr``
is folded back into the offset intervals by loosening each bound by ``dr * |raw - ref|``
(:meth:`DriftModel.widened`), so an interval contains every offset some allowed rate needs.
The offset *used* is still the midpoint of the tight (unwidened) interval, which is what
keeps every hop ordered.

Cost: nothing beyond detection unless a domain drifts. A fit sorts the domain's edges by
time once and keeps only the points that can touch the band's edges (running maxima and
minima after shearing by the first rate, an exact filter), so the search over rates runs
on a few dozen points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from willowisp.causality.difference_constraints import INF
from willowisp.causality.offsets import Interval, Solution, solve_edges

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

DRIFT_WINDOWS = 8  # time windows the drift test cuts the edges into
DRIFT_METHOD = (
    f"causal edges: offset interval per time window ({DRIFT_WINDOWS}), "
    "least-squares line through the window midpoints"
)
FIT_METHOD = (
    "causal edges: the line through the domain's hops that leaves the widest band of offsets"
)
# Fit passes per round: fit every drifting domain against the others as placed. A second
# pass (re-place everyone, fit again) changed nothing measurable in the tests or in
# bench_clocks and cost a full solve, so one.
FIT_PASSES = 1
# Detection over the plain bounds, then over the corrected ones until a round finds no
# more drift, at most this many rounds in all.
DETECT_ROUNDS = 4
NS_PER_S = 1_000_000_000
_SEARCH_STEPS = 60  # golden-section steps: the bracket shrinks by 0.618^60 ~ 3e-13
_MAX_RATE = 0.05  # 5 %: a rate beyond this is a broken clock, not drift


@dataclass(frozen=True, slots=True)
class Drift:
    """Evidence that a domain's offset changed over the run, and the fitted rate."""

    ns_per_s: int  # slope of the fitted offset line (offset change per second of trace)
    # Two windows no constant offset satisfies together (one's lower bound is above the
    # other's upper bound), in time order, with the median edge time of each.
    early: Interval
    late: Interval
    early_at_ns: int
    late_at_ns: int
    method: str = DRIFT_METHOD


def drift(
    n: int,
    reference: int,
    a: I64,
    b: I64,
    bound: I64,
    time: I64,
    windows: int = DRIFT_WINDOWS,
) -> list[Drift | None]:
    """Per domain, the drift of its offset against the reference, or None without evidence.

    ``a``, ``b``, ``bound`` are constraints as for :func:`solve_edges`; ``time`` is when each
    was observed (any common clock; the edges' raw times do, as offsets are tiny next to a
    run's length). The edges are cut into ``windows`` equal spans of time and each span is
    solved on its own (with its own slack if it is itself inconsistent). A domain drifts
    when some window's lower bound exceeds another's upper bound: then no single constant
    offset satisfies both. Its rate is the least-squares slope of the midpoints of the
    windows that bound it on both sides (at their median edge times), or, with fewer than
    two such windows, the slope between the two conflicting bounds.
    """
    result: list[Drift | None] = [None] * n
    if len(time) < 2 or windows < 2:
        return result
    t0, t1 = int(time.min()), int(time.max())
    if t1 <= t0:
        return result
    which = np.minimum((time - t0) * windows // (t1 - t0 + 1), windows - 1)
    found: list[tuple[int, tuple[Interval, ...]]] = []
    for k in range(windows):
        m = which == k
        if m.any():
            sol = solve_edges(n, reference, a[m], b[m], bound[m])
            found.append((int(np.median(time[m])), sol.intervals))
    for d in range(n):
        if d == reference:
            continue
        lows = [(iv[d].lo, t, iv[d]) for t, iv in found if iv[d].lo is not None]
        highs = [(iv[d].hi, t, iv[d]) for t, iv in found if iv[d].hi is not None]
        if not lows or not highs:
            continue
        lo, lo_t, lo_iv = max(lows, key=lambda x: x[0] or 0)
        hi, hi_t, hi_iv = min(highs, key=lambda x: x[0] or 0)
        assert lo is not None and hi is not None
        if lo <= hi or lo_t == hi_t:
            continue
        both = [
            (t, iv[d].midpoint) for t, iv in found if iv[d].lo is not None and iv[d].hi is not None
        ]
        if len(both) >= 2:
            ts = np.array([x[0] for x in both], dtype=np.float64)
            ys = np.array([x[1] for x in both], dtype=np.float64)
            ts -= ts.mean()
            slope = float((ts * (ys - ys.mean())).sum() / (ts * ts).sum())
        else:
            slope = (lo - hi) / (lo_t - hi_t)
        early, late = (
            ((hi_iv, hi_t), (lo_iv, lo_t)) if hi_t < lo_t else ((lo_iv, lo_t), (hi_iv, hi_t))
        )
        result[d] = Drift(round(slope * 1e9), early[0], late[0], early[1], late[1])
    return result


def correction(rate_ns_per_s: I64, since_ns: I64) -> I64:
    """``floor(rate * since / 1e9)`` exactly, in int64: what drift adds at ``since`` ns past
    the domain's reference time. Split so that no product overflows: rates up to 9e9 ns/s
    and any ``since`` a trace can hold."""
    q, r = np.divmod(since_ns, NS_PER_S)
    out: I64 = rate_ns_per_s * q + (rate_ns_per_s * r) // NS_PER_S
    return out


@dataclass(frozen=True, slots=True)
class RateFit:
    """The rate chosen for one drifting domain, and the rates its edges allow."""

    ns_per_s: int  # applied (integer, so the adjustment is reproducible from the report)
    # Rates for which some offset satisfies all the domain's edges, the other ends placed
    # and loosened by their own offset uncertainty: (min, max), None on a side where they
    # are unbounded; ``allowed`` is None when no rate does (a line does not explain the
    # evidence: the solver's slack then says by how much).
    allowed: tuple[int | None, int | None] | None
    margin_ns: int  # width of the band of offsets at the chosen rate (< 0: some hop misordered)
    edges: int  # the domain's cross-domain edges the fit used

    @property
    def half_range_ns_per_s(self) -> int | None:
        """How far the true rate may be from the applied one; None if unbounded, 0 when no
        rate fits (then nothing is gained by widening: the slack is what widens)."""
        if self.allowed is None:
            return 0
        lo, hi = self.allowed
        if lo is None or hi is None:
            return None
        return max(self.ns_per_s - lo, hi - self.ns_per_s, 0)


@dataclass(frozen=True, slots=True)
class DriftModel:
    """The applied line per domain: ``offset + rate * (raw - ref)``; rate 0 = constant."""

    rate: I64  # ns/s per domain (0 for the reference and every domain that does not drift)
    ref_ns: I64  # per domain: the raw time its offset is stated at (meaningful where lined)
    fits: tuple[RateFit | None, ...]  # per domain; None where no line was fitted
    detected: tuple[Drift | None, ...]  # the window evidence per domain
    # Domains that follow a line (drift evidence; even if the fitted rate rounds to 0).
    # Invariant: rate is 0 wherever lined is False.
    lined: npt.NDArray[np.bool_]

    @staticmethod
    def constant(n: int, detected: list[Drift | None] | None = None) -> DriftModel:
        z = np.zeros(n, dtype=np.int64)
        return DriftModel(z, z, (None,) * n, tuple(detected or [None] * n), np.zeros(n, dtype=bool))

    @property
    def any(self) -> bool:
        return bool(self.lined.any())

    def correction_of(self, domain: npt.NDArray[np.integer], raw: I64) -> I64:
        """Per event (its domain and raw time): what drift adds to its adjusted time."""
        if not self.any:
            return np.zeros(len(raw), dtype=np.int64)
        return correction(self.rate[domain], raw - self.ref_ns[domain])

    def bounds(self, a: I64, b: I64, raw_a: I64, raw_b: I64) -> I64:
        """Bounds of ``o[a] - o[b]`` for edges a-event -> b-event under this model."""
        plain: I64 = raw_b - raw_a
        if not self.any:
            return plain
        out: I64 = plain + self.correction_of(b, raw_b) - self.correction_of(a, raw_a)
        return out

    def widened(self, a: I64, b: I64, raw_a: I64, raw_b: I64, bound: I64) -> I64:
        """``bound`` loosened by what the rates' uncertainty may add at each end's time
        (plus 1 ns for the floor of the correction), "no bound" where a rate is unbounded;
        unchanged for edges between domains that do not drift."""
        if not self.any:
            return bound
        half = np.zeros(len(self.rate), dtype=np.float64)
        for d in np.flatnonzero(self.lined).tolist():
            fit = self.fits[d]
            half_range = fit.half_range_ns_per_s if fit is not None else None
            half[d] = np.inf if half_range is None else half_range
        extra = np.zeros(len(bound), dtype=np.int64)
        open_ = np.zeros(len(bound), dtype=bool)
        for dom, raw in ((a, raw_a), (b, raw_b)):
            h = half[dom]
            open_ |= np.isinf(h)
            moving = np.isfinite(h) & self.lined[dom]
            since = np.abs(raw[moving] - self.ref_ns[dom[moving]]).astype(np.float64)
            extra[moving] += (np.ceil(h[moving] * since / NS_PER_S) + 1).astype(np.int64)
        out: I64 = np.where(open_, INF, np.minimum(bound + np.minimum(extra, INF), INF))
        return out


def fit_model(
    n: int,
    reference: int,
    a: I64,
    b: I64,
    raw_a: I64,
    raw_b: I64,
    detected: list[Drift | None],
) -> DriftModel:
    """The applied line of every domain (see the module doc): rate 0 for domains without
    drift evidence, a fitted rate for the others. ``a``/``b`` are the domains of each
    edge's cause and effect, ``raw_a``/``raw_b`` the raw times of its two events;
    ``detected`` is :func:`drift` over the plain bounds.

    After the fit, detection runs again over the corrected bounds: a large drift makes
    every window inconsistent, and the slack that absorbs it hides the smaller drifts of
    other domains until it is corrected. What it finds (new domains, or what is left of a
    fitted domain's drift) is fitted too, until a round finds nothing (DETECT_ROUNDS).
    """
    found = list(detected)
    # Domains with (new or remaining) drift evidence this round -> the rate it shows.
    step = {d: x.ns_per_s for d, x in enumerate(found) if x is not None and d != reference}
    if not step:
        return DriftModel.constant(n, found)
    rate = np.zeros(n, dtype=np.int64)
    ref_ns = np.zeros(n, dtype=np.int64)
    lined = np.zeros(n, dtype=bool)
    fits: list[RateFit | None] = [None] * n
    for round_ in range(DETECT_ROUNDS):
        for d, more in step.items():
            if not lined[d]:
                times = np.concatenate([raw_a[a == d], raw_b[b == d]])
                ref_ns[d] = (int(times.min()) + int(times.max())) // 2
                lined[d] = True
            rate[d] += more  # from 0, or what is left of a fitted drift
        for _ in range(FIT_PASSES):
            model = DriftModel(rate.copy(), ref_ns, tuple(fits), tuple(found), lined.copy())
            placed = solve_edges(n, reference, a, b, model.bounds(a, b, raw_a, raw_b))
            # From the reference outwards: a domain after those its bounds pass through.
            order = sorted(
                np.flatnonzero(lined).tolist(),
                key=lambda d: (len(placed.chain(d, True)) + len(placed.chain(d, False)), d),
            )
            for d in order:
                fit = _fit_one(d, reference, a, b, raw_a, raw_b, rate, ref_ns, placed)
                fits[d] = fit
                if fit is not None:
                    rate[d] = fit.ns_per_s
        if round_ == DETECT_ROUNDS - 1:
            break
        model = DriftModel(rate.copy(), ref_ns, tuple(fits), tuple(found), lined.copy())
        left = drift(n, reference, a, b, model.bounds(a, b, raw_a, raw_b), raw_a)
        step = {d: x.ns_per_s for d, x in enumerate(left) if x is not None and d != reference}
        if not step:
            break
        for d in step:  # a fitted domain keeps the evidence that showed it first
            found[d] = found[d] or left[d]
    return DriftModel(rate, ref_ns, tuple(fits), tuple(found), lined)


def _fit_one(
    d: int,
    reference: int,
    a: I64,
    b: I64,
    raw_a: I64,
    raw_b: I64,
    rate: I64,
    ref_ns: I64,
    placed: Solution,
) -> RateFit | None:
    """Domain d's line against its neighbours as placed (see the module doc)."""
    offset = np.array([iv.midpoint for iv in placed.intervals], dtype=np.int64)
    # How far below/above its placed offset each domain's true offset may be (inf: unbounded)
    below = np.array([np.inf if iv.lo is None else iv.midpoint - iv.lo for iv in placed.intervals])
    above = np.array([np.inf if iv.hi is None else iv.hi - iv.midpoint for iv in placed.intervals])
    below[reference] = above[reference] = 0.0

    def adjusted(dom: I64, raw: I64) -> I64:
        out: I64 = raw + offset[dom] + correction(rate[dom], raw - ref_ns[dom])
        return out

    into, out_of = b == d, a == d  # edges whose effect / cause is in d
    x_in, x_out = a[into], b[out_of]
    # o + r * tau >= low (an edge into d), o + r * tau <= high (an edge out of d)
    tau_in = (raw_b[into] - ref_ns[d]).astype(np.float64)
    low = (adjusted(x_in, raw_a[into]) - raw_b[into]).astype(np.float64)
    tau_out = (raw_a[out_of] - ref_ns[d]).astype(np.float64)
    high = (adjusted(x_out, raw_b[out_of]) - raw_a[out_of]).astype(np.float64)
    if not len(low) or not len(high):
        return None
    guess = float(rate[d]) / NS_PER_S
    tight = _Band(tau_in, low, tau_out, high, guess)
    best = tight.widest(guess)
    chosen = max(
        (np.floor(best * NS_PER_S), np.ceil(best * NS_PER_S)),
        key=lambda r: tight.width(float(r) / NS_PER_S),
    )
    loose = _Band(tau_in, low - below[x_in], tau_out, high + above[x_out], guess)
    allowed = loose.feasible(best)
    return RateFit(
        ns_per_s=int(chosen),
        allowed=None
        if allowed is None
        else (
            None if allowed[0] is None else int(np.floor(allowed[0] * NS_PER_S)),
            None if allowed[1] is None else int(np.ceil(allowed[1] * NS_PER_S)),
        ),
        margin_ns=int(np.floor(tight.width(float(chosen) / NS_PER_S))),
        edges=len(low) + len(high),
    )


class _Band:
    """The band of offsets a rate leaves: ``width(r) = min(high - r tau) - max(low - r tau)``,
    concave and piecewise linear in r. Only the points that can be extreme are kept, and
    points with an infinite bound (an unbounded neighbour) bound nothing."""

    __slots__ = ("high", "low", "tau_high", "tau_low")

    def __init__(self, tau_low: F64, low: F64, tau_high: F64, high: F64, shear: float) -> None:
        ok = np.isfinite(low)
        keep = _extremes(tau_low[ok], low[ok] - shear * tau_low[ok], np.maximum)
        self.tau_low, self.low = tau_low[ok][keep], low[ok][keep]
        ok = np.isfinite(high)
        keep = _extremes(tau_high[ok], high[ok] - shear * tau_high[ok], np.minimum)
        self.tau_high, self.high = tau_high[ok][keep], high[ok][keep]

    def width(self, r: float) -> float:
        """Width of the band at rate r: +inf when a side has no bound."""
        if not len(self.low) or not len(self.high):
            return float(np.inf)
        return float(np.min(self.high - r * self.tau_high) - np.max(self.low - r * self.tau_low))

    def widest(self, guess: float) -> float:
        """The rate of the widest band: the middle of the rates whose band is (to a
        nanosecond) the widest, searched around ``guess`` (golden section; the bracket grows
        until the maximum is inside it, up to +/-_MAX_RATE).

        Why the middle: one precise hop bounds the offset from both sides at one time,
        whatever the rate, so the widest band is often a plateau of rates, and the end of
        it that a search happens to stop at is a biased guess."""
        span = max(4 * abs(guess), 1e-4)
        while True:
            lo, hi = guess - span, guess + span
            x = _golden_max(self.width, lo, hi)
            edge = 1e-3 * span
            if (x - lo > edge and hi - x > edge) or span >= _MAX_RATE:
                break
            guess, span = x, span * 4
        top = self.width(x)
        if not np.isfinite(top):
            return x

        def near_top(r: float) -> float:
            return self.width(r) - (top - 1.0)

        left = _edge(near_top, x, x - 2 * span)
        right = _edge(near_top, x, x + 2 * span)
        if left is None or right is None:
            return x
        return (left + right) / 2

    def feasible(self, around: float) -> tuple[float | None, float | None] | None:
        """The rates with a non-empty band, None if there are none; a side is None where
        the band never closes within +/-_MAX_RATE of ``around``."""
        peak = around if self.width(around) >= 0 else self.widest(around)
        if not self.width(peak) >= 0:
            return None
        return (
            _edge(self.width, peak, around - _MAX_RATE),
            _edge(self.width, peak, around + _MAX_RATE),
        )


def _extremes(tau: F64, y: F64, better: np.ufunc) -> npt.NDArray[np.intp]:
    """Indices of the points that are the best (``np.maximum``/``np.minimum``) of all points
    before or of all points after them in tau order: a superset of the hull vertices that
    ``width`` needs, and after shearing by a good rate a small one."""
    order = np.argsort(tau, kind="stable")
    ys = y[order]
    keep = (better.accumulate(ys) == ys) | (better.accumulate(ys[::-1])[::-1] == ys)
    out: npt.NDArray[np.intp] = order[keep]
    return out


def _golden_max(f: Callable[[float], float], lo: float, hi: float) -> float:
    """Argmax of a concave f on [lo, hi] by golden-section search."""
    g = (np.sqrt(5) - 1) / 2
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(_SEARCH_STEPS):
        if f1 < f2:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + g * (hi - lo)
            f2 = f(x2)
        else:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - g * (hi - lo)
            f1 = f(x1)
    return (lo + hi) / 2


def _edge(f: Callable[[float], float], inside: float, outside: float) -> float | None:
    """Where concave f crosses 0 between ``inside`` (f >= 0) and ``outside``, rounded
    outwards (the returned rate is just past the last one allowed); None if f never does
    (the band stays open that far)."""
    if f(outside) >= 0:
        return None
    for _ in range(_SEARCH_STEPS):
        mid = (inside + outside) / 2
        if f(mid) >= 0:
            inside = mid
        else:
            outside = mid
    return outside
