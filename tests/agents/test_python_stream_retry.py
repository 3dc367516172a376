"""The Python agent's native stream keeps trying a collector that is not there: after the
five doubling delays it goes on every RETRY_MAX seconds (``WILLOWISP_STREAM_RETRY_S`` caps
every delay), so a collector that starts late still gets the process's chunks, and what
was written to the fallback file meanwhile stays there: nothing is lost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from willowisp.wtrace.payload import rows_of
from willowisp.wtrace.reader import read_file
from wispkit import (
    AbsentCollector,
    clean_env,
    faults_in,
    start_collector,
    start_run,
    stop_collector,
)

# Records continuously (a lock taken every few ms, so the flusher has a chunk to write
# every flush) until a line arrives on stdin.
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


def chunks_in(folder: Path) -> dict[str, list[tuple[int, int]]]:
    """File name -> (first_seq, rows) of each chunk with events; a file still being written
    (or unreadable yet) counts what can be read of it."""
    out: dict[str, list[tuple[int, int]]] = {}
    for path in sorted(folder.glob("*.wtrace")):
        try:
            tf = read_file(path)
        except Exception:
            continue
        out[path.name] = [
            (c.events.first_seq, len(rows_of(c.events)))
            for c in tf.chunks
            if c.events is not None and len(c.events)
        ]
    return out


def sink_of(run: Path) -> dict:
    """The running program's `sink` from `willowisp ctl RUN status --format json`."""
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "ctl", str(run), "status", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [proc] = json.loads(done.stdout)["processes"]
    return dict(proc["result"]["sink"])


def test_reconnects_past_the_doubling_delays_to_a_late_collector(tmp_path: Path) -> None:
    script = tmp_path / "spin.py"
    script.write_text(SPIN)
    out, collected = tmp_path / "run", tmp_path / "collected"
    absent = AbsentCollector()
    collector = None
    prog = start_run(
        out,
        sys.executable,
        str(script),
        env=clean_env(
            WILLOWISP_SERVICE="spin",
            WILLOWISP_COLLECTOR=absent.address,
            WILLOWISP_STREAM_RETRY_S="0.2",
        ),
        stdin=True,
    )
    try:
        # 1 attempt at start + 5 retries was all the old schedule ever made
        assert absent.wait_attempts(7, timeout=12) >= 7
        # `ctl status` says where the chunks go: the fallback file, the collector retried
        sink = sink_of(out)
        assert (sink["kind"], sink["state"], sink["collector"]) == (
            "stream", "file", absent.address,
        )  # fmt: skip
        assert sink["file"] and sink["retries"] >= 5
        absent.close()
        collector, _ = start_collector(collected, absent.port)
        deadline = time.monotonic() + 10
        while not any(chunks_in(collected).values()):
            assert time.monotonic() < deadline, "the collector got no chunk within 10 s"
            time.sleep(0.05)
        assert sink_of(out)["state"] == "streaming"
        assert prog.stdin is not None
        prog.stdin.write("stop\n")
        prog.stdin.close()
        assert prog.wait(timeout=30) == 0
    finally:
        absent.close()
        if prog.poll() is None:
            prog.kill()
            prog.wait(timeout=30)
        if prog.stdout is not None:
            prog.stdout.close()
        if collector is not None:
            stop_collector(collector)

    streamed, fallback = chunks_in(collected), chunks_in(out)
    [(streamed_name, streamed_chunks)] = streamed.items()
    [(fallback_name, fallback_chunks)] = fallback.items()
    # the same process (service-pid-process id), its own segment in both places
    assert streamed_name == fallback_name, (streamed_name, fallback_name)
    assert streamed_chunks and fallback_chunks
    [fault] = faults_in(out)  # one fallback; the failed retries add no fault
    assert absent.address in fault
    # nothing lost: together the two files hold every event, in one unbroken sequence
    chunks = sorted(set(streamed_chunks) | set(fallback_chunks))
    expected = 1
    for first, n in chunks:
        assert first == expected, f"chunk at seq {first} follows a gap at {expected}"
        expected = first + n
    assert max(f for f, _ in fallback_chunks) < min(f for f, _ in streamed_chunks)
