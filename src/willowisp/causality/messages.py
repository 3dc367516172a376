"""Message hops: pairing the producer and the consumers of each one-way message.

A producer writes one ``message`` resource per message sent (``msg.send``), a consumer one
per message received (``msg.recv``; a batch receive writes one per message). Two pieces of
evidence can join them, tried in this order:

1. **The span id that crossed the wire.** The consumer's ``parent_span_id`` is the span id
   the producer injected (same ``trace_id``). Provenance ``wire-header``, reported under
   the header format's name (``traceparent``, ``b3``, ...), confidence 1.0.
2. **The message id.** When the context was lost (a library that drops headers, a broker
   that strips them, a retry that re-sent without them) but both sides saw the same
   non-empty ``message_id`` on the same (``protocol``, ``destination``), the consumer is
   linked to the one producer with that key. Provenance ``message-id``; confidence 1.0
   when that id names one message in the whole trace, ``1 / n`` when n producers in the
   trace used it (on other destinations: per-queue counters such as Redis stream ids
   repeat), and the hop summary says how many links rest on a reused id. When two or more
   producers share the full key, nothing decides between them: the consumer and those
   producers are reported as ``ambiguous-id``, never linked by guess.

Time is never evidence: a consumer that received "just after" a send is not linked to it.
Several consumers may link to one producer (redelivery, fan-out to consumer groups); each
delivery is its own row. A producer no consumer linked to is one row with a reason.

Reasons for rows with one side: ``no-consumer`` (sent with context or id, received by
nothing in the trace), ``no-producer`` (received with context or id that no producer in the
trace sent), ``no-context-and-no-id`` (this side recorded neither, so it cannot be linked
at all), ``ambiguous-id`` (above).

Trade-off: a dictionary pass per message resource, like the rpc matching; message rates
are those of the program's I/O, not of its events, so this stays small next to loading.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from willowisp.causality.provenance import CERTAIN, Provenance, Unlinked, attr_str
from willowisp.ingest.tables import NO_INDEX
from willowisp.ingest.trace import Trace

MESSAGE_ID = "message_id"
DESTINATION = "destination"


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One delivery (linked) or one side alone (unlinked). Resources: NO_INDEX if absent."""

    reason: Unlinked
    producer: int
    consumer: int
    provenance: Provenance
    confidence: float  # 0.0 when not linked


def key_of(trace: Trace, r: int) -> tuple[str, str, str]:
    """(protocol, destination, message id) of a message resource."""
    res = trace.resources[r]
    return res.protocol, attr_str(res, DESTINATION), attr_str(res, MESSAGE_ID)


def match_messages(trace: Trace, producers: list[int], consumers: list[int]) -> list[MessageRow]:
    """Pair ``producers`` (message resources with msg.send) with ``consumers`` (msg.recv).

    Every consumer appears in exactly one row; every
    producer in one row per consumer linked to it, or in one unlinked row.
    """
    res = trace.resources
    by_span: dict[tuple[str, str], list[int]] = {}
    by_key: dict[tuple[str, str, str], list[int]] = {}
    id_uses: Counter[str] = Counter()
    for p in producers:
        r = res[p]
        if r.trace_id and r.span_id:
            by_span.setdefault((r.trace_id, r.span_id), []).append(p)
        key = key_of(trace, p)
        if key[2]:
            by_key.setdefault(key, []).append(p)
            id_uses[key[2]] += 1
    rows: list[MessageRow] = []
    linked: set[int] = set()
    ambiguous: set[int] = set()
    for c in consumers:
        r = res[c]
        has_context = bool(r.trace_id and r.parent_span_id)
        senders = by_span.get((r.trace_id, r.parent_span_id), []) if has_context else []
        if len(senders) == 1:
            rows.append(MessageRow(Unlinked.LINKED, senders[0], c, Provenance.WIRE_HEADER, CERTAIN))
            linked.add(senders[0])
            continue
        key = key_of(trace, c)
        candidates = by_key.get(key, []) if key[2] else []
        if len(candidates) == 1:
            p = candidates[0]
            confidence = CERTAIN / id_uses[key[2]]
            rows.append(MessageRow(Unlinked.LINKED, p, c, Provenance.MESSAGE_ID, confidence))
            linked.add(p)
        elif len(candidates) > 1 or len(senders) > 1:
            # Two sends carried the same id (or the same span id): which one this consumer
            # got is unknown, and a guess would put a false edge in the graph.
            ambiguous.update(candidates or senders)
            rows.append(MessageRow(Unlinked.AMBIGUOUS_ID, NO_INDEX, c, Provenance.NONE, 0.0))
        elif has_context or key[2]:
            rows.append(MessageRow(Unlinked.NO_PRODUCER, NO_INDEX, c, Provenance.NONE, 0.0))
        else:
            rows.append(
                MessageRow(Unlinked.NO_CONTEXT_AND_NO_ID, NO_INDEX, c, Provenance.NONE, 0.0)
            )
    for p in producers:
        if p in linked:
            continue
        r = res[p]
        if p in ambiguous:
            reason = Unlinked.AMBIGUOUS_ID
        elif (r.trace_id and r.span_id) or key_of(trace, p)[2]:
            reason = Unlinked.NO_CONSUMER
        else:
            reason = Unlinked.NO_CONTEXT_AND_NO_ID
        rows.append(MessageRow(reason, p, NO_INDEX, Provenance.NONE, 0.0))
    return rows
