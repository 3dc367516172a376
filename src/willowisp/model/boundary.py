"""Boundary specs: ``entry=http:POST /checkout;exit=http:reply;runtimes=python,go``.

A boundary is a user-declared transaction (see the contract): an entry (an inbound hop), an
exit, and the runtimes allowed inside. The agent uses it to decide what it records at full
fidelity in ``hops`` mode; ``analyze`` uses it to decide what it shows. Both parse it here,
once, at the edge, so everything downstream gets a well-formed value.

``entry`` is ``PROTOCOL:WHAT``. What ``WHAT`` is matched against depends on the protocol:

- ``http``: ``METHOD PATH`` (``POST /checkout``), or just ``PATH`` (starts with ``/``), or
  just ``METHOD``. The path is matched without its query, as a glob (``/orders/*``).
- ``grpc``: the full method, ``/package.Service/Method`` (the leading ``/`` is optional),
  as a glob.
- any other protocol (``amqp``, ``kafka``, ``redis``, ``sqs``, ...): the destination (queue,
  topic, exchange/routing-key, channel or stream), as a glob.

``exit`` defaults to ``PROTOCOL:reply``: the boundary ends when the entry's handler replies
(for a message, when the consumer takes its next message). Any other exit names an outgoing
hop the same way (``exit=http:POST /pay``): the boundary ends when the entry's unit has had
the answer to that call. (The agent records until the reply either way, a superset;
``analyze`` cuts the instance at the exit.) ``runtimes`` lists the runtimes
(``python``, ``go``, ``java``, ``rust``, ``nodejs``) whose work inside counts; empty means all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fnmatch import fnmatchcase

from willowisp.errors import UsageError

KEYS = ("entry", "exit", "runtimes")
RUNTIMES = ("python", "go", "java", "rust", "nodejs")


@dataclass(frozen=True, slots=True)
class Boundary:
    spec: str  # as written
    entry: str  # "http:POST /checkout"
    exit: str  # "" when not given (the entry's reply)
    runtimes: tuple[str, ...]  # () means any

    @property
    def protocol(self) -> str:
        return self.entry.partition(":")[0].strip().lower()

    @property
    def name(self) -> str:
        """How people and ``willowisp ctl`` refer to it: the entry."""
        return self.entry

    @property
    def id(self) -> str:
        """8 hex digits derived from the entry: the same boundary has the same id in every
        process and runtime, so it can travel in ``tracestate`` (``wisp=b-<id>``)."""
        return hashlib.sha256(self.entry.encode()).hexdigest()[:8]

    def allows(self, runtime: str) -> bool:
        return not self.runtimes or runtime in self.runtimes

    @property
    def exit_is_reply(self) -> bool:
        return not self.exit or self.exit.partition(":")[2].strip().lower() == "reply"

    def matches(self, protocol: str, method: str, target: str) -> bool:
        """Does an inbound hop (``protocol``, its method, its path/full method/destination)
        start this boundary?"""
        return _hop_matches(self.entry, protocol, method, target)

    def exits_at(self, protocol: str, method: str, target: str) -> bool:
        """Is an outgoing hop the one the boundary ends with (an ``exit`` other than
        ``reply``: the boundary ends when that call has been answered)?"""
        return not self.exit_is_reply and _hop_matches(self.exit, protocol, method, target)


def _hop_matches(pattern: str, protocol: str, method: str, target: str) -> bool:
    want_protocol, _, what = pattern.partition(":")
    want_protocol = want_protocol.strip().lower()
    what = what.strip()
    if protocol.lower() != want_protocol:
        return False
    if want_protocol == "http":
        want_method, _, want_path = what.partition(" ")
        if not want_path and want_method.startswith("/"):
            want_method, want_path = "", want_method
        path = target.partition("?")[0]
        if want_method and want_method != "*" and want_method.upper() != method.upper():
            return False
        return not want_path or fnmatchcase(path, want_path.strip())
    if want_protocol == "grpc":
        return fnmatchcase("/" + target.lstrip("/"), "/" + what.lstrip("/"))
    return fnmatchcase(target, what)


def parse_boundary(spec: str, *, source: str = "--boundary") -> Boundary:
    """Parse one SPEC; UsageError names where it came from, the spec and what is wrong."""
    fields: dict[str, str] = {}
    for part in spec.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in KEYS:
            raise UsageError(
                f"{source} {spec!r}: {part.strip()!r} is not one of "
                + ", ".join(f"{k}=..." for k in KEYS)
            )
        if key in fields:
            raise UsageError(f"{source} {spec!r}: {key} is given twice")
        fields[key] = value.strip()
    entry = fields.get("entry", "")
    protocol, colon, what = entry.partition(":")
    if not colon or not protocol.strip() or not what.strip():
        raise UsageError(
            f"{source} {spec!r}: needs entry=PROTOCOL:WHAT, e.g. entry=http:POST /checkout"
        )
    exit_ = fields.get("exit", "")
    if exit_ and ":" not in exit_:
        raise UsageError(f"{source} {spec!r}: exit must be PROTOCOL:WHAT, e.g. exit=http:reply")
    runtimes = tuple(r.strip() for r in fields.get("runtimes", "").split(",") if r.strip())
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise UsageError(
            f"{source} {spec!r}: unknown runtime {unknown[0]!r} (one of {', '.join(RUNTIMES)})"
        )
    return Boundary(spec, entry.strip(), exit_, runtimes)


def merge_boundaries(*groups: tuple[Boundary, ...]) -> tuple[Boundary, ...]:
    """One boundary per entry, the first given winning."""
    seen: dict[str, Boundary] = {}
    for group in groups:
        for b in group:
            seen.setdefault(b.entry, b)
    return tuple(seen.values())
