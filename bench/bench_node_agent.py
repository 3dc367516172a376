"""Benchmark: what the Node agent (agents/node) costs.

1. A service-like HTTP workload: a Node server doing ~50 us of work per request and
   calling one downstream Node service, driven by a load generator (keep-alive, 8 requests
   in flight). Wall time for the same number of requests without the agent (baseline),
   with it in ``full`` mode and in ``hops`` mode. Targets (issue 6): full <= 1.3x,
   hops <= 1.05x. Only the front service runs the agent; downstream and load do not.
2. A promise-heavy handler (N awaits of a resolved promise in one request): without the
   agent, with it in ``full`` mode, and with a full-fidelity boundary around that request
   (every promise a unit).

Rounds alternate the configurations so drift on the machine affects them alike. For each
configuration it prints the median and the best (min) wall time, their ratios to the
baseline of the same run, and the CPU time the measured process spent (the front service
during the load; the handler for the promises), which other processes on a shared machine
disturb far less than wall time, with what it adds per request; for the HTTP workload
also the front service's main-thread CPU (the event loop: process.cpuUsage also counts
libuv's pool, the agent's compression thread and V8's helper threads), each round's
figures and the paired difference to the baseline of the same round. It prints the
machine's CPU count and load average. Prints figures and ratios; asserts nothing.

    python bench/bench_node_agent.py [--requests 4000] [--warmup 4000] [--rounds 5]
        [--awaits 200000] [--no-promises] [--node PATH]
        [--http baseline,full,hops,"hops ratio 0.1","hops ratio 0","als only"]

``--node`` picks the Node binary every process of the run uses (default: ``node`` on
PATH), so the same agent is measured on Node 20 and Node 24 (whose AsyncLocalStorage is an
AsyncContextFrame rather than an init hook per async resource) with the baseline always on
that same Node.

A configuration NAME@PATH (e.g. ``hops@/tmp/old-agent/register.js``) runs NAME with
another copy of the agent, to compare two versions in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTER = ROOT / "agents" / "node" / "register.js"
WORKLOAD = Path(__file__).resolve().parent / "node_agent_workload.js"
NODE = shutil.which("node") or "node"


def env_for(mode: str | None, out: Path, boundary: str = "", ratio: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    env.pop("NODE_OPTIONS", None)
    if mode is not None:
        env["NODE_OPTIONS"] = f"--require {REGISTER}"
        env["WILLOWISP_OUT"] = str(out)
        env["WILLOWISP_MODE"] = mode
        if boundary:
            env["WILLOWISP_BOUNDARIES"] = boundary
        if ratio:
            env["WILLOWISP_TRACE_RATIO"] = ratio
    return env


# The HTTP configurations: name -> (mode, trace ratio). "hops ratio 0.1" records one trace
# in ten, decided at the root (what always-on use would set). "hops ratio 0" is the agent's
# floor in hops mode (propagation only, nothing recorded); "als only" is no agent, only an
# AsyncLocalStorage run around each server request (the workload's own preload): the part
# of that floor that is Node's, not the agent's (not in the default list).
HTTP_CONFIGS = {
    "baseline": (None, ""),
    "full": ("full", ""),
    "hops": ("hops", ""),
    "hops ratio 0": ("hops", "0"),
    "hops ratio 0.1": ("hops", "0.1"),
    "als only": ("als", ""),
}
DEFAULT_HTTP = ["baseline", "full", "hops", "hops ratio 0"]

# The preload of "als only" (written into the run's temporary folder).
ALS_ONLY = """'use strict';
const http = require('node:http');
const { AsyncLocalStorage } = require('node:async_hooks');
const als = new AsyncLocalStorage();
const origEmit = http.Server.prototype.emit;
const emitRequest = (server, req, res) => origEmit.call(server, 'request', req, res);
http.Server.prototype.emit = function emit(event, req, res) {
  if (event !== 'request') return origEmit.apply(this, arguments);
  return als.run({ req }, emitRequest, this, req, res);
};
"""


def server(role: str, *args: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [NODE, str(WORKLOAD), role, *args], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"{role} did not start: {line!r}")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


def node_out(*args: str, env: dict[str, str]) -> tuple[float, ...]:
    """The figures the workload prints on its last line: (wall ms, CPU ms) and, for the
    load, the main thread's CPU ms (-1 where /proc does not tell)."""
    done = subprocess.run(
        [NODE, str(WORKLOAD), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    return tuple(float(x) for x in done.stdout.strip().splitlines()[-1].split())


def table(
    title: str,
    unit: str,
    per: float,
    runs: dict[str, list[tuple[float, ...]]],
    targets: dict[str, str],
) -> None:
    """One line per configuration: wall median and min, per item, ratios to the first
    configuration (the baseline of this run); CPU median, min, its ratio and what it adds
    per item over the baseline; for the HTTP workload the same of the main thread's CPU
    (the event loop's share: the wall time a request waits for)."""
    base = next(iter(runs.values()))
    bw = statistics.median(r[0] for r in base)
    bmin = min(r[0] for r in base)
    bc = statistics.median(r[1] for r in base)
    bcmin = min(r[1] for r in base)
    loop = all(len(r) > 2 and r[2] >= 0 for rs in runs.values() for r in rs)
    bl = statistics.median(r[2] for r in base) if loop else 0.0
    print(f"\n{title}")
    head = (
        f"{'configuration':<22}{'wall med ms':>12}{'min ms':>9}{unit:>11}{'ratio med':>10}"
        f"{'ratio min':>10}{'cpu med':>9}{'cpu min':>9}{'cpu ratio':>10}{'ratio min':>10}"
        f"{'+cpu ' + unit:>15}"
    )
    if loop:
        head += f"{'loop cpu':>10}{'loop ratio':>11}{'+loop ' + unit:>16}"
    print(head + "  target")
    for name, rs in runs.items():
        w = statistics.median(r[0] for r in rs)
        m = min(r[0] for r in rs)
        c = statistics.median(r[1] for r in rs)
        cmin = min(r[1] for r in rs)
        line = (
            f"{name:<22}{w:>12.1f}{m:>9.1f}{w * per:>11.1f}{w / bw:>9.2f}x{m / bmin:>9.2f}x"
            f"{c:>9.1f}{cmin:>9.1f}{c / bc:>9.2f}x{cmin / bcmin:>9.2f}x{(c - bc) * per:>15.1f}"
        )
        if loop:
            lc = statistics.median(r[2] for r in rs)
            line += f"{lc:>10.1f}{lc / bl:>10.2f}x{(lc - bl) * per:>16.1f}"
        print(f"{line}  {targets.get(name, '')}")
    # Per round: the machine's load moves every configuration of a round alike, so the
    # differences within a round (paired) are steadier than those of the medians.
    col = 2 if loop else 1
    what = "main-thread CPU ms" if loop else "CPU ms"
    print(f"per round ({what}; rounds alternate the order of the configurations):")
    for name, rs in runs.items():
        print(f"  {name:<22}" + "".join(f"{r[col]:>8.1f}" for r in rs))
    base_rs = [r[col] for r in base]
    for name, rs in list(runs.items())[1:]:
        diffs = sorted((r[col] - b) * per for r, b in zip(rs, base_rs, strict=True))
        print(
            f"  {name:<22} - baseline, paired, {unit}: median {statistics.median(diffs):.1f}"
            f" (min {diffs[0]:.1f}, max {diffs[-1]:.1f})"
        )


def http_round(
    mode: str | None,
    ratio: str,
    down_port: int,
    requests: int,
    warmup: int,
    tmp: Path,
    register: Path = REGISTER,
) -> tuple[float, ...]:
    env = env_for(None if mode == "als" else mode, tmp / f"http-{mode}", "", ratio)
    if mode == "als":
        preload = tmp / "als_only.js"
        preload.write_text(ALS_ONLY)
        env["NODE_OPTIONS"] = f"--require {preload}"
    elif mode is not None:
        env["NODE_OPTIONS"] = f"--require {register}"
    front, port = server("front", str(down_port), env=env)
    try:
        # Warm-up: V8 compiles the hot functions of Node's http stack, of the program and of
        # the agent on background threads, whose CPU time process.cpuUsage() counts; a
        # short warm-up leaves that one-time cost inside the measured window (with 400
        # requests of warm-up the baseline spent ~750 ms CPU on 3000 requests, with 4000
        # ~510 ms), and it is larger with the agent's code to compile too.
        node_out("load", str(port), str(warmup), "8", env=env_for(None, tmp))
        return node_out("load", str(port), str(requests), "8", env=env_for(None, tmp))
    finally:
        stop(front)


def main() -> None:
    global NODE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--awaits", type=int, default=200_000)
    ap.add_argument(
        "--warmup", type=int, default=4000, help="requests before each measured HTTP round"
    )
    ap.add_argument(
        "--http",
        default=",".join(DEFAULT_HTTP),
        help="HTTP configurations to run, comma-separated (the first is the baseline); "
        "NAME@PATH runs configuration NAME with another copy of the agent (PATH: its "
        "register.js), to compare two versions in the same run",
    )
    ap.add_argument("--no-promises", action="store_true", help="skip the promise workload")
    ap.add_argument(
        "--node", default=NODE, help="the node binary of every process (default: node on PATH)"
    )
    a = ap.parse_args()
    NODE = a.node
    http_names = [n.strip() for n in a.http.split(",") if n.strip()]
    for n in http_names:
        if n.split("@")[0] not in HTTP_CONFIGS:
            raise SystemExit(f"unknown configuration {n!r}: one of {', '.join(HTTP_CONFIGS)}")
    version = subprocess.run(
        [NODE, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    frame = subprocess.run(
        [
            NODE,
            "-e",
            "const {AsyncLocalStorage: A} = require('node:async_hooks');"
            "process.stdout.write(typeof new A().kResourceStore === 'symbol' ? 'no' : 'yes')",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(
        f"node {version} ({NODE}; AsyncContextFrame: {frame}); {a.requests} requests"
        f" (after {a.warmup} of warm-up) x {a.rounds}"
        f" rounds; {a.awaits} awaits; {os.cpu_count()} CPUs; load average at start"
        f" {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )

    with tempfile.TemporaryDirectory(prefix="wisp-bench-node-") as td:
        tmp = Path(td)
        down, down_port = server("downstream", env=env_for(None, tmp))
        try:
            times: dict[str, list[tuple[float, ...]]] = {n: [] for n in http_names}
            for r in range(a.rounds):
                # each round starts with another configuration: no configuration always
                # runs first after the downstream's idle time or last before the next round
                for name in http_names[r % len(http_names) :] + http_names[: r % len(http_names)]:
                    config, _, register = name.partition("@")
                    mode, ratio = HTTP_CONFIGS[config]
                    times[name].append(
                        http_round(
                            mode,
                            ratio,
                            down_port,
                            a.requests,
                            a.warmup,
                            tmp,
                            Path(register) if register else REGISTER,
                        )
                    )
        finally:
            stop(down)
        table(
            "HTTP service workload (50 us work + 1 downstream call per request, 8 in flight)",
            "us/request",
            1000 / a.requests,
            times,
            {"full": "<= 1.30x", "hops": "<= 1.05x"},
        )
        print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

        if a.no_promises:
            return
        boundary = "entry=http:GET /work;runtimes=nodejs"
        configs = (
            ("no agent", None, ""),
            ("full, no boundary", "full", ""),
            ("hops, no boundary", "hops", ""),
            ("hops + boundary", "hops", boundary),
            ("full + boundary", "full", boundary),
        )
        ptimes: dict[str, list[tuple[float, ...]]] = {c[0]: [] for c in configs}
        for i in range(a.rounds):
            for name, mode, bnd in configs:
                env = env_for(mode, tmp / f"promises-{i}-{mode}-{bool(bnd)}", bnd)
                ptimes[name].append(node_out("promises", str(a.awaits), env=env))
        table(
            f"promise-heavy handler ({a.awaits} awaits in one request)",
            "ns/await",
            1e6 / a.awaits,
            ptimes,
            {},
        )


if __name__ == "__main__":
    sys.exit(main())
