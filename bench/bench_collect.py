"""`willowisp collect --otlp-http`: sustained spans/s with no loss, and memory under overload.

Not a test: prints figures and ratios. Load comes from several client processes reusing
the opentelemetry-proto classes: each prebuilds serialized ``ExportTraceServiceRequest``s
of ``--spans`` spans (attributes like an HTTP server span's) and posts them back to back
over one keep-alive HTTP/1.1 connection. Two phases against one collector process:

1. *sustained*: ``--clients`` clients for ``--seconds``; spans/s acknowledged, and then
   the spans found in the collector's files (decoded with the same classes) compared with
   the spans acknowledged: "no loss" means equal. Ratios: against the 50,000 spans/s
   target, and against the baseline measured in this run — how fast this machine parses
   and checks the same requests in one process with no HTTP at all
   (``willowisp.collect.otlp_store.check_proto``), the collector's ceiling.
2. *overload*: ``--overload-clients`` clients posting 8 MiB requests at once, more than
   the collector's 256 MiB in-flight budget: how many were told 503 (Retry-After), and the
   collector's peak RSS (VmHWM) — it must stay bounded, not grow with the offered load.

Usage: python bench/bench_collect.py [--clients 3] [--seconds 10] [--spans 512]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from willowisp.collect.otlp_store import check_proto
from willowisp.wtrace.reader import read_file

TARGET = 50_000
MIB = 1024 * 1024


def build_request(spans: int, seed: int) -> bytes:
    """One request: a resource, a scope, ``spans`` server spans under one trace."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for k, v in (("service.name", "bench"), ("host.name", "bench-host"),
                 ("telemetry.sdk.language", "python")):  # fmt: skip
        rs.resource.attributes.add(key=k).value.string_value = v
    ss = rs.scope_spans.add()
    ss.scope.name = "bench"
    trace_id = seed.to_bytes(8, "big") + os.urandom(8)
    start = time.time_ns()
    for i in range(spans):
        s = ss.spans.add(
            trace_id=trace_id, span_id=os.urandom(7) + bytes([1 + i % 255]),
            parent_span_id=os.urandom(8), name="GET /api/items/{id}", kind=2,
            start_time_unix_nano=start + i * 1000, end_time_unix_nano=start + i * 1000 + 900,
        )  # fmt: skip
        for k, v in (("http.request.method", "GET"), ("url.path", f"/api/items/{i}"),
                     ("server.address", "bench-host")):  # fmt: skip
            s.attributes.add(key=k).value.string_value = v
        s.attributes.add(key="http.response.status_code").value.int_value = 200
    data: bytes = req.SerializeToString()
    return data


def client(host: str, port: int, spans: int, seconds: float, pad_mib: int) -> None:
    """Child process: post prebuilt requests until ``seconds`` pass; print the counts."""
    bodies = [build_request(spans, os.getpid() * 100 + i) for i in range(8)]
    if pad_mib:  # overload: make each request big (more spans of the same shape)
        per = len(bodies[0]) / spans
        bodies = [build_request(int(pad_mib * MIB / per), os.getpid())]
        spans = int(pad_mib * MIB / per)
    headers = {"Content-Type": "application/x-protobuf"}
    conn = http.client.HTTPConnection(host, port, timeout=120)
    acked = refused = sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = bodies[sent % len(bodies)]
        sent += 1
        try:
            conn.request("POST", "/v1/traces", body=body, headers=headers)
            r = conn.getresponse()
            r.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=120)
            refused += 1
            continue
        if r.status == 200:
            acked += spans
        else:
            refused += 1
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=120)
    print(json.dumps({"acked_spans": acked, "refused": refused, "requests": sent}))


def run_clients(address: str, n: int, spans: int, seconds: float, pad_mib: int = 0):
    host, port = address.rsplit(":", 1)
    command = [sys.executable, __file__, "--client", host, port, str(spans), str(seconds)]
    procs = [
        subprocess.Popen([*command, str(pad_mib)], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 300)
        results.append(json.loads(out.splitlines()[-1]))
    return results


def stored_spans(folder: Path) -> int:
    total = 0
    for path in folder.glob("*.wtrace"):
        for chunk in read_file(path).chunks:
            for r in chunk.records:
                if r.rtype == 7:
                    total += check_proto(r.get("data")).spans
    return total


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def baseline(spans: int) -> float:
    """Spans/s that one process parses and checks with no HTTP: the collector's ceiling."""
    body = build_request(spans, 1)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        check_proto(body)
        n += 1
    return n * spans / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--spans", type=int, default=512)
    ap.add_argument("--overload-clients", type=int, default=48)
    ap.add_argument("--client", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        host, port, spans, seconds, pad = args.client
        client(host, int(port), int(spans), float(seconds), int(pad))
        return
    base = baseline(args.spans)
    with tempfile.TemporaryDirectory(prefix="wisp-bench-collect-") as tmp:
        out = Path(tmp) / "run"
        collector = subprocess.Popen(
            [sys.executable, "-m", "willowisp", "collect", "--otlp-http", "0", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert collector.stdout is not None
        m = re.search(r"http://(\S+)/v1/traces", collector.stdout.readline())
        assert m, "collector did not start"
        address = m.group(1)
        t0 = time.perf_counter()
        results = run_clients(address, args.clients, args.spans, args.seconds)
        elapsed = time.perf_counter() - t0
        acked = sum(r["acked_spans"] for r in results)
        refused = sum(r["refused"] for r in results)
        rss_sustained = peak_rss_mib(collector.pid)
        stored = stored_spans(out)
        rate = acked / args.seconds
        print(
            f"sustained: {args.clients} clients x {args.seconds:.0f} s ({elapsed:.1f} s with "
            f"start-up), {args.spans} spans/request over keep-alive OTLP/HTTP protobuf"
        )
        print(f"  acknowledged {acked} spans = {rate:,.0f} spans/s; refused requests {refused}")
        print(f"  stored {stored} spans: {'no loss' if stored == acked else 'MISMATCH'}")
        print(f"  x target ({TARGET:,} spans/s): {rate / TARGET:.2f}")
        print(
            f"  x baseline (parse+check in one process, no HTTP: {base:,.0f} spans/s): "
            f"{rate / base:.2f}"
        )
        print(f"  collector peak RSS {rss_sustained:.0f} MiB")
        results = run_clients(address, args.overload_clients, args.spans, 5.0, pad_mib=8)
        busy = sum(r["refused"] for r in results)
        ok = sum(r["acked_spans"] for r in results)
        rss = peak_rss_mib(collector.pid)
        print(f"overload: {args.overload_clients} clients posting 8 MiB requests for 5 s")
        print(f"  {ok:,} spans acknowledged, {busy} requests refused (503 Retry-After)")
        print(f"  collector peak RSS {rss:.0f} MiB (in-flight budget 256 MiB)")
        collector.send_signal(signal.SIGTERM)
        _, err = collector.communicate(timeout=120)
        print(f"  {err.strip()}")


if __name__ == "__main__":
    main()
