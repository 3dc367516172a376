"""The Java agent's threads started before JFR runs: ``full`` mode takes platform threads'
units from JFR's ThreadStart / End, which start 0.5-0.9 s after premain, so the agent's own
Thread.start / exit hooks write the units of threads the program starts before that. A real
JVM recorded with ``willowisp run``, ``willowisp query`` and ``analyze`` on what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_java_agent import DEADLINE_S, JAVA, JAVAC, JDK25, agent_jar, analyze, wquery

__all__ = ["agent_jar"]  # the fixture, used by name

# main writes `shared` and starts left and right at once (long before JFR's recording can
# be running: the JVM has just started); each reads it, ordered after the write by start().
# Then main waits until a JFR recording is RUNNING (JFR's own listener: a signal, not a
# sleep) and starts `late`, which JFR sees too (before its first flush both the hooks and
# JFR write: the race the agent resolves). Then, told on stdin (once the agent says JFR
# has flushed), `steady`, which JFR alone writes. left also writes `result`, which main
# reads after joining it: ordered by the join (join.done after left's unit.end), no race.
PROGRAM = """\
import dev.willowisp.agent.Willowisp;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import jdk.jfr.FlightRecorder;
import jdk.jfr.FlightRecorderListener;
import jdk.jfr.Recording;
import jdk.jfr.RecordingState;

public class EarlyStarts {
  static int shared;
  static int result;

  static void read() {
    if (shared != 42) throw new IllegalStateException("start() orders the write first");
    Willowisp.access("api", "shared", Willowisp.READ);
  }

  static void produce() {
    read();
    result = 1;
    Willowisp.access("api", "result", Willowisp.WRITE);
  }

  public static void main(String[] args) throws Exception {
    shared = 42;
    Willowisp.access("api", "shared", Willowisp.WRITE);
    Thread left = new Thread(EarlyStarts::produce, "left");
    Thread right = new Thread(EarlyStarts::read, "right");
    left.start(); // start left
    right.start(); // start right
    left.join();
    right.join();
    Willowisp.access("api", "shared", Willowisp.READ);
    if (result != 1) throw new IllegalStateException("join orders left's write first");
    Willowisp.access("api", "result", Willowisp.READ);
    CountDownLatch running = new CountDownLatch(1);
    FlightRecorder.addListener(
        new FlightRecorderListener() {
          @Override
          public void recordingStateChanged(Recording r) {
            if (r.getState() == RecordingState.RUNNING) running.countDown();
          }
        });
    if (FlightRecorder.isInitialized()) {
      for (Recording r : FlightRecorder.getFlightRecorder().getRecordings()) {
        if (r.getState() == RecordingState.RUNNING) running.countDown();
      }
    }
    if (!running.await(30, TimeUnit.SECONDS)) throw new IllegalStateException("no JFR");
    Thread late = new Thread(EarlyStarts::read, "late");
    late.start(); // start late
    late.join();
    System.out.println("recording");
    System.out.flush();
    if (new BufferedReader(new InputStreamReader(System.in)).readLine() == null) return;
    Thread steady = new Thread(EarlyStarts::read, "steady");
    steady.start(); // start steady
    steady.join();
    System.out.println("done");
  }
}
"""


def _line(marker: str) -> int:
    return next(i for i, s in enumerate(PROGRAM.splitlines(), 1) if s.endswith(marker))


@pytest.fixture(scope="module")
def early_classes(tmp_path_factory: pytest.TempPathFactory, agent_jar: Path) -> Path:
    """EarlyStarts, compiled against the agent's API (its Willowisp class)."""
    src = tmp_path_factory.mktemp("java-early-src") / "EarlyStarts.java"
    src.write_text(PROGRAM)
    out = tmp_path_factory.mktemp("java-early")
    assert JAVAC is not None, "a JDK is needed for the Java agent tests"
    cmd = [JAVAC, "-g", "-cp", str(agent_jar), "-d", str(out), str(src)]
    subprocess.run(cmd, check=True, timeout=300)
    return out


def agent_extra(out: Path) -> dict:
    """The Java agent's own counters from its latest stats record ({} before the first)."""
    rows = wquery(out, "SELECT agent FROM processes") if any(out.glob("*.wtrace")) else []
    if not rows or rows[0][0] is None:
        return {}
    agent = rows[0][0]
    return dict((json.loads(agent) if isinstance(agent, str) else agent).get("extra") or {})


