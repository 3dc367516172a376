"""``--baseline FILE``: problems a team has accepted, by their stable ids.

The file is JSON, written by ``validate --write-baseline FILE`` and edited by hand::

    {
      "schema": "willowisp.validate-baseline/1",
      "accepted": [
        {"id": "F-3a9c1e", "kind": "dropped-context",
         "summary": "gateway (python, http.client) → orders ... : trace context sent, not received"}
      ]
    }

Only ``id`` is read back; ``kind`` and ``summary`` are there for the person reviewing the
file. An accepted problem is still found and counted, it just does not fail the gate; a
problem with a new id does. Ids come from content (services, libraries, methods, paths,
contract names), never from pids, ports, trace ids or times, so they hold across runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from willowisp.errors import UsageError
from willowisp.outfile import is_special, write_special
from willowisp.validate.problems import Problem

SCHEMA = "willowisp.validate-baseline/1"
MAX_BYTES = 16 * 1024 * 1024


def read_baseline(path: str) -> frozenset[str]:
    """The accepted ids; UsageError names the file and what is wrong with it."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"--baseline {path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise UsageError(f"--baseline {path}: larger than {MAX_BYTES >> 20} MiB")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--baseline {path}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UsageError(f"--baseline {path}: not a baseline (expected schema {SCHEMA!r})")
    items = doc.get("accepted")
    if not isinstance(items, list):
        raise UsageError(f"--baseline {path}: 'accepted' must be a list")
    ids: set[str] = set()
    for i, item in enumerate(items):
        pid = item.get("id") if isinstance(item, dict) else None
        if not isinstance(pid, str) or not pid:
            raise UsageError(f"--baseline {path}: accepted[{i}] has no string 'id'")
        ids.add(pid)
    return frozenset(ids)


def write_baseline(path: str, problems: Iterable[Problem]) -> None:
    """Write every problem given as accepted (atomically: a temporary file, then rename)."""
    seen: dict[str, Problem] = {}
    for p in problems:
        seen.setdefault(p.id, p)
    doc = {
        "schema": SCHEMA,
        "accepted": [
            {"id": p.id, "kind": p.kind, "summary": p.summary}
            for p in sorted(seen.values(), key=lambda p: (p.kind, p.id))
        ],
    }
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if is_special(path):  # /dev/null, /dev/stdout: written, never replaced
        write_special(path, text.encode("utf-8"))
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
