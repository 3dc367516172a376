"""The one interface every propagation format and every carrier implements.

A *codec* knows one format (W3C traceparent, B3, X-Ray, ...): it writes a value into a
carrier and reads it back. A *carrier* knows one transport (HTTP headers, Kafka record
headers, the environment, ...): it maps a lowercase field name to the strings stored
under it. The two meet only through :class:`Getter` and :class:`Setter`, so adding a
format touches one codec module and adding a transport touches one carrier class.

Trade-off: codecs see every carrier as a case-insensitive multimap of strings. Carriers
that hold bytes or nested dicts pay a small conversion per lookup, in exchange for every
codec working over every transport unchanged.

Contract shared by every codec:

- ``extract`` never raises on carrier contents. Anything malformed yields ``None`` (the
  whole value) or is dropped (one list member), and whatever is returned is valid: ids
  are lowercase hex of the right length and not all zero.
- ``inject`` writes only valid values, replacing what the carrier held under the same
  names (a second ``traceparent`` would make the first one invalid downstream).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Getter(Protocol):
    """Read side of a carrier."""

    def get(self, name: str) -> list[str]:
        """Every value stored under ``name`` (given lowercase), in carrier order; [] if none.

        Matching is case-insensitive where the transport is; values that cannot be read as
        text (undecodable bytes, non-string attribute types) are skipped, not raised.
        """
        ...

    def names(self) -> Iterable[str]:
        """The lowercase names present (for prefix families such as ``uberctx-*``)."""
        ...


class Setter(Protocol):
    """Write side of a carrier."""

    def set(self, name: str, value: str) -> None:
        """Store ``value`` under ``name`` (lowercase), replacing any earlier values."""
        ...


class Codec(Protocol[T]):
    """One propagation format. ``T`` is the format's own value (context plus extras)."""

    #: Carrier names this codec reads and writes, lowercase (prefix families end in ``-``).
    fields: tuple[str, ...]

    def inject(self, value: T, carrier: Setter) -> None:
        """Write ``value`` into ``carrier`` in this format."""
        ...

    def extract(self, carrier: Getter) -> T | None:
        """The value this format carries in ``carrier``, or None if absent or malformed."""
        ...
