"""Drift: a clock that runs fast is followed by a line, so late hops stay in causal order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from causality.chains import Clock, write_chain, write_star
from willowisp.causality import link
from willowisp.causality.drift import correction, drift, fit_model
from willowisp.causality.link import Causality
from willowisp.causality.offsets import solve_edges
from willowisp.ingest import load

I64 = npt.NDArray[np.int64]


def _linked(folder: Path, clocks: list[Clock], rounds: int, period_ns: int) -> Causality:
    return link(load([write_chain(folder, clocks, rounds=rounds, period_ns=period_ns)]))


def _cross_edges(c: Causality) -> tuple[I64, I64]:
    ev = c.trace.events
    cross = c.graph.certain & (ev.proc[c.graph.src] != ev.proc[c.graph.dst])
    return c.graph.src[cross], c.graph.dst[cross]


def test_late_hops_are_ordered_only_with_drift_applied(tmp_path: Path) -> None:
    """50 ppm over 200 s moves the offset 10 ms, thirty times a hop's latency: the constant
    offset the edges allow puts late (and early) replies before their requests; the applied
    line orders every hop."""
    c = _linked(tmp_path, [Clock(), Clock(ppm=50, skew_ns=3_000_000)], 200, 1_000_000_000)
    ev, clocks = c.trace.events, c.clocks
    src, dst = _cross_edges(c)
    assert len(src) == 400
    # The constant model: the same edges, one offset per domain (the solver's midpoint).
    dom = clocks.domain_of_proc
    da, db = dom[ev.proc[src]].astype(np.int64), dom[ev.proc[dst]].astype(np.int64)
    constant = solve_edges(2, clocks.reference, da, db, ev.raw[dst] - ev.raw[src])
    assert constant.slack_ns > 1_000_000  # no constant offset fits, by more than a ms
    offsets = np.array([iv.midpoint for iv in constant.intervals])
    flat = ev.raw + offsets[dom[ev.proc]]
    backwards = flat[dst] < flat[src]
    when = ev.raw[src] - ev.raw[src].min()
    late = when > 0.75 * when.max()
    assert np.count_nonzero(backwards & late) > 10  # late hops misordered without drift
    # With the drift applied: every hop in order, causes before effects.
    assert (clocks.adjusted[src] <= clocks.adjusted[dst]).all()
    d = clocks.domains[1]
    assert d.drift_applied and d.slack_ns == 0
    assert abs(d.drift_ns_per_s + 50_000) <= 500  # fast clock: its offset falls 50 us/s


def test_drift_intervals_are_honest(tmp_path: Path) -> None:
    """The true rate lies in the rates reported as allowed, and the true offset at the
    domain's reference time in the reported interval (which the used offset is inside)."""
    clock = Clock(ppm=-80, skew_ns=-40_000_000)
    c = _linked(tmp_path, [Clock(), clock], 120, 2_000_000_000)
    d = c.clocks.domains[1]
    assert d.drift_applied and d.drift_allowed is not None and d.drift_ref_ns is not None
    lo, hi = d.drift_allowed
    true_rate = 80e-6 / (1 - 80e-6) * 1e9  # offset change per second of this clock's raw time
    assert lo is not None and hi is not None and lo <= true_rate <= hi
    truth = clock.offset_at_raw(d.drift_ref_ns)
    assert d.interval.contains(round(truth)), (d.interval, truth)
    assert d.interval.contains(d.offset_ns)
    assert d.placed.lo is not None and d.interval.lo is not None
    assert d.interval.lo <= d.placed.lo  # the rate's uncertainty only widens


def test_every_adjustment_is_traceable(tmp_path: Path) -> None:
    """Each adjusted time is raw + offset + the drift correction the domain reports, and
    the interval the offset is the midpoint of is the sum of real causal edges' bounds."""
    c = _linked(tmp_path, [Clock(), Clock(ppm=30, skew_ns=7_000_000)], 100, 1_000_000_000)
    ev, clocks = c.trace.events, c.clocks
    for d in clocks.domains:
        rows = np.flatnonzero(np.isin(ev.proc, d.processes))
        assert [d.adjust(int(ev.raw[i])) for i in rows] == clocks.adjusted[rows].tolist()
    d = clocks.domains[1]
    assert d.drift_applied and d.drift_ref_ns is not None
    edges = set(zip(c.graph.src.tolist(), c.graph.dst.tolist(), strict=True))
    for chain in (d.lower, d.upper):
        assert chain
        for k in chain:
            assert (k.cause, k.effect) in edges
            cause_d = clocks.domains[int(clocks.domain_of_proc[int(ev.proc[k.cause])])]
            effect_d = clocks.domains[int(clocks.domain_of_proc[int(ev.proc[k.effect])])]
            raw_c, raw_e = int(ev.raw[k.cause]), int(ev.raw[k.effect])
            assert k.bound_ns == (raw_e + effect_d.correction_ns(raw_e)) - (
                raw_c + cause_d.correction_ns(raw_c)
            )
    assert d.placed.lo == -sum(k.bound_ns for k in d.lower)
    assert d.placed.hi == sum(k.bound_ns for k in d.upper)
    assert d.offset_ns == d.placed.midpoint


