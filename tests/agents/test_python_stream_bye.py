"""A planned collector restart is not an agent fault: the collector stopped by SIGTERM says
``bye`` to the Python agent, which falls back to its own file with every unacknowledged
chunk (nothing lost) and reconnects once the collector is back. ``validate --ci-mode`` over
both folders passes; a broken connection stays a fault (``tests/cli/test_collect.py``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from willowisp.wtrace.payload import rows_of
from willowisp.wtrace.reader import read_file
from wispkit import clean_env, collected_events, faults_in, start_collector, start_run, wisp

DEADLINE_S = 20

# Records continuously (a lock every few ms, so every flush has a chunk) until stdin says stop.
SPIN = textwrap.dedent(
    """
    import sys, threading
    lock = threading.Lock()
    stop = threading.Event()
    def spin():
        while not stop.is_set():
            with lock:
                pass
            stop.wait(0.005)
    t = threading.Thread(target=spin, name="spinner")
    t.start()
    sys.stdin.readline()
    stop.set()
    t.join()
    """
)


def wait_for(what: str, ok: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not ok():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_S} s"
        time.sleep(0.05)  # polling a condition with a deadline


def event_chunks(*folders: Path) -> list[tuple[int, int]]:
    """(first_seq, rows) of every chunk with events, each distinct chunk once."""
    return sorted(
        {
            (c.events.first_seq, len(rows_of(c.events)))
            for folder in folders
            for path in folder.glob("*.wtrace")
            for c in read_file(path).chunks
            if c.events is not None and len(c.events)
        }
    )


def stop(proc: subprocess.Popen[str]) -> int:
    proc.terminate()
    code = proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()
    return code


def test_collector_restart_is_not_a_fault(tmp_path: Path) -> None:
    script = tmp_path / "spin.py"
    script.write_text(SPIN)
    out, collected = tmp_path / "run", tmp_path / "collected"
    collector, address = start_collector(collected)
    env = clean_env(
        WILLOWISP_SERVICE="spin", WILLOWISP_COLLECTOR=address, WILLOWISP_STREAM_RETRY_S="0.2"
    )
    prog = start_run(out, sys.executable, str(script), env=env, stdin=True)
    try:
        wait_for("chunks at the collector", lambda: collected_events(collected) > 0)
        assert stop(collector) == 0  # SIGTERM: it says bye to the agent
        wait_for("the agent's fallback file", lambda: collected_events(out) > 0)
        collector, _ = start_collector(collected, int(address.rsplit(":", 1)[1]))
        wait_for("the agent back", lambda: len(list(collected.glob("*.wtrace"))) == 2)
        assert prog.stdin is not None
        prog.stdin.write("stop\n")
        prog.stdin.close()
        assert prog.wait(timeout=60) == 0
    finally:
        if prog.poll() is None:
            prog.kill()
            prog.wait(timeout=30)
        if prog.stdout is not None:
            prog.stdout.close()
        stop(collector)

    # the CI gate a planned restart must pass, then why: no fault record anywhere
    done = wisp("validate", "--ci-mode", str(collected), str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agent-fault" not in done.stdout
    assert faults_in(out) == [] and faults_in(collected) == []
    # nothing lost: the three segments hold one unbroken sequence of events
    expected = 1
    for first, n in event_chunks(collected, out):
        assert first <= expected, f"chunk at seq {first} follows a gap at {expected}"
        expected = max(expected, first + n)
