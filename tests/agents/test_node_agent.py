"""The Node agent (agents/node) end to end: real Node and Python processes on loopback,
recorded by their agents into one run folder and analyzed by ``willowisp analyze``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agents" / "node"
REGISTER = AGENT / "register.js"
PROGRAMS = Path(__file__).resolve().parent / "programs" / "node"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.fixture(scope="module", autouse=True)
def _dev_dependencies() -> None:
    """The agent's dev dependency (async-mutex, for the deadlock program), installed with
    npm from the lockfile when it is not there yet."""
    if not (AGENT / "node_modules" / "async-mutex").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install agents/node's dev dependencies"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=AGENT, check=True, timeout=300)


def node_env(out: Path, **extra: str) -> dict[str, str]:
    """The environment ``willowisp run`` gives a Node program (set here by hand until it
    sets NODE_OPTIONS itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    env["NODE_OPTIONS"] = f"--require {REGISTER}"
    env["WILLOWISP_OUT"] = str(out)
    env["NODE_PATH"] = str(AGENT / "node_modules")
    env.update(extra)
    return env


def wisp_run(out: Path, *cmd: str) -> subprocess.Popen[str]:
    """A Python program started by ``willowisp run`` (so recorded by the Python agent)."""
    return subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--", sys.executable, *cmd],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROGRAMS,
    )


def port_of(proc: subprocess.Popen[str]) -> int:
    """The port a program announces with its first line, ``PORT <n>``."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PORT "), f"expected 'PORT <n>', got {line!r}"
    return int(line.split()[1])


def analyze(out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(out), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_http_hop_python_node_python_is_linked_end_to_end(tmp_path: Path) -> None:
    """A Python client calls a Node relay that calls a Python leaf: both hops are linked by
    traceparent, one trace id runs through all three processes, and the trace holds units
    of both runtimes."""
    out = tmp_path / "run"
    leaf = wisp_run(out, "hop_leaf.py")
    relay = subprocess.Popen(
        [NODE, str(PROGRAMS / "hop_relay.js"), str(port_of(leaf))],
        stdout=subprocess.PIPE,
        text=True,
        env=node_env(out, WILLOWISP_SERVICE="relay"),
    )
    client = wisp_run(out, "hop_client.py", str(port_of(relay)))
    assert client.wait(timeout=60) == 0
    assert relay.wait(timeout=60) == 0
    assert leaf.wait(timeout=60) == 0
    for p in (leaf, relay, client):
        assert p.stdout is not None
        p.stdout.close()

    doc = analyze(out)
    assert doc["trace"]["processes"] == 3
    assert set(doc["trace"]["runtimes"]) == {"python", "nodejs"}
    assert doc["trace"]["agent_faults"] == 0
    pairs = {(h["from"]["runtime"], h["to"]["runtime"]): h for h in doc["hops"]}
    for pair in (("python", "nodejs"), ("nodejs", "python")):
        hop = pairs[pair]
        assert hop["protocol"] == "http"
        assert hop["count"] == 1
        assert hop["linked"] == 1
        assert hop["provenance"] == {"traceparent": 1}
    node = next(p for p in doc["processes"] if p["runtime"] == "nodejs")
    assert node["service"] == "relay"
    assert node["agent"]["events"] > 0
    # the three processes share one clock (same boot, same time namespace)
    assert len({p["clock_domain"] for p in doc["processes"]}) == 1


def test_async_mutex_deadlock_between_two_flows_is_found(tmp_path: Path) -> None:
    """Two requests' async flows each hold one async-mutex Mutex and wait for the other's:
    analyze reports a deadlock naming both locks and both flows."""
    out = tmp_path / "run"
    done = subprocess.run(
        [NODE, str(PROGRAMS / "mutex_deadlock.js")],
        env=node_env(out, WILLOWISP_SERVICE="bank"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "both flows blocked" in done.stdout
    doc = analyze(out)
    deadlocks = [f for f in doc["findings"] if f["kind"] == "deadlock"]
    assert len(deadlocks) == 1, [f["kind"] for f in doc["findings"]]
    found = deadlocks[0]
    assert sorted(r["name"] for r in found["resources"]) == ["accounts", "ledger"]
    assert {u["kind"] for u in found["units"]} == {"async-flow"}
    assert {u["runtime"] for u in found["units"]} == {"nodejs"}
    assert all("mutex_deadlock.js" in r["where"] for r in found["resources"])


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WILLOWISP_TRACE_RATIO", "lots"),
        ("WILLOWISP_MODE", "everything"),
        ("WILLOWISP_CLOCK_OFFSET_NS", "12ms"),
        ("WILLOWISP_BOUNDARIES", "entry=nonsense"),
        ("WILLOWISP_OUT", "/proc/willowisp-cannot-write-here"),
    ],
)
def test_a_bad_setting_never_breaks_the_program(tmp_path: Path, variable: str, value: str) -> None:
    """A garbage WILLOWISP_* value or an unwritable WILLOWISP_OUT: the program runs and
    exits 0 with its own output, and the agent says why in exactly one stderr line."""
    env = node_env(tmp_path / "run", **{variable: value})
    done = subprocess.run(
        [NODE, "-e", "setTimeout(() => console.log('still here', 6 * 7), 1)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout == "still here 42\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("willowisp: agent not started")
    assert (
        variable.removeprefix("WILLOWISP_") in lines[0] or "willowisp-cannot-write-here" in lines[0]
    )
