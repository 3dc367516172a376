"""The Rust agent's cost: the same release binary (agents/rust/testprogs, ``bench``) run
without and with recording (``WILLOWISP_OUT`` unset / set), median of several runs each.

1. ``polls``: tasks that only yield, on a current-thread runtime, so wall time is the hot
   path's CPU time (the flusher thread has the other core). Every poll is one span
   enter/exit plus two waker operations (clone, wake) in tokio's instrumentation, and
   the agent writes four events for it (unit.run, unit.yield, sync.notify, unit.wake).
   Printed: ns per poll without and with the agent, the difference per poll, per tokio
   instrumentation callback (poll + 2 waker ops) and per written event. Target: <= 300 ns
   per instrumented poll/waker event.
2. ``work``: 64 tasks on the multi-thread runtime (2 workers), each doing >= 5 us of work
   per poll. Printed: wall times and their ratio. Target: <= 1.2x.

Run: ``python bench/bench_rust_agent.py [--runs N]`` (builds with cargo first). Figures,
not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = ROOT / "agents" / "rust"


def build() -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        sys.exit("cargo is not installed")
    subprocess.run(
        [cargo, "build", "--release", "-p", "willowisp-testprogs", "--bin", "bench"],
        cwd=WORKSPACE,
        check=True,
    )
    return WORKSPACE / "target" / "release" / "bench"


def run(binary: Path, args: list[str], record: bool) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    with tempfile.TemporaryDirectory() as tmp:
        if record:
            env["WILLOWISP_OUT"] = str(Path(tmp) / "run")
        done = subprocess.run(
            [str(binary), *args], env=env, capture_output=True, text=True, check=True, timeout=600
        )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def medians(binary: Path, args: list[str], record: bool, runs: int) -> dict[str, float]:
    results = [run(binary, args, record) for _ in range(runs)]
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    opts = parser.parse_args()
    binary = build()

    args = ["polls", "16", "4000"]
    base = medians(binary, args, False, opts.runs)
    rec = medians(binary, args, True, opts.runs)
    polls = base["polls"]
    per_poll_base = base["wall_ns"] / polls
    per_poll_rec = rec["wall_ns"] / polls
    extra = per_poll_rec - per_poll_base
    events_per_poll = rec["events"] / polls
    print(f"polls: {int(polls)} polls of yielding tasks, one thread, median of {opts.runs}")
    print(f"  without agent   {per_poll_base:8.1f} ns/poll")
    print(f"  with agent      {per_poll_rec:8.1f} ns/poll  ({per_poll_rec / per_poll_base:.2f}x)")
    print(f"  agent cost      {extra:8.1f} ns/poll")
    per_event = extra / max(events_per_poll, 1e-9)
    pad = " " * 18
    print(f"{pad}{extra / 3:8.1f} ns per tokio event (poll, waker clone, wake; target <= 300)")
    print(f"{pad}{per_event:8.1f} ns per written event ({events_per_poll:.2f} events/poll)")
    print(f"  dropped events  {int(rec['dropped'])}")

    args = ["work", "64", "500", "5"]
    base = medians(binary, args, False, opts.runs)
    rec = medians(binary, args, True, opts.runs)
    ratio = rec["wall_ns"] / base["wall_ns"]
    print(f"work: 64 tasks x 500 polls x 5 us of work per poll, 2 workers, median of {opts.runs}")
    print(f"  without agent   {base['wall_ns'] / 1e6:8.1f} ms")
    print(f"  with agent      {rec['wall_ns'] / 1e6:8.1f} ms  ratio {ratio:.3f}x (target <= 1.2x)")
    print(f"  events written  {int(rec['events'])}, dropped {int(rec['dropped'])}")


if __name__ == "__main__":
    main()
