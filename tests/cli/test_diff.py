"""`willowisp diff A B` on real runs: structural, duration and interleaving differences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parents[1] / "scenarios" / "programs"


def wisp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def record(out: Path, program: str, *args: str, env: dict[str, str] | None = None) -> Path:
    r = wisp(
        "run", "--out", str(out), "--", sys.executable, str(PROGRAMS / program), *args, env=env
    )
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def flips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("flip")
    return record(d / "a", "order_flip.py", "deposit"), record(d / "b", "order_flip.py", "withdraw")


def test_interleaving_flip_is_found_and_named(flips: tuple[Path, Path]) -> None:
    r = wisp("diff", str(flips[0]), str(flips[1]), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "willowisp.diff/1"
    (flip,) = doc["interleaving"]
    assert flip["resource"]["name"] == "account_lock"
    assert (flip["first"], flip["second"]) == ("order_flip.py:21", "order_flip.py:24")
    assert flip["a"] == {"first_then_second": 3, "second_then_first": 0}
    assert flip["b"] == {"first_then_second": 0, "second_then_first": 3}
    assert doc["structural"] == {"operations": [], "hops": []}


def test_a_run_against_itself_has_no_difference(flips: tuple[Path, Path]) -> None:
    """No interleaving flipped and the same run-level figures (the program sends no
    request, so there is no operation to compare, and diff says that instead)."""
    r = wisp("diff", str(flips[0]), str(flips[0]))
    assert r.returncode == 0, r.stderr
    assert "the same makespan, lock waits and units" in r.stdout
    assert "no pair of code locations changed order" in r.stdout


def test_a_slower_service_shows_in_the_duration_diff(tmp_path: Path) -> None:
    fast = record(tmp_path / "fast", "shop_boundary.py", "4")
    slow = record(
        tmp_path / "slow", "shop_boundary.py", "5", env={**os.environ, "STOCK_DELAY_MS": "120"}
    )
    r = wisp("diff", str(fast), str(slow), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    ops = {o["key"]: o for o in doc["duration"]["operations"]}
    checkout = ops["shop_boundary → POST /checkout"]
    # 120 ms added to each checkout: a loaded machine's noise (tens of ms) cannot hide it
    assert checkout["b"]["p50_ns"] - checkout["a"]["p50_ns"] >= 60_000_000
    assert doc["duration"]["operations"][0]["key"] == "shop_boundary → POST /checkout"
    stock = next(p for p in checkout["by_place"] if p["where"] == "stock/thread")
    assert stock["delta_ns"] >= 60_000_000
    # the critical path names the segment that grew: stock, running under its shelf lock
    grew = checkout["segments"][0]
    assert (grew["service"], grew["kind"]) == ("stock", "running")
    assert grew["where"].startswith("shop_boundary.py:") and grew["delta_ns"] >= 60_000_000
    counts = {o["key"]: (o["a"], o["b"], o["change"]) for o in doc["structural"]["operations"]}
    assert counts["shop_boundary → POST /checkout"] == (4, 5, "count")
    text = wisp("diff", str(fast), str(slow)).stdout
    assert "shop_boundary → POST /checkout" in text and "stock running at shop_boundary.py:" in text


def test_an_unreadable_side_is_one_line_and_exit_2(
    tmp_path: Path, flips: tuple[Path, Path]
) -> None:
    bad = tmp_path / "bad.wtrace"
    bad.write_bytes(b"not a trace at all")
    r = wisp("diff", str(flips[0]), str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert str(bad) in r.stderr
    assert r.stdout == ""  # nothing on that side: no diff calling everything vanished


def test_a_mistyped_or_empty_side_prints_no_diff(tmp_path: Path, flips: tuple[Path, Path]) -> None:
    """A path that does not exist, or a folder with no trace in it: one line naming it,
    exit 2, and no diff (it would say every operation and hop vanished)."""
    (tmp_path / "empty").mkdir()
    for other in (tmp_path / "nope", tmp_path / "empty"):
        r = wisp("diff", str(flips[0]), str(other))
        assert r.returncode == 2, r.stderr
        assert r.stdout == "" and "vanished" not in r.stderr
        assert str(other) in r.stderr and "Traceback" not in r.stderr


PARENT = """
import socket, subprocess, sys
with socket.socket() as s:  # a free port, different in every run, like the demo's services
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
subprocess.run([sys.executable, sys.argv[1], str(port)], check=True)
"""


def test_children_are_matched_by_program_not_by_ports(tmp_path: Path) -> None:
    """Two runs starting the same child with a different random port (and from different
    folders): its operation is the same on both sides, no appeared/vanished pair."""
    runs = []
    for side in ("a", "b"):
        folder = tmp_path / f"prog-{side}"
        folder.mkdir()
        (folder / "parent.py").write_text(PARENT)
        (folder / "child.py").write_text("import sys\nprint(int(sys.argv[1]) > 0)\n")
        r = wisp(
            "run",
            "--out",
            str(tmp_path / side),
            "--",
            sys.executable,
            str(folder / "parent.py"),
            str(folder / "child.py"),
        )
        assert r.returncode == 0, r.stderr
        runs.append(str(tmp_path / side))
    r = wisp("diff", *runs, "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["structural"]["operations"] == [], doc["structural"]
    keys = [d["key"] for d in doc["duration"]["operations"]]
    assert any(k.endswith("child.py N") for k in keys), keys


HOLDER = """
import os, sys, threading, time
state_lock = threading.Lock()
ready = os.pipe()

