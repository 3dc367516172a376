"""W3C ``tracestate``: the vendor-specific list that rides beside ``traceparent``.

``tracestate: congo=t61rcWkgMzE,rojo=00f067aa0ba902b7`` is an ordered list of at most 32
``key=value`` members; the member a vendor modifies or adds moves to the left. Parsing is
all-or-nothing, as the spec's test suite expects: one bad member, a duplicate key or a
33rd member discards the whole list (the traceparent it came with is still used).
Empty members (``a=1,,b=2``) are allowed and skipped.

Formatting truncates to the spec's propagation limit (512 characters) by dropping whole
members, the ones longer than 128 characters first, then from the right.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_MEMBERS = 32
#: Length a vendor must be able to propagate; longer lists are truncated on inject.
MAX_LENGTH = 512
_LONG_MEMBER = 128

# Level 2 grammar (interop.md 1.1): key = (lcalpha / DIGIT) 0*255(keychar), keychar
# a-z 0-9 _ - * / @ ; value = up to 256 printable ASCII except "," and "=", no trailing space.
_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_OWS = " \t"


def is_key(key: str) -> bool:
    """True if ``key`` is a valid tracestate key."""
    return _KEY.fullmatch(key) is not None


def is_value(value: str) -> bool:
    """True if ``value`` is a valid tracestate value."""
    return _VALUE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class TraceState:
    """An ordered, duplicate-free list of (key, value) members, leftmost most recent.

    Invariant: every key and value passes :func:`is_key` / :func:`is_value`, keys are
    unique and there are at most 32 members; :meth:`with_entry` and :func:`parse_tracestate`
    keep it.
    """

    entries: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        for k, v in self.entries:
            if k == key:
                return v
        return None

    def with_entry(self, key: str, value: str) -> TraceState:
        """A copy with ``key`` set to ``value`` and moved to the left (the spec's update rule).

        Raises ValueError if the key or value is not valid tracestate text: this is the
        program's own input, not something read from the wire. The rightmost member is
        dropped if the list would exceed 32 members.
        """
        if not is_key(key) or not is_value(value):
            raise ValueError(f"tracestate member {key!r}={value!r} is not valid key=value text")
        rest = tuple(e for e in self.entries if e[0] != key)
        return TraceState(((key, value), *rest)[:MAX_MEMBERS])

    def without(self, key: str) -> TraceState:
        """A copy without ``key``."""
        return TraceState(tuple(e for e in self.entries if e[0] != key))

    def header(self, limit: int = MAX_LENGTH) -> str:
        """The header value, truncated to ``limit`` characters by whole members."""
        members = [f"{k}={v}" for k, v in self.entries]
        text = ",".join(members)
        if len(text) <= limit:
            return text
        # Drop members longer than 128 characters first, rightmost first, then from the right.
        for i in range(len(members) - 1, -1, -1):
            if len(members[i]) > _LONG_MEMBER:
                del members[i]
                if len(",".join(members)) <= limit:
                    return ",".join(members)
        while members and len(",".join(members)) > limit:
            members.pop()
        return ",".join(members)


EMPTY = TraceState()


def parse_tracestate(values: list[str]) -> TraceState:
    """The list carried by one or more ``tracestate`` header values (combined with ",").

    Returns the empty TraceState when absent or when any member is malformed.
    """
    if not values:
        return EMPTY
    text = ",".join(values)
    # A valid list is at most 32 members of <= 512 characters each plus separators; anything
    # far longer is not worth splitting.
    if len(text) > MAX_MEMBERS * (256 + 1 + 256 + 8):
        return EMPTY
    entries: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in text.split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        key, eq, value = member.partition("=")
        if not eq or not is_key(key) or not is_value(value) or key in seen:
            return EMPTY
        seen.add(key)
        entries.append((key, value))
        if len(entries) > MAX_MEMBERS:
            return EMPTY
    return TraceState(tuple(entries))
