"""Trace strings made safe and short for display: a terminal, a JUnit or SARIF file, the
viewer, the HTML report (which escapes on top of this: report/html_markup).

A trace is written by the program being debugged, so every string in it is untrusted:
control characters are spelled out (``\\x1b``), bidirectional controls too, right-to-left
names isolated so they cannot reorder the text around them, and long strings clipped with a
note of how much was left out.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# C0 and C1 control characters (ESC, BEL, NUL, ...) other than tab and newline: shown as
# \xNN so a name with them stays readable and cannot confuse a terminal a report is piped to.
# Bidirectional controls (embeddings, overrides, isolates, the LRM/RLM marks) are shown as
# \u202e and the like: inside a name they would otherwise reverse the report's own text
# around it ("held by <RLO>..." reads backwards). Letters of right-to-left scripts stay; the
# page isolates each trace string (<bdi>) so they cannot reorder what surrounds them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _spell(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_RTL = ("R", "AL")
TEXT_LIMIT = 600  # characters of one trace string shown in running text
SHORT = 100  # below this limit a clipped string says only "…" where it was cut


def visible(value: Any) -> str:
    """``value`` as a string whose control characters are spelled out (``\\x1b``)."""
    return _CONTROL.sub(lambda m: _spell(m.group()), str(value))


def clip(value: Any, limit: int = TEXT_LIMIT) -> str:
    """At most about ``limit`` characters: when longer, its head and tail with ``… (N
    characters left out) …`` between. The tail is kept because an explanation step ends
    with what matters most (``... at bank.py:15, held by <a 5,000-character name>``)."""
    s = visible(value)
    if len(s) <= limit:
        return isolate(s)
    head = max(limit * 2 // 3, 1)
    tail = max(limit - head - 1, 1)
    if limit < SHORT:  # a label: no room to say how much
        return isolate(f"{s[:head]}…{s[-tail:]}")
    return isolate(f"{s[:head]}… ({len(s) - head - tail:,} characters left out) …{s[-tail:]}")


def isolate(s: str) -> str:
    """``s`` between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE when it holds a
    right-to-left letter (Hebrew, Arabic, ...): the character form of ``<bdi>``, which works
    in every place a string goes (element text, SVG ``<text>`` and ``<title>``, attribute
    tooltips, canvas text), so the name keeps its own direction and cannot reorder the
    report's text around it. Strings without such a letter cannot, and are left as they are.
    """
    if any(ch >= "\u0590" and unicodedata.bidirectional(ch) in _RTL for ch in s):
        return f"\u2068{s}\u2069"
    return s


def short_trace_id(trace_id: str, digits: int = 8) -> str:
    """The first ``digits`` significant hex digits of a trace id, for a short display.

    A 64-bit id (Zipkin, Jaeger, B3) is left-padded with 16 zeros to W3C's 32 digits, which
    is right for linking but would show every such trace as ``00000000``: its short form is
    taken from its own 16 digits.
    """
    padded = len(trace_id) == 32 and trace_id.startswith("0" * 16)
    return (trace_id[16:] if padded else trace_id)[:digits]
