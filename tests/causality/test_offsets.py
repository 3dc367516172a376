"""The difference-constraint solver behind clock offsets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from willowisp.causality.offsets import Constraint, Interval, solve


def test_request_and_reply_bracket_the_offset() -> None:
    """send<=recv and reply<=response bound the peer's offset from both sides."""
    # Peer (domain 1) clock reads 300 ms ahead; 0.4 ms each way on the wire.
    send, recv, reply, response = 0, 300_400_000, 300_500_000, 900_000
    sol = solve(2, 0, [Constraint(0, 1, recv - send), Constraint(1, 0, response - reply)])
    assert sol.slack_ns == 0
    assert sol.intervals[0] == Interval(0, 0)
    assert sol.intervals[1] == Interval(-300_400_000, -299_600_000)
    assert sol.intervals[1].midpoint == -300_000_000
    assert sol.intervals[1].half_width == 400_000


def test_one_way_edges_bound_one_side() -> None:
    """A spawn alone gives a lower bound only; an unconnected domain is unbounded."""
    sol = solve(3, 0, [Constraint(0, 1, 5_000)])  # o0 - o1 <= 5000: o1 >= -5000
    assert sol.intervals[1] == Interval(-5_000, None)
    assert sol.intervals[1].midpoint == -5_000 and sol.intervals[1].half_width is None
    assert sol.intervals[2] == Interval(None, None)
    assert sol.intervals[2].midpoint == 0


def test_the_offset_used_is_the_allowed_value_nearest_zero_when_one_side_is_open() -> None:
    """A one-way edge bounds the offset, it does not measure it: the clock as it reads (0)
    is kept when the bound allows it, the bound taken only when 0 lies outside (a clock
    proven behind or ahead); closed intervals use their midpoint."""
    assert Interval(-10_000_000, None).estimate == 0  # a 10 ms transit is not a skew
    assert Interval(2_000_000, None).estimate == 2_000_000  # proven at least 2 ms ahead
    assert Interval(None, 3_000).estimate == 0
    assert Interval(None, -3_000).estimate == -3_000
    assert Interval(None, None).estimate == 0
    assert Interval(-300_400_000, -299_600_000).estimate == -300_000_000


def test_bounds_propagate_through_other_domains() -> None:
    """Domain 2 talks only to domain 1, which talks to the reference: still bounded."""
    cs = [Constraint(0, 1, 10), Constraint(1, 0, 30), Constraint(1, 2, 5), Constraint(2, 1, 5)]
    sol = solve(3, 0, cs)
    assert sol.intervals[1] == Interval(-10, 30)
    assert sol.intervals[2] == Interval(-15, 35)


def test_inconsistent_constraints_report_the_slack_needed() -> None:
    """A negative cycle (clocks that stepped) is widened by the least slack that fixes it."""
    sol = solve(2, 0, [Constraint(0, 1, -100), Constraint(1, 0, -100)])
    assert sol.slack_ns == 100
    assert sol.intervals[1] == Interval(0, 0)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, list[int], list[Constraint]]:
    n = draw(st.integers(2, 6))
    ref = draw(st.integers(0, n - 1))
    truth = draw(st.lists(st.integers(-(10**12), 10**12), min_size=n, max_size=n))
    cs = []
    for _ in range(draw(st.integers(0, 25))):
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        t = draw(st.integers(0, 10**13))  # true time of the cause
        latency = draw(st.integers(0, 10**9))
        raw_a = t - truth[a]  # raw + offset = true time
        raw_b = t + latency - truth[b]
        cs.append(Constraint(a, b, raw_b - raw_a))
    return n, ref, truth, cs


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_true_offsets_lie_within_the_intervals(
    case: tuple[int, int, list[int], list[Constraint]],
) -> None:
    """Constraints generated from true times never exclude the true offsets."""
    n, ref, truth, cs = case
    sol = solve(n, ref, cs)
    assert sol.slack_ns == 0
    for d in range(n):
        assert sol.intervals[d].contains(truth[d] - truth[ref]), (d, sol.intervals[d])
    assert sol.intervals[ref] == Interval(0, 0)
