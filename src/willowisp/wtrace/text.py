"""The line-oriented text twin of ``.wtrace``, for tests, golden traces and debugging.

One line per thing, in file order::

    wtrace 1.0
    chunk
    rec unit 1 kind="thread" name="MainThread" parent=0
    seq 1
    ev 1000 unit.start u=1
    ev 1500 lock.acquired u=1 r=3 a=0 l=2
    end

``rec TYPE ID key=value...`` is a definition record (strings JSON-quoted, bytes as
``x"hex"``, integers bare); ``seq N`` gives the chunk's first sequence number; ``ev TIME
KIND`` an event with its non-zero fields (u unit, r res, a arg, l loc). Converting text to
binary and back is lossless, so a golden trace in text encodes to exactly the bytes an
agent must write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from willowisp.errors import TraceFormatError
from willowisp.model.spec import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    KIND_BY_CODE,
    KIND_BY_NAME,
    RECORD_BY_CODE,
    RECORD_BY_NAME,
)
from willowisp.wtrace.payload import AttrValue, DecodedEvents, EventBatch, Record, rows_of
from willowisp.wtrace.reader import TraceFile

_TOKEN = re.compile(r'\s*(\w+|"(?:[^"\\]|\\.)*")=("(?:[^"\\]|\\.)*"|x"[0-9a-f]*"|-?\d+)')
_PLAIN_KEY = re.compile(r"[A-Za-z_]\w*")
_EV_FIELDS = (("u", 1), ("r", 3), ("a", 4), ("l", 5))


def _fmt_value(v: AttrValue) -> str:
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=True)
    return 'x"' + bytes(v).hex() + '"'


def _fmt_key(k: str) -> str:
    """Plain identifiers bare, anything else (``http.method``, spaces, ``=``) JSON-quoted."""
    return k if _PLAIN_KEY.fullmatch(k) else json.dumps(k, ensure_ascii=True)


def _parse_key(tok: str) -> str:
    if tok.startswith('"'):
        k = json.loads(tok)
        if not isinstance(k, str):
            raise ValueError(tok)
        return k
    return tok


def _parse_value(tok: str) -> AttrValue:
    if tok.startswith('"'):
        v = json.loads(tok)
        if not isinstance(v, str):
            raise ValueError(tok)
        return v
    if tok.startswith('x"'):
        return bytes.fromhex(tok[2:-1])
    return int(tok)


def record_line(rec: Record) -> str:
    rt = RECORD_BY_CODE.get(rec.rtype)
    name = rt.name if rt else str(rec.rtype)
    attrs = " ".join(f"{_fmt_key(k)}={_fmt_value(v)}" for k, v in rec.attrs)
    return f"rec {name} {rec.id} {attrs}".rstrip()


def event_line(row: tuple[int, int, int, int, int, int]) -> str:
    kind = KIND_BY_CODE.get(row[0])
    parts = [f"ev {row[2]} {kind.name if kind else row[0]}"]
    parts += [f"{key}={row[i]}" for key, i in _EV_FIELDS if row[i]]
    return " ".join(parts)


def to_text(tf: TraceFile) -> str:
    """The text twin of a parsed file (skipped chunks are not shown)."""
    out = [f"wtrace {tf.major}.{tf.minor}"]
    for chunk in tf.chunks:
        out.append("chunk")
        out += [record_line(r) for r in chunk.records]
        if chunk.events is not None and len(chunk.events):
            out.append(f"seq {chunk.events.first_seq}")
            out += [event_line(r) for r in rows_of(chunk.events)]
        out.append("end")
    return "\n".join(out) + "\n"


def chunks_to_text(chunks: Iterable[tuple[list[Record], EventBatch | DecodedEvents | None]]) -> str:
    out = [f"wtrace {FORMAT_MAJOR}.{FORMAT_MINOR}"]
    for records, events in chunks:
        out.append("chunk")
        out += [record_line(r) for r in records]
        if events is not None and len(events):
            out.append(f"seq {events.first_seq}")
            rows = rows_of(events) if isinstance(events, DecodedEvents) else list(events.rows())
            out += [event_line(r) for r in rows]
        out.append("end")
    return "\n".join(out) + "\n"


def from_text(text: str, source: str = "<text>") -> list[tuple[list[Record], EventBatch | None]]:
    """Parse a text twin into chunks ready for the writer. TraceFormatError names the line."""
    chunks: list[tuple[list[Record], EventBatch | None]] = []
    records: list[Record] = []
    events: EventBatch | None = None
    in_chunk = False
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            word, _, rest = s.partition(" ")
            if word == "wtrace":
                major = int(rest.split(".")[0])
                if major != FORMAT_MAJOR:
                    raise ValueError(f"format {rest} is not {FORMAT_MAJOR}.x")
            elif word == "chunk":
                if in_chunk:
                    raise ValueError("chunk inside a chunk (missing 'end')")
                in_chunk, records, events = True, [], None
            elif word == "end":
                if not in_chunk:
                    raise ValueError("'end' outside a chunk")
                chunks.append((records, events))
                in_chunk = False
            elif word == "rec":
                rname, rid, attr_text = (rest.split(" ", 2) + [""])[:3]
                rt = RECORD_BY_NAME.get(rname)
                rtype = rt.code if rt else int(rname)
                attrs = tuple((_parse_key(k), _parse_value(v)) for k, v in _tokens(attr_text))
                records.append(Record(rtype, int(rid), attrs))
            elif word == "seq":
                events = EventBatch(first_seq=int(rest))
            elif word == "ev":
                if events is None:
                    raise ValueError("'ev' before 'seq'")
                t, kname, fields = (rest.split(" ", 2) + [""])[:3]
                kind = KIND_BY_NAME.get(kname)
                code = kind.code if kind else int(kname)
                vals = {k: int(v) for k, v in _tokens(fields)}
                events.append(
                    code,
                    vals.pop("u", 0),
                    int(t),
                    vals.pop("r", 0),
                    vals.pop("a", 0),
                    vals.pop("l", 0),
                )
                if vals:
                    raise ValueError(f"unknown event fields {sorted(vals)}")
            else:
                raise ValueError(f"unknown line type {word!r}")
        except (ValueError, TypeError, IndexError) as exc:
            raise TraceFormatError(f"{source}:{lineno}: {exc}") from exc
    if in_chunk:
        raise TraceFormatError(f"{source}: last chunk has no 'end'")
    return chunks


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot parse {text[pos : pos + 30]!r}")
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    return out
