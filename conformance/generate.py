"""Conformance vectors for ``.wtrace`` v1: logical traces and the exact bytes they encode to.

Every agent (Python, Go, Java, Rust, Node) has its own encoder, and all of them must write
the same bytes for the same content. A vector is a small trace described twice:
``vectors/NAME.json`` (chunks of records and events, in a form any language can read) and
``vectors/NAME.wtrace`` (the whole file the Python encoder writes for it, codec ``none``).
An agent's test runner encodes the JSON with its own encoder and compares bytes exactly.

The vectors are built here, in code, rather than written by hand, so that each one says
what it pins down (string-table order, the int32 escape of time deltas, 64-bit extremes,
sequence gaps, ...). ``tests/wtrace/test_conformance.py`` rebuilds them in memory and
compares with the committed files, so the files cannot drift from the encoder. After a
deliberate format change, run ``python conformance/generate.py`` and commit the result.

JSON shapes (all integers exact, which is why 64-bit readers must not parse them as
doubles)::

    {"description": str,
     "chunks": [{"records": [{"type": int, "id": int, "attrs": [[key, value], ...]}, ...],
                 "events": null | {"first_seq": int,
                                   "rows": [[kind, unit, time, res, arg, loc], ...]}}]}

    value: a JSON integer (type 0), a string (type 1) or {"hex": "..."} for bytes (type 2)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from willowisp.model.spec import EVENT_KINDS, FORMAT_MAJOR, FORMAT_MINOR, K, Reason, spec_json
from willowisp.wtrace.framing import CODEC_NONE, file_header
from willowisp.wtrace.payload import AttrValue, EventBatch, Record
from willowisp.wtrace.writer import encode_chunk

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

HERE = Path(__file__).resolve().parent
VECTOR_DIR = HERE / "vectors"

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U32_MAX = 2**32 - 1

Row = tuple[int, int, int, int, int, int]  # kind, unit, time, res, arg, loc
ChunkSpec = tuple[list[Record], EventBatch | None]

# Record type codes (spec.RECORD_TYPES); spelled out so each vector reads like the spec.
PROCESS, UNIT, RESOURCE, LOCATION, FAULT, STATS, EMBEDDED = 1, 2, 3, 4, 5, 6, 7
PROCESS_ID = "5f0c3a9e1d2b4c6f8a7e9d0b1c2a3f4e"


@dataclass(frozen=True, slots=True)
class Vector:
    """One conformance case: a name (the file stem), what it pins down, and its chunks."""

    name: str
    description: str
    chunks: tuple[ChunkSpec, ...]


def rec(rtype: int, rid: int, *attrs: tuple[str, AttrValue]) -> Record:
    return Record(rtype, rid, tuple(attrs))


def events(first_seq: int, rows: Iterable[Row]) -> EventBatch:
    batch = EventBatch(first_seq=first_seq)
    for row in rows:
        batch.append(*row)
    return batch


def _splitmix64(seed: int) -> Iterator[int]:
    """A tiny fixed PRNG: ``random`` is not promised to give the same numbers forever."""
    state = seed
    mask = 2**64 - 1
    while True:
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        yield z ^ (z >> 31)


# --- the vectors --------------------------------------------------------------------------


def _header_only() -> Vector:
    return Vector(
        "header_only",
        f"A file with no chunks: just the 16-byte header (major {FORMAT_MAJOR}, minor "
        f"{FORMAT_MINOR}).",
        (),
    )


def _records_only() -> Vector:
    # Keys and string values deliberately reuse each other ("name" is a key and later a
    # value, "MainThread" a value and later a key) so that the first-use order of the
    # string table (key, then value, record by record) is pinned down.
    records = [
        rec(
            PROCESS,
            0,
            ("process_id", PROCESS_ID),
            ("pid", 4242),
            ("ppid", 1),
            ("host", "build-7"),
            ("service", "orders"),
            ("runtime", "python"),
            ("runtime_version", "3.11.7"),
            ("agent_version", "0.1.0"),
            ("boot_id", ""),
            ("time_ns", "time:[4026531834]"),
            ("fake_time", ""),
            ("simulated_offset_ns", -1_500_000_000),
            ("argv", 'python -c "print(1)"'),
            ("traceparent", ""),
            ("parent_process_id", ""),
            ("mode", "full"),
            ("segment", 1),
        ),
        rec(
            UNIT,
            1,
            ("kind", "thread"),
            ("name", "MainThread"),
            ("parent", 0),
            ("os_tid", 4242),
            ("loc", 1),
        ),
        rec(UNIT, 2, ("kind", "task"), ("name", "name"), ("parent", 1), ("coro", "thread")),
        rec(RESOURCE, 1, ("kind", "lock"), ("name", "orders_lock"), ("loc", 2)),
        rec(
            RESOURCE,
            2,
            ("kind", "rpc"),
            ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("span_id", "00f067aa0ba902b7"),
            ("parent_span_id", ""),
            ("sampled", 1),
            ("protocol", "http"),
            ("library", "urllib"),
            ("method", "GET"),
            ("target", "/orders/{id}"),
            ("peer", "127.0.0.1:8080"),
        ),
        rec(LOCATION, 1, ("file", "/srv/app/main.py"), ("line", 12), ("func", "<module>")),
        rec(LOCATION, 2, ("file", "C:\\src\\Grüße\\世界.py"), ("line", 2**31), ("func", "λ")),
        rec(
            FAULT,
            1,
            ("message", 'KeyError: "missing"\n\tat line 3 \\ done'),
            ("where", "threading.Lock.acquire"),
        ),
        rec(STATS, 0, ("events", 0), ("dropped", 0), ("faults", 1), ("cost_ns_per_event", 312)),
        # Integers: zigzag boundaries (63/64, -64/-65 change the varint length), 32- and
        # 64-bit extremes.
        rec(
            STATS,
            1,
            ("zero", 0),
            ("one", 1),
            ("minus_one", -1),
            ("i63", 63),
            ("i64", 64),
            ("m64", -64),
            ("m65", -65),
            ("i300", 300),
            ("i2_31", 2**31),
            ("m2_31", -(2**31)),
            ("i2_56", 2**56),
            ("i64_max", I64_MAX),
            ("i64_min", I64_MIN),
        ),
        # Bytes: empty, every high-bit pattern, bytes that look like a chunk magic.
        rec(
            FAULT,
            2,
            ("empty", b""),
            ("raw", bytes([0, 1, 0x7F, 0x80, 0xFF])),
            ("magic", b"WCHK\x00"),
            ("all", bytes(range(256))),
        ),
        # Strings: empty, non-ASCII (2-, 3- and 4-byte UTF-8), JSON and text-twin specials.
        rec(
            UNIT,
            3,
            ("name", ""),
            ("kind", "fiber"),
            ("emoji", "🔥 日本 ñ"),
            ("quotes", "say \"hi\" and 'bye'"),
            ("controls", "a\nb\r\nc\t\u0000d\u001f"),
            ("backslash", '\\x"00"'),
            ("equals", "k=v u=1"),
            ("MainThread", 1),
        ),
        # Foreign data stored as it came (a piece of an OTLP JSON stream).
        rec(EMBEDDED, 1, ("format", "otlp-json"), ("data", b'{"resourceSpans":[]}'), ("more", 0)),
        # A record with no attributes, an unknown record type (readers skip it; encoders
        # write it like any other), and a unit named again (the last record wins).
        rec(RESOURCE, 3),
        rec(200, 7, ("future", 1), ("kind", "lock")),
        rec(UNIT, 1, ("kind", "thread"), ("name", "renamed-main")),
        # A large id (uvarint of 10 bytes).
        rec(RESOURCE, 2**64 - 1, ("kind", "event")),
    ]
    return Vector(
        "records_only",
        "One chunk of records and no events: every record type (and an unknown one), all "
        "three value types, negative and 64-bit integers, non-ASCII and escaped strings, "
        "and keys reused as values (pins the string table's first-use order).",
        ((records, None),),
    )


def _event_basics() -> Vector:
    base = 1_000_000_000
    rows: list[Row] = [
        (K.CLOCK_ANCHOR, 1, base, 0, 1_700_000_000_123_456_789, 0),  # dt[0] = 0
        (K.UNIT_START, 1, base + 10, 0, 0, 1),
        (K.UNIT_CREATE, 1, base + 250, 0, 2, 2),
        (K.UNIT_START, 2, base + 240, 0, 1, 0),  # negative delta: another unit's clock read
        (K.LOCK_ACQUIRED, 2, base + 300, 1, 0, 3),
        (K.UNIT_BLOCK, 1, base + 290, 1, Reason.ACQUIRE, 4),  # negative again
        (K.LOCK_RELEASE, 2, base + 900, 1, 0, 5),
        (K.LOCK_ACQUIRED, 1, base + 900, 1, 0, 4),  # zero delta
        (K.LOCK_RELEASE, 1, base + 1000, 1, 0, 6),
        (K.UNIT_END, 2, base + 1100, 0, 0, 0),
        (K.JOIN_DONE, 1, base + 1150, 2, 2, 7),
    ]
    records = [
        rec(UNIT, 1, ("kind", "thread"), ("name", "MainThread")),
        rec(UNIT, 2, ("kind", "thread"), ("name", "worker"), ("parent", 1)),
        rec(RESOURCE, 1, ("kind", "lock"), ("name", "lock")),
        rec(RESOURCE, 2, ("kind", "join"), ("unit", 2)),
    ]
    return Vector(
        "event_basics",
        "Records then a small event column set: equal and decreasing times "
        "(events of different units are not sorted by time), a wall-clock anchor.",
        ((records, events(1, rows)),),
    )


def _time_extremes() -> Vector:
    # Times are absolute u64 little-endian, below 2^63, in any order across units.
    times = [0, 1, 2**31 - 1, 2**31, 2**32, 2**32 + 1, 5_000_000_000, 2**62, 2**63 - 1, 7, 0]
    rows: list[Row] = [(K.AGENT_FLUSH, 1, t, 0, i, 0) for i, t in enumerate(times)]
    return Vector(
        "time_extremes",
        "Absolute event times at the edges of the column: 0, around 2^31 and 2^32, 2^62 and "
        "the largest allowed time 2^63 - 1, not in order (events of different units need "
        "not be sorted).",
        (([rec(UNIT, 1, ("kind", "thread"))], events(1, rows)),),
    )


def _field_extremes() -> Vector:
    values = [0, 1, -1, INT32_MIN, INT32_MAX, I64_MIN, I64_MAX, I64_MIN + 1, I64_MAX - 1]
    rows: list[Row] = [
        (K.QUEUE_PUT, i + 1, i, U32_MAX - i, arg, U32_MAX if i % 2 else 0)
        for i, arg in enumerate(values)
    ]
    rows.append((K.SYNC_NOTIFY, U32_MAX, 90, U32_MAX, -1, U32_MAX))
    rows.append((255, 0, 91, 0, 0, 0))  # the largest kind code; unknown, so readers skip it
    rows.append((0, 0, 92, 0, 0, 0))
    return Vector(
        "field_extremes",
        "Every event field at its limits: arg at the int64 extremes, unit/res/loc at "
        "2^32 - 1, kind codes 0 and 255 (unknown kinds are encoded like known ones). "
        "time 0 is not special.",
        (([], events(0, rows)),),
    )


def _all_kinds() -> Vector:
    args: dict[int, int] = {
        K.UNIT_CREATE: 2,
        K.UNIT_START: 1,
        K.UNIT_END: 1,
        K.UNIT_BLOCK: Reason.GET,
        K.UNIT_WAKE: 1,
        K.UNIT_RUN: 1,
        K.LOCK_ACQUIRED: 1,
        K.LOCK_RELEASE: 1,
        K.QUEUE_PUT: 77,
        K.QUEUE_GET: 77,
        K.SYNC_NOTIFY: -1,
        K.SYNC_ARRIVE: 3,
        K.JOIN_DONE: 2,
        K.DATA_ACCESS: 1,
        K.RPC_REPLY: 200,
        K.RPC_RESPONSE: -1,
        K.PROC_SPAWN: 4343,
        K.PROC_START: 4242,
        K.GC_BEGIN: 2,
        K.GC_END: 1234,
        K.CLOCK_ANCHOR: 1_700_000_000_000_000_000,
        K.AGENT_DROP: 17,
        K.AGENT_FAULT: 1,
        K.AGENT_FLUSH: 26,
    }
    no_resource = {
        K.UNIT_CREATE,
        K.UNIT_START,
        K.UNIT_END,
        K.UNIT_RUN,
        K.GC_BEGIN,
        K.GC_END,
        K.CLOCK_ANCHOR,
        K.AGENT_DROP,
        K.AGENT_FAULT,
        K.AGENT_FLUSH,
    }
    rows: list[Row] = []
    for i, kind in enumerate(EVENT_KINDS):
        res = 0 if kind.code in no_resource else 3 + i
        rows.append((kind.code, 1 + i % 3, 5_000 + 1_000 * i, res, args.get(kind.code, 0), i + 1))
    return Vector(
        "all_kinds",
        f"One event of each of the {len(EVENT_KINDS)} kinds of the event table, in code "
        "order, with a typical res and arg for each.",
        (([], events(1, rows)),),
    )


def _several_chunks() -> Vector:
    t0 = 81_000_000_000
    chunk0 = (
        [
            rec(
                PROCESS,
                0,
                ("process_id", PROCESS_ID),
                ("pid", 4242),
                ("service", "orders"),
                ("runtime", "python"),
                ("mode", "full"),
                ("segment", 1),
            ),
            rec(UNIT, 1, ("kind", "thread"), ("name", "MainThread")),
        ],
        events(
            1,
            [
                (K.CLOCK_ANCHOR, 1, t0, 0, 1_700_000_000_000_000_000, 0),
                (K.UNIT_START, 1, t0 + 5, 0, 0, 0),
            ],
        ),
    )
    # Sequence numbers 3 and 4 are missing: a lost chunk leaves a gap.
    chunk1 = (
        [
            rec(UNIT, 2, ("kind", "thread"), ("name", "worker"), ("parent", 1)),
            rec(RESOURCE, 1, ("kind", "lock"), ("name", "orders_lock")),
            rec(LOCATION, 1, ("file", "app.py"), ("line", 10), ("func", "work")),
        ],
        events(
            5,
            [
                (K.UNIT_CREATE, 1, t0 + 100, 0, 2, 0),
                (K.UNIT_START, 2, t0 + 140, 0, 1, 0),
                (K.LOCK_ACQUIRED, 1, t0 + 150, 1, 0, 1),
                (K.UNIT_BLOCK, 2, t0 + 160, 1, Reason.ACQUIRE, 1),
                (K.LOCK_RELEASE, 1, t0 + 400, 1, 0, 1),
                (K.LOCK_ACQUIRED, 2, t0 + 410, 1, 0, 1),
            ],
        ),
    )
    # A chunk with records only (events null), one with events only (no records) whose
    # string table is empty, and one far along in sequence (a uvarint of 6 bytes).
    chunk2 = ([rec(STATS, 0, ("events", 8), ("dropped", 0), ("faults", 0))], None)
    chunk3: ChunkSpec = ([], events(1_000_000, [(K.AGENT_FLUSH, 1, t0 + 50_000_000, 0, 8, 0)]))
    chunk4 = (
        [rec(UNIT, 2, ("kind", "thread"), ("name", "worker-renamed"))],
        events(
            2**40,
            [
                (K.LOCK_RELEASE, 2, t0 + 60_000_000_000, 1, 0, 1),
                (K.UNIT_END, 2, t0 + 60_000_000_001, 0, 0, 0),
            ],
        ),
    )
    return Vector(
        "several_chunks",
        "Five chunks, each with its own string table (strings repeat across chunks): "
        "first_seq 1, 5 (a gap), a chunk with records and no events, an events-only chunk "
        "at 1000000, and one at 2^40.",
        (chunk0, chunk1, chunk2, chunk3, chunk4),
    )


def _large_chunk() -> Vector:
    n = 2000
    units = 8
    rand = _splitmix64(20240601)
    rows: list[Row] = []
    t = 3_600_000_000_000
    kinds = (
        K.LOCK_ACQUIRED,
        K.LOCK_RELEASE,
        K.QUEUE_PUT,
        K.QUEUE_GET,
        K.UNIT_BLOCK,
        K.UNIT_WAKE,
        K.UNIT_RUN,
        K.UNIT_YIELD,
        K.SYNC_NOTIFY,
    )
    for i in range(n):
        r = next(rand)
        # Mostly forward, sometimes backward; now and then a pause beyond the int32 range.
        dt = 3_000_000_000 + r % 1_000 if i % 487 == 486 else r % 20_000 - 2_000
        t += dt
        kind = kinds[(r >> 16) % len(kinds)]
        unit = 1 + (r >> 24) % units
        res = (r >> 32) % 50
        arg = next(rand) - 2**63 if i % 5 == 0 else (r >> 40) % 1_000
        loc = (r >> 48) % 200
        rows.append((kind, unit, t, res, arg, loc))
    records = [
        rec(UNIT, u, ("kind", "thread"), ("name", f"worker-{u}")) for u in range(1, units + 1)
    ]
    records += [
        rec(RESOURCE, r, ("kind", "queue" if r % 2 else "lock"), ("name", f"r{r}"))
        for r in range(1, 50)
    ]
    return Vector(
        "large_chunk",
        f"One chunk of {n} pseudo-random events from {units} units (a fixed splitmix64 "
        "sequence): mixed small positive and negative deltas, a few over the int32 range, "
        "arbitrary 64-bit args.",
        ((records, events(42, rows)),),
    )


def vectors() -> list[Vector]:
    """Every conformance vector, in a fixed order."""
    return [
        _header_only(),
        _records_only(),
        _event_basics(),
        _time_extremes(),
        _field_extremes(),
        _all_kinds(),
        _several_chunks(),
        _large_chunk(),
    ]


# --- rendering ------------------------------------------------------------------------------


def encode_file(chunks: Sequence[ChunkSpec]) -> bytes:
    """The bytes of a whole file with these chunks, codec none (what every encoder writes)."""
    return file_header() + b"".join(encode_chunk(r, e, CODEC_NONE) for r, e in chunks)


def json_value(value: AttrValue) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"hex": bytes(value).hex()}
    return value


def record_json(record: Record) -> dict[str, Any]:
    return {
        "type": record.rtype,
        "id": record.id,
        "attrs": [[k, json_value(v)] for k, v in record.attrs],
    }


def chunk_json(
    records: Sequence[Record], first_seq: int | None, rows: Sequence[Row]
) -> dict[str, Any]:
    """A chunk's logical content; ``events`` is null when the chunk has no events."""
    ev = {"first_seq": first_seq, "rows": [list(r) for r in rows]} if rows else None
    return {"records": [record_json(r) for r in records], "events": ev}


