"""Go agent overhead: a wrapped lock operation and the execution tracer on a goroutine-heavy
workload, each against its baseline measured in the same run.

Not a test: runs the Go benchmarks in agents/go/wisp/bench_test.go (``go test -bench``)
and prints figures, medians of --count runs, and ratios:

  1. A lock operation (Lock+Unlock, uncontended): sync.Mutex; wisp.Mutex with no recording;
     wisp.Mutex while recording (two runtime/trace user logs: acquired, release). Target:
     the recorded operation <= 300 ns. One trace.Log is shown too: the unit of that cost.
  2. The execution tracer (plus the agent's lock logs and flushing) on a service-like
     workload: 200 requests, each a goroutine, two channel hand-offs, ~20 us of work and a
     wisp.Mutex section. Target: <= 5 % (ratio <= 1.05). Decoding is excluded: it happens at
     analyze time.
  3. The same with ~2 us of work per request ("churn"): goroutine creation, hand-offs and
     the lock dominate, the tracer's worst case. No target; shown so nobody is surprised.

Usage: python bench/bench_go_agent.py [--count N] [--benchtime 1s]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

AGENT = Path(__file__).resolve().parents[1] / "agents" / "go"
LINE = re.compile(r"^Benchmark(\w+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op")


def run(count: int, benchtime: str) -> tuple[dict[str, float], dict[str, float]]:
    """Medians of each benchmark's ns/op, and of the per-round on/off ratios: the test binary
    is built once and run ``count`` rounds, each round running every benchmark once, so a
    baseline and its agent-on twin are measured next to each other in time (load drift
    on a shared machine then moves both)."""
    go = shutil.which("go")
    if go is None:
        sys.exit("bench_go_agent: the go toolchain is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "wisp.test"
        built = subprocess.run(
            [go, "test", "-c", "-o", str(binary), "./wisp"],
            cwd=AGENT,
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            sys.exit(f"bench_go_agent: go test -c failed:\n{built.stderr}")
        samples: dict[str, list[float]] = {}
        ratios: dict[str, list[float]] = {}
        for _ in range(count):
            done = subprocess.run(
                [str(binary), "-test.run", "^$", "-test.bench", ".", "-test.benchtime", benchtime],
                cwd=AGENT / "wisp",
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                sys.exit(f"bench_go_agent: the benchmarks failed:\n{done.stdout}{done.stderr}")
            one: dict[str, float] = {}
            for line in done.stdout.splitlines():
                m = LINE.match(line)
                if m:
                    one[m.group(1)] = float(m.group(2))
                    samples.setdefault(m.group(1), []).append(float(m.group(2)))
            for key in ("Service", "Churn"):
                ratios.setdefault(key, []).append(one[f"{key}On"] / one[f"{key}Off"])
            ratios.setdefault("Lock", []).append(one["LockWispRecording"] - one["LockSync"])
    medians = {name: statistics.median(v) for name, v in samples.items()}
    return medians, {name: statistics.median(v) for name, v in ratios.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--benchtime", default="1s")
    args = ap.parse_args()
    before = os.getloadavg()[0]
    ns, ratio = run(args.count, args.benchtime)
    print(f"Go agent benchmarks (medians of {args.count} rounds of {args.benchtime} each)")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {before:.2f} before and "
        f"{os.getloadavg()[0]:.2f} after (other work on the machine skews every figure)"
    )
    print()
    print("1. lock operation (Lock+Unlock, uncontended)")
    print(f"   sync.Mutex                      {ns['LockSync']:8.1f} ns   (baseline)")
    print(
        f"   wisp.Mutex, not recording       {ns['LockWispIdle']:8.1f} ns   "
        f"x{ns['LockWispIdle'] / ns['LockSync']:.2f}"
    )
    rec = ns["LockWispRecording"]
    print(
        f"   wisp.Mutex, recording           {rec:8.1f} ns   x{rec / ns['LockSync']:.1f}; "
        f"+{ratio['Lock']:.0f} ns per operation (target <= 300 ns: "
        f"{'met' if ratio['Lock'] <= 300 else 'NOT met'})"
    )
    print(f"   one runtime/trace user log      {ns['TraceLog']:8.1f} ns   (two per recorded op)")
    print()
    for label, key, target in (
        ("2. service-like workload (200 requests x ~20 us)", "Service", 1.05),
        ("3. goroutine churn (1000 requests x ~2 us)", "Churn", None),
    ):
        off, on, r = ns[f"{key}Off"], ns[f"{key}On"], ratio[key]
        verdict = ""
        if target is not None:
            verdict = f" (target <= {target:.2f}: {'met' if r <= target else 'NOT met'})"
        print(label)
        print(f"   agent off                       {off / 1e6:8.2f} ms   (baseline)")
        print(f"   agent on (tracer + lock logs)   {on / 1e6:8.2f} ms   ratio {r:.3f}{verdict}")
        print()


if __name__ == "__main__":
    main()
