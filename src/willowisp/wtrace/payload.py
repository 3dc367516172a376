"""The uncompressed payload of a chunk: string table, definition records, event columns.

Layout (all counts and lengths are unsigned LEB128 "uvarints"; "svarint" is zigzag LEB128)::

    uvarint n_strings,  n_strings x (uvarint len, len bytes of UTF-8)
    uvarint n_records,  n_records x record
    uvarint n_events
    if n_events > 0:
      uvarint first_seq            sequence number of the first event (per process)
      n_events x u8                kind
      n_events x u32le             unit
      n_events x u64le             time (monotonic ns, below 2**63)
      n_events x u32le             res
      n_events x i64le             arg
      n_events x u32le             loc

    record = u8 type, uvarint id, uvarint n_attrs,
             n_attrs x (uvarint key string index, u8 value type, value)
             value type 0: svarint integer; 1: uvarint string index; 2: uvarint len + bytes

The string table is local to the chunk, so every chunk decodes on its own: a reader that
lost chunk 3 still reads chunk 4. Events are columns so that encoding and decoding are
bulk operations (array slicing and numpy), not a Python loop per event; zstd then finds the
repetition in each column (units and locations repeat; the high bytes of times are the
same). Times are absolute rather than deltas: in a Python agent a delta costs a Python-level
operation per event in the flusher, and zstd gets most of the difference back.
"""

from __future__ import annotations

import os
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from willowisp.errors import TraceFormatError, TraceLimitError

AttrValue = int | str | bytes
_BIG = sys.byteorder == "big"
MAX_COUNT = 1 << 26  # no chunk holds more strings, records or events than this

_native_records: Any = None
if os.environ.get("WILLOWISP_PURE_PYTHON", "") in ("", "0"):
    try:
        from willowisp._native import encode_records as _native_records
    except ImportError:  # not built, or built for another interpreter
        _native_records = None


@dataclass(frozen=True, slots=True)
class Record:
    """A definition record: ``rtype`` from spec.RECORD_TYPES, ``id`` its number."""

    rtype: int
    id: int
    attrs: tuple[tuple[str, AttrValue], ...]

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default


@dataclass(slots=True)
class EventBatch:
    """Events as parallel columns (stdlib arrays). ``time`` holds absolute monotonic ns."""

    first_seq: int = 1
    kind: array[int] = field(default_factory=lambda: array("B"))
    unit: array[int] = field(default_factory=lambda: array("I"))
    time: array[int] = field(default_factory=lambda: array("q"))
    res: array[int] = field(default_factory=lambda: array("I"))
    arg: array[int] = field(default_factory=lambda: array("q"))
    loc: array[int] = field(default_factory=lambda: array("I"))

    def __len__(self) -> int:
        return len(self.kind)

    def append(
        self, kind: int, unit: int, time: int, res: int = 0, arg: int = 0, loc: int = 0
    ) -> None:
        """Add one event (for tests, importers and the text twin; the agent uses columns)."""
        self.kind.append(kind)
        self.unit.append(unit)
        self.time.append(time)
        self.res.append(res)
        self.arg.append(arg)
        self.loc.append(loc)

    def rows(self) -> Iterable[tuple[int, int, int, int, int, int]]:
        return zip(self.kind, self.unit, self.time, self.res, self.arg, self.loc, strict=True)


class PackedEvents:
    """Events whose columns are already little-endian bytes (the agent's C flusher makes
    them in one pass), plus a few appended in the ordinary way (metadata events)."""

    __slots__ = ("arg", "extra", "first_seq", "kind", "loc", "n", "res", "time", "unit")

    def __init__(
        self,
        first_seq: int,
        n: int,
        kind: bytes,
        unit: bytes,
        time: bytes,
        res: bytes,
        arg: bytes,
        loc: bytes,
    ) -> None:
        self.first_seq = first_seq
        self.n = n
        self.kind, self.unit, self.time, self.res, self.arg, self.loc = (
            kind,
            unit,
            time,
            res,
            arg,
            loc,
        )
        self.extra = EventBatch(first_seq=first_seq + n)

    def __len__(self) -> int:
        return self.n + len(self.extra)

    def append(
        self, kind: int, unit: int, time: int, res: int = 0, arg: int = 0, loc: int = 0
    ) -> None:
        self.extra.append(kind, unit, time, res, arg, loc)


