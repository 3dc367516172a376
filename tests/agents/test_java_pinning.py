"""Virtual-thread pinning seen by the Java agent on a live JDK 25 JVM.

From JDK 24 a ``synchronized`` block no longer pins a virtual thread to its carrier (JEP 491);
a class initializer still does. ``Pinning clinit`` sleeps 200 ms inside one on a virtual
thread; ``Pinning monitor`` sleeps as long inside ``synchronized`` (the control). Both wait
until JFR runs before starting the virtual thread, so a missing pin is the agent's or the
JDK's doing, not a race with the agent's start-up. In both the sleep is one wait (not also
the park that implements it), and the virtual thread's parent is main, with a spawn edge
from main's ``unit.create`` at the starting line: ``analyze`` finds nothing at all.
``JavaVirtualStarts`` starts 50,000 virtual threads under a fast sampler: every one names
main as its parent, and the JVM survives. The recording is read as a user would:
``willowisp query`` / ``willowisp analyze``, plus the agent's ``stats`` record.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from willowisp.model.spec import RECORD_BY_NAME
from willowisp.runtimes import stable_jar
from willowisp.wtrace.reader import read_file
from wispkit import analyze_json, clean_env, wisp

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agents" / "java"
JAR = AGENT / "target" / "willowisp-agent.jar"
PROGRAM = Path(__file__).resolve().parent / "programs" / "java" / "Pinning.java"
STARTS = (
    Path(__file__).resolve().parent / "programs" / "java" / "virtual" / "JavaVirtualStarts.java"
)
JDK25 = Path("/usr/lib/jvm/temurin-25-jdk-amd64/bin")
SLEEP_LINE, START_LINE = (
    next(n for n, text in enumerate(PROGRAM.read_text().splitlines(), 1) if marker in text)
    for marker in ("Thread.sleep(200)", "start.invoke(builder, task)")
)

pytestmark = pytest.mark.skipif(
    not (JDK25 / "java").exists(), reason=f"no JDK 24+ installed at {JDK25}"
)


@pytest.fixture(scope="module")
def agent_jar() -> Path:
    """The shaded agent jar, built by Maven (offline first) when missing or stale; a snapshot
    of it (see test_java_agent.agent_jar)."""
    sources = [AGENT / "pom.xml", *(AGENT / "src" / "main").rglob("*.java")]
    if JAR.exists() and all(p.stat().st_mtime <= JAR.stat().st_mtime for p in sources):
        return stable_jar(JAR)
    for offline in (["-o"], []):
        done = subprocess.run(
            ["mvn", "-q", *offline, "package", "-DskipTests"],
            cwd=AGENT,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode == 0:
            return stable_jar(JAR)
    raise AssertionError(done.stdout[-4000:] + done.stderr[-4000:])


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pinning-classes")
    subprocess.run(
        [str(JDK25 / "javac"), "-g", "-d", str(out), str(PROGRAM), str(STARTS)],
        check=True,
        timeout=300,
    )
    return out


def run_pinning(jar: Path, classes: Path, out: Path, mode: str) -> None:
    """Runs ``Pinning MODE`` under JDK 25 with the agent to its normal exit: it says ``jfr``
    once a recording runs, ``done`` once the virtual thread has finished."""
    env = clean_env(JAVA_TOOL_OPTIONS=f"-javaagent:{jar}", WILLOWISP_OUT=str(out))
    env.pop("TRACEPARENT", None)
    proc = subprocess.Popen(
        [str(JDK25 / "java"), "-cp", str(classes), "Pinning", mode],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert (proc.returncode, stdout.split()) == (0, ["jfr", "done"]), stderr
    assert "Exception" not in stderr and "[jfr]" not in stderr, stderr


def query(out: Path, sql: str) -> list[tuple[Any, ...]]:
    done = wisp("query", str(out), sql, "--format", "json")
    assert done.returncode == 0, done.stderr
    return [tuple(r) for r in json.loads(done.stdout)["rows"]]


def last_stats(out: Path) -> dict[str, Any]:
    """The agent's last ``stats`` record (written at exit: the totals)."""
    return last_stats_of(out, "Pinning")


