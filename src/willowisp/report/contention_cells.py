"""The cells of a contention row that need more than one field: the same words in the text
report and the HTML page."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def waited_and_hold(r: Mapping[str, Any], dur: Callable[[int], str]) -> tuple[str, str]:
    """The "waited" cell (``3/40``, ``+1 gave up``) and the "hold p50/p99" cell of one
    resource of the document's ``contention`` list, durations through ``dur``.

    A lock whose recorder sees only the waits (a Go execution trace: every acquisition it
    knows of waited, ``acquired_unseen``) is "N waited", not "N/N" (which would read as
    every acquisition waiting), and its holds are "unknown", not missing."""
    unseen = int(r.get("acquired_unseen") or 0)
    contended, acquisitions = int(r["contended"]), int(r["acquisitions"])
    waited = (
        f"{contended:,} waited"
        if unseen and unseen == acquisitions
        else f"{contended:,}/{acquisitions:,}"
    )
    if r.get("gave_up"):
        waited += f" +{int(r['gave_up']):,} gave up"
    hold = r.get("hold_ns")
    if hold:
        return waited, f"{dur(hold['p50'])} / {dur(hold['p99'])}"
    return waited, "unknown" if unseen else "-"
