"""The Java agent's boundaries follow work handed on inside an instance: threads the handler
starts (platform and virtual), ForkJoinPool submissions and ScheduledThreadPoolExecutor
tasks (one-shot and periodic). Real JVMs (JDK 17, and 25 where it matters) in hops mode,
real HTTP requests on 127.0.0.1, ``willowisp analyze`` on what they wrote."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_java_agent import (
    DEADLINE_S,
    JAVA,
    JAVAC,
    JDK25,
    _lines_in,
    agent_jar,
    analyze,
    private_dir,
    read_line,
    shop_request,
    start_java,
    wquery,
)

__all__ = ["agent_jar"]  # the fixture, used by name

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "tests" / "agents" / "programs" / "java" / "BoundaryHandOffs.java"
BOUNDARY = "entry=http:POST /order;runtimes=java"
WORK = _lines_in(PROGRAM.read_text().splitlines(), "static String work(")


@pytest.fixture(scope="module")
def handoff_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BoundaryHandOffs, compiled for JDK 17 (it finds the virtual-thread API at run time)."""
    out = tmp_path_factory.mktemp("java-handoffs")
    assert JAVAC is not None
    subprocess.run([JAVAC, "-g", "-d", str(out), str(PROGRAM)], check=True, timeout=300)
    return out


def java_for(jdk: str) -> str:
    java = JAVA if jdk == "17" else str(JDK25)
    assert java is not None and Path(java).exists(), f"JDK {jdk} is needed"
    return java


def serve(
    jar: Path,
    classes: Path,
    tmp_path: Path,
    jdk: str,
    requests: list[tuple[str, str]],
    before: Callable[[Path, int], None] | None = None,
    **env: str,
) -> tuple[Path, list[str]]:
    """Runs BoundaryHandOffs in hops mode (unless WILLOWISP_MODE says otherwise) with a
    boundary on POST /order, calls ``before(out, port)``, sends the requests one after the
    other, closes stdin and waits for a clean exit."""
    out = tmp_path / "run"
    proc = start_java(
        jar,
        classes,
        out,
        "BoundaryHandOffs",
        java=java_for(jdk),
        stdin=True,
        WILLOWISP_MODE=env.pop("WILLOWISP_MODE", "hops"),
        WILLOWISP_BOUNDARIES=BOUNDARY,
        WILLOWISP_RUNTIME_DIR=str(private_dir(tmp_path)),
        **env,
    )
    try:
        port = int(read_line(proc).split()[1])
        if before is not None:
            before(out, port)
        answers = [shop_request(port, method, path) for method, path in requests]
    finally:
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and stdout.split()[-1] == "bye", stderr
    return out, answers


def rounds(via: str) -> list[tuple[str, str]]:
    """ab and ba inside the boundary, then the same outside it (on other locks)."""
    return [
        ("POST", f"/order?via={via}&order=ab"),
        ("POST", f"/order?via={via}&order=ba"),
        ("GET", f"/peek?via={via}&order=ab"),
        ("GET", f"/peek?via={via}&order=ba"),
    ]


def workers(answers: list[str]) -> list[str]:
    """The thread names the answers end with ("ordered on NAME")."""
    return [a.split(" on ")[1] for a in answers]


def holds(out: Path, names: list[str]) -> list[tuple[str, str, int]]:
    """(unit, resource kind, line) of every lock.acquired of those units, in time order."""
    quoted = ", ".join(f"'{n}'" for n in names)
    return wquery(
        out,
        "SELECT u.name, r.kind, e.line FROM events e JOIN units u ON u.id = e.unit "
        "JOIN resources r ON r.id = e.resource WHERE e.kind = 'lock.acquired' "
        f"AND u.name IN ({quoted}) ORDER BY e.time_ns",
    )


