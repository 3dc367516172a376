"""Critical path across three real processes: front (Python) → HTTP → relay (Python) →
a Redis stream → sink (Python), a consumer that polls every 200 ms. The slowest order's
path starts in front, crosses relay and ends in sink, every interval of it classified; the
poll is found from sink's own waits and its share of the latency is called structural."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))
import brokers

from willowisp.analysis.critical_path import KINDS

PROGRAMS = Path(__file__).parent / "programs"
ORDERS = 6

pytestmark = pytest.mark.skipif(
    not os.path.exists(brokers.REDIS_SERVER) or not brokers.importable("redis"),
    reason="needs redis-server and redis-py for the recorded programs",
)


def record(folder: Path, env: dict[str, str] | None = None) -> Path:
    """One recorded run of the three services (front waits for each order to be booked
    before it sends the next, and stops its children before it exits)."""
    broker = brokers.start_redis(str(folder))
    try:
        out = folder / "run"
        r = subprocess.run(
            [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--service", "front"]
            + ["--", sys.executable, str(PROGRAMS / "relay_queue.py"), "front"]
            + [str(broker.port), str(ORDERS)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert "orders done" in r.stdout
    finally:
        brokers.stop(broker)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("relay"))


def _analyze(run: Path, fmt: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(run), "--format", fmt],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def doc(run: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(_analyze(run, "json"))
    return parsed


def test_the_slowest_order_crosses_all_three_processes(doc: dict[str, Any]) -> None:
    """The path runs from front's request to sink's booking, through relay; its segments
    tile the operation and each has a kind, a unit and a process."""
    section = doc["critical_paths"]
    assert section["operations"] == ORDERS
    p = section["paths"][0]
    procs = {x["id"]: x["service"] for x in doc["processes"]}
    assert p["services"] == ["front", "relay", "sink"]
    assert p["complete"]
    assert procs[p["root"].rsplit(":", 1)[0]] == "front"
    assert procs[p["end"].rsplit(":", 1)[0]] == "sink"
    segs = p["segments"]
    assert sum(s["duration_ns"] for s in segs) == p["duration_ns"]
    for a, b in itertools.pairwise(segs):
        assert a["end_ns"] == b["start_ns"]
    assert all(s["kind"] in KINDS and s["unit"]["id"] and s["process"] for s in segs)
    assert {s["service"] for s in segs} == {"relay", "sink"}
    request = segs[0]
    assert (request["kind"], request["edge"], request["service"]) == ("peer", "request", "relay")
    assert request["other_unit"]["service"] == "front"
    message = [s for s in segs if s["edge"] == "message"]
    assert {s["kind"] for s in message} <= {"structural", "queue"}
    assert all(s["service"] == "sink" and s["other_unit"]["service"] == "relay" for s in message)


def test_the_poll_is_structural_and_reported(doc: dict[str, Any]) -> None:
    """sink's timed waits make a 200 ms poll: the slowest order's wait for it is
    structural on its path, and one structural-delay finding names sink and the period."""
    slowest = doc["critical_paths"]["paths"][0]
    assert slowest["totals_ns"]["structural"] > slowest["duration_ns"] / 2
    (f,) = [f for f in doc["findings"] if f["kind"] == "structural-delay"]
    assert f["severity"] == "info" and f["pattern"] == "poll"
    assert [(u["service"], u["name"]) for u in f["units"]] == [("sink", "MainThread")]
    assert abs(f["period_ns"] - 200_000_000) < 20_000_000
    # front sends an order only once sink booked the previous one and went back to its
    # timer, so each order waits for a look (one sent while sink reads would not)
    assert 1 <= f["delayed"] <= ORDERS
    assert "sink's MainThread polls redis orders every" in f["summary"]
    assert {(r["kind"], r["name"]) for r in f["resources"]} == {
        ("event", "timer"),
        ("message", "redis orders"),
    }


def test_each_hop_has_its_seams(doc: dict[str, Any]) -> None:
    """The HTTP hop splits into marshal, transit, handler and reply; the stream's hop into
    transit and the poll's structural part."""
    hops = {(h["from"]["service"], h["to"]["service"], h["protocol"]): h for h in doc["hops"]}
    http = hops[("front", "relay", "http")]["seams"]
    assert http["measured"] == ORDERS
    assert all(http[f"{k}_ns"]["count"] == ORDERS for k in ("marshal", "handler", "reply"))
    stream = hops[("relay", "sink", "redis")]["seams"]
    assert stream["structural_ns"]["count"] == ORDERS and stream["reply_ns"] is None
    assert stream["structural_ns"]["p99"] > stream["transit_ns"]["p50"]


def test_the_text_report_shows_the_path(run: Path) -> None:
    """``analyze`` prints the slowest order's path with its processes in order."""
    text = _analyze(run, "text")
    assert f"critical path: slowest of {ORDERS} operations, trace " in text
    assert "front → relay → sink" in text
    assert "  structural  " in text and "seams p50 (p99):" in text


def test_diff_of_a_slow_run_names_the_segment_that_grew(
    run: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same chain with sink's booking 300 ms slower (longer than the poll period, so the
    poll's phase cannot hide it): `diff` puts the orders first and names sink's running
    segment at the booking as what grew."""
    slow = record(tmp_path_factory.mktemp("relay-slow"), {**os.environ, "BOOK_DELAY_MS": "300"})
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "diff", str(run), str(slow), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    orders = next(o for o in doc["duration"]["operations"] if "POST /order" in o["key"])
    assert orders["delta_p50_ns"] >= 200_000_000
    grew = orders["segments"][0]
    assert grew["service"] == "sink" and grew["delta_ns"] >= 250_000_000
    assert grew["where"].startswith("relay_queue.py:")