def test_a_chain_of_drifting_clocks(tmp_path: Path) -> None:
    """svc0 -> svc1 -> svc2, both downstream clocks drifting their own ways; svc2 never
    talks to the reference, yet its line is placed through svc1's and every hop is ordered."""
    clocks = [Clock(), Clock(ppm=30, skew_ns=5_000_000), Clock(ppm=-40, skew_ns=-9_000_000)]
    c = _linked(tmp_path, clocks, 150, 1_000_000_000)
    src, dst = _cross_edges(c)
    assert (c.clocks.adjusted[src] <= c.clocks.adjusted[dst]).all()
    by_service = {c.trace.processes[d.processes[0]].service: d for d in c.clocks.domains}
    d1, d2 = by_service["svc1"], by_service["svc2"]
    assert d1.drift_applied and d2.drift_applied
    assert abs(d1.drift_ns_per_s + 30_000) <= 1_000
    assert abs(d2.drift_ns_per_s - 40_000) <= 1_000
    assert len(d2.upper) == 2 and len(d2.lower) == 2  # bounded through svc1
    assert d2.drift_ref_ns is not None
    assert d2.interval.contains(round(clocks[2].offset_at_raw(d2.drift_ref_ns)))


def test_a_small_drift_hidden_by_a_large_one_is_found_next_round(tmp_path: Path) -> None:
    """svc0 calls svc1 (1000 ppm fast) and svc2 (20 ppm fast). svc1's drift makes every
    time window inconsistent, and the slack that absorbs it hides svc2's; once svc1's line
    is applied the next detection round finds svc2, which is then fitted and reported."""
    clocks = [Clock(), Clock(ppm=1000, skew_ns=1_000_000), Clock(ppm=20, skew_ns=2_000_000)]
    run = write_star(tmp_path, clocks, rounds=100, period_ns=1_000_000_000)
    c = link(load([run]))
    ev, clocks_ = c.trace.events, c.clocks
    by_service = {c.trace.processes[d.processes[0]].service: d for d in clocks_.domains}
    small = by_service["svc2"]
    src, dst = _cross_edges(c)
    dom = clocks_.domain_of_proc
    da, db = dom[ev.proc[src]].astype(np.int64), dom[ev.proc[dst]].astype(np.int64)
    first = drift(3, clocks_.reference, da, db, ev.raw[dst] - ev.raw[src], ev.raw[src])
    assert first[by_service["svc1"].index] is not None and first[small.index] is None
    assert small.drift_applied and small.drift_evidence is not None
    assert abs(small.drift_ns_per_s + 20_000) <= 200
    assert (clocks_.adjusted[src] <= clocks_.adjusted[dst]).all()


def test_a_steady_clock_keeps_a_constant_offset(tmp_path: Path) -> None:
    """Without drift evidence nothing changes: adjusted = raw + offset, no line, no ref."""
    c = _linked(tmp_path, [Clock(), Clock(skew_ns=12_000_000)], 60, 1_000_000_000)
    d = c.clocks.domains[1]
    assert not d.drift_applied and d.drift_ref_ns is None and d.drift_allowed is None
    ev = c.trace.events
    rows = np.flatnonzero(ev.proc == d.processes[0])
    assert (c.clocks.adjusted[rows] == ev.raw[rows] + d.offset_ns).all()
    assert d.interval == d.placed


