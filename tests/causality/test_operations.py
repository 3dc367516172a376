"""Logical operations: which events belong to which W3C trace, and time since its root."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from golden.tracetext import WALL0, chunk, process, run_folder
from willowisp.causality import link
from willowisp.causality.link import Causality
from willowisp.causality.operations import NO_OPERATION
from willowisp.ingest import load
from willowisp.model.spec import K
from wispkit import wisp

T1 = "1" * 32
T2 = "2" * 32
T3 = "3" * 32
SKEW = 5_000_000_000  # the server's wall clock reads 5 s ahead


def _rows(c: Causality, service: str) -> list[int]:
    """That service's event rows, in its own time order."""
    p = next(p.index for p in c.trace.processes if p.service == service)
    lo, hi = int(c.trace.proc_bounds[p]), int(c.trace.proc_bounds[p + 1])
    return list(range(lo, hi))


def _client_server(tmp_path: Path) -> Causality:
    """A client with no inbound context calls a server whose clock is 5 s ahead; the
    handler thread creates a helper inside the request, and takes a lock after replying."""
    client = chunk(
        process("c1", 1, "client", run_root=1),
        'rec resource 1 kind="rpc" name="GET /x" trace_id="'
        + T1
        + '" span_id="aaaaaaaaaaaaaaaa" method="GET" target="/x" protocol="http"',
        'rec resource 2 kind="lock" name="l"',
        f"ev 0 clock.anchor a={WALL0}",
        "ev 1000 unit.start u=1",
        "ev 2000 lock.acquired u=1 r=2",
        "ev 10000000 msg.send u=1 r=1",
        "ev 10000100 unit.block u=1 r=1 a=7",
        "ev 12000000 rpc.response u=1 r=1 a=200",
        "ev 13000000 unit.end u=1",
    )
    server = chunk(
        process("s1", 2, "server", boot="other"),
        'rec unit 1 kind="thread" name="MainThread" parent=0',
        'rec unit 2 kind="thread" name="handler" parent=1',
        'rec unit 3 kind="thread" name="helper" parent=2',
        'rec resource 1 kind="rpc" name="GET /x" trace_id="'
        + T1
        + '" span_id="bbbbbbbbbbbbbbbb" parent_span_id="aaaaaaaaaaaaaaaa" method="GET" '
        'target="/x"',
        'rec resource 2 kind="lock" name="state"',
        f"ev 0 clock.anchor a={WALL0 + SKEW}",
        "ev 100 unit.start u=1",
        "ev 200 unit.create u=1 a=2",
        "ev 300 unit.start u=2",
        "ev 10500000 msg.recv u=2 r=1",
        "ev 10600000 lock.acquired u=2 r=2",
        "ev 10700000 unit.create u=2 a=3",
        "ev 10800000 unit.start u=3",
        "ev 10900000 lock.release u=2 r=2",
        "ev 11500000 rpc.reply u=2 r=1 a=200",
        "ev 11600000 lock.acquired u=2 r=2",
        "ev 11700000 unit.end u=3",
        "ev 20000000 agent.flush a=12",
    )
    return link(load([run_folder(tmp_path, client=client, server=server)]))


def test_a_request_roots_its_trace_at_the_clients_send(tmp_path: Path) -> None:
    """The client has no inbound context: its msg.send is the root; the handler's events
    are timed from it on the aligned line, although the server's clock is 5 s ahead."""
    c = _client_server(tmp_path)
    ops = c.operations
    cl = _rows(c, "client")
    send = cl[3]
    assert ops.trace_ids[int(ops.op[send])] == T1
    assert int(ops.root[int(ops.op[send])]) == send
    sv = _rows(c, "server")
    recv, acquire, create, helper_start = sv[4], sv[5], sv[6], sv[7]
    assert [ops.trace_id_of(i) for i in (recv, acquire, create, helper_start)] == [T1] * 4
    assert [int(ops.root_rel_ns[i]) for i in (recv, acquire, create, helper_start)] == [
        500_000,
        600_000,
        700_000,
        800_000,
    ]
    assert int(ops.root_rel_ns[cl[5]]) == 2_000_000  # the client's rpc.response


def test_the_handling_interval_ends_at_the_reply_but_a_child_keeps_the_trace(
    tmp_path: Path,
) -> None:
    """After rpc.reply the handler works for no operation; the helper it created inside
    the request stays in it for its whole life."""
    c = _client_server(tmp_path)
    ops = c.operations
    sv = _rows(c, "server")
    after_reply, helper_end = sv[10], sv[11]
    assert ops.op[after_reply] == NO_OPERATION
    assert ops.trace_id_of(helper_end) == T1
    assert int(ops.root_rel_ns[helper_end]) == 1_700_000


def test_events_in_no_operation_are_timed_from_their_unit_tree(tmp_path: Path) -> None:
    """Outside any trace: since the first event of the unit's creation tree (the server's
    MainThread start, for its handler); agent metadata since the process's first event."""
    c = _client_server(tmp_path)
    ops, trace = c.operations, c.trace
    sv = _rows(c, "server")
    after_reply, flush, main_start = sv[10], sv[12], sv[1]
    assert ops.root_of(trace, after_reply) == main_start
    assert int(ops.root_rel_ns[after_reply]) == 11_600_000 - 100
    assert ops.root_of(trace, flush) == sv[0]
    assert int(ops.root_rel_ns[flush]) == 20_000_000
    cl = _rows(c, "client")
    assert ops.op[cl[2]] == NO_OPERATION  # the client's lock before it sent anything
    assert int(ops.root_rel_ns[cl[2]]) == 1_000