def lock_events(out: Path, names: list[str]) -> int:
    quoted = ", ".join(f"'{n}'" for n in names)
    ((n,),) = wquery(
        out,
        "SELECT count(*) FROM events e JOIN units u ON u.id = e.unit "
        f"WHERE u.name IN ({quoted}) AND e.kind LIKE 'lock.%'",
    )
    return int(n)


def edges(out: Path, kind: str) -> list[tuple[str, str, str, str]]:
    """(source event kind, destination event kind, source unit, destination unit)."""
    return wquery(
        out,
        "SELECT s.kind, d.kind, su.name, du.name FROM edges g "
        "JOIN events s ON s.id = g.src JOIN events d ON d.id = g.dst "
        "JOIN units su ON su.id = s.unit JOIN units du ON du.id = d.unit "
        f"WHERE g.kind = '{kind}' ORDER BY s.time_ns",
    )


def check_inside(out: Path, pair: list[str]) -> dict:
    """Both handed-off threads held the work's two ReentrantLocks and two monitors at its
    lines; ``analyze`` (suppressing what lies outside every instance) reports the
    inversion between them; no agent fault; by_boundary counts both entries."""
    held = holds(out, pair)
    assert [(n, k) for n, k, _ in held] == [
        *[(pair[0], "rlock")] * 2,
        *[(pair[0], "monitor")] * 2,
        *[(pair[1], "rlock")] * 2,
        *[(pair[1], "monitor")] * 2,
    ], held
    assert all(line in WORK for _, _, line in held), (held, WORK)
    doc = analyze(out)
    found = [f for f in doc["findings"] if f["kind"] == "potential-deadlock"]
    assert found, [f["kind"] for f in doc["findings"]]
    assert {u["name"] for f in found for u in f["units"]} == set(pair), found
    assert sorted(r["kind"] for f in found for r in f["resources"]) == [
        "monitor",
        "monitor",
        "rlock",
        "rlock",
    ], found
    assert doc["trace"]["agent_faults"] == 0
    (process,) = doc["processes"]
    cost = process["agent"]["by_boundary"]["http:POST /order"]
    assert (cost["entries"], cost["active"]) == (2, 0), cost
    # the handed-off threads' 8 holds and 8 releases at least
    assert cost["events"] >= 16, cost
    return doc


@pytest.mark.parametrize("jdk", ["17", "25"])
def test_threads_started_inside_a_boundary_are_inside(
    agent_jar: Path, handoff_classes: Path, tmp_path: Path, jdk: str
) -> None:
    """A handler inside the boundary starts a platform thread (a Runnable; a Thread subclass
    overriding run) and joins it: the thread is inside the instance from start to end (its
    locks and monitors are recorded, the inversion between the two is reported), the
    handler's unit.create is the spawn edge to its unit.start; the same threads started
    from a handler outside record nothing."""
    out, answers = serve(agent_jar, handoff_classes, tmp_path, jdk, rounds("thread"))
    assert answers == [
        "ordered on spawned-ab-order",
        "ordered on spawned-ba-order",
        "peeked on spawned-ab-peek",
        "peeked on spawned-ba-peek",
    ]
    pair = ["spawned-ab-order", "spawned-ba-order"]
    check_inside(out, pair)
    assert lock_events(out, pair) == 16
    assert lock_events(out, ["spawned-ab-peek", "spawned-ba-peek"]) == 0
    spawns = edges(out, "spawn")
    assert [(s, d, du) for s, d, _su, du in spawns] == [
        ("unit.create", "unit.start", "spawned-ab-order"),
        ("unit.create", "unit.start", "spawned-ba-order"),
    ], spawns
    assert all(su.startswith("pool-") for _s, _d, su, _du in spawns), spawns
    # each followed thread's life: created, started, its work, ended
    ends = wquery(
        out,
        "SELECT u.name, count(*) FROM events e JOIN units u ON u.id = e.unit "
        "WHERE e.kind = 'unit.end' GROUP BY u.name ORDER BY u.name",
    )
    assert ends == [("spawned-ab-order", 1), ("spawned-ba-order", 1)], ends


