"""``--sarif FILE``: the gate as SARIF 2.1.0, for code-scanning dashboards.

One run of the tool ``willowisp``; one rule per problem kind (``dropped-context``,
``missing-span``, ...; all rules are always listed, so rule indices are stable); one result
per problem with its stable id as ``partialFingerprints["willowispProblemId/v1"]`` (what a
dashboard tracks across runs), its traces and hop under ``properties``, and a location when
one is known: where the client sent the hop from (file and line, as the agent recorded the
path, relative to the working directory when inside it) or the trace file that was
unreadable. Problems a baseline accepted are included with a ``suppressions`` entry, as
SARIF expects, rather than left out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from willowisp import __version__
from willowisp.validate.gate import Report
from willowisp.validate.problems import KINDS, Problem

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT = "willowispProblemId/v1"
_RULES = tuple(KINDS)


def render_sarif(report: Report, cwd: str | None = None) -> str:
    base = Path(cwd or os.getcwd()).resolve()
    rules = [
        {
            "id": kind,
            "name": "".join(w.capitalize() for w in kind.split("-")),
            "shortDescription": {"text": text},
            "defaultConfiguration": {"level": level},
            "helpUri": "https://github.com/willowisp/willowisp/blob/main/docs/validate.md",
        }
        for kind, (level, text) in KINDS.items()
    ]
    results = [_result(p, report, base, accepted=False) for p in report.problems]
    results += [_result(p, report, base, accepted=True) for p in report.accepted]
    doc = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "willowisp",
                        "version": __version__,
                        "informationUri": "https://github.com/willowisp/willowisp",
                        "rules": rules,
                    }
                },
                "invocations": [{"executionSuccessful": True}],
                "properties": {"traces": len(report.traces), "files": report.files},
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _result(p: Problem, report: Report, base: Path, *, accepted: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ruleId": p.kind,
        "ruleIndex": _RULES.index(p.kind),
        "level": p.level,
        "message": {"text": p.line(len(report.traces))},
        "partialFingerprints": {FINGERPRINT: p.id},
        "properties": {
            "problemId": p.id,
            "traces": list(p.traces),
            "hop": p.hop.to_json() if p.hop is not None else None,
            "detail": p.shown_detail(),
        },
    }
    loc = _location(p, base)
    if loc is not None:
        out["locations"] = [loc]
    if accepted:
        out["suppressions"] = [{"kind": "external", "justification": "accepted by --baseline"}]
    return out


def _location(p: Problem, base: Path) -> dict[str, Any] | None:
    if p.file:
        return {"physicalLocation": {"artifactLocation": {"uri": _uri(p.file, base)}}}
    if p.hop is None or not p.hop.where_path:
        return None
    _, _, line = p.hop.where.rpartition(":")
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(p.hop.where_path, base)}}
    if line.isdigit() and int(line) > 0:
        physical["region"] = {"startLine": int(line)}
    return {"physicalLocation": physical}


def _uri(path: str, base: Path) -> str:
    """A URI reference (RFC 3986) for ``path``: relative to ``base`` when inside it, else
    a ``file:`` URI. Percent-encoded, '/' kept: SARIF viewers parse it as a URI, so a space
    or an accented letter left raw breaks the link to the file."""
    p = Path(path)
    if not p.is_absolute():
        return quote(p.as_posix(), safe="/")
    try:
        return quote(p.resolve().relative_to(base).as_posix(), safe="/")
    except ValueError:
        return p.resolve().as_uri()  # pathlib percent-encodes it already
