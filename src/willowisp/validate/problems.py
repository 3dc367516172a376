"""What the gate reports: one :class:`Problem` per thing wrong, with a stable id.

A problem is keyed by *what* is wrong, never by *when* or *where it ran*: its id is a hash
of its kind and an identity built from services, runtimes, libraries, methods, paths and
contract names (no pids, ports, trace ids or times), so the same broken hop has the same id
in every run and a baseline can accept it. Ids use the findings' scheme (``F-`` + 6 hex,
``analysis.finding.finding_id``); a dropped-context problem has exactly the id ``analyze``
gives the same hop.

A problem found in many traces is one problem listing those traces: a hop that drops its
header in 50 of 200 traces is one line saying so, and the JUnit report has one failing
testcase for it, listing those 50 traces. Problems about the recording as a whole (an
unreadable file, an agent's drops or faults, a unit no record defines) name no trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from willowisp.display import clip, short_trace_id

# kind -> (SARIF level, one-line description of the rule)
KINDS: dict[str, tuple[str, str]] = {
    "dropped-context": (
        "error",
        "A hop's trace context was sent and not received (or the reverse): the trace breaks "
        "in two there.",
    ),
    "missing-span": (
        "error",
        "One side of a hop is not in the recording: the receiver of a request or message "
        "that carried context, or its sender.",
    ),
    "broken-link": (
        "error",
        "A span names a parent that is not in the recording although the rest of its trace is.",
    ),
    "missing-unit": (
        "warning",
        "Events name an execution unit that no record defines (a lost chunk or a dropped record).",
    ),
    "buffer-drop": ("error", "An agent dropped events: its buffers were full."),
    "agent-fault": ("error", "An agent caught an error inside itself and recorded it."),
    "unreadable-file": (
        "error",
        "A trace file could not be read, had corrupt chunks that were skipped, or ends "
        "inside a chunk (cut short: its last chunk was lost).",
    ),
    "contract": (
        "error",
        "A propagation contract declared in willowisp.toml does not hold for a trace, or its"
        " entry never happened in the checked traces.",
    ),
}


@dataclass(frozen=True, slots=True)
class Hop:
    """A hop as problems name it: both ends' service, runtime and library, and what crossed.

    An end that is not in the recording has empty service and runtime; ``peer`` then says
    where the request went (``host:port``) or ``destination`` which queue.
    """

    protocol: str
    what: str  # "POST /orders", "/shop.Stock/Reserve", a topic
    from_service: str
    from_runtime: str
    from_library: str
    to_service: str
    to_runtime: str
    to_library: str
    where: str = ""  # file:line where the client sent it, when recorded
    where_path: str = ""  # the full recorded path of that file, for SARIF

    def label(self) -> str:
        """``gateway (python, http.client) → orders (python, http.server) http POST /orders``."""
        return f"{_end(self.from_service, self.from_runtime, self.from_library)} → " + (
            f"{_end(self.to_service, self.to_runtime, self.to_library)} "
            f"{self.protocol} {self.what}".rstrip()
        )

    def to_json(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "what": self.what,
            "from": {
                "service": self.from_service or None,
                "runtime": self.from_runtime or None,
                "library": self.from_library or None,
            },
            "to": {
                "service": self.to_service or None,
                "runtime": self.to_runtime or None,
                "library": self.to_library or None,
            },
            "where": self.where or None,
        }


def _end(service: str, runtime: str, library: str) -> str:
    if not service:
        return f"(not recorded: {library})" if library else "(not recorded)"
    inner = ", ".join(x for x in (runtime, library) if x)
    return f"{service} ({inner})" if inner else service


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong. ``traces`` are the W3C trace ids it was seen in (sorted; empty for
    problems about the recording as a whole); ``detail`` says why, one line per step."""

    id: str
    kind: str
    summary: str
    traces: tuple[str, ...] = ()
    hop: Hop | None = None
    detail: tuple[str, ...] = ()
    file: str = ""  # a trace file the problem is about (unreadable-file)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown problem kind {self.kind!r}")

    @property
    def level(self) -> str:
        return KINDS[self.kind][0]

    def line(self, total_traces: int) -> str:
        """The one stdout line: id, kind, what, and in which traces. The summary holds trace
        strings (a fault's message, a service name), so it is cut as the HTML report cuts
        them: a 400 KB fault message is not a 400 KB line in a CI log."""
        text = f"{self.id} {self.kind}: {clip(self.summary)}"
        if self.traces:
            shown = ", ".join(short_trace_id(t, 16) for t in self.traces[:3])
            more = f", +{len(self.traces) - 3} more" if len(self.traces) > 3 else ""
            of = f" of {total_traces}" if total_traces else ""
            text += f" — in {len(self.traces)}{of} trace(s): {shown}{more}"
        return text

    def shown_detail(self) -> list[str]:
        """``detail`` for a person (JUnit text, SARIF): each line cut as ``line`` cuts."""
        return [clip(d) for d in self.detail]

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "summary": self.summary,
            "traces": list(self.traces),
            "hop": self.hop.to_json() if self.hop is not None else None,
            "detail": list(self.detail),
            "file": self.file or None,
        }
