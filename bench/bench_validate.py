"""Benchmark: ``willowisp validate --ci-mode`` over 50,000 spans (not a test). Target: ≤ 5 s.

Writes an OTLP JSON export shaped like a shop's traffic: 5,000 traces of 10 spans over four
services (gateway, orders, stock, ledger), each trace entering at ``POST /checkout``,
crossing HTTP twice and a Kafka topic once, with internal spans between; a handful of
traces have a consumer that lost its context, so the validator has problems to name. Then
times, each as the whole command in a child process:

- ``willowisp validate --ci-mode big.json --junit ... --sarif ...`` — the target;
- baseline, measured in the same run: loading the same input (``willowisp.ingest.load``)
  and nothing else, in a child process — what any command pays before it can check a span.

    python bench/bench_validate.py [--spans N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_S = 5.0
SERVICES = ("gateway", "orders", "stock", "ledger")
BROKEN_EVERY = 997  # one trace in ~1,000 loses its context on the Kafka hop


def _attrs(**kv: Any) -> list[dict[str, Any]]:
    out = []
    for k, v in kv.items():
        key = k.replace("__", ".")
        value = {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}
        out.append({"key": key, "value": value})
    return out


def generate(path: Path, spans: int) -> int:
    """Write the export; returns how many traces it holds."""
    rnd = random.Random(7)
    t0 = 1_700_000_000_000_000_000
    per_service: dict[str, list[dict[str, Any]]] = {s: [] for s in SERVICES}
    traces = max(spans // 10, 1)

    def span(
        service: str,
        tid: str,
        parent: str,
        name: str,
        kind: int,
        start: int,
        dur: int,
        **attrs: Any,
    ) -> str:
        sid = f"{rnd.getrandbits(64):016x}"
        s: dict[str, Any] = {
            "traceId": tid,
            "spanId": sid,
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + dur),
            "attributes": _attrs(**attrs),
        }
        if parent:
            s["parentSpanId"] = parent
        per_service[service].append(s)
        return sid

    for t in range(traces):
        tid = f"{rnd.getrandbits(128):032x}"
        at = t0 + t * 2_000_000
        entry = span(
            "gateway",
            tid,
            f"{rnd.getrandbits(64):016x}",
            "POST /checkout",
            2,
            at,
            900_000,
            http__request__method="POST",
            url__path="/checkout",
        )
        call = span(
            "gateway",
            tid,
            entry,
            "POST /orders",
            3,
            at + 10_000,
            800_000,
            http__request__method="POST",
            url__path="/orders",
            server__address="orders",
            server__port=8080,
        )
        served = span(
            "orders",
            tid,
            call,
            "POST /orders",
            2,
            at + 20_000,
            700_000,
            http__request__method="POST",
            url__path="/orders",
        )
        span("orders", tid, served, "validate cart", 1, at + 30_000, 50_000)
        reserve = span(
            "orders",
            tid,
            served,
            "GET /reserve",
            3,
            at + 100_000,
            300_000,
            http__request__method="GET",
            url__path="/reserve",
            server__address="stock",
            server__port=8081,
        )
        got = span(
            "stock",
            tid,
            reserve,
            "GET /reserve",
            2,
            at + 110_000,
            250_000,
            http__request__method="GET",
            url__path="/reserve",
        )
        span("stock", tid, got, "SELECT stock", 1, at + 120_000, 100_000)
        sent = span(
            "orders",
            tid,
            served,
            "orders publish",
            4,
            at + 500_000,
            20_000,
            messaging__system="kafka",
            messaging__destination__name="orders",
            messaging__operation__type="publish",
        )
        broken = t % BROKEN_EVERY == BROKEN_EVERY - 1
        consumed = span(
            "ledger",
            f"{rnd.getrandbits(128):032x}" if broken else tid,
            "" if broken else sent,
            "orders process",
            5,
            at + 600_000,
            200_000,
            messaging__system="kafka",
            messaging__destination__name="orders",
            messaging__operation__type="process",
        )
        span("ledger", tid, consumed, "INSERT ledger", 1, at + 610_000, 100_000)
    doc = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": _attrs(
                        service__name=name,
                        telemetry__sdk__language="python",
                        host__name=f"{name}-host",
                        process__pid=1000 + i,
                    )
                },
                "scopeSpans": [{"scope": {"name": "bench"}, "spans": spans_}],
            }
            for i, (name, spans_) in enumerate(per_service.items())
        ]
    }
    path.write_text(json.dumps(doc))
    return traces


def _timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds, CPU seconds (user + system of the child) and the result. Both are
    printed: on a shared machine the wall time also counts waiting for a core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=50_000)
    ap.add_argument("--keep", metavar="DIR", help="keep the input and reports here")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="wisp-bench-validate-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = work / "spans.json"
        traces = generate(src, args.spans)
        print(f"input: {args.spans} spans in {traces} traces, {src.stat().st_size / 1e6:.1f} MB")
        load_s, load_cpu, r = _timed(
            [
                sys.executable,
                "-c",
                "import sys; from willowisp.ingest.load import load; "
                "t = load([sys.argv[1]]); print(len(t.events))",
                str(src),
            ]
        )
        if r.returncode != 0:
            sys.exit(r.stderr)
        cmd = [
            sys.executable,
            "-m",
            "willowisp",
            "validate",
            "--ci-mode",
            str(src),
            "--junit",
            str(work / "junit.xml"),
            "--sarif",
            str(work / "sarif.json"),
        ]
        run_s, run_cpu, r = _timed(cmd)
        if r.returncode not in (0, 1):
            sys.exit(r.stderr)
        problems = [line for line in r.stdout.splitlines() if line.strip()]
        print(f"baseline: load only             wall {load_s:6.2f} s  cpu {load_cpu:6.2f} s")
        print(
            f"validate --ci-mode (+ reports)  wall {run_s:6.2f} s  cpu {run_cpu:6.2f} s  "
            f"({run_cpu / load_cpu:.2f}x the load's cpu; target {TARGET_S:.0f} s: "
            f"{'met' if run_s <= TARGET_S else 'missed'} on wall time)"
        )
        print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(
            f"exit {r.returncode}, {len(problems)} problem line(s); first: "
            f"{problems[0] if problems else '-'}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
