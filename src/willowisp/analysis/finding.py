"""The one shape every analysis reports in, and its stable id.

A finding says what is wrong (``kind``, ``severity``, a one-line ``summary``), who and what
is involved (units, resources, event ids) and tells the story (``explanation``, one line
per step in causal order). Its id must be the same for the same problem in every run,
because CI baselines compare ids: it is a hash of the kind and an ``identity`` each analysis
builds from content that survives a re-run — resource kinds, names and creation places,
source locations, service names — and never from process ids, pids, unit numbers,
thread names or timestamps, which change every time.

Nor from which of two symmetric things came first. The parts are sorted before hashing, so
their order never matters; but a part can tie two things together in a way the timing
decides — a race's read done by service A and its write by B in one run, the other way
round in the next, when both run the same code. Such an analysis lists every identity the
problem could have had and keeps one, :func:`canonical_identity`'s choice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

SEVERITIES = ("error", "warning", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

FINDING_KINDS = (
    "deadlock",
    "potential-deadlock",
    "leak",
    "race",
    "lock-contention",
    "clock-skew",
    "false-causality",
    "structural-delay",
    "broken-link",
    "dropped-context",
    "orphan-unit",
    "buffer-drop",
    "agent-fault",
)


_ADDRESS = re.compile(r"@0x[0-9a-fA-F]+\b")


@dataclass(frozen=True, slots=True)
class UnitRef:
    """A unit as the output names it (contract: ``findings[].units[]``)."""

    id: str
    pid: int
    host: str
    service: str
    runtime: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """A resource as the output names it: ``where`` is ``file.py:LINE`` of its creation."""

    kind: str
    name: str
    where: str

    def key(self) -> str:
        """What identifies the resource across runs: an object address in its name (a JVM
        monitor ``Deadlock$Left@0x7f1c...``) differs every run, so it is left out."""
        return f"{self.kind}|{_ADDRESS.sub('', self.name)}|{self.where}"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    severity: str
    summary: str
    identity: tuple[str, ...]  # what the id is derived from (see the module doc)
    units: tuple[UnitRef, ...] = ()
    resources: tuple[ResourceRef, ...] = ()
    events: tuple[str, ...] = ()
    explanation: tuple[str, ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()  # further JSON fields, in order

    def __post_init__(self) -> None:
        if self.kind not in FINDING_KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def id(self) -> str:
        return finding_id(self.kind, self.identity)

    def with_extra(self, **fields: Any) -> Finding:
        return replace(self, extra=(*self.extra, *fields.items()))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "summary": self.summary,
            "units": [_unit_json(u) for u in self.units],
            "resources": [
                {"kind": r.kind, "name": r.name, "where": r.where} for r in self.resources
            ],
            "events": list(self.events),
            "explanation": list(self.explanation),
        }
        doc.update(self.extra)
        return doc


def _unit_json(u: UnitRef) -> dict[str, Any]:
    return {
        "id": u.id,
        "pid": u.pid,
        "host": u.host,
        "service": u.service,
        "runtime": u.runtime,
        "kind": u.kind,
        "name": u.name,
    }


def finding_id(kind: str, identity: Iterable[str]) -> str:
    """``F-`` and 6 hex digits of a SHA-256 over the kind and the sorted identity parts."""
    text = "\n".join([kind, *sorted(set(identity))])
    return "F-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]


def canonical_identity(kind: str, variants: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """Of identities that name one problem (the same race with its sides' services
    swapped), the one whose id is greatest: the same choice whichever variant a run saw
    first. Greatest rather than least because it keeps the ids the docs and golden traces
    published before the choice was made. ``variants`` must not be empty."""
    return max(variants, key=lambda identity: finding_id(kind, identity))


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then by kind and id: a stable order for output and diffs."""
    return sorted(findings, key=lambda f: (SEVERITY_RANK[f.severity], f.kind, f.id))


def merge_repeats(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per id: the first occurrence, with ``occurrences`` when it repeated."""
    first: dict[str, Finding] = {}
    count: dict[str, int] = {}
    for f in findings:
        count[f.id] = count.get(f.id, 0) + 1
        first.setdefault(f.id, f)
    return [f if count[i] == 1 else f.with_extra(occurrences=count[i]) for i, f in first.items()]
