"""What many tests do the same way: run the ``willowisp`` command as a user would, record a
program until it hangs (the trace itself is the signal), read the analysis JSON.

Imported as ``wispkit`` (``tests/`` is on ``sys.path`` for every test package under it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from willowisp.demo.watch import wait_until_blocked


def wisp(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m willowisp ARGS`` in a subprocess, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=None if env is None else dict(env),
        timeout=timeout,
        check=False,
    )


def analyze_json(*paths: Path | str, extra: Sequence[str] = ()) -> dict[str, Any]:
    """``willowisp analyze PATHS --format json``, parsed (exit 0 or 1 expected)."""
    done = wisp("analyze", *map(str, paths), "--format", "json", *extra)
    assert done.returncode in (0, 1), done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def record_until_blocked(
    program: Path,
    out: Path,
    resources: Sequence[str],
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    count: int = 1,
    timeout_s: float = 60,
) -> None:
    """``willowisp run`` the program in its own process group and SIGKILL the group once
    the trace shows ``count`` units blocked on each named resource — as a user kills a
    hung system. Nothing of it is left running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--"]
        + [sys.executable, str(program), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=None if env is None else {**os.environ, **env},
    )
    try:
        for name in resources:
            blocked = wait_until_blocked(str(out), name, count, timeout_s)
            assert blocked, f"nothing blocked on {name} within {timeout_s} s"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
