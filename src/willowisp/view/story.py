"""A finding's story as the viewer shows it: each line cut into fixed words and trace names,
and each line paired with the events it tells of.

**Names.** The analysis tells a story as plain lines (``Thread-1 (pid 4242, orders,
python) waits for lock state_lock at bank.py:21, held by Thread-2``), and a line isolated
as a whole does not stop a right-to-left name inside it from reordering the words around
it. So each line is cut into parts, ``{"text": ...}`` for the analysis's own words and
``{"name": ...}`` for every string the trace supplied, which the page puts in a ``<bdi>``
of its own. The names are the finding's own (its units, their services and hosts, its
resources, and the units, processes, resources and places of its events), found in the
line whole-word, longest first. A name the finding does not list (a unit only a "stuck
behind it" line mentions) can still hold right-to-left letters: any word of the fixed text
that does is isolated as well, so no right-to-left letter is ever left outside a ``<bdi>``.
The analysis's text stays as it is (``willowisp analyze`` prints it unchanged); the cut is
the viewer's.

**Events.** The document does not pair steps with events either, so the pairing is
derived, and only where it is certain: for the kinds whose analysis lists one event per
step from the first (``STEP_ORDERED``), by position; for the others, a step gets every
event it names by its raw wall time (``12:00:00.123456``, as the clock findings print it)
or by a source place (``file:line``) no other event of the finding shares. A clock-skew
step that cites a request and its reply thus gets both, one in each process; a step with
no event of its own (a summary line, a conclusion) gets none rather than a neighbour's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from willowisp.display import clip

# Finding kinds whose events are listed in the order of their story's steps, one per step
# from the first (deadlock: the steps' events, none repeated; race: the two accesses, then
# their common predecessor; false-causality: the cause, then its effect).
STEP_ORDERED = ("deadlock", "race", "false-causality")
MAX_PART = 600  # characters of one part sent to the browser (as a lane's name)
_SPACES = re.compile(r"(\s+)")


def step_events(
    kind: str, steps: list[str], places: list[str], walls: list[str]
) -> list[list[int]]:
    """Per story step, the indices (into the finding's events) of the events it tells of;
    ``places`` and ``walls`` are per event its ``file:line`` and raw wall time ('' if none).
    See the module doc."""
    if kind in STEP_ORDERED:
        return [[k] if k < len(places) else [] for k in range(len(steps))]
    return [sorted(_named(line, places) | _named(line, walls)) for line in steps]


def _named(line: str, keys: list[str]) -> set[int]:
    """The events whose key ``line`` names, among keys that only one event has."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return {j for j, key in enumerate(keys) if key and counts[key] == 1 and names(line, key)}


def names(line: str, key: str) -> bool:
    """Whether ``line`` mentions ``key`` as a whole (``a.py:12``, not ``a.py:123``)."""
    at = line.find(key)
    while at >= 0:
        end = at + len(key)
        if (end == len(line) or not line[end].isdigit()) and (
            at == 0 or not (line[at - 1].isalnum() or line[at - 1] in "_./")
        ):
            return True
        at = line.find(key, at + 1)
    return False


def parted(lines: list[str], known: Iterable[str]) -> list[list[dict[str, str]]]:
    """Each line as parts (:func:`parts`), looking only for the names the story mentions at
    all: a finding with thousands of events has as many names, and few in its story."""
    text = "\n".join(lines)
    mentioned = sorted({k for k in known if k.strip() and k in text}, key=len, reverse=True)
    return [parts(line, mentioned) for line in lines]


def parts(line: str, known: list[str]) -> list[dict[str, str]]:
    """``line`` as ``{"text": ...}`` and ``{"name": ...}`` parts (see the module doc), each
    with control characters spelled out and cut to about ``MAX_PART`` characters;
    ``known``: the names, longest first."""
    spans = _spans(line, known)
    out: list[dict[str, str]] = []
    at = 0
    for start, end in spans:
        out += _fixed(line[at:start])
        out.append({"name": clip(line[start:end], MAX_PART)})
        at = end
    out += _fixed(line[at:])
    return out


def _spans(line: str, known: list[str]) -> list[tuple[int, int]]:
    """Where the names are in ``line``: each occurrence standing as a word of its own,
    longest names first, none overlapping one already taken; in line order."""
    taken: list[tuple[int, int]] = []
    for name in known:
        at = line.find(name)
        while at >= 0:
            end = at + len(name)
            if _stands_alone(line, name, at, end) and all(end <= a or at >= b for a, b in taken):
                taken.append((at, end))
            at = line.find(name, at + 1)
    return sorted(taken)


def _stands_alone(line: str, name: str, at: int, end: int) -> bool:
    """Not a piece of a longer word: ``Thread-1`` in ``Thread-10`` or ``one`` in
    ``someone`` is not a mention of that name."""
    before = at > 0 and line[at - 1].isalnum() and name[0].isalnum()
    after = end < len(line) and line[end].isalnum() and name[-1].isalnum()
    return not (before or after)


def _fixed(text: str) -> list[dict[str, str]]:
    """The analysis's own words between names; a word with a right-to-left letter in it
    came from the trace all the same (a name the finding does not list) and is isolated."""
    if not text:
        return []
    out: list[dict[str, str]] = []
    for word in _SPACES.split(text):
        if not word:
            continue
        if _right_to_left(word):
            out.append({"name": clip(word, MAX_PART)})
        elif out and "text" in out[-1]:
            out[-1]["text"] += word
        else:
            out.append({"text": word})
    for part in out:
        if "text" in part:
            part["text"] = clip(part["text"], MAX_PART)
    return out


def _right_to_left(text: str) -> bool:
    return any(ch >= "\u0590" and unicodedata.bidirectional(ch) in ("R", "AL") for ch in text)


def known_names(f: dict[str, Any], extra: Iterable[str]) -> set[str]:
    """The strings of finding ``f`` (its JSON) that came from the trace: its units' names,
    services and hosts, its resources' names and places, and ``extra`` (the names the
    trace gives its events' units, processes, resources and places)."""
    out = set(extra)
    for u in f.get("units", []):
        out.update(str(u.get(k) or "") for k in ("name", "service", "host"))
    for r in f.get("resources", []):
        out.update(str(r.get(k) or "") for k in ("name", "where"))
    out.discard("")
    return out