def test_correction_is_exact_integer_arithmetic() -> None:
    """floor(rate * since / 1e9) without overflow, also for negative rates and times."""
    rate = np.array([50_000, -49_998, 7, -1, 9_000_000_000], dtype=np.int64)
    since = np.array([-3, 10**15, -(10**12) - 1, 999_999_999, 10**12], dtype=np.int64)
    expected = [r * s // 1_000_000_000 for r, s in zip(rate.tolist(), since.tolist(), strict=True)]
    assert correction(rate, since).tolist() == expected


@st.composite
def drifting_pairs(draw: st.DrawFn) -> tuple[float, int, list[int], I64, I64, I64, I64]:
    """Request/reply edges between a reference (0) and a drifting domain (1)."""
    ppm = draw(st.floats(-300, 300).filter(lambda x: abs(x) >= 20))
    skew = draw(st.integers(-(10**10), 10**10))
    n = draw(st.integers(40, 120))
    period = draw(st.integers(100_000_000, 5_000_000_000))
    lat = draw(st.lists(st.integers(50_000, 2_000_000), min_size=2 * n, max_size=2 * n))
    clock = Clock(ppm=ppm, skew_ns=skew)
    ref = Clock()
    a, b, ra, rb = [], [], [], []
    for k in range(n):
        t = 1_000_000_000 + k * period
        recv, reply = t + lat[2 * k], t + lat[2 * k] + 10_000
        resp = reply + lat[2 * k + 1]
        a += [0, 1]
        b += [1, 0]
        ra += [ref.raw(t), clock.raw(reply)]
        rb += [clock.raw(recv), ref.raw(resp)]
    arr = [np.array(x, dtype=np.int64) for x in (a, b, ra, rb)]
    return ppm, skew, lat, arr[0], arr[1], arr[2], arr[3]


@settings(max_examples=60, deadline=None)
@given(drifting_pairs())
def test_fitted_lines_order_every_edge_and_contain_the_truth(
    case: tuple[float, int, list[int], I64, I64, I64, I64],
) -> None:
    """For any clear drift (>= 20 ppm over enough hops to show it), the fitted line orders
    every edge and the reported rate range and offset interval contain the truth."""
    ppm, skew, _, a, b, raw_a, raw_b = case
    found = drift(2, 0, a, b, raw_b - raw_a, raw_a)
    model = fit_model(2, 0, a, b, raw_a, raw_b, found)
    if not model.any:  # the windows did not show it (too little drift for the latencies)
        return
    bound = model.bounds(a, b, raw_a, raw_b)
    placed = solve_edges(2, 0, a, b, bound)
    fit = model.fits[1]
    assert fit is not None and fit.allowed is not None
    if placed.slack_ns == 0:
        offset = placed.intervals[1].midpoint
        cause = raw_a + np.where(a == 1, offset, 0) + model.correction_of(a, raw_a)
        effect = raw_b + np.where(b == 1, offset, 0) + model.correction_of(b, raw_b)
        assert (cause <= effect).all()
    lo, hi = fit.allowed
    true_rate = -ppm / (1 + ppm / 1e6) * 1e3
    assert lo is not None and hi is not None and lo <= true_rate <= hi
    honest = solve_edges(2, 0, a, b, model.widened(a, b, raw_a, raw_b, bound))
    truth = Clock(ppm=ppm, skew_ns=skew).offset_at_raw(int(model.ref_ns[1]))
    iv = honest.intervals[1]
    assert iv.lo is not None and iv.hi is not None
    assert iv.lo - 1 <= truth <= iv.hi + 1, (iv, truth)


def _one_precise_hop(where: int, n: int = 40) -> tuple[Clock, I64, I64, I64, I64]:
    """A reference and a 100 ppm fast clock; hops every 10 s, 8 ms each way except one
    hop (number ``where``) of 50 us each way. That hop bounds the offset tightly at one
    time whatever the rate, so a plateau of rates leaves the widest band."""
    clock, ref = Clock(ppm=100, skew_ns=1_000_000), Clock()
    a, b, ra, rb = [], [], [], []
    for k in range(n):
        t = 1_000_000_000 + k * 10_000_000_000
        lat = 50_000 if k == where else 8_000_000
        a += [0, 1]
        b += [1, 0]
        ra += [ref.raw(t), clock.raw(t + lat + 10_000)]
        rb += [clock.raw(t + lat), ref.raw(t + 2 * lat + 10_000)]
    arr = [np.array(x, dtype=np.int64) for x in (a, b, ra, rb)]
    return clock, arr[0], arr[1], arr[2], arr[3]


def test_a_plateau_of_rates_is_split_in_the_middle() -> None:
    """Where many rates leave the widest band, the one applied is the middle of them, not
    whichever end a search stops at: here within 0.1 % of the truth, wherever the precise
    hop is."""
    for where in (0, 20, 39):
        _, a, b, raw_a, raw_b = _one_precise_hop(where)
        model = fit_model(2, 0, a, b, raw_a, raw_b, drift(2, 0, a, b, raw_b - raw_a, raw_a))
        true_rate = -100 / (1 + 100e-6) * 1e3
        assert abs(int(model.rate[1]) - true_rate) <= 100, where


def test_widening_keeps_the_truth_for_any_allowed_rate() -> None:
    """Applied with a rate at the end of the allowed range, the tight interval misses the
    true offset; the interval widened by the rate's uncertainty still holds it."""
    clock, a, b, raw_a, raw_b = _one_precise_hop(0)
    fitted = fit_model(2, 0, a, b, raw_a, raw_b, drift(2, 0, a, b, raw_b - raw_a, raw_a))
    fit = fitted.fits[1]
    assert fit is not None and fit.allowed is not None and fit.allowed[0] is not None
    rate = fitted.rate.copy()
    rate[1] = fit.allowed[0]  # still allowed by every hop, but far from the truth
    edge = replace(fitted, rate=rate, fits=(None, replace(fit, ns_per_s=fit.allowed[0])))
    bound = edge.bounds(a, b, raw_a, raw_b)
    truth = clock.offset_at_raw(int(edge.ref_ns[1]))
    tight = solve_edges(2, 0, a, b, bound).intervals[1]
    assert not tight.contains(round(truth))
    widened = solve_edges(2, 0, a, b, edge.widened(a, b, raw_a, raw_b, bound)).intervals[1]
    assert widened.contains(round(truth))