def put_uvarint(out: bytearray, v: int) -> None:
    if v < 0:
        raise ValueError(f"uvarint cannot hold negative {v}")
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def put_svarint(out: bytearray, v: int) -> None:
    put_uvarint(out, (v << 1) ^ (v >> 63) if -(2**63) <= v < 2**63 else _too_big(v))


def _too_big(v: int) -> int:
    raise ValueError(f"{v} does not fit in 64 bits")


def _le(a: array[int]) -> bytes:
    if _BIG:  # pragma: no cover - no big-endian machines here
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


class _Strings:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def ref(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.index)
        return i


def encode_payload(records: Sequence[Record], events: EventBatch | PackedEvents | None) -> bytes:
    """Encode one chunk's payload. Deterministic: the same input gives the same bytes.

    The string table and records go through ``willowisp._native.encode_records`` when it is
    built (a record costs ~0.3 µs there, ~3 µs here); this Python code is the reference and
    the fallback, and the conformance vectors check both give the same bytes.
    """
    if _native_records is not None:
        head, recs = _native_records(records)
        body = bytearray(recs)
        _encode_tail(body, events)
        return bytes(head) + bytes(body)
    strings = _Strings()
    body = bytearray()
    put_uvarint(body, len(records))
    for rec in records:
        body.append(rec.rtype)
        put_uvarint(body, rec.id)
        put_uvarint(body, len(rec.attrs))
        for key, value in rec.attrs:
            put_uvarint(body, strings.ref(key))
            if isinstance(value, bool):
                raise TypeError(f"attribute {key}: use 0/1, not a bool")
            if isinstance(value, int):
                body.append(0)
                put_svarint(body, value)
            elif isinstance(value, str):
                body.append(1)
                put_uvarint(body, strings.ref(value))
            elif isinstance(value, bytes | bytearray):
                body.append(2)
                put_uvarint(body, len(value))
                body += value
            else:
                raise TypeError(f"attribute {key}: unsupported value type {type(value).__name__}")
    _encode_tail(body, events)
    head = bytearray()
    put_uvarint(head, len(strings.index))
    for s in strings.index:
        b = s.encode("utf-8", "surrogatepass")
        put_uvarint(head, len(b))
        head += b
    return bytes(head + body)


def _encode_tail(body: bytearray, events: EventBatch | PackedEvents | None) -> None:
    n = len(events) if events is not None else 0
    put_uvarint(body, n)
    if isinstance(events, PackedEvents) and n:
        _encode_packed(body, events)
    elif isinstance(events, EventBatch) and n:
        _encode_events(body, events)


def _encode_events(out: bytearray, ev: EventBatch) -> None:
    n = len(ev.kind)
    for col in (ev.unit, ev.time, ev.res, ev.arg, ev.loc):
        if len(col) != n:
            raise ValueError("event columns differ in length")
    if min(ev.time) < 0:
        raise ValueError("event times must not be negative")
    put_uvarint(out, ev.first_seq)
    out += _le(ev.kind) if ev.kind.typecode == "B" else bytes(array("B", ev.kind))
    out += _le(ev.unit)
    out += _le(ev.time)
    out += _le(ev.res)
    out += _le(ev.arg)
    out += _le(ev.loc)


def _encode_packed(out: bytearray, ev: PackedEvents) -> None:
    x = ev.extra
    put_uvarint(out, ev.first_seq)
    out += ev.kind
    out += _le(x.kind)
    out += ev.unit
    out += _le(x.unit)
    out += ev.time
    out += _le(x.time)
    out += ev.res
    out += _le(x.res)
    out += ev.arg
    out += _le(x.arg)
    out += ev.loc
    out += _le(x.loc)


# --- decoding -------------------------------------------------------------------------


