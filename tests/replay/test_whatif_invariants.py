"""What-if's promise, checked on whole real recordings rather than on one event: a zero
delay reproduces every event exactly, and a positive delay makes nothing earlier and no
hop faster than recorded, except what a lock grant or queue item decided differently
(``Outcome.redecided``) and what follows from it.

Run on the demo's recording (five runtimes, a seeded deadlock, an unrecorded dispatcher
thread between the Java ledger's socket and its workers) and on the programs beside this
file. The demo's ``hop:score=400ms`` is the case that once made ``POST /settle`` faster:
the ledger's worker had taken the request through steps no agent records, so its receive
looked like slack and the delayed request arrived the instant it was sent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from willowisp.analysis.engine import Analysis, analyze
from willowisp.causality.graph import EdgeKind
from willowisp.ingest.load import load
from willowisp.replay import whatif
from willowisp.replay.targets import parse_delay, resolve
from willowisp.replay.whatif_report import report
from wispkit import wisp

PROGRAMS = Path(__file__).parent / "programs"
DEMO_TIMEOUT_S = 1800  # the first demo run builds the Go and Rust services
HOPS = [int(EdgeKind.REQUEST), int(EdgeKind.REPLY), int(EdgeKind.MESSAGE)]


def _demo(out: Path, *extra: str) -> Path:
    """``willowisp demo --out OUT`` in a session of its own, killed by that id if it hangs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    env.pop("JAVA_TOOL_OPTIONS", None)
    env.pop("NODE_OPTIONS", None)
    argv = [sys.executable, "-m", "willowisp", "demo", "--out", str(out), *extra]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    return out


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analyze(load([_demo(tmp_path_factory.mktemp("inv") / "demo")]))


@pytest.fixture(scope="module")
def fixed_demo_run(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analyze(load([_demo(tmp_path_factory.mktemp("inv") / "fixed", "--fixed")]))


def _record(base: Path, program: str) -> Analysis:
    out = base / program
    done = wisp("run", "--out", str(out), "--", sys.executable, str(PROGRAMS / f"{program}.py"))
    assert done.returncode == 0, done.stderr
    return analyze(load([out]))


def _simulate(a: Analysis, delay: str) -> whatif.Outcome:
    return whatif.simulate(a, resolve(a, [parse_delay(delay)]))


def _recorded(a: Analysis) -> npt.NDArray[np.int64]:
    return a.causality.clocks.adjusted.astype(np.int64)


def assert_zero_delay_exact(a: Analysis, delay: str) -> None:
    out = _simulate(a, delay)
    drawn = a.trace.events.unit >= 0
    moved = np.flatnonzero(drawn & (out.sim != _recorded(a)))
    assert len(moved) == 0, (delay, len(moved), int(np.count_nonzero(drawn)))
    assert out.redecided == set() and out.lock_flips == [] and out.race_flips == []
    assert out.never_granted == [] and out.items_flipped == []
    assert all(o.change == 0 for o in out.operations)


def assert_nothing_earlier(a: Analysis, delay: str) -> whatif.Outcome:
    """No event earlier than recorded and no request, reply or message faster, unless a
    re-decided grant or item explains it; returns the outcome for further checks."""
    out = _simulate(a, delay)
    t = _recorded(a)
    early = whatif.unexplained_early(out, t)
    assert early == [], (delay, len(early), early[:5])
    g = a.causality.graph
    hop = np.isin(g.kind, HOPS) & (out.sim[g.src] != whatif.UNSET)
    hop &= (out.sim[g.dst] != whatif.UNSET) & ~np.isin(g.dst, sorted(out.redecided))
    faster = np.flatnonzero(hop & (out.sim[g.dst] - out.sim[g.src] < t[g.dst] - t[g.src]))
    assert len(faster) == 0, (delay, len(faster))
    return out


def unexplained_shorter(a: Analysis, out: whatif.Outcome) -> list[tuple[str, int]]:
    """Operations the simulation made shorter by more than the waits inside them shrank.

    Waiting is not delay: a wait on something the delay did not move (a Node flow waiting
    for promises its process's main settles on its own) may end sooner after the wait
    began later, so an operation can get shorter by as much as its waits shrank; never by
    more."""
    t = _recorded(a)
    ev = a.trace.events
    op = a.causality.operations.op
    order = np.lexsort((np.arange(len(ev)), ev.unit))  # program order per unit
    prev = np.full(len(ev), -1, dtype=np.int64)
    same = ev.unit[order[1:]] == ev.unit[order[:-1]]
    prev[order[1:][same]] = order[:-1][same]
    out_: list[tuple[str, int]] = []
    for o in out.operations:
        if (o.change or 0) >= 0:
            continue
        rows = np.flatnonzero((op == o.op) & (prev >= 0))
        p = prev[rows]
        shrank = (t[rows] - t[p]) - (out.sim[rows] - out.sim[p])
        if -int(o.change or 0) > int(np.maximum(shrank, 0).sum()):
            out_.append((o.trace_id[:8], int(o.change or 0)))
    return out_


def test_demo_zero_delay_reproduces_every_event(demo_run: Analysis) -> None:
    for delay in ("hop:score=0ms", "resource:inventory=0ms", "unit:main=0ms"):
        assert_zero_delay_exact(demo_run, delay)


def test_demo_a_slower_score_makes_nothing_faster(demo_run: Analysis) -> None:
    """score 400 ms slower: every score call that finishes is 400 ms longer, no operation
    gets shorter, and what the deadlock never lets finish is named, not left out."""
    out = assert_nothing_earlier(demo_run, "hop:score=400ms")
    assert unexplained_shorter(demo_run, out) == []
    doc = report(demo_run, out)
    score = [x for x in doc["operations"] if x["name"] == "rpc GET /score from shop"]
    (hops,) = [m for m in doc["delays"] if m.startswith("hop:score=400ms: ")]
    assert hops.startswith(f"hop:score=400ms: {len(score)} hop(s) slower"), (hops, score)
    done = [x for x in score if x["change_ns"] is not None]
    assert done and all(abs(x["change_ns"] - 400_000_000) < 1_000_000 for x in done), done
    unfinished = doc["operations_unfinished_names"]
    assert sum(unfinished.values()) == doc["operations_unfinished"]
    assert unfinished.get("rpc GET /score from shop", 0) == len(score) - len(done)
    for delay in ("hop:settle=50ms", "resource:inventory=30ms", "hop:quote=100ms"):
        out = assert_nothing_earlier(demo_run, delay)
        assert unexplained_shorter(demo_run, out) == [], delay


def test_fixed_demo_a_slower_score_makes_nothing_faster(fixed_demo_run: Analysis) -> None:
    assert_zero_delay_exact(fixed_demo_run, "hop:score=0ms")
    for delay in ("hop:score=400ms", "hop:settle=50ms", "resource:catalog=20ms"):
        out = assert_nothing_earlier(fixed_demo_run, delay)
        assert unexplained_shorter(fixed_demo_run, out) == [], delay


@pytest.mark.parametrize(
    "program",
    ["flip", "join_finished", "parallel_calls", "spawned", "timeout_lock", "two_locks"],
)
def test_programs_keep_the_promise_for_a_delay_on_every_unit(
    program: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    a = _record(tmp_path_factory.mktemp("inv"), program)
    names = sorted({u.name for u in a.trace.units if u.name})
    assert names
    for name in names:
        assert_zero_delay_exact(a, f"unit:{name}=0ms")
        assert_nothing_earlier(a, f"unit:{name}=30ms")
