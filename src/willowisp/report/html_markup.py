"""Making trace strings safe and short inside the HTML report.

Every string the report shows may have come from a trace — a thread name, a lock name, a
file path, a service name — and a trace is written by the program being debugged, so it is
untrusted input. The one rule: nothing reaches the page except through :func:`text` (element
content) or :func:`attr` (a double-quoted attribute value), both of which escape ``&``,
``<``, ``>`` and both quotes and show control characters as visible ``\\xNN``. Markup the
report writes itself is built from constants around those calls, never from trace data.

Long strings are clipped for display (a 10,000-character thread name would push every lane
off the page) with a note of how much was left out, and control characters spelled out, by
:mod:`willowisp.display`; the clipped form is what is escaped.
"""

from __future__ import annotations

import html
import re
from typing import Any

from willowisp.display import TEXT_LIMIT, clip

LABEL_LIMIT = 36  # characters of a lane label in the timeline
CELL_LIMIT = 120  # characters of a name in a table cell


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
