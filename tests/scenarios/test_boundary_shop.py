"""The README's always-on tour: a shop in hops mode with a boundary, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.scenarios.test_end_to_end import PROGRAMS, analyze_json, wisp

SHOP = str(PROGRAMS / "shop_boundary.py")


def test_hops_mode_with_a_boundary_records_the_checkouts_in_both_services(tmp_path):
    out = tmp_path / "shop-run"
    r = wisp(
        "run",
        "--mode",
        "hops",
        "--trace-ratio",
        "0",
        "--boundary",
        "entry=http:POST /checkout",
        "--out",
        str(out),
        "--",
        sys.executable,
        SHOP,
        "6",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("6 rounds")
    code, doc, err = analyze_json(out)
    assert code == 0, err
    assert doc["findings"] == []
    (b,) = doc["trace"]["boundaries"]
    assert (b["entry"], b["source"], b["instances"]) == ("http:POST /checkout", "recorded", 6)
    costs = {
        p["service"]: p["agent"]["by_boundary"]["http:POST /checkout"] for p in doc["processes"]
    }
    assert costs["shop_boundary"]["entries"] == 6
    assert costs["stock"]["propagated"] == 6  # reached through tracestate wisp=b-<id>
    hops = {(h["from"]["service"], h["to"]["service"], h["protocol"]): h for h in doc["hops"]}
    assert hops[("shop_boundary", "stock", "http")]["linked"] == 6
    assert hops[(None, "shop_boundary", "http")]["unlinked"] == {"caller-not-sampled": 6}


def test_ctl_switches_a_boundary_on_in_a_running_service(tmp_path):
    """Started in hops mode without boundaries; `ctl RUN enable` reaches both processes,
    after which checkouts are recorded at full fidelity; SIGTERM ends it cleanly."""
    out = tmp_path / "live-run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--mode", "hops", "--out", str(out), "--"]
        + [sys.executable, SHOP, "--forever"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("shop on ")  # the signal: both serve
        r = wisp("ctl", str(out), "enable", "entry=http:POST /checkout;runtimes=python")
        assert r.returncode == 0, r.stderr
        assert "reached 2 of 2 processes" in r.stderr
        # wait on the agents' own counters: the next checkouts open instances in both
        for _ in range(600):
            r = wisp("ctl", str(out), "status", "--format", "json")
            status = json.loads(r.stdout)
            done = [
                b["entries"] + b["propagated"]
                for p in status["processes"]
                for b in p["result"]["boundaries"]
            ]
            if len(done) == 2 and min(done) >= 2:
                break
        else:
            raise AssertionError(f"no instances opened: {status}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.stdout is not None
        proc.stdout.close()
    code, doc, err = analyze_json(out)
    assert code == 0, err
    (b,) = doc["trace"]["boundaries"]
    assert b["instances"] >= 2 and b["events"] > 0
    assert Path(out).is_dir()