def test_virtual_threads_started_inside_a_boundary_are_inside(
    agent_jar: Path, handoff_classes: Path, tmp_path: Path
) -> None:
    """JDK 25, hops mode: Thread.startVirtualThread inside the boundary: the virtual thread
    is inside (the start hook is installed with boundaries), with its spawn edge; one
    started outside records nothing."""
    out, answers = serve(agent_jar, handoff_classes, tmp_path, "25", rounds("vthread"))
    names = workers(answers)
    assert all(n.startswith("virtual-") for n in names) and len(set(names)) == 4, answers
    pair = names[:2]
    check_inside(out, pair)
    assert lock_events(out, pair) == 16
    assert lock_events(out, names[2:]) == 0
    kinds = wquery(
        out,
        "SELECT DISTINCT u.kind FROM units u WHERE u.name IN ('{}', '{}')".format(*pair),
    )
    assert kinds == [("virtual-thread",)], kinds
    spawns = [(s, d, du) for s, d, _su, du in edges(out, "spawn")]
    assert spawns == [
        ("unit.create", "unit.start", pair[0]),
        ("unit.create", "unit.start", pair[1]),
    ], spawns


@pytest.mark.parametrize("jdk", ["17", "25"])
def test_forkjoin_pool_work_is_inside(
    agent_jar: Path, handoff_classes: Path, tmp_path: Path, jdk: str
) -> None:
    """ForkJoinPool.submit(Callable) and execute(Runnable) inside the boundary: the pool's
    worker runs the task inside the instance (queue edge from the handler, its holds
    recorded, the inversion reported); the same workers running tasks handed to them from
    outside record nothing."""
    out, answers = serve(agent_jar, handoff_classes, tmp_path, jdk, rounds("fj"))
    names = workers(answers)
    pair = names[:2]
    assert names[2:] == pair and pair[0] != pair[1], answers
    assert all("ForkJoinPool-" in n for n in pair), answers
    check_inside(out, pair)
    assert lock_events(out, pair) == 16  # nothing of /peek's tasks on the same workers
    queue = [(s, d, du) for s, d, _su, du in edges(out, "queue")]
    assert queue == [
        ("queue.put", "queue.get", pair[0]),
        ("queue.put", "queue.get", pair[1]),
    ], queue


def test_scheduled_work_is_inside_while_the_instance_is_open(
    agent_jar: Path, handoff_classes: Path, tmp_path: Path
) -> None:
    """ScheduledThreadPoolExecutor.schedule (ab) and scheduleAtFixedRate (ba, answered after
    its second run and left running): the pool threads run them inside the instance; the
    periodic task's runs are followed while the instance is open (and the one queued then),
    not the three or more after the handler has answered and three more requests were
    served; /peek's scheduled tasks on the same threads record nothing."""
    requests = [
        *rounds("scheduled"),
        ("GET", "/peek?via=scheduled&order=ab"),  # a few more periodic runs meanwhile
        ("GET", "/stop"),
    ]
    out, answers = serve(agent_jar, handoff_classes, tmp_path, "17", requests)
    names = workers(answers[:4])
    pair = names[:2]
    assert names[2:] == pair and pair[0] != pair[1], answers
    runs = int(answers[-1].split()[1])
    # the work's holds (the pool's own queue lock, taken inside too, is the JDK's: no line)
    held = [h for h in holds(out, pair) if h[2] in WORK]
    assert [h for h in holds(out, pair) if h not in held and h[2] is not None] == [], held
    # the schedule: one run; the periodic task: its runs while the instance was open + 1
    # (at least the two before the answer; a fixed rate runs late runs back to back)
    assert [(n, k) for n, k, _ in held[:4]] == [
        *[(pair[0], "rlock")] * 2,
        *[(pair[0], "monitor")] * 2,
    ], held
    periodic_runs = sum(1 for n, _k, _l in held if n == pair[1]) // 4
    assert held[4:] == held[4:8] * periodic_runs, held
    assert periodic_runs >= 2, held
    # of the three or more runs after /stop began, one at most was queued while open
    assert periodic_runs <= runs - 2, (periodic_runs, runs)
    doc = analyze(out)
    found = [f for f in doc["findings"] if f["kind"] == "potential-deadlock"]
    assert {u["name"] for f in found for u in f["units"]} == set(pair), found
    assert doc["trace"]["agent_faults"] == 0
    queue = [(s, d, du) for s, d, _su, du in edges(out, "queue")]
    assert queue[:2] == [
        ("queue.put", "queue.get", pair[0]),
        ("queue.put", "queue.get", pair[1]),
    ], queue
    assert queue[2:] == [], queue  # a periodic task queued again: on the pool's own unit
    # each followed periodic run after the first was queued again by the previous one
    gets = wquery(
        out,
        "SELECT e.kind, count(*) FROM events e JOIN units u ON u.id = e.unit "
        f"WHERE u.name = '{pair[1]}' AND e.kind LIKE 'queue.%' GROUP BY e.kind ORDER BY e.kind",
    )
    assert gets == [("queue.get", periodic_runs), ("queue.put", periodic_runs - 1)], gets