class _Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uvarint(self) -> int:
        data, pos = self.data, self.pos
        result = shift = 0
        while True:
            if pos >= len(data):
                raise TraceFormatError(f"payload ends inside a varint at byte {pos}")
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift > 63 or (shift == 63 and pos < len(data) and data[pos] > 1):
                raise TraceFormatError(f"varint over 64 bits at byte {self.pos}")
        self.pos = pos
        return result

    def svarint(self) -> int:
        u = self.uvarint()
        return (u >> 1) ^ -(u & 1)

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise TraceFormatError(
                f"payload needs {n} bytes at byte {self.pos} but has {len(self.data) - self.pos}"
            )
        b = self.data[self.pos : end]
        self.pos = end
        return b

    def count(self, what: str) -> int:
        n = self.uvarint()
        if n > MAX_COUNT:
            raise TraceLimitError(f"{what} count {n} is over the bound {MAX_COUNT}")
        return n


@dataclass(slots=True)
class DecodedEvents:
    """Event columns of one chunk as numpy arrays (time already absolute)."""

    first_seq: int
    kind: Any  # np.ndarray[uint8]
    unit: Any  # uint32
    time: Any  # int64
    res: Any  # uint32
    arg: Any  # int64
    loc: Any  # uint32

    def __len__(self) -> int:
        return len(self.kind)


def decode_payload(raw: bytes) -> tuple[list[Record], DecodedEvents | None]:
    """Decode a verified payload. Raises only TraceFormatError (and its subclasses)."""
    try:
        return _decode(raw)
    except TraceFormatError:
        raise
    except (ValueError, IndexError, OverflowError, UnicodeDecodeError) as exc:
        raise TraceFormatError(f"malformed payload: {exc}") from exc


def _decode(raw: bytes) -> tuple[list[Record], DecodedEvents | None]:
    import numpy as np  # the reader side may use numpy; the agent never decodes

    cur = _Cursor(raw)
    strings: list[str] = []
    for _ in range(cur.count("string")):
        strings.append(cur.take(cur.uvarint()).decode("utf-8", "surrogatepass"))

    def string(i: int) -> str:
        if i >= len(strings):
            raise TraceFormatError(f"string index {i} out of range ({len(strings)} strings)")
        return strings[i]

    records: list[Record] = []
    for _ in range(cur.count("record")):
        rtype = cur.take(1)[0]
        rid = cur.uvarint()
        attrs: list[tuple[str, AttrValue]] = []
        for _ in range(cur.count("attribute")):
            key = string(cur.uvarint())
            vtype = cur.take(1)[0]
            value: AttrValue
            if vtype == 0:
                value = cur.svarint()
            elif vtype == 1:
                value = string(cur.uvarint())
            elif vtype == 2:
                value = cur.take(cur.uvarint())
            else:
                raise TraceFormatError(f"unknown attribute value type {vtype} for {key!r}")
            attrs.append((key, value))
        records.append(Record(rtype, rid, tuple(attrs)))
    n = cur.count("event")
    events = None
    if n:
        first_seq = cur.uvarint()
        kind = np.frombuffer(cur.take(n), dtype=np.uint8)
        unit = np.frombuffer(cur.take(4 * n), dtype="<u4").astype(np.uint32)
        time = np.frombuffer(cur.take(8 * n), dtype="<i8").astype(np.int64)
        res = np.frombuffer(cur.take(4 * n), dtype="<u4").astype(np.uint32)
        arg = np.frombuffer(cur.take(8 * n), dtype="<i8").astype(np.int64)
        loc = np.frombuffer(cur.take(4 * n), dtype="<u4").astype(np.uint32)
        if int(time.min()) < 0:
            raise TraceFormatError("an event time is at or above 2**63")
        events = DecodedEvents(first_seq, kind, unit, time, res, arg, loc)
    if cur.pos != len(raw):
        raise TraceFormatError(f"{len(raw) - cur.pos} unexpected bytes after the events")
    return records, events


def batch_from_rows(
    rows: Iterable[tuple[int, int, int, int, int, int]], first_seq: int = 1
) -> EventBatch:
    b = EventBatch(first_seq=first_seq)
    for k, u, t, r, a, lo in rows:
        b.append(k, u, t, r, a, lo)
    return b


def rows_of(ev: DecodedEvents) -> list[tuple[int, int, int, int, int, int]]:
    return list(
        zip(
            ev.kind.tolist(),
            ev.unit.tolist(),
            ev.time.tolist(),
            ev.res.tolist(),
            ev.arg.tolist(),
            ev.loc.tolist(),
            strict=True,
        )
    )
