"""W3C traceparent/tracestate codec: round trips and the spec's malformed cases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.wire.strategies import contexts

from willowisp.wire.carriers import HttpHeaders
from willowisp.wire.tracecontext import TRACECONTEXT, W3CContext
from willowisp.wire.traceparent import TraceContext, is_valid, parse
from willowisp.wire.tracestate import TraceState, parse_tracestate

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TID, SID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def _extract(headers: dict[str, str]) -> W3CContext | None:
    return TRACECONTEXT.extract(HttpHeaders(headers))


@given(contexts, st.lists(st.tuples(st.sampled_from("abcxyz"), st.sampled_from(["1", "v"]))))
def test_round_trip(ctx: TraceContext, members: list[tuple[str, str]]) -> None:
    """Any valid context and tracestate comes back unchanged after inject + extract."""
    state = TraceState()
    for k, v in members:
        state = state.with_entry(k, v)
    headers: dict[str, str] = {}
    TRACECONTEXT.inject(W3CContext(ctx, state), HttpHeaders(headers))
    assert _extract(headers) == W3CContext(ctx, state)


def test_spec_example() -> None:
    """The spec's example header is read with its sampled flag."""
    got = _extract({"Traceparent": TP, "TraceState": "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"})
    assert got is not None
    assert got.context == TraceContext(TID, SID, 1)
    assert got.tracestate.entries == (("congo", "t61rcWkgMzE"), ("rojo", "00f067aa0ba902b7"))


@pytest.mark.parametrize(
    "value",
    [
        TP.upper(),
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        TP + "-extra",
        TP[:-1],
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "",
    ],
)
def test_malformed_traceparent_ignored(value: str) -> None:
    """Uppercase, version ff, zero ids, wrong lengths or separators: no context."""
    assert _extract({"traceparent": value, "tracestate": "a=1"}) is None


def test_higher_version_parsed_by_prefix() -> None:
    """A future version is read at the fixed offsets, its tail ignored, re-emitted as 00."""
    got = _extract({"traceparent": "cc" + TP[2:] + "-what-the-future-holds"})
    assert got is not None
    assert got.context.header() == TP


def test_higher_version_needs_dash_after_flags() -> None:
    """A future version's tail must start with '-'."""
    assert _extract({"traceparent": "cc" + TP[2:] + "x"}) is None


def test_duplicate_traceparent_ignored() -> None:
    """Two traceparent headers are ambiguous: no context."""
    from willowisp.wire.carriers import HeaderList

    pairs = [("traceparent", TP), ("Traceparent", TP.replace("4bf9", "4bf8"))]
    assert TRACECONTEXT.extract(HeaderList(pairs)) is None


def test_multiple_tracestate_headers_combined() -> None:
    """Repeated tracestate headers are joined with ',' before parsing."""
    from willowisp.wire.carriers import HeaderList

    pairs = [("traceparent", TP), ("tracestate", "a=1"), ("tracestate", "b=2")]
    got = TRACECONTEXT.extract(HeaderList(pairs))
    assert got is not None
    assert got.tracestate.entries == (("a", "1"), ("b", "2"))


@pytest.mark.parametrize(
    "value",
    [
        "A=1",
        "a=1,a=2",
        "a=1=2",
        "a",
        "a=1 ,b=x,c=",
        "a=va,lue" + "=",
        ",".join(f"k{i}=v" for i in range(33)),
        "a=" + "x" * 257,
    ],
)
def test_malformed_tracestate_dropped(value: str) -> None:
    """A bad member, duplicate key or 33 members discard tracestate, not the traceparent."""
    got = _extract({"traceparent": TP, "tracestate": value})
    assert got is not None
    assert got.tracestate.entries == ()


def test_tracestate_accepts_32_members_and_empty_members() -> None:
    """32 members and empty list members are fine."""
    value = ",".join(f"k{i}=v" for i in range(32)) + ", ,"
    assert len(parse_tracestate([value]).entries) == 32


def test_tracestate_multi_tenant_key() -> None:
    """tenant@system keys are accepted."""
    assert parse_tracestate(["fw529a3039@dt=1"]).get("fw529a3039@dt") == "1"


def test_with_entry_moves_left_and_validates() -> None:
    """A modified member moves to the left; invalid text from the program raises."""
    state = parse_tracestate(["a=1,b=2"]).with_entry("b", "3")
    assert state.entries == (("b", "3"), ("a", "1"))
    with pytest.raises(ValueError, match="not valid"):
        state.with_entry("B", "1")


def test_truncation_drops_long_members_first() -> None:
    """Over 512 chars: members longer than 128 go first, then from the right."""
    long = "x" * 200
    state = TraceState(tuple([("big", long)] + [(f"k{i}", "v" * 20) for i in range(20)]))
    text = state.header()
    assert len(text) <= 512
    assert "big=" not in text
    assert text.startswith("k0=")
    assert parse_tracestate([text]).entries == state.entries[1 : 1 + len(text.split(","))]


def test_tracestate_not_parsed_without_valid_traceparent() -> None:
    """An invalid traceparent means tracestate is never looked at."""
    assert _extract({"traceparent": "garbage", "tracestate": "a=1"}) is None


def test_original_parse_unchanged() -> None:
    """The agent's parse and header() keep their behaviour."""
    ctx = parse(TP)
    assert ctx is not None and ctx.header() == TP and is_valid(ctx)
    assert parse(None) is None
