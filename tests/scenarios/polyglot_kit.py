"""What the cross-runtime scenario tests share: running an orchestrator under one
``willowisp run`` with nothing left behind, and analyzing its run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

RUN_TIMEOUT_S = 45


def gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def run_orchestrator(orchestrator: list[str], out: Path, *, drop: tuple[str, ...] = ()) -> str:
    """``willowisp run --out OUT -- ORCHESTRATOR...``: its stdout. The run gets the caller's
    environment without any WILLOWISP_* (and without ``drop``); every process of the run is
    gone afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    for name in drop:
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--", *orchestrator],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    left_behind = True
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
        left_behind = not gone(proc.pid)
    finally:
        if not gone(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, stderr
    assert not left_behind, "a process of the run outlived it"
    return stdout


def analyze(out: Path) -> dict[str, Any]:
    """``willowisp analyze OUT --format json``, with no unreadable file, fault or drop."""
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(out), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    trace = report["trace"]
    assert trace["unreadable_files"] == [] and trace["agent_faults"] == 0, trace
    assert trace["dropped_events"] == 0, trace
    return report