def vector_json(vector: Vector) -> str:
    """The vector's JSON text: one record or event row per line, ASCII only, stable."""

    def compact(obj: Any) -> str:
        return json.dumps(obj, ensure_ascii=True, separators=(", ", ": "))

    def block(items: list[str], indent: str) -> str:
        if not items:
            return "[]"
        inner = ",\n".join(indent + " " + s for s in items)
        return "[\n" + inner + "\n" + indent + "]"

    chunk_texts = []
    for records, batch in vector.chunks:
        rows = list(batch.rows()) if batch is not None else []
        content = chunk_json(records, batch.first_seq if batch is not None else None, rows)
        recs = block([compact(r) for r in content["records"]], "   ")
        if content["events"] is None:
            ev = "null"
        else:
            ev_rows = block([compact(r) for r in content["events"]["rows"]], "    ")
            ev = (
                f'{{\n    "first_seq": {content["events"]["first_seq"]},\n'
                f'    "rows": {ev_rows}\n   }}'
            )
        chunk_texts.append(f'{{\n   "records": {recs},\n   "events": {ev}\n  }}')
    chunks = block(chunk_texts, " ")
    return f'{{\n "description": {compact(vector.description)},\n "chunks": {chunks}\n}}\n'


def build() -> dict[str, bytes]:
    """Every generated file, relative path -> contents: what ``main`` writes to disk."""
    out: dict[str, bytes] = {"spec.json": spec_json().encode("ascii")}
    for vector in vectors():
        out[f"vectors/{vector.name}.json"] = vector_json(vector).encode("ascii")
        out[f"vectors/{vector.name}.wtrace"] = encode_file(vector.chunks)
    return out


def main(argv: Sequence[str] = ()) -> int:
    """Write the vectors and spec.json next to this file, removing stale vector files."""
    if argv:
        print("usage: python conformance/generate.py", file=sys.stderr)
        return 2
    files = build()
    VECTOR_DIR.mkdir(exist_ok=True)
    for stale in VECTOR_DIR.iterdir():
        if f"vectors/{stale.name}" not in files:
            stale.unlink()
    for rel, data in files.items():
        (HERE / rel).write_bytes(data)
    print(f"wrote {len(files)} files under {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