def jfr_running(out: Path, port: int) -> None:
    """Starts threads outside the boundary until the agent's stats say JFR's stream has
    delivered a flush (``jfr_flushed_ns``): JFR runs from then on, and writes the start and
    end of every thread started after it (before it, the agent's own hooks do)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        shop_request(port, "GET", "/peek?via=thread&order=ab")
        rows = wquery(out, "SELECT agent FROM processes") if any(out.glob("*.wtrace")) else []
        agent = rows[0][0] if rows else None
        if isinstance(agent, str):
            agent = json.loads(agent)
        if agent and "jfr_flushed_ns" in (agent.get("extra") or {}):
            return
    raise AssertionError(f"JFR delivered no flush within {DEADLINE_S} s")


def test_threads_started_inside_a_boundary_in_full_mode(
    agent_jar: Path, handoff_classes: Path, tmp_path: Path
) -> None:
    """full mode with JFR running: the start hook writes the spawn edge of a thread started
    inside the boundary, JFR its start and end, and no second create; analyze (suppressing
    what lies outside instances) reports the inversion between the two threads."""
    out, answers = serve(
        agent_jar,
        handoff_classes,
        tmp_path,
        "17",
        rounds("thread")[:2],
        before=jfr_running,
        WILLOWISP_MODE="full",
    )
    assert answers == ["ordered on spawned-ab-order", "ordered on spawned-ba-order"]
    pair = ["spawned-ab-order", "spawned-ba-order"]
    life = wquery(
        out,
        "SELECT u.name, e.kind, count(*) FROM events e JOIN units u "
        "ON u.process = e.process AND u.number = e.arg "
        "WHERE e.kind = 'unit.create' AND u.name IN ('{}', '{}') GROUP BY u.name, e.kind "
        "UNION ALL SELECT u.name, e.kind, count(*) FROM events e JOIN units u ON u.id = e.unit "
        "WHERE e.kind IN ('unit.start', 'unit.end') AND u.name IN ('{}', '{}') "
        "GROUP BY u.name, e.kind ORDER BY 1, 2".format(*pair, *pair),
    )
    assert life == [(n, k, 1) for n in pair for k in ("unit.create", "unit.end", "unit.start")]
    spawns = [(s, d, du) for s, d, _su, du in edges(out, "spawn") if du in pair]
    assert spawns == [
        ("unit.create", "unit.start", pair[0]),
        ("unit.create", "unit.start", pair[1]),
    ], spawns
    doc = analyze(out)
    found = [f for f in doc["findings"] if f["kind"] == "potential-deadlock"]
    assert found and all({u["name"] for u in f["units"]} == set(pair) for f in found), found
    assert doc["trace"]["agent_faults"] == 0