def last_stats_of(out: Path, service: str) -> dict[str, Any]:
    (trace,) = out.glob(f"{service}-*.wtrace")
    code = RECORD_BY_NAME["stats"].code
    stats = [dict(r.attrs) for c in read_file(trace).chunks for r in c.records if r.rtype == code]
    assert stats, f"no stats record in {trace}"
    return stats[-1]


def check_clean(out: Path) -> None:
    """Nothing lost, no agent fault, no finding at all (a virtual thread is no orphan: the
    agent names who started it)."""
    doc = analyze_json(out)
    trace = doc["trace"]
    assert trace["runtimes"] == ["java"]
    assert (trace["agent_faults"], trace["dropped_events"], trace["unknown_events"]) == (0, 0, 0)
    assert trace["unreadable_files"] == [] and trace["notes"] == []
    assert [(f["kind"], f["summary"]) for f in doc["findings"]] == []
    stats = last_stats(out)
    assert (stats["faults"], stats["dropped"]) == (0, 0), stats


def the_sleep(out: Path, name: str) -> tuple[int, int]:
    """The virtual thread's 200 ms ``Thread.sleep`` as JFR reported it (the block at the
    sleeping line and its wake): (start, end). It is the thread's only wait: on JDK 25 a
    pinned virtual thread sleeps by parking its carrier, and that park (JFR's ThreadPark
    inside the ThreadSleep) is the same wait, not a second one."""
    rows = query(
        out,
        "SELECT e.kind, e.resource_name, e.time_ns, e.line FROM events e "
        f"JOIN units u ON u.id = e.unit WHERE u.name = '{name}' AND u.kind = 'virtual-thread' "
        "AND e.kind IN ('unit.block', 'unit.wake') ORDER BY e.time_ns",
    )
    assert [r[:2] for r in rows] == [
        ("unit.block", "Thread.sleep"),
        ("unit.wake", "Thread.sleep"),
    ], rows
    (_, _, start, line), (_, _, end, _) = rows
    assert line == SLEEP_LINE and end - start >= 190_000_000, rows
    return start, end


def the_spawn(out: Path, name: str) -> None:
    """The virtual thread's parent is the thread that started it (``main``), and the spawn
    edge runs from main's ``unit.create`` at the starting line to the virtual thread's
    ``unit.start``, in time order."""
    assert query(
        out,
        "SELECT p.name, p.kind FROM units u JOIN units p ON p.id = u.parent "
        f"WHERE u.name = '{name}' AND u.kind = 'virtual-thread'",
    ) == [("main", "thread")]
    edges = query(
        out,
        "SELECT su.name, s.kind, s.line, d.kind, s.time_ns, d.time_ns FROM edges g "
        "JOIN events s ON s.id = g.src JOIN events d ON d.id = g.dst "
        "JOIN units su ON su.id = s.unit JOIN units du ON du.id = d.unit "
        f"WHERE g.kind = 'spawn' AND du.name = '{name}'",
    )
    assert [e[:4] for e in edges] == [("main", "unit.create", START_LINE, "unit.start")], edges
    assert edges[0][4] <= edges[0][5], edges


