"""Message hops: matching by wire context, then message id; reasons; provenance columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from golden.tracetext import WALL0, chunk, process, write_trace
from willowisp.causality.graph import EdgeKind, build
from willowisp.causality.hops import HopKind, Unlinked, match, summarize
from willowisp.causality.link import link
from willowisp.causality.provenance import Provenance
from willowisp.ingest import load
from willowisp.ingest.trace import Trace

T = "cd" * 16


def _msg(n: int, *, dest: str = "q", mid: str = "", span: str = "", parent: str = "") -> str:
    ctx = f' trace_id="{T}" span_id="{span}"' if span else ""
    ctx += f' parent_span_id="{parent}"' if parent else ""
    return (
        f'rec resource {n} kind="message" protocol="kafka" library="lib" '
        f'destination="{dest}" message_id="{mid}"{ctx}'
    )


def _run(tmp_path: Path, producer: list[str], consumer: list[str]) -> Trace:
    """A producer process (reference) and a consumer on another machine."""
    write_trace(
        tmp_path / "p.wtrace",
        chunk(process("p1", 1, "prod", run_root=1), f"ev 0 clock.anchor a={WALL0}", *producer),
    )
    write_trace(
        tmp_path / "c.wtrace",
        chunk(process("c1", 2, "cons", boot="b2"), f"ev 0 clock.anchor a={WALL0}", *consumer),
    )
    return load([tmp_path])


def _reasons(trace: Trace) -> list[tuple[str, str]]:
    hops = match(trace)
    assert set(hops.kind.tolist()) <= {HopKind.MESSAGE}
    return sorted(
        (Unlinked(r).label, Provenance(p).label)
        for r, p in zip(hops.reason.tolist(), hops.provenance.tolist(), strict=True)
    )


def test_span_id_wins_over_message_id(tmp_path: Path) -> None:
    """A consumer whose parent span names a producer links to it even if ids disagree."""
    trace = _run(
        tmp_path,
        [_msg(1, span="00000000000000a1", mid="x"), "ev 10 msg.send u=1 r=1"],
        [
            _msg(1, span="00000000000000b1", parent="00000000000000a1", mid="y"),
            "ev 20 msg.recv u=1 r=1",
        ],
    )
    assert _reasons(trace) == [("linked", "wire-header")]


def test_reasons_for_one_sided_messages(tmp_path: Path) -> None:
    """no-consumer, no-producer and no-context-and-no-id; time never links anything."""
    trace = _run(
        tmp_path,
        [
            _msg(1, span="00000000000000a1"),  # sent with context, never received
            _msg(2),  # no context, no id
            "ev 10 msg.send u=1 r=1",
            "ev 11 msg.send u=1 r=2",
        ],
        [
            _msg(1, mid="m-9"),  # an id no producer sent
            _msg(2),  # nothing at all, received right after a send: still not linked
            "ev 20 msg.recv u=1 r=1",
            "ev 12 msg.recv u=1 r=2",
        ],
    )
    assert _reasons(trace) == [
        ("no-consumer", "none"),
        ("no-context-and-no-id", "none"),
        ("no-context-and-no-id", "none"),
        ("no-producer", "none"),
    ]


def test_reused_id_links_with_lower_confidence_and_no_clock_bound(tmp_path: Path) -> None:
    """An id used on two destinations links by its full key at confidence 1/2; the edge is
    in the graph with that confidence but does not bound the consumer's clock offset."""
    trace = _run(
        tmp_path,
        [
            _msg(1, dest="q1", mid="7"),
            _msg(2, dest="q2", mid="7"),
            "ev 10 msg.send u=1 r=1",
            "ev 11 msg.send u=1 r=2",
        ],
        [_msg(1, dest="q1", mid="7"), "ev 20 msg.recv u=1 r=1"],
    )
    hops = match(trace)
    linked = np.flatnonzero(hops.linked)
    assert len(linked) == 1
    assert hops.provenance[linked[0]] == Provenance.MESSAGE_ID
    assert float(hops.confidence[linked[0]]) == 0.5
    (group,) = [g for g in summarize(trace, hops) if g.linked]
    assert group.provenance == {"message-id": 1}
    assert group.low_confidence == {"message-id-reused": 1}
    c = link(trace)
    m = c.graph.kind == EdgeKind.MESSAGE
    assert c.graph.confidence[m].tolist() == [0.5]
    assert not c.graph.certain[m].any()
    consumer = c.clocks.domains[int(c.clocks.domain_of_proc[1])]
    assert (consumer.interval.lo, consumer.interval.hi) == (None, None)


