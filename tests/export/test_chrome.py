"""`willowisp export --to chrome`: Chrome trace-event JSON that Perfetto and chrome://tracing open.

Checked on a golden cross-process deadlock (built as an agent would have written it) and on
a real recorded run: small integer pids and tids, one thread name per unit, non-negative
times, one flow pair per cross-unit happens-before edge, findings as global instants.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.golden.test_golden import build_run

from willowisp.analysis.engine import Analysis, analyze_paths
from willowisp.analysis.naming import track_label
from willowisp.analysis.stuck import runtime_units_of
from willowisp.cli.main import main
from willowisp.export.chrome import chrome_trace, cut

GOLDEN = Path(__file__).parents[1] / "golden"
PROGRAMS = Path(__file__).parents[1] / "scenarios" / "programs"


def export(paths: list[Path], out: Path, *extra: str) -> int:
    return main(["export", *map(str, paths), "--to", "chrome", "-o", str(out), *extra])


def check(doc: dict[str, Any], a: Analysis) -> None:
    """The invariants every export keeps."""
    assert doc["displayTimeUnit"] == "ns"
    events = doc["traceEvents"]
    trace = a.trace
    for e in events:
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert 0 <= e["pid"] <= len(trace.processes)
        assert 0 <= e["tid"] <= len(trace.units)
        if e["ph"] != "M":
            assert e["ts"] >= 0
        if e["ph"] == "X":
            assert e["dur"] >= 0
    names = [e for e in events if e["ph"] == "M" and e["name"] == "process_name"]
    assert sorted(e["pid"] for e in names) == list(range(1, len(trace.processes) + 1))
    threads = [e for e in events if e["ph"] == "M" and e["name"] == "thread_name" and e["tid"]]
    assert len(threads) == len(trace.units)
    assert len({(e["pid"], e["tid"]) for e in threads}) == len(trace.units)
    own = runtime_units_of(trace)
    for e, u in zip(threads, trace.units, strict=True):
        assert e["args"]["name"] == cut(track_label(trace, u.index, u.index in own))
    # Flows: one (flow_out, flow_in) pair per cross-unit happens-before edge.
    g = a.causality.graph
    unit = trace.events.unit
    cross = int((unit[g.src] != unit[g.dst]).sum())
    assert cross == len(g)
    outs = Counter(e["bind_id"] for e in events if e.get("flow_out"))
    ins = Counter(e["bind_id"] for e in events if e.get("flow_in"))
    assert len(outs) == len(ins) == cross
    assert set(outs) == set(ins)
    assert set(outs.values()) <= {1} and set(ins.values()) <= {1}
    by_bind: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if "bind_id" in e:
            assert e["ph"] == "X"
            by_bind.setdefault(e["bind_id"], []).append(e)
    for pair in by_bind.values():
        src = next(e for e in pair if e.get("flow_out"))
        dst = next(e for e in pair if e.get("flow_in"))
        assert (src["pid"], src["tid"]) != (dst["pid"], dst["tid"]) or src["tid"] == 0
    # Findings: global instants named by kind, with summary and explanation.
    found = [e for e in events if e["ph"] == "i" and e.get("s") == "g"]
    assert sorted(e["name"] for e in found) == sorted(f.kind for f in a.findings)
    for e, f in zip(found, a.findings, strict=True):
        assert e["args"]["summary"] == cut(f.summary)
        assert e["args"]["explanation"] == [cut(x) for x in f.explanation]
    assert min(e["ts"] for e in events if e["ph"] in ("X", "i")) == 0


def test_golden_deadlock_across_processes(tmp_path: Path) -> None:
    run = build_run(GOLDEN / "http_callback", tmp_path / "run")
    out = tmp_path / "out.json"
    assert export([run], out) == 0
    doc = json.loads(out.read_text())
    a = analyze_paths([run])
    check(doc, a)
    assert doc == json.loads(json.dumps(chrome_trace(a)))
    events = doc["traceEvents"]
    procs = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert procs == {"orders (pid 4242, orders-host)", "stock (pid 977, stock-host)"}
    waits = {e["name"] for e in events if e.get("cat") == "wait"}
    assert {"lock state_lock", "rpc POST /reserve", "rpc POST /confirm"} <= waits
    assert "hold lock state_lock" in {e["name"] for e in events if e.get("cat") == "hold"}
    assert "deadlock" in {e["name"] for e in events if e.get("s") == "g"}
    # Clock-aligned: stock's clock is 300 ms ahead, yet its receive follows orders' send.
    send = next(e for e in events if e["name"] == "msg.send rpc POST /reserve")
    recv = next(e for e in events if e["name"] == "msg.recv rpc POST /reserve")
    assert send["bind_id"] == recv["bind_id"]
    assert 0 < recv["ts"] - send["ts"] < 1000


def test_golden_lock_order_killed(tmp_path: Path) -> None:
    run = build_run(GOLDEN / "lock_order_killed", tmp_path / "run")
    out = tmp_path / "out.json"
    assert export([run], out) == 0
    check(json.loads(out.read_text()), analyze_paths([run]))


def test_real_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "run", "--out", str(run), "--"]
        + [sys.executable, str(PROGRAMS / "healthy_shop.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "shop.json"
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "export", str(run), "--to", "chrome", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    a = analyze_paths([run])
    check(doc, a)
    assert len(a.causality.graph) > 10
    kinds = {e["cat"] for e in doc["traceEvents"] if "bind_id" in e}
    assert {"hb.lock", "hb.queue", "hb.spawn"} <= kinds


def test_bad_input_is_named_and_the_rest_exported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = build_run(GOLDEN / "http_callback", tmp_path / "run")
    bad = tmp_path / "bad.wtrace"
    bad.write_bytes(b"not a trace")
    out = tmp_path / "out.json"
    assert export([run, bad], out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.wtrace" in err[0]
    doc = json.loads(out.read_text())
    assert any(e["name"] == "deadlock" for e in doc["traceEvents"])
    assert not list(tmp_path.glob(".out.json.*"))


def test_long_strings_are_cut() -> None:
    assert cut("x" * 5000) == "x" * 999 + "…"
    assert cut("short") == "short"
