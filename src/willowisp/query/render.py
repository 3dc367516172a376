"""Printing a query's result: ``table`` for people, ``json`` and ``csv`` for programs.

- ``table``: a header, a rule and aligned rows (numbers right-aligned), then ``(N rows)``.
  Cells longer than :data:`MAX_CELL` characters are cut with ``…``. Trace strings come
  from the traced programs (thread names, URLs, SQL), so control characters and the
  Unicode format characters that reorder text (bidi overrides, zero-width marks) are
  shown escaped (``\\n``, ``\\x1b``, ``\\u202e``): a query's output can never move the
  cursor, colour the terminal or hide text. NULL prints as ``NULL``; lists as ``[a, b]``.
- ``json``: one object, ``schema`` first: ``{"schema": "willowisp.query/1", "columns":
  [{"name", "type"}], "rows": [[...], ...]}``. Rows are arrays in column order (a result
  may repeat a column name, which an object per row could not hold). JSON columns are
  embedded as JSON values, lists as arrays, NULL as null, decimals as numbers; other
  values (dates, intervals, blobs) as their text.
- ``csv``: RFC 4180 through the ``csv`` module, a header row, NULL as an empty field,
  lists and structs as JSON text.
"""

from __future__ import annotations

import csv
import datetime
import decimal
import json
import math
import unicodedata
import uuid
from typing import Any, TextIO

from willowisp.query.database import Result

SCHEMA = "willowisp.query/1"
MAX_CELL = 60
FORMATS = ("table", "json", "csv")

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def render(result: Result | None, fmt: str, out: TextIO) -> None:
    """Write ``result`` (None: the statement returned nothing) in format ``fmt``."""
    if fmt == "json":
        out.write(json.dumps(to_json(result), ensure_ascii=False) + "\n")
    elif fmt == "csv":
        if result is not None:
            write_csv(result, out)
    elif result is not None:
        write_table(result, out)


# -- table --------------------------------------------------------------------------


def escape(text: str) -> str:
    """Control and invisible format characters as escapes; everything else unchanged."""
    if text.isprintable() and "\\" not in text:
        return text
    parts = []
    for ch in text:
        if ch in _NAMED_ESCAPES:
            parts.append(_NAMED_ESCAPES[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(ch)
            parts.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            parts.append(ch)
    return "".join(parts)


def cell_text(value: Any) -> str:
    """A value as the table shows it (before escaping and cutting)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(cell_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {cell_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return str(value)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def write_table(result: Result, out: TextIO) -> None:
    header = [_cut(escape(c)) for c in result.columns]
    cells = [[_cut(escape(cell_text(v))) for v in row] for row in result.rows]
    widths = [len(h) for h in header]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    right = [t.split("(")[0] in _NUMERIC for t in result.types]

    def line(texts: list[str]) -> str:
        parts = [
            t.rjust(w) if r else t.ljust(w) for t, w, r in zip(texts, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out.write(line(header) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(line(row) + "\n")
    n = len(result.rows)
    out.write(f"({n} row{'' if n == 1 else 's'})\n")


# -- json and csv ---------------------------------------------------------------------


def to_json(result: Result | None) -> dict[str, Any]:
    if result is None:
        return {"schema": SCHEMA, "columns": [], "rows": []}
    json_cols = [t == "JSON" for t in result.types]
    rows = [
        [
            _parse_json(v) if is_json else _json_value(v)
            for v, is_json in zip(row, json_cols, strict=True)
        ]
        for row in result.rows
    ]
    return {
        "schema": SCHEMA,
        "columns": [
            {"name": n, "type": t} for n, t in zip(result.columns, result.types, strict=True)
        ],
        "rows": rows,
    }


def _parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        return _json_value(value)
    try:
        return json.loads(value)
    except (ValueError, RecursionError):  # nested too deep for the parser: a plain string
        return value


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime.date | datetime.time | datetime.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID | datetime.timedelta):
        return str(value)
    return str(value)


def write_csv(result: Result, out: TextIO) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(result.columns)
    for row in result.rows:
        w.writerow([_csv_value(v) for v in row])


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        return json.dumps(_json_value(value), ensure_ascii=False)
    if isinstance(value, bytes):
        return value.hex()
    return value
