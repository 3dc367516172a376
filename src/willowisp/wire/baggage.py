"""W3C Baggage: application key/value pairs that travel with a request (``baggage`` header).

``baggage: userId=alice,serverNode=DF%2028;region=eu,isProduction=false``. Unlike
tracestate, members are independent: a malformed member is dropped and the rest are kept
(what the OTel SDKs do). Values are percent-decoded on read (invalid UTF-8 becomes U+FFFD)
and percent-encoded on write; properties (``;region=eu``) are kept as raw text.

Limits are the spec's propagation guarantees, applied to all ``baggage`` values combined:
at most 64 members and 8192 bytes. Members past either limit are dropped on read and on
write, so a value read here can always be written back whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from willowisp.wire.codec import Getter, Setter

BAGGAGE = "baggage"
MAX_MEMBERS = 64
MAX_BYTES = 8192

_OWS = " \t"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E (no space, '"', ',', ';', '\')
_OCTETS = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
# Characters quote() may leave as they are: baggage octets minus "%" (which must be encoded).
_SAFE = "".join(
    c
    for c in map(chr, range(0x21, 0x7F))
    if c not in '"%,;\\' and not c.isalnum() and c not in "_.-~"
)


# What quote() would leave as it is: values made only of these skip it (most do).
_PLAIN = re.compile("[A-Za-z0-9_.~" + re.escape(_SAFE) + "-]*")


def _encode_value(value: str) -> str:
    return value if _PLAIN.fullmatch(value) else quote(value, safe=_SAFE)


@dataclass(frozen=True, slots=True)
class BaggageMember:
    """One member. ``key`` is an RFC 7230 token; ``value`` is decoded text; ``properties``
    are the raw ``key`` or ``key=value`` property strings, whitespace removed."""

    key: str
    value: str
    properties: tuple[str, ...] = ()

    def encode(self) -> str:
        """The member as it appears on the wire."""
        text = f"{self.key}={_encode_value(self.value)}"
        if self.properties:
            text += ";" + ";".join(self.properties)
        return text


@dataclass(frozen=True, slots=True)
class Baggage:
    """Ordered baggage members; keys may repeat (the spec leaves dedup to the application)."""

    members: tuple[BaggageMember, ...] = ()

    def get(self, key: str) -> str | None:
        """The value of the first member named ``key``, or None."""
        for m in self.members:
            if m.key == key:
                return m.value
        return None


def _parse_property(raw: str) -> str | None:
    key, eq, value = raw.partition("=")
    key = key.strip(_OWS)
    if not _TOKEN.fullmatch(key):
        return None
    if not eq:
        return key
    value = value.strip(_OWS)
    if not _OCTETS.fullmatch(value):
        return None
    return f"{key}={value}"


# A member without properties, in one match (the common case).
_MEMBER = re.compile(
    r"[ \t]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*"
    r"([\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*)[ \t]*"
)


def _parse_member(raw: str) -> BaggageMember | None:
    if ";" not in raw:
        m = _MEMBER.fullmatch(raw)
        if m is None:
            return None
        key, value = m.group(1), m.group(2)
        return BaggageMember(key, unquote(value, errors="replace") if "%" in value else value)
    head, *props = raw.split(";")
    key, eq, value = head.partition("=")
    key = key.strip(_OWS)
    value = value.strip(_OWS)
    if not eq or not _TOKEN.fullmatch(key) or not _OCTETS.fullmatch(value):
        return None
    properties: list[str] = []
    for p in props:
        parsed = _parse_property(p)
        if parsed is None:
            return None
        properties.append(parsed)
    decoded = unquote(value, errors="replace") if "%" in value else value
    return BaggageMember(key, decoded, tuple(properties))


def _writable(m: BaggageMember) -> bool:
    return _TOKEN.fullmatch(m.key) is not None and (
        not m.properties or all(_parse_property(p) == p for p in m.properties)
    )


def _limited(
    members: list[BaggageMember], *, checked: bool = False
) -> tuple[tuple[BaggageMember, str], ...]:
    """The members, in order, that are writable and fit 64 members / 8192 bytes, each with
    its wire text. ``checked``: the members were just parsed, so are known writable."""
    kept: list[tuple[BaggageMember, str]] = []
    size = 0
    for m in members:
        if not checked and not _writable(m):
            continue
        text = m.encode()
        n = (len(text) if text.isascii() else len(text.encode("utf-8"))) + (1 if kept else 0)
        if len(kept) == MAX_MEMBERS or size + n > MAX_BYTES:
            continue
        kept.append((m, text))
        size += n
    return tuple(kept)


class BaggageCodec:
    """``baggage`` header (OTel's ``baggage`` propagator)."""

    fields = (BAGGAGE,)

    def inject(self, value: Baggage, carrier: Setter) -> None:
        """Write the members that fit the limits; nothing when there are none."""
        members = _limited(list(value.members))
        if members:
            carrier.set(BAGGAGE, ",".join(text for _, text in members))

    def extract(self, carrier: Getter) -> Baggage | None:
        """The well-formed members within the limits, or None if there are none."""
        values = carrier.get(BAGGAGE)
        if not values:
            return None
        text = ",".join(values)
        # Bound the work on hostile input: only the first few limits' worth is looked at.
        if len(text) > 4 * MAX_BYTES:
            text = text[: 4 * MAX_BYTES].rpartition(",")[0]
        parsed = [m for m in map(_parse_member, text.split(",")) if m is not None]
        members = _limited(parsed, checked=True)
        return Baggage(tuple(m for m, _ in members)) if members else None


BAGGAGE_CODEC = BaggageCodec()
