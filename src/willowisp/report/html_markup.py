"""Making trace strings safe and short inside the HTML report.

Every string the report shows may have come from a trace — a thread name, a lock name, a
file path, a service name — and a trace is written by the program being debugged, so it is
untrusted input. The one rule: nothing reaches the page except through :func:`text` (element
content) or :func:`attr` (a double-quoted attribute value), both of which escape ``&``,
``<``, ``>`` and both quotes and show control characters as visible ``\\xNN``. Markup the
report writes itself is built from constants around those calls, never from trace data.

Long strings are clipped for display (a 10,000-character thread name would push every lane
off the page) with a note of how much was left out; the clipped form is what is escaped.
"""

from __future__ import annotations

import html
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
LABEL_LIMIT = 36  # characters of a lane label in the timeline
SHORT = 100  # below this limit a clipped string says only "…" where it was cut
CELL_LIMIT = 120  # characters of a name in a table cell


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


def text(value: Any, limit: int = TEXT_LIMIT) -> str:
    """``value`` clipped and escaped for element content."""
    return html.escape(clip(value, limit), quote=True)


def attr(value: Any, limit: int = TEXT_LIMIT) -> str:
    """``value`` clipped and escaped for a double-quoted attribute value (always write
    ``name="..."``; the quotes are escaped here, so the value cannot end the attribute)."""
    return html.escape(clip(value, limit), quote=True)


_ANCHOR_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def anchor(value: Any) -> str:
    """A fragment id made of ``[A-Za-z0-9_.:-]`` only: finding ids (``F-3a9c1e``) pass
    unchanged, so ``report.html#F-3a9c1e`` is a stable link; anything else is neutralised."""
    return _ANCHOR_SAFE.sub("_", str(value))[:80] or "_"
