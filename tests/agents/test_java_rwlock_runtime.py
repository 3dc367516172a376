"""Two things the Java agent must not overstate: a read-write lock's nested holds by one
thread are one hold (the format gives an ``rwlock`` no depth, so a second ``lock.acquired``
reads as a second holder and the what-if as a thread waiting on itself), and the JVM's own
threads are the runtime's units (the process record's ``runtime_units``), not the program's.
Real JVMs under ``willowisp run``, read back with ``willowisp query``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from test_java_agent import DEADLINE_S, agent_jar, classes, wquery

__all__ = ["agent_jar", "classes"]  # the fixtures, used by name

RWLOCK_EVENTS = (
    "SELECT u.name, e.kind, e.arg FROM events e JOIN units u ON u.id = e.unit "
    "JOIN resources r ON r.id = e.resource WHERE r.name = '{}' ORDER BY e.time_ns, e.seq"
)


def wisp_run(jar: Path, classes: Path, out: Path, main: str) -> subprocess.Popen[str]:
    """``willowisp run --out OUT -- java MAIN`` with the agent jar under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WILLOWISP_", "JAVA_"))}
    env["WILLOWISP_JAVA_AGENT"] = str(jar)
    return subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--"]
        + ["java", "-cp", str(classes), main],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_nested_read_write_lock_holds_are_one_hold(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """RwNested: main takes books' write lock twice nested, then its read lock twice nested,
    then a worker takes the write lock once. Each outer hold is one acquired / release pair
    (arg 0 write, 1 read), and a zero delay on books in the what-if changes nothing: no
    deadlock (main waiting on its own hold), +0 ns."""
    out = tmp_path / "run"
    proc = wisp_run(agent_jar, classes, out, "RwNested")
    stdout, stderr = proc.communicate(timeout=120)
    assert (proc.returncode, stdout.split()) == (0, ["balance", "5", "done", "6"]), stderr
    # the program's lock is the one the worker takes too (the JDK may use others in main)
    names = wquery(
        out,
        "SELECT DISTINCT r.name FROM events e JOIN units u ON u.id = e.unit "
        "JOIN resources r ON r.id = e.resource WHERE r.kind = 'rwlock' AND u.name = 'worker'",
    )
    assert len(names) == 1, names
    books = names[0][0]
    rows = wquery(out, RWLOCK_EVENTS.format(books))
    assert [(u, k, a) for u, k, a in rows] == [
        ("main", "lock.acquired", 0),
        ("main", "lock.release", 0),
        ("main", "lock.acquired", 1),
        ("main", "lock.release", 1),
        ("worker", "lock.acquired", 0),
        ("worker", "lock.release", 0),
    ], rows
    assert wquery(out, "SELECT count(*) FROM events WHERE kind = 'agent.fault'") == [(0,)]
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "replay", str(out)]
        + ["--delay", f"resource:{books}=0ms"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "deadlock: none" in done.stdout, done.stdout
    assert "(+0 ns)" in done.stdout, done.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "willowisp", "replay", str(out)]
        + ["--delay", f"resource:{books}=0ms", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert as_json.returncode == 0, as_json.stderr
    span = json.loads(as_json.stdout)["makespan_ns"]
    assert span["simulated"] == span["recorded"], span


def test_the_jvms_own_threads_are_runtime_units(
    agent_jar: Path, classes: Path, tmp_path: Path
) -> None:
    """RuntimeThreads, stopped by SIGTERM once its waiter waits: the JVM's SIGTERM handler
    (and Signal Dispatcher, Reference Handler, ... when they got a unit) are listed in the
    process record's runtime_units, main, the program's thread and its shutdown hook are
    not; the Chrome export marks the handler [runtime] and nothing of the program."""
    out = tmp_path / "run"
    proc = wisp_run(agent_jar, classes, out, "RuntimeThreads")
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()  # blocks until the waiter waits (or EOF)
        assert ready[:1] == ["ready"], ready
        os.kill(int(ready[1]), signal.SIGTERM)  # the JVM itself, not willowisp run
        rest, err = proc.communicate(timeout=DEADLINE_S * 4)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert rest.strip() == "bye", err  # the program's shutdown hook ran
    units = dict(wquery(out, "SELECT name, number FROM units"))
    listed = wquery(out, "SELECT attrs->>'runtime_units' FROM processes")
    assert len(listed) == 1 and listed[0][0], listed
    runtime = {int(n) for n in listed[0][0].split(",")}
    assert "SIGTERM handler" in units, units
    jvm = {"SIGTERM handler", "Signal Dispatcher", "Reference Handler", "Finalizer"}
    jvm |= {"Common-Cleaner", "Notification Thread", "Attach Listener", "DestroyJavaVM"}
    assert runtime == {n for name, n in units.items() if name in jvm}, (units, runtime)
    for program in ("main", "waiter", "cleanup"):
        assert units[program] not in runtime, (program, units, runtime)
    chrome = tmp_path / "trace.json"
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "export", str(out), "--to", "chrome"]
        + ["-o", str(chrome)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    marked = {
        e["args"]["name"]
        for e in json.loads(chrome.read_text())["traceEvents"]
        if e.get("ph") == "M" and "[runtime]" in str(e.get("args", {}).get("name", ""))
    }
    assert marked == {"thread SIGTERM handler [runtime]"} | {
        f"thread {name} [runtime]" for name in units if name in jvm - {"SIGTERM handler"}
    }, marked
