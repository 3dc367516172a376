"""Run small programs under the agent and read back what it wrote, for the agent's tests.

Programs run in a real subprocess with the same environment `willowisp run` gives them, so
the tests exercise the real bootstrap (sitecustomize), hooks, flusher and files.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any

from willowisp.cli.run import build_env
from willowisp.model.spec import KIND_BY_CODE
from willowisp.wtrace.payload import rows_of
from willowisp.wtrace.reader import read_file

# The interpreter the recorded programs run under: this one, or another CPython that
# scripts/test sets here to run the agent's tests on every interpreter installed.
PYTHON = os.environ.get("WILLOWISP_TEST_PYTHON") or sys.executable


@dataclass
class Ev:
    seq: int
    time: int
    kind: str
    unit: int
    res: int
    arg: int
    loc: int


@dataclass
class ProcessTrace:
    """Everything one process wrote, with later records of the same id winning."""

    process: dict[str, Any] = field(default_factory=dict)
    units: dict[int, dict[str, Any]] = field(default_factory=dict)
    resources: dict[int, dict[str, Any]] = field(default_factory=dict)
    locations: dict[int, dict[str, Any]] = field(default_factory=dict)
    faults: dict[int, dict[str, Any]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    events: list[Ev] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def resource(self, name: str) -> int:
        for rid, r in self.resources.items():
            if r.get("name") == name:
                return rid
        raise KeyError(
            f"no resource named {name!r}: {[r.get('name') for r in self.resources.values()]}"
        )

    def unit_named(self, name: str) -> int:
        for n, u in self.units.items():
            if u.get("name") == name:
                return n
        raise KeyError(f"no unit named {name!r}: {[u.get('name') for u in self.units.values()]}")

    def of_unit(self, unit: int, skip: tuple[str, ...] = ("gc.begin", "gc.end")) -> list[Ev]:
        return [e for e in self.events if e.unit == unit and e.kind not in skip]

    def where(self, ev: Ev) -> str:
        loc = self.locations.get(ev.loc, {})
        return f"{os.path.basename(str(loc.get('file', '?')))}:{loc.get('line', 0)}"

    def kinds(self, unit: int) -> list[str]:
        return [e.kind for e in self.of_unit(unit)]


def read_run(folder: str) -> dict[str, ProcessTrace]:
    """Every process in a run folder, keyed by service name (pid-suffixed if repeated)."""
    by_pid: dict[str, ProcessTrace] = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.wtrace"))):
        tf = read_file(path)
        key = os.path.basename(path).rsplit("-", 1)[0]
        pt = by_pid.setdefault(key, ProcessTrace())
        pt.problems += tf.problems + ([tf.truncated] if tf.truncated else [])
        for chunk in tf.chunks:
            for rec in chunk.records:
                attrs = dict(rec.attrs)
                table = {1: None, 2: pt.units, 3: pt.resources, 4: pt.locations, 5: pt.faults}
                if rec.rtype == 1:
                    pt.process = attrs
                elif rec.rtype == 6:
                    pt.stats = attrs
                elif rec.rtype in table and table[rec.rtype] is not None:
                    # a later record for the same id adds to it, attribute by attribute
                    table[rec.rtype].setdefault(rec.id, {}).update(attrs)  # type: ignore[union-attr]
            if chunk.events is not None:
                seq = chunk.events.first_seq
                for i, (k, u, t, r, a, lo) in enumerate(rows_of(chunk.events)):
                    kind = KIND_BY_CODE[k].name if k in KIND_BY_CODE else str(k)
                    pt.events.append(Ev(seq + i, t, kind, u, r, a, lo))
    out: dict[str, ProcessTrace] = {}
    for pt in by_pid.values():
        pt.events.sort(key=lambda e: (e.time, e.seq))
        name = str(pt.process.get("service", "?"))
        if name in out:
            name = f"{name}-{pt.process.get('pid')}"
        out[name] = pt
    return out


def run_program(
    code: str,
    out: str,
    *,
    python: str = PYTHON,
    timeout: float = 60,
    env_extra: dict[str, str] | None = None,
    args: list[str] | None = None,
    name: str = "prog",
) -> subprocess.CompletedProcess[str]:
    """Write ``code`` to ``out/../name.py`` and run it under the agent to completion."""
    script = os.path.join(os.path.dirname(out.rstrip("/")) or ".", f"{name}.py")
    with open(script, "w") as f:
        f.write(textwrap.dedent(code))
    env = build_env(out, "full", 1.0, [], None)
    env.update(env_extra or {})
    return subprocess.run(
        [python, script, *(args or [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_program(
    code: str,
    out: str,
    *,
    python: str = PYTHON,
    name: str = "prog",
    env_extra: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start ``code`` under the agent in its own process group (kill it with kill_group)."""
    script = os.path.join(os.path.dirname(out.rstrip("/")) or ".", f"{name}.py")
    with open(script, "w") as f:
        f.write(textwrap.dedent(code))
    env = build_env(out, "full", 1.0, [], None)
    env.update(env_extra or {})
    return subprocess.Popen(
        [python, script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` (reading the trace files) until true; the trace is the signal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (KeyError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
