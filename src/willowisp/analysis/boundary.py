"""Boundary specs: ``entry=http:POST /checkout;exit=http:reply;runtimes=python,go``.

A boundary is a user-declared transaction (see the contract). ``analyze`` accepts and
records them for now; the analyses that use them (structural delay, seams) come later.
Parsing validates once, at the edge, so everything downstream gets a well-formed value.
"""

from __future__ import annotations

from dataclasses import dataclass

from willowisp.errors import UsageError

KEYS = ("entry", "exit", "runtimes")


@dataclass(frozen=True, slots=True)
class Boundary:
    spec: str  # as written
    entry: str  # "http:POST /checkout"
    exit: str  # "" when not given
    runtimes: tuple[str, ...]  # () means any


def parse_boundary(spec: str) -> Boundary:
    """Parse one SPEC; UsageError names the spec and what is wrong with it."""
    fields: dict[str, str] = {}
    for part in spec.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in KEYS:
            raise UsageError(
                f"--boundary {spec!r}: {part.strip()!r} is not one of "
                + ", ".join(f"{k}=..." for k in KEYS)
            )
        if key in fields:
            raise UsageError(f"--boundary {spec!r}: {key} is given twice")
        fields[key] = value.strip()
    if not fields.get("entry"):
        raise UsageError(
            f"--boundary {spec!r}: needs entry=PROTOCOL:WHAT, e.g. entry=http:POST /checkout"
        )
    runtimes = tuple(r.strip() for r in fields.get("runtimes", "").split(",") if r.strip())
    return Boundary(spec, fields["entry"], fields.get("exit", ""), runtimes)
