"""Hop matching through trace context, unlinked reasons and the hops summary."""

from __future__ import annotations

from pathlib import Path

from golden.tracetext import WALL0, chunk, process, write_trace
from willowisp.causality.hops import HopKind, Unlinked, hop_edges, match, summarize
from willowisp.ingest import load
from willowisp.model.spec import K

T = "ab" * 16


def _rpc(
    n: int,
    span: str,
    *,
    parent: str = "",
    trace: str = T,
    lib: str = "urllib",
    peer: str = "10.0.0.2:80",
) -> str:
    extra = f' parent_span_id="{parent}"' if parent else ""
    tid = f' trace_id="{trace}"' if trace else ""
    sid = f' span_id="{span}"' if span else ""
    return (
        f'rec resource {n} kind="rpc" method="GET" target="/x?id=" protocol="http" '
        f'library="{lib}" peer="{peer}"{tid}{sid}{extra}'
    )


def _client_server(tmp_path: Path) -> None:
    write_trace(
        tmp_path / "c.wtrace",
        chunk(
            process("c1", 1, "client", run_root=1),
            f"ev 0 clock.anchor a={WALL0}",
            _rpc(1, "00000000000000a1"),
            _rpc(2, "00000000000000a2"),
            _rpc(3, ""),
            "ev 100 msg.send u=1 r=1",
            "ev 200 unit.block u=1 r=1 a=7",
            "ev 1100 rpc.response u=1 r=1 a=200",
            "ev 2000 msg.send u=1 r=2",
            "ev 5000 rpc.response u=1 r=2 a=-1",
            "ev 6000 msg.send u=1 r=3",
            "ev 6300 rpc.response u=1 r=3 a=200",
        ),
    )
    write_trace(
        tmp_path / "s.wtrace",
        chunk(
            process("s1", 2, "server", boot="b2"),
            f"ev 0 clock.anchor a={WALL0}",
            _rpc(1, "00000000000000b1", parent="00000000000000a1", lib="http.server"),
            _rpc(2, "00000000000000b9", parent="00000000000000ff", lib="http.server"),
            _rpc(3, "00000000000000b3", trace="", lib="http.server"),
            "ev 500 msg.recv u=1 r=1",
            "ev 700 rpc.reply u=1 r=1 a=200",
            "ev 800 msg.recv u=1 r=2",
            "ev 900 rpc.reply u=1 r=2 a=200",
            "ev 950 msg.recv u=1 r=3",
            "ev 990 rpc.reply u=1 r=3 a=200",
        ),
    )


def test_sides_match_by_trace_id_and_span_id(tmp_path: Path) -> None:
    """The client's span id is the server's parent span id; nothing else links them."""
    _client_server(tmp_path)
    trace = load([tmp_path])
    hops = match(trace)
    linked = hops.linked.nonzero()[0]
    assert len(linked) == 1
    row = int(linked[0])
    ev = trace.events
    assert [int(ev.kind[getattr(hops, c)[row]]) for c in ("send", "recv", "reply", "response")] == [
        K.MSG_SEND,
        K.MSG_RECV,
        K.RPC_REPLY,
        K.RPC_RESPONSE,
    ]
    assert hops.kind[row] == HopKind.RPC
    reasons = sorted(Unlinked(int(r)).label for r in hops.reason if r)
    # a2 failed (-1) and no server in the trace received it; the client's 3rd request
    # carried no context;
    # the server got one request from an untraced caller and one without traceparent.
    assert reasons == ["failed-to-connect", "no-client-side", "no-context", "no-traceparent"]
    src, dst, which = hop_edges(hops)
    assert sorted(zip(src.tolist(), dst.tolist(), which.tolist(), strict=True)) == sorted(
        [
            (int(hops.send[row]), int(hops.recv[row]), 0),
            (int(hops.reply[row]), int(hops.response[row]), 1),
        ]
    )


def test_summary_groups_learns_peers_and_measures_latency(tmp_path: Path) -> None:
    """Unlinked requests to a peer a linked request proved to be 'server' join its group;
    latency is send -> response on the client's clock."""
    _client_server(tmp_path)
    trace = load([tmp_path])
    groups = {(g.source.service, g.target.service): g for g in summarize(trace, match(trace))}
    g = groups[("client", "server")]
    assert (g.count, g.linked) == (3, 1)
    assert g.unlinked == {"failed-to-connect": 1, "no-context": 1}
    assert g.provenance == {"traceparent": 1}
    assert g.libraries == ("urllib", "http.server")
    assert (g.latency_p50_ns, g.protocol) == (650, "http")  # 1000, 300 (a2 failed) -> median
    orphan = groups[(None, "server")]
    assert (orphan.count, orphan.linked) == (2, 0)
    assert orphan.unlinked == {"no-client-side": 1, "no-traceparent": 1}


def test_spawn_links_parent_and_child(tmp_path: Path) -> None:
    """proc.spawn's span id is proc.start's parent span id: a PROCESS hop."""
    write_trace(
        tmp_path / "p.wtrace",
        chunk(
            process("p1", 1, "parent", run_root=1),
            f'rec resource 1 kind="spawn" trace_id="{T}" span_id="00000000000000c1"',
            f"ev 0 clock.anchor a={WALL0}",
            "ev 10 proc.spawn u=1 r=1 a=2",
        ),
    )
    write_trace(
        tmp_path / "c.wtrace",
        chunk(
            process("c2", 2, "child"),
            f'rec resource 1 kind="spawn" trace_id="{T}" parent_span_id="00000000000000c1"',
            f"ev 0 clock.anchor a={WALL0}",
            "ev 50 proc.start u=1 r=1 a=1",
        ),
    )
    trace = load([tmp_path])
    hops = match(trace)
    assert hops.kind.tolist() == [HopKind.SPAWN] and hops.linked.tolist() == [True]
    src, dst, which = hop_edges(hops)
    assert (trace.events.kind[src].tolist(), trace.events.kind[dst].tolist()) == (
        [K.PROC_SPAWN],
        [K.PROC_START],
    )
    assert which.tolist() == [2]
    (g,) = summarize(trace, hops)
    assert (g.protocol, g.source.service, g.target.service, g.latency_p50_ns) == (
        "process",
        "parent",
        "child",
        None,
    )
