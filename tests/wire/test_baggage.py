"""W3C baggage codec: percent-encoding, properties, limits, malformed members dropped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from willowisp.wire.baggage import BAGGAGE_CODEC, MAX_BYTES, Baggage, BaggageMember
from willowisp.wire.carriers import HeaderList, HttpHeaders

keys = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=10)
members = st.builds(BaggageMember, keys, st.text(max_size=30), st.just(()) | st.just(("p", "q=r")))


def _extract(value: str) -> Baggage | None:
    return BAGGAGE_CODEC.extract(HttpHeaders({"baggage": value}))


@given(st.lists(members, min_size=1, max_size=10))
def test_round_trip(ms: list[BaggageMember]) -> None:
    """Any text value, including non-ASCII and separators, survives inject + extract."""
    headers: dict[str, str] = {}
    BAGGAGE_CODEC.inject(Baggage(tuple(ms)), HttpHeaders(headers))
    assert headers["baggage"].isascii()
    assert BAGGAGE_CODEC.extract(HttpHeaders(headers)) == Baggage(tuple(ms))


def test_spec_example() -> None:
    """The spec's example decodes %20 and keeps properties."""
    got = _extract("userId=alice, serverNode=DF%2028;region = eu;flag,isProduction=false")
    assert got is not None
    assert got.get("serverNode") == "DF 28"
    assert got.members[1].properties == ("region=eu", "flag")
    assert got.get("isProduction") == "false"


def test_malformed_members_dropped_individually() -> None:
    """Bad keys, values with spaces or quotes, missing '=' are dropped; the rest kept."""
    got = _extract('a=1,b c=2,d="x",e,f=ok,g=a b,=v,h=1;bad prop=1')
    assert got is not None
    assert [m.key for m in got.members] == ["a", "f"]


def test_invalid_utf8_becomes_replacement_char() -> None:
    """Percent-encoded invalid UTF-8 decodes to U+FFFD."""
    got = _extract("k=%FF%FE")
    assert got is not None and got.get("k") == "\ufffd\ufffd"


def test_limits_64_members_8192_bytes() -> None:
    """Members beyond 64 or beyond 8192 bytes (all headers combined) are dropped."""
    got = _extract(",".join(f"k{i}=v" for i in range(100)))
    assert got is not None and len(got.members) == 64
    big = [("baggage", f"k{i}=" + "x" * 3000) for i in range(4)]
    got = BAGGAGE_CODEC.extract(HeaderList(big))
    assert got is not None and len(got.members) == 2
    assert sum(len(m.encode()) for m in got.members) <= MAX_BYTES


def test_empty_or_all_bad_is_none() -> None:
    """No well-formed member: None."""
    assert _extract(" , ,") is None
    assert BAGGAGE_CODEC.extract(HttpHeaders({})) is None


def test_inject_skips_unwritable_members() -> None:
    """A member with an invalid key from the program is not written."""
    headers: dict[str, str] = {}
    BAGGAGE_CODEC.inject(Baggage((BaggageMember("bad key", "v"),)), HttpHeaders(headers))
    assert headers == {}
