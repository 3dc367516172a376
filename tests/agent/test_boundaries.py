"""Declared boundaries in the agent: full fidelity inside, hops only outside (hops mode),
carried to the next process in tracestate, and their cost counted."""

from __future__ import annotations

import json

import pytest
from tests.agent.tracekit import read_run, run_program

from willowisp.analysis import analyze_paths

# A server with two handlers that both take the same lock; the client calls each 3 times.
# /checkout also calls a second server (the "stock" service), which takes its own lock.
SERVER_PROGRAM = """
import http.server, json, os, sys, threading, urllib.request

lock = threading.Lock()
stock_lock = threading.Lock()

class Stock(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with stock_lock:
            pass
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a):
        pass

stock = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stock)
threading.Thread(target=stock.serve_forever, daemon=True).start()

class Shop(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        with lock:
            pass
        urllib.request.urlopen(f"http://127.0.0.1:{stock.server_address[1]}/reserve").read()
        self._reply()
    def do_GET(self):
        with lock:
            pass
        self._reply()
    def _reply(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Shop)
threading.Thread(target=srv.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{srv.server_address[1]}"
for _ in range(3):
    urllib.request.urlopen(urllib.request.Request(base + "/checkout", data=b"x")).read()
    urllib.request.urlopen(base + "/browse").read()
srv.shutdown(); stock.shutdown()
"""

BOUNDARY = "entry=http:POST /checkout;runtimes=python"


def _lock_events(p, name):
    rid = p.resource(name)
    return [e for e in p.events if e.res == rid and e.kind == "lock.acquired"]


@pytest.mark.parametrize("pure", ["0", "1"])
def test_hops_mode_records_the_boundary_at_full_fidelity_only(tmp_path, pure):
    """In hops mode with a boundary, the lock is recorded inside POST /checkout (3 times) and
    not in GET /browse; the downstream hop, reached through the wisp tracestate member, is
    recorded at full fidelity too."""
    out = str(tmp_path / "run")
    r = run_program(
        SERVER_PROGRAM,
        out,
        env_extra={
            "WILLOWISP_MODE": "hops",
            "WILLOWISP_TRACE_RATIO": "0",
            "WILLOWISP_BOUNDARIES": BOUNDARY,
            "WILLOWISP_PURE_PYTHON": pure,
        },
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    assert not p.faults, p.faults
    assert len(_lock_events(p, "lock")) == 3
    # the stock handler runs in the same process but is entered through the propagated member
    assert len(_lock_events(p, "stock_lock")) == 3
    servers = [res for res in p.resources.values() if res.get("library") == "http.server"]
    assert sorted(res["name"] for res in servers) == ["GET /reserve"] * 3 + ["POST /checkout"] * 3
    stats = json.loads(p.stats["by_boundary"])
    entry = stats["http:POST /checkout"]
    assert (entry["entries"], entry["propagated"]) == (3, 3)
    # analysis: the unsampled callers are named as such, not as a broken link
    doc = analyze_paths([out]).document()
    unlinked = [h["unlinked"] for h in doc["hops"] if h["unlinked"]]
    assert unlinked == [{"caller-not-sampled": 3}]
    assert [f["kind"] for f in doc["findings"]] == []
    (b,) = doc["trace"]["boundaries"]
    assert (b["source"], b["instances"]) == ("recorded", 3)
    assert entry["events"] > 0
    assert entry["cost_ns"] >= entry["hook_ns"] > 0


def test_full_mode_records_everything_and_counts_the_boundary(tmp_path):
    out = str(tmp_path / "run")
    r = run_program(SERVER_PROGRAM, out, env_extra={"WILLOWISP_BOUNDARIES": BOUNDARY})
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    assert len(_lock_events(p, "lock")) == 6
    assert json.loads(p.stats["by_boundary"])["http:POST /checkout"]["entries"] == 3


def test_hops_mode_without_boundaries_records_no_locks(tmp_path):
    out = str(tmp_path / "run")
    r = run_program(SERVER_PROGRAM, out, env_extra={"WILLOWISP_MODE": "hops"})
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    assert not [res for res in p.resources.values() if res["kind"] == "lock"]
    assert "by_boundary" not in p.stats


def test_a_bad_boundary_in_the_environment_is_a_fault_not_a_crash(tmp_path):
    out = str(tmp_path / "run")
    r = run_program(
        "print('still running')",
        out,
        env_extra={"WILLOWISP_BOUNDARIES": "entry=nope", "WILLOWISP_MODE": "hops"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "still running"
    p = read_run(out)["prog"]
    assert any("entry=PROTOCOL:WHAT" in f["message"] for f in p.faults.values())
