"""Reading a Chrome trace-event file's JSON: the object layout (``{"traceEvents": [...]}``)
and the array layout, including an array a killed tracer left without its closing ``]``
(salvaged event by event). :mod:`willowisp.ingest.chrome` maps the events; this module
only finds them.
"""

from __future__ import annotations

import decimal
import json
from dataclasses import dataclass
from typing import Any

from willowisp.errors import TraceFormatError, TraceLimitError

MAX_EVENTS = 5_000_000
_MAX_NS = 1 << 62


@dataclass(slots=True)
class Document:
    events: list[Any]
    truncated: str  # non-empty: a note that the JSON ended early
    ours: bool  # written by `willowisp export --to chrome`
    shift: int  # ns added to every time (our export's t0_ns)


def read_document(data: bytes, path: str) -> Document:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceFormatError(
            f"not Chrome trace JSON: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    try:
        whole = json.loads(text, parse_float=decimal.Decimal)
    except (ValueError, RecursionError):
        return _salvage(text, path)
    if isinstance(whole, list):
        return Document(_bounded(whole, path), "", False, 0)
    if isinstance(whole, dict) and isinstance(whole.get("traceEvents"), list):
        ours, shift = _exporter(whole.get("otherData"))
        return Document(_bounded(whole["traceEvents"], path), "", ours, shift)
    raise TraceFormatError(
        f"not Chrome trace JSON: expected an array of events or an object with a "
        f"traceEvents array, found {type(whole).__name__}"
    )


def _bounded(events: list[Any], path: str) -> list[Any]:
    if len(events) > MAX_EVENTS:
        raise TraceLimitError(f"{len(events)} events is over the bound of {MAX_EVENTS}")
    return events


def _exporter(other: Any) -> tuple[bool, int]:
    """(written by our exporter, its t0_ns) from ``otherData``."""
    if not isinstance(other, dict) or other.get("exporter") != "willowisp":
        return False, 0
    t0 = other.get("t0_ns")
    if isinstance(t0, int) and not isinstance(t0, bool) and 0 <= t0 < _MAX_NS:
        return True, t0
    return True, 0


def skip_space(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _salvage(text: str, path: str) -> Document:
    """A document ``json.loads`` refused: read events one by one up to the damage (the
    JSON Array Format may end without ``]``; a killed writer leaves half an event)."""
    dec = json.JSONDecoder(parse_float=decimal.Decimal)
    pos = skip_space(text, 0)
    if pos == len(text):
        raise TraceFormatError("not Chrome trace JSON: the file is empty")
    ours, shift = False, 0
    if text[pos] == "[":
        start = pos
    elif text[pos] == "{":
        start, other = events_array(text, dec, pos)
        if start < 0:
            raise TraceFormatError("not Chrome trace JSON: no readable traceEvents array")
        ours, shift = _exporter(other)
    else:
        raise TraceFormatError("not Chrome trace JSON: does not start with [ or {")
    events: list[Any] = []
    pos = skip_space(text, start + 1)
    while pos < len(text) and text[pos] != "]":
        try:
            ev, pos = dec.raw_decode(text, pos)
        except (ValueError, RecursionError):
            break
        events.append(ev)
        if len(events) > MAX_EVENTS:
            raise TraceLimitError(f"more than {MAX_EVENTS} events (the bound)")
        pos = skip_space(text, pos)
        if text[pos : pos + 1] == ",":
            pos = skip_space(text, pos + 1)
        elif text[pos : pos + 1] != "]":
            break
    if not events:
        raise TraceFormatError(
            f"not Chrome trace JSON: no complete event (damaged at character {pos})"
        )
    note = (
        f"{path}: the JSON is damaged or truncated at character {pos}; the "
        f"{_plural(len(events), 'complete event')} before it were used"
    )
    if text[start] == "[" and text[pos:].strip() in ("", "]"):
        note = ""  # the JSON Array Format: the closing bracket is optional, a comma may trail
    return Document(events, note, ours, shift)


def events_array(text: str, dec: json.JSONDecoder, at: int = 0) -> tuple[int, Any]:
    """In the object at ``at`` (a ``{``; maybe damaged or cut), the position of the ``[``
    of its ``traceEvents`` (-1 if it cannot be reached), and the ``otherData`` before it
    (None if none)."""
    other = None
    pos = skip_space(text, at + 1)
    while pos < len(text) and text[pos] == '"':
        try:
            key, pos = dec.raw_decode(text, pos)
            pos = skip_space(text, pos)
            if text[pos : pos + 1] != ":":
                break
            pos = skip_space(text, pos + 1)
            if key == "traceEvents":
                return (pos if text[pos : pos + 1] == "[" else -1), other
            value, pos = dec.raw_decode(text, pos)
        except (ValueError, RecursionError):
            break
        if key == "otherData":
            other = value
        pos = skip_space(text, pos)
        if text[pos : pos + 1] == ",":
            pos = skip_space(text, pos + 1)
    return -1, other


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
