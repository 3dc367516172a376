"""What a user does, end to end: run a program under `willowisp run`, kill -9 it when it
hangs, then `willowisp analyze`. Real processes, real threads and event loops, real
sockets on 127.0.0.1; the only signal that a hang has formed is the trace itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from willowisp.hostsim import can_unshare_uts, faketime_library
from wispkit import record_until_blocked

PROGRAMS = Path(__file__).parent / "programs"


def wisp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def analyze_json(*paths: Path, extra: tuple[str, ...] = ()) -> tuple[int, dict, str]:
    r = wisp("analyze", *map(str, paths), "--format", "json", *extra)
    return r.returncode, json.loads(r.stdout), r.stderr


def test_thread_lock_order_deadlock_killed_with_sigkill(tmp_path):
    """Two threads, two locks, opposite order, kill -9: analyze names both threads, both
    locks, and where each lock was taken."""
    out = tmp_path / "run"
    record_until_blocked(PROGRAMS / "bank_threads.py", out, ["checking_lock", "savings_lock"])
    code, doc, err = analyze_json(out)
    assert code == 0, err
    assert doc["schema"] == "willowisp.findings/1"
    [dl] = [f for f in doc["findings"] if f["kind"] == "deadlock"]
    assert dl["severity"] == "error"
    assert sorted(u["name"] for u in dl["units"]) == ["to-checking", "to-savings"]
    assert {u["runtime"] for u in dl["units"]} == {"python"}
    assert {(r["kind"], r["name"], r["where"]) for r in dl["resources"]} == {
        ("lock", "checking_lock", "bank_threads.py:7"),
        ("lock", "savings_lock", "bank_threads.py:8"),
    }
    story = "\n".join(dl["explanation"])
    for where in (
        "bank_threads.py:13",
        "bank_threads.py:15",
        "bank_threads.py:20",
        "bank_threads.py:22",
    ):
        assert where in story, (where, story)
    assert len(dl["events"]) >= 4


def test_asyncio_lock_order_deadlock(tmp_path):
    """Two asyncio tasks deadlocked on two asyncio.Locks are reported as a deadlock of tasks."""
    out = tmp_path / "run"
    record_until_blocked(PROGRAMS / "inventory_tasks.py", out, ["shelf_lock", "ledger_lock"])
    code, doc, err = analyze_json(out)
    assert code == 0, err
    [dl] = [f for f in doc["findings"] if f["kind"] == "deadlock"]
    assert sorted(u["name"] for u in dl["units"]) == ["restock", "sell"]
    assert {u["kind"] for u in dl["units"]} == {"task"}
    assert {r["name"] for r in dl["resources"]} == {"shelf_lock", "ledger_lock"}


def test_healthy_program_has_no_findings_and_thousands_of_events(tmp_path):
    """Threads, queues, a condition and an asyncio fan-out/join: no deadlock or causality
    finding, and its thousands of events are all there."""
    out = tmp_path / "run"
    r = wisp("run", "--out", str(out), "--", sys.executable, str(PROGRAMS / "healthy_shop.py"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "300"
    code, doc, err = analyze_json(out, extra=("--fail-on", "deadlock,false-causality"))
    assert code == 0, err
    assert doc["trace"]["events"] > 9000
    assert doc["trace"]["dropped_events"] == 0 and doc["trace"]["agent_faults"] == 0
    kinds = {f["kind"] for f in doc["findings"]}
    assert not kinds & {
        "deadlock",
        "false-causality",
        "clock-skew",
        "agent-fault",
        "buffer-drop",
        "dropped-context",
        "broken-link",
        "orphan-unit",
    }
    assert doc["trace"]["units"] >= 300 + 5
    [proc] = doc["processes"]
    assert proc["agent"]["events"] > 9000 and proc["agent"]["dropped"] == 0
    assert proc["agent"]["cost_ns_per_event"] > 0  # measured by the agent itself


def test_corrupt_and_truncated_files_get_one_line_and_the_rest_is_analyzed(tmp_path):
    """A garbage file and a file cut in half: one clear line each on stderr, exit 2, and the
    good run is still analyzed and printed."""
    out = tmp_path / "run"
    record_until_blocked(PROGRAMS / "bank_threads.py", out, ["checking_lock", "savings_lock"])
    [seg] = list(out.glob("*.wtrace"))
    junk = tmp_path / "junk.wtrace"
    junk.write_bytes(b"this is not a trace at all\n" * 10)
    cut = tmp_path / "cut.wtrace"
    data = seg.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    code, doc, err = analyze_json(out, junk, cut)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert any("junk.wtrace" in ln and "not a .wtrace" in ln for ln in lines), err
    assert "Traceback" not in err
    assert len([ln for ln in lines if "junk.wtrace" in ln]) == 1
    assert any(f["kind"] == "deadlock" for f in doc["findings"])
    assert any(u["path"].endswith("junk.wtrace") for u in doc["trace"]["unreadable_files"])


needs_real_hosts = pytest.mark.skipif(
    not (can_unshare_uts() and faketime_library()),
    reason="needs root + unshare (UTS namespace) and libfaketime; scripts/test installs them",
)


@needs_real_hosts
def test_three_hosts_in_a_chain_recover_every_offset(tmp_path):
    """front -> middle (+150 ms) -> back (-250 ms), each middle/back on its own UTS namespace
    with libfaketime: both offsets are recovered within a few ms of the truth, each inside
    an honest interval, consistent along the chain."""
    out = tmp_path / "run"
    env = {**os.environ, "WILLOWISP_SERVICE": ""}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "willowisp",
            "run",
            "--out",
            str(out),
            "--",
            sys.executable,
            str(PROGRAMS / "chain.py"),
            "150000000",
            "-250000000",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "chain done" in r.stdout
    code, doc, err = analyze_json(out)
    assert code == 0, err
    hosts = {p["id"]: p["host"] for p in doc["processes"]}
    by_host = {hosts[c["processes"][0]]: c for c in doc["clocks"]}
    truth = {"middle-host": -150_000_000, "back-host": 250_000_000}
    for host, want in truth.items():
        c = by_host[host]
        assert not c["simulated"]
        assert abs(c["offset_ns"] - want) < 3_000_000, (host, c)
        assert c["offset_min_ns"] <= want <= c["offset_max_ns"], (host, c)
        assert 0 < c["uncertainty_ns"] < 5_000_000
    hops = {
        (h["from"]["service"], h["to"]["service"]): h
        for h in doc["hops"]
        if h["protocol"] == "http"
    }
    assert hops[("chain", "chain_hop")]["linked"] >= 20