def test_a_class_initializer_pins_a_virtual_thread_to_its_carrier(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """A virtual thread sleeping inside a class initializer on JDK 25: one ``unit.run`` on
    the ``virtual-thread`` unit, during its sleep, at the sleeping line, naming the carrier
    (a ForkJoinPool worker ``thread`` unit), and ``stats.jfr_pinned`` == 1."""
    out = tmp_path / "run"
    run_pinning(agent_jar, classes, out, "clinit")
    check_clean(out)
    the_spawn(out, "pinned-clinit")
    pins = query(
        out,
        "SELECT u.kind, e.arg, e.time_ns, e.file, e.line, e.func FROM events e "
        "JOIN units u ON u.id = e.unit WHERE e.kind = 'unit.run' AND u.name = 'pinned-clinit'",
    )
    assert len(pins) == 1, pins
    kind, carrier, at, file, line, func = pins[0]
    assert (kind, file, line, func) == ("virtual-thread", "Pinning.java", SLEEP_LINE, "Pinning.nap")
    # every unit.run in the run is this one
    assert query(out, "SELECT count(*) FROM events WHERE kind = 'unit.run'") == [(1,)]
    # the carrier: the unit whose number the event names, a platform thread of the scheduler
    (named,) = query(out, f"SELECT name, kind FROM units WHERE number = {int(carrier)}")
    assert named[1] == "thread" and named[0].startswith("ForkJoinPool-"), named
    start, end = the_sleep(out, "pinned-clinit")
    assert start <= at <= end, (start, at, end)
    assert last_stats(out).get("jfr_pinned") == 1


def test_synchronized_no_longer_pins_on_jdk_25(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """The control: the same sleep inside ``synchronized`` instead of a class initializer.
    JFR saw the virtual thread (its sleep is there), and nothing pinned it (JEP 491)."""
    out = tmp_path / "run"
    run_pinning(agent_jar, classes, out, "monitor")
    check_clean(out)
    the_spawn(out, "pinned-monitor")
    the_sleep(out, "pinned-monitor")
    assert query(out, "SELECT count(*) FROM events WHERE kind = 'unit.run'") == [(0,)]
    stats = last_stats(out)
    assert stats.get("jfr_pinned", 0) == 0 and stats["jfr_threshold_ms"] == 10, stats


def test_every_virtual_thread_names_its_starter_under_churn(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """50,000 virtual threads started from main in bursts of 2,000 (JavaVirtualStarts), with
    the stuck-thread sampler at its fastest (10 ms) and JFR running: the JVM runs to its end
    (on JDK 25.0.3 ``getThreadInfo`` on a carrier thread while virtual threads mount can
    crash it, so the sampler never asks about carriers), every virtual thread's unit has
    main as its parent, and every start is a ``unit.create`` on main or counted as dropped
    (main's ring is bounded; at this rate it fills)."""
    out = tmp_path / "run"
    env = clean_env(
        JAVA_TOOL_OPTIONS=f"-javaagent:{agent_jar}",
        WILLOWISP_OUT=str(out),
        WILLOWISP_JAVA_SAMPLE_MS="10",
    )
    env.pop("TRACEPARENT", None)
    done = subprocess.run(
        [str(JDK25 / "java"), "-cp", str(classes), "JavaVirtualStarts", "2000", "25", "jfr"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    lines = done.stdout.split()
    assert lines[0] == "jfr" and lines[-2:] == ["count", "50000"], done.stdout
    assert query(
        out,
        "SELECT p.name, count(*) FROM units u LEFT JOIN units p ON p.id = u.parent "
        "WHERE u.kind = 'virtual-thread' GROUP BY p.name",
    ) == [("main", 50000)]
    ((created, dropped),) = query(
        out,
        "SELECT count(*) FILTER (WHERE e.kind = 'unit.create' AND c.kind = 'virtual-thread'), "
        "coalesce(sum(e.arg) FILTER (WHERE e.kind = 'agent.drop'), 0) "
        "FROM events e JOIN units u ON u.id = e.unit "
        "LEFT JOIN units c ON e.kind = 'unit.create' AND c.number = e.arg "
        "WHERE u.name = 'main'",
    )
    assert created <= 50000 <= created + dropped, (created, dropped)
    assert created > 0
    stats = last_stats_of(out, "JavaVirtualStarts")
    assert stats["faults"] == 0, stats