def waiter() -> None:
    os.write(ready[1], b"x")  # about to take the lock main holds
    with state_lock:  # waits
        pass

with state_lock:
    t = threading.Thread(target=waiter, name="waiter")
    t.start()
    os.read(ready[0], 1)
    time.sleep(float(sys.argv[1]) / 1000)  # the work done under the lock: what changes
t.join()
"""


@pytest.fixture(scope="module")
def holds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same threads-only program (no request, so no trace context and no operation)
    holding its lock 5 ms, then 90 ms."""
    d = tmp_path_factory.mktemp("hold")
    (d / "holder.py").write_text(HOLDER)
    return record(d / "a", str(d / "holder.py"), "5"), record(d / "b", str(d / "holder.py"), "90")


def test_without_operations_the_runs_are_compared_as_a_whole(holds: tuple[Path, Path]) -> None:
    """No operation on either side: diff says so first, and still compares makespan, lock
    waits and units; it never calls the runs the same when the lock wait grew."""
    r = wisp("diff", str(holds[0]), str(holds[1]))
    assert r.returncode == 0, r.stderr
    assert "no operations to compare: these traces carry no trace context" in r.stdout
    assert "the same" not in r.stdout
    assert "lock state_lock" in r.stdout and "makespan" in r.stdout
    doc = json.loads(wisp("diff", str(holds[0]), str(holds[1]), "--format", "json").stdout)
    assert (doc["a"]["operations"], doc["b"]["operations"]) == (0, 0)
    run = doc["run"]
    assert run["same"] is False
    (lock,) = [d for d in run["locks"] if d["resource"]["name"] == "state_lock"]
    # 85 ms more under the lock: a loaded machine's noise (tens of ms) cannot hide it
    assert lock["delta_wait_ns"] >= 40_000_000
    assert run["makespan"]["a_ns"] > 0  # (start-up noise moves it by tens of ms)
    waiter = next(u for u in run["units"] if u["key"].endswith("thread waiter"))
    assert waiter["delta_blocked_ns"] >= 40_000_000


def test_without_operations_a_run_against_itself_is_the_same(holds: tuple[Path, Path]) -> None:
    """The run-level figures of one run against itself: all the same, said once."""
    r = wisp("diff", str(holds[1]), str(holds[1]))
    assert r.returncode == 0, r.stderr
    assert "no operations to compare" in r.stdout
    assert "the same makespan, lock waits and units" in r.stdout


FAN = """
import sys, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def part() -> None:
    time.sleep(0.04)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # three threads at once inside one request: one stretch of the request's time
        workers = [threading.Thread(target=part) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
for _ in range(3):
    urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/fan").read()
server.shutdown()
"""


def test_a_place_counts_overlapping_units_once(tmp_path: Path) -> None:
    """by_place: a request handled by a thread and three threads of its own working at once
    gives the service's threads the request's time once, never more than the request took."""
    (tmp_path / "fan.py").write_text(FAN)
    a = record(tmp_path / "a", str(tmp_path / "fan.py"))
    b = record(tmp_path / "b", str(tmp_path / "fan.py"))
    r = wisp("diff", str(a), str(b), "--format", "json")
    assert r.returncode == 0, r.stderr
    (op,) = [o for o in json.loads(r.stdout)["duration"]["operations"] if "/fan" in o["key"]]
    assert op["a"]["count"] == op["b"]["count"] == 3
    for place in op["by_place"]:
        # mean per operation against the longest operation (p90 of three is the longest)
        assert place["a_ns"] <= op["a"]["p90_ns"], place
        assert place["b_ns"] <= op["b"]["p90_ns"], place
    threads = next(p for p in op["by_place"] if p["where"] == "fan/thread")
    assert threads["a_ns"] >= 30_000_000  # the 40 ms the parts took is still there