def test_ambiguous_id_is_unknown_not_guessed(tmp_path: Path) -> None:
    """Two sends with the same (protocol, destination, id): nobody is linked, no edge."""
    trace = _run(
        tmp_path,
        [_msg(1, mid="r"), _msg(2, mid="r"), "ev 10 msg.send u=1 r=1", "ev 11 msg.send u=1 r=2"],
        [_msg(1, mid="r"), "ev 20 msg.recv u=1 r=1"],
    )
    assert _reasons(trace) == [("ambiguous-id", "none")] * 3
    assert not (link(trace).graph.kind == EdgeKind.MESSAGE).any()


def test_redelivery_links_every_consumer_to_the_producer(tmp_path: Path) -> None:
    """At-least-once redelivery: two receipts of one message are two linked rows."""
    trace = _run(
        tmp_path,
        [_msg(1, mid="z"), "ev 10 msg.send u=1 r=1"],
        [_msg(1, mid="z"), _msg(2, mid="z"), "ev 20 msg.recv u=1 r=1", "ev 30 msg.recv u=1 r=2"],
    )
    assert _reasons(trace) == [("linked", "message-id")] * 2


def test_edge_provenance_columns(tmp_path: Path) -> None:
    """Local edges are runtime facts; hop edges carry their wire header, all at 1.0."""
    trace = _run(
        tmp_path,
        [
            _msg(1, span="00000000000000a1"),
            "ev 5 unit.create u=1 a=2",
            "ev 6 unit.start u=2 a=1",
            "ev 10 msg.send u=2 r=1",
        ],
        [_msg(1, span="00000000000000b1", parent="00000000000000a1"), "ev 20 msg.recv u=1 r=1"],
    )
    g = build(trace, match(trace))
    got = sorted(
        (EdgeKind(k).name, Provenance(p).label, float(c))
        for k, p, c in zip(
            g.kind.tolist(), g.provenance.tolist(), g.confidence.tolist(), strict=True
        )
    )
    assert got == [("MESSAGE", "wire-header", 1.0), ("SPAWN", "runtime", 1.0)]
    assert g.provenance_counts()["wire-header"] == 1
    assert len(g.provenance) == len(g.confidence) == len(g.src)


def test_header_format_names_the_provenance(tmp_path: Path) -> None:
    """A consumer that extracted a b3 header reports provenance b3, not traceparent."""
    trace = _run(
        tmp_path,
        [_msg(1, span="00000000000000a1"), "ev 10 msg.send u=1 r=1"],
        [
            _msg(1, span="00000000000000b1", parent="00000000000000a1") + ' propagator="b3"',
            "ev 20 msg.recv u=1 r=1",
        ],
    )
    (g,) = summarize(trace, match(trace))
    assert g.provenance == {"b3": 1}


def test_multiplexed_reply_is_unattributed(tmp_path: Path) -> None:
    """Two requests on one unit and a reply the agent could not tie to either: both
    requests are linked, their replies counted as reply-unattributed, no reply edge."""
    rpc = 'rec resource {n} kind="rpc" protocol="grpc" trace_id="{t}" span_id="{s}"{p}'
    write_trace(
        tmp_path / "c.wtrace",
        chunk(
            process("c1", 1, "client", run_root=1),
            f"ev 0 clock.anchor a={WALL0}",
            rpc.format(n=1, t=T, s="00000000000000a1", p=""),
            rpc.format(n=2, t=T, s="00000000000000a2", p=""),
            "ev 10 msg.send u=1 r=1",
            "ev 11 msg.send u=1 r=2",
            "ev 50 rpc.response u=1 a=0",
        ),
    )
    write_trace(
        tmp_path / "s.wtrace",
        chunk(
            process("s1", 2, "server", boot="b2"),
            f"ev 0 clock.anchor a={WALL0}",
            rpc.format(n=1, t=T, s="00000000000000b1", p=' parent_span_id="00000000000000a1"'),
            rpc.format(n=2, t=T, s="00000000000000b2", p=' parent_span_id="00000000000000a2"'),
            "ev 20 msg.recv u=1 r=1",
            "ev 21 msg.recv u=2 r=2",
            "ev 30 rpc.reply u=1 r=1 a=0",
            "ev 31 rpc.reply u=2 r=2 a=0",
        ),
    )
    trace = load([tmp_path])
    hops = match(trace)
    assert hops.linked.all()
    assert (hops.reply_reason == Unlinked.REPLY_UNATTRIBUTED).all()
    (g,) = summarize(trace, hops)
    assert (g.linked, g.unlinked) == (2, {"reply-unattributed": 2})
    assert not (build(trace, hops).kind == EdgeKind.REPLY).any()