def test_a_spawned_process_belongs_to_its_parents_trace(tmp_path: Path) -> None:
    """A child started with the parent's context: its parentless units, and the units
    they create, are in the trace, timed from the parent's proc.spawn."""
    parent = chunk(
        process("p1", 1, "parent", run_root=1),
        f'rec resource 1 kind="spawn" name="child" trace_id="{T2}" span_id="cccccccccccccccc"',
        f"ev 0 clock.anchor a={WALL0}",
        "ev 1000 unit.start u=1",
        "ev 5000000 proc.spawn u=1 r=1 a=2",
    )
    child = chunk(
        process("k1", 2, "child", boot="other"),
        'rec unit 1 kind="thread" name="MainThread" parent=0',
        'rec unit 2 kind="thread" name="worker" parent=1',
        f'rec resource 1 kind="spawn" name="start" trace_id="{T2}" '
        'parent_span_id="cccccccccccccccc"',
        f"ev 0 clock.anchor a={WALL0 + 7_000_000}",
        "ev 100 proc.start u=1 r=1 a=1",
        "ev 200 unit.start u=1",
        "ev 300 unit.create u=1 a=2",
        "ev 400 unit.start u=2",
    )
    c = link(load([run_folder(tmp_path, parent=parent, child=child)]))
    ops = c.operations
    spawn = _rows(c, "parent")[2]
    kid = _rows(c, "child")
    assert ops.root[int(ops.op[spawn])] == spawn
    assert [ops.trace_id_of(i) for i in kid[1:]] == [T2] * 4
    assert [ops.root_of(c.trace, i) for i in kid[1:]] == [spawn] * 4
    rel = [int(ops.root_rel_ns[i]) for i in kid[1:]]
    assert rel == sorted(rel) and rel[0] >= 0  # after the spawn, in the child's order


def test_a_consumer_works_for_each_message_until_the_next(tmp_path: Path) -> None:
    """A message has no reply: its consumer is in the message's trace from receiving it
    until it receives the next one."""

    def produced(trace: str, span: str) -> str:
        return (
            f'rec resource {span[0]} kind="message" name="q" trace_id="{trace}" '
            f'span_id="{span * 16}" protocol="kafka"'
        )

    def consumed(n: int, trace: str, span: str) -> str:
        return (
            f'rec resource {n} kind="message" name="q" trace_id="{trace}" '
            f'parent_span_id="{span * 16}" protocol="kafka"'
        )

    producer = chunk(
        process("a1", 1, "producer", run_root=1),
        produced(T2, "1"),
        produced(T3, "2"),
        f"ev 0 clock.anchor a={WALL0}",
        "ev 1000 msg.send u=1 r=1",
        "ev 2000 msg.send u=1 r=2",
    )
    consumer = chunk(
        process("b1", 2, "consumer"),
        consumed(1, T2, "1"),
        consumed(2, T3, "2"),
        'rec resource 3 kind="lock" name="db"',
        f"ev 0 clock.anchor a={WALL0}",
        "ev 50000 msg.recv u=1 r=1",
        "ev 60000 lock.acquired u=1 r=3",
        "ev 70000 msg.recv u=1 r=2",
        "ev 80000 lock.release u=1 r=3",
    )
    c = link(load([run_folder(tmp_path, producer=producer, consumer=consumer)]))
    ops = c.operations
    rows = _rows(c, "consumer")
    assert [ops.trace_id_of(i) for i in rows[1:]] == [T2, T2, T3, T3]
    send2 = _rows(c, "producer")[2]
    assert ops.root_of(c.trace, rows[4]) == send2


def test_a_pool_workers_jobs_belong_to_their_submitters_requests(tmp_path: Path) -> None:
    """A real http.server front handing each request's job to a ThreadPoolExecutor: each
    job's events (from its get off the pool's queue to the next) are in the operation of
    the request that submitted it, and the workers are in none between jobs. (A worker,
    started inside the first request, was in that request for its whole life: 1 operation
    across every job it ran.)"""
    program = Path(__file__).parent / "programs" / "pool_service.py"
    out = tmp_path / "run"
    done = wisp("run", "--out", str(out), "--", sys.executable, str(program))
    assert done.returncode == 0, done.stderr
    trace = load([out])
    c = link(trace)
    ev, ops = trace.events, c.operations.op
    workers = {u.index for u in trace.units if u.name.startswith("worker")}
    lock = [r.index for r in trace.resources if r.name == "work_lock"]
    assert workers and lock
    held = np.flatnonzero((ev.kind == K.LOCK_ACQUIRED) & np.isin(ev.res, lock))
    assert len(held) == 12  # one per request
    by_worker = {u: {int(ops[i]) for i in held if ev.unit[i] == u} for u in workers}
    assert all(NO_OPERATION not in o for o in by_worker.values()), by_worker
    assert len({int(ops[i]) for i in held}) == 12  # each job its own request's
    # between jobs (before its first get, after its last job's events) a worker is in none
    for u in workers:
        mine = np.flatnonzero(ev.unit == u)
        assert ops[mine[0]] == NO_OPERATION, trace.units[u].name
