"""Lock holds the Java agent must not overstate: a ReentrantLock is not held while its owner
waits in ``Condition.await`` (await releases it fully and re-acquires it at the same depth),
and a monitor hold the synchronized hooks record is not recorded a second time by the
stuck-thread sampler. Real JVMs with the agent, read back with ``willowisp query``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from test_java_agent import DEADLINE_S, agent_jar, classes, read_line, start_java, wquery

__all__ = ["agent_jar", "classes"]  # the fixtures, used by name

EVENTS_ON = (
    "SELECT u.name, e.kind, e.arg, e.time_ns FROM events e JOIN units u ON u.id = e.unit "
    "JOIN resources r ON r.id = e.resource WHERE r.name = '{}' ORDER BY e.time_ns, e.seq"
)


def holders_at_once(rows: list[tuple]) -> int:
    """The most units holding one lock at the same time, from its acquired / release events
    in time order (an rlock's arg is the depth after the event; a monitor's holds nest)."""
    depth: dict[str, int] = {}
    most = 0
    for unit, kind, arg, _t in rows:
        if kind == "lock.acquired":
            depth[unit] = arg if arg > 0 else depth.get(unit, 0) + 1
        elif kind == "lock.release":
            depth[unit] = arg if arg > 0 else 0
        most = max(most, sum(1 for d in depth.values() if d > 0))
    return most


def test_condition_await_releases_the_lock_and_restores_its_depth(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """ConditionWait: the waiter holds gate at depth 2 and awaits ready twice (a timed await
    that times out, then one main signals after taking gate itself). Each await writes the
    release (depth 0) before the wait and the re-acquisition at depth 2 after it; the
    signal is a notify edge to the wake; gate never has two holders; and a zero delay on
    gate changes nothing in the what-if. A write lock's condition releases and re-takes
    the write hold."""
    out = tmp_path / "run"
    proc = start_java(agent_jar, classes, out, "ConditionWait")
    stdout, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stdout.strip()) == (0, "done true"), stderr
    gate = wquery(out, EVENTS_ON.format("gate"))
    assert [(k, a) for u, k, a, _ in gate if u == "waiter"] == [
        ("lock.acquired", 1),
        ("lock.acquired", 2),
        ("lock.release", 0),  # the timed await
        ("lock.acquired", 2),
        ("lock.release", 0),  # the await main signals
        ("lock.acquired", 2),
        ("lock.release", 1),
        ("lock.release", 0),
    ], gate
    assert [k for u, k, _, _ in gate if u == "main"][-2:] == ["lock.acquired", "lock.release"]
    assert holders_at_once(gate) == 1, gate
    # a write lock's condition: the write hold released before the wait, taken after it
    # (one hold: the agent records only a read-write lock's outermost write hold)
    books = wquery(
        out,
        "SELECT e.kind, e.arg FROM events e JOIN units u ON u.id = e.unit "
        "JOIN resources r ON r.id = e.resource WHERE r.kind = 'rwlock' AND u.name = 'waiter' "
        "ORDER BY e.time_ns, e.seq",
    )
    assert books == [("lock.acquired", 0), ("lock.release", 0)] * 2, books
    ready = wquery(
        out,
        "SELECT u.name, e.kind, e.arg, r.kind FROM events e JOIN units u ON u.id = e.unit "
        "JOIN resources r ON r.id = e.resource WHERE r.name = 'ready' ORDER BY e.time_ns",
    )
    assert ready == [
        ("waiter", "unit.block", 5, "condition"),
        ("waiter", "unit.wake", 1, "condition"),  # timed out
        ("waiter", "unit.block", 5, "condition"),
        ("main", "sync.notify", 1, "condition"),
        ("waiter", "unit.wake", 0, "condition"),
    ], ready
    notified = wquery(
        out,
        "SELECT s.kind, d.kind FROM edges g JOIN events s ON s.id = g.src "
        "JOIN events d ON d.id = g.dst WHERE g.kind = 'notify'",
    )
    assert notified == [("sync.notify", "unit.wake")], notified
    assert wquery(out, "SELECT count(*) FROM events WHERE kind = 'agent.fault'") == [(0,)]
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "replay", str(out)]
        + ["--delay", "resource:gate=0ms", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    whatif = json.loads(done.stdout)
    span = whatif["makespan_ns"]
    assert span["simulated"] == span["recorded"], whatif
    assert whatif["reordered"]["lock_grants_total"] == 0, whatif


def test_a_hooked_monitor_hold_is_recorded_once_while_the_sampler_sees_it(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """MonitorHeld with its synchronized hooked (WILLOWISP_JAVA_SYNC): the holder keeps ledger
    while another thread is blocked on it, long enough for the sampler to record the wait
    (the test waits for that in the trace before letting the holder go). The holder's hold
    is one acquire / release pair, the hook's: the sampler adds no second acquisition for a
    holder whose hold the hook recorded, so ledger never has two holders."""
    out = tmp_path / "run"
    proc = start_java(
        agent_jar,
        classes,
        out,
        "MonitorHeld",
        stdin=True,
        WILLOWISP_JAVA_SYNC="MonitorHeld",
        WILLOWISP_JAVA_SAMPLE_MS="10",
    )
    try:
        assert read_line(proc) == "blocked"
        deadline = time.monotonic() + DEADLINE_S
        sampled: list[tuple] = []
        while time.monotonic() < deadline and not sampled:
            if any(out.glob("*.wtrace")):
                sampled = wquery(
                    out,
                    "SELECT count(*) FROM events e JOIN units u ON u.id = e.unit "
                    "JOIN resources r ON r.id = e.resource WHERE r.name = 'ledger' "
                    "AND u.name = 'blocked' AND e.kind = 'unit.block' HAVING count(*) > 0",
                )
            if not sampled:
                time.sleep(0.1)
        # the sample that records the wait looks at its holder too, in the same step
        assert sampled, "the sampler never recorded the blocked thread's wait"
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert (proc.returncode, stdout.strip()) == (0, "done"), stderr
    ledger = wquery(out, EVENTS_ON.format("ledger"))
    held = [k for u, k, _, _ in ledger if u == "holder"]
    assert held == ["lock.acquired", "lock.release"], ledger
    assert [k for u, k, _, _ in ledger if u == "blocked"][-2:] == [
        "lock.acquired",
        "lock.release",
    ], ledger
    assert holders_at_once(ledger) == 1, ledger
    assert wquery(out, "SELECT count(*) FROM events WHERE kind = 'agent.fault'") == [(0,)]