@pytest.mark.parametrize("jdk", ["17", "25"])
def test_threads_started_before_jfr_runs_get_their_units(
    agent_jar: Path, early_classes: Path, tmp_path: Path, jdk: str
) -> None:
    """full mode: threads main starts before JFR's recording runs get exactly one
    unit.create by main (at the start() line), one unit.start and one unit.end, parent main;
    so do a thread started as JFR starts and one started once JFR has flushed; analyze finds
    no race and no orphan. JDK 25 too, where the start hook runs twice per start."""
    java = JAVA if jdk == "17" else str(JDK25)
    assert java is not None and Path(java).exists(), f"JDK {jdk} is needed"
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WILLOWISP_", "JAVA_"))}
    env["WILLOWISP_JAVA_AGENT"] = str(agent_jar)
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--"]
        + [java, "-cp", str(early_classes), "EarlyStarts"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "recording"
        # the agent says when JFR's first flush came (its flusher writes within 100 ms)
        deadline = time.monotonic() + DEADLINE_S
        while "jfr_flushed_ns" not in agent_extra(out):
            assert time.monotonic() < deadline, f"no JFR flush within {DEADLINE_S} s"
        rest, err = proc.communicate("go\n", timeout=120)
    finally:
        if proc.poll() is None:  # stdin's end makes the program return
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(timeout=60)
    assert proc.returncode == 0, rest + err
    assert rest.strip().endswith("done"), rest
    # one row per (child, event kind) from the trace: who wrote it, where, about whom
    rows = wquery(
        out,
        "SELECT c.name, e.kind, w.name, e.line, e.time_ns, c.parent = m.id FROM events e "
        "JOIN units w ON w.id = e.unit "
        "JOIN units c ON c.process = e.process AND c.number = "
        "  (CASE WHEN e.kind = 'unit.create' THEN e.arg ELSE w.number END) "
        "JOIN units m ON m.process = c.process AND m.name = 'main' "
        "WHERE e.kind IN ('unit.create', 'unit.start', 'unit.end') "
        "AND c.name IN ('left', 'right', 'late', 'steady') ORDER BY e.time_ns",
    )
    by: dict[tuple[str, str], list[tuple]] = {}
    for name, kind, writer, line, t, parent_is_main in rows:
        by.setdefault((name, kind), []).append((writer, line, t, parent_is_main))
    for name in ("left", "right", "late", "steady"):
        for kind in ("unit.create", "unit.start", "unit.end"):
            assert len(by.get((name, kind), [])) == 1, (name, kind, rows)
        writer, line, _, parent_is_main = by[(name, "unit.create")][0]
        assert (writer, line, parent_is_main) == ("main", _line(f"// start {name}"), True), rows
        assert by[(name, "unit.start")][0][0] == name
        assert by[(name, "unit.end")][0][0] == name
    # left and right were started before JFR's recording could be running (the agent notes
    # when it started it), late once a recording was RUNNING, steady after JFR's first flush
    extra = agent_extra(out)
    create = {name: by[(name, "unit.create")][0][2] for name in ("left", "right", "late", "steady")}
    assert create["left"] < extra["jfr_start_ns"] and create["right"] < extra["jfr_start_ns"]
    assert extra["jfr_start_ns"] < create["late"] < create["steady"]
    assert extra["jfr_flushed_ns"] < create["steady"]
    assert 2 <= extra["early_threads"] <= 3, extra  # late: the hooks' or JFR's, not both
    # every join that saw its thread end: join.done by main naming that thread's unit
    joins = wquery(
        out,
        "SELECT j.name FROM events e JOIN units w ON w.id = e.unit "
        "JOIN units j ON j.process = e.process AND j.number = e.arg "
        "WHERE e.kind = 'join.done' AND w.name = 'main' ORDER BY e.time_ns",
    )
    assert [j for (j,) in joins] == ["left", "right", "late", "steady"], joins
    doc = analyze(out)
    kinds = [f["kind"] for f in doc["findings"]]
    # main reads `result` after joining left, which wrote it: the join orders them
    assert "race" not in kinds and "orphan-unit" not in kinds, kinds
    assert doc["trace"]["agent_faults"] == 0
