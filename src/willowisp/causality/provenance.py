"""Provenance: how the analyzer knows that one event happened before another.

Every cross-unit happens-before edge and every linked hop says where its evidence came from
and how sure it is. Within a process the runtime itself wrote both ends (a lock release and
the next acquire, a put and the get of the same token): the order is a fact. Across
processes an edge is only as good as the identifier that crossed the wire: a span id in a
trace-context header names exactly one send; a message id names one message when it is
unique in the trace, and less surely when the same id shows up on other messages.

``confidence`` is a number in (0, 1]: 1.0 for a fact, lower when the link rests on an
identifier that could also name something else. Consumers that need facts (clock
alignment: one wrong edge would shift a whole domain) keep only edges with confidence 1.0;
consumers that tell a story (findings) may cite the others and say how sure they are.

Trade-off: one enum and one float per edge instead of a richer evidence record. The reason
an edge is uncertain is recoverable from its kind and provenance (a message-id edge below
1.0 means the id was reused), so the columns stay two small arrays.
"""

from __future__ import annotations

import enum

from willowisp.ingest.tables import Resource

CERTAIN = 1.0  # the confidence of an edge both of whose ends the evidence names exactly

# Resource attribute naming the header format the context crossed the wire in (b3,
# uber-trace-id, ...). Absent or empty means W3C ``traceparent``, the agents' default.
PROPAGATOR_ATTR = "propagator"
DEFAULT_HEADER = "traceparent"


class Provenance(enum.IntEnum):
    """Where a link's evidence came from (the ``provenance`` column of edges and hops)."""

    NONE = 0  # not linked
    RUNTIME = 1  # one runtime recorded both ends (lock, queue, spawn, join, notify)
    WIRE_HEADER = 2  # a span id carried in a trace-context header (traceparent, b3, ...)
    MESSAGE_ID = 3  # (protocol, destination, message id) named on both sides
    SPAN_LINK = 4  # an explicit span link (imported spans; batch consumers that record one)
    INFERRED = 5  # derived from order, not from an identifier (reserved: nothing yet)

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class Unlinked(enum.IntEnum):
    """Why a hop row has only one side (its ``reason``), or a link is unknown; LINKED when
    both sides are known. Labels are the keys of a hop group's ``unlinked`` counts."""

    LINKED = 0
    NO_SERVER_SIDE = 1  # the receiver is not in the trace (not traced, or its events lost)
    NO_CLIENT_SIDE = 2  # the sender is not in the trace
    NO_CONTEXT = 3  # the sender recorded no context to put on the wire
    NO_TRACEPARENT = 4  # the receiver got no context from the wire
    # Messages (causality/messages.py):
    NO_CONSUMER = 5  # sent with context or id; nothing in the trace received it
    NO_PRODUCER = 6  # received with context or id that no producer in the trace sent
    NO_CONTEXT_AND_NO_ID = 7  # this side recorded neither context nor message id
    AMBIGUOUS_ID = 8  # several sends carry the id the consumer saw: which one is unknown
    # Replies (a request row that is linked but whose reply edge is unknown):
    REPLY_UNATTRIBUTED = 9  # the client's unit got a reply it could not tie to a request
    # The sender did not sample the trace (hops mode) so did not record its side; a declared
    # boundary made the receiver record it anyway (its resource says caller_sampled=0).
    CALLER_NOT_SAMPLED = 10
    # The client's call ended in an error (rpc.response -1: refused, unresolved, reset, timed
    # out) and no receiver in the trace got it: a failed call, most often a connection that
    # was never made (a retry before the server listens), not a receiver left unrecorded.
    FAILED_TO_CONNECT = 11

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


def header_format(resource: Resource) -> str:
    """The name of the header format that carried a resource's context ("traceparent")."""
    for key, value in resource.attrs:
        if key == PROPAGATOR_ATTR and isinstance(value, str) and value:
            return value
    return DEFAULT_HEADER


def attr_str(resource: Resource, key: str) -> str:
    """A string attribute of a resource record, '' when absent or not a string."""
    for k, value in resource.attrs:
        if k == key:
            return value if isinstance(value, str) else ""
    return ""
