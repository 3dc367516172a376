"""Agent overhead: cost per recorded event, a service-like workload, bytes per event.

Not a test: prints figures and ratios against baselines measured in the same run.
  1. Lock-only loop (the worst case): raw lock vs the agent's Lock, per event, including
     the background encoder's share of the GIL (the flusher runs during the loop and the
     final flush is timed).
  2. bench/workload_service.py uncovered, under `willowisp run` (full), and with --mode hops.
  3. Bytes per event on disk for the full run.

Usage: python bench/bench_agent.py [--items N] [--tasks N] [--repeat R]
"""

from __future__ import annotations

import _thread
import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def lock_loop(n: int) -> None:
    import threading

    lk = threading.Lock()
    for _ in range(n):
        lk.acquire()
        lk.release()


def bench_locks(n: int) -> None:
    raw = _thread.allocate_lock()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        raw.acquire()
        raw.release()
    base = time.perf_counter_ns() - t0

    import willowisp
    from willowisp.agent import recorder

    with tempfile.TemporaryDirectory() as out:
        willowisp.start(out=out)
        rec = recorder.RECORDER
        assert rec is not None
        lock_loop(1000)  # warm the location cache
        e0 = rec.events
        t0 = time.perf_counter_ns()
        lock_loop(n)
        rec.flush()
        instr = time.perf_counter_ns() - t0
        willowisp.stop()
        events = rec.events - e0
        size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(out, "*.wtrace")))
    per_event = (instr - base) / (2 * n)
    print(f"lock loop, {n} acquire/release pairs")
    print(f"  raw lock            {base / n:8.0f} ns per pair")
    print(f"  with agent          {instr / n:8.0f} ns per pair  ({instr / base:.1f}x)")
    print(
        f"  cost per event      {per_event:8.0f} ns  (target <= 1000 ns; {events} events "
        f"recorded, expected {2 * n})"
    )
    print(f"  on disk             {size / max(events, 1):8.2f} bytes per event (target <= 6)")


def run_workload(argv: list[str], env: dict[str, str]) -> float:
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_service(items: int, tasks: int, repeat: int) -> None:
    script = os.path.join(HERE, "workload_service.py")
    py = sys.executable
    base_env = dict(os.environ)
    base_env.pop("WILLOWISP_OUT", None)
    results: dict[str, list[float]] = {"none": [], "full": [], "hops": []}
    events = 0
    size = 0
    for _ in range(repeat):
        results["none"].append(run_workload([py, script, str(items), str(tasks)], base_env))
        for mode in ("full", "hops"):
            with tempfile.TemporaryDirectory() as out:
                argv = [
                    py,
                    "-m",
                    "willowisp",
                    "run",
                    "--out",
                    out,
                    "--mode",
                    mode,
                    "--",
                    py,
                    script,
                    str(items),
                    str(tasks),
                ]
                results[mode].append(run_workload(argv, base_env))
                if mode == "full":
                    from willowisp.wtrace import read_file

                    files = glob.glob(os.path.join(out, "*.wtrace"))
                    size = sum(os.path.getsize(f) for f in files)
                    events = sum(read_file(f).events for f in files)
    base = statistics.median(results["none"])
    print(
        f"service workload ({items} queue items over 4 threads, {tasks} asyncio tasks), "
        f"median of {repeat}"
    )
    print(f"  uninstrumented      {base * 1000:8.1f} ms")
    for mode, target in (("full", 1.25), ("hops", 1.03)):
        t = statistics.median(results[mode])
        print(
            f"  --mode {mode:5s}        {t * 1000:8.1f} ms  ({t / base:.3f}x, target <= {target}x)"
        )
    print(f"  full run: {events} events, {size / max(events, 1):.2f} bytes per event on disk")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pairs", type=int, default=300_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--tasks", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    bench_locks(a.pairs)
    bench_service(a.items, a.tasks, a.repeat)


if __name__ == "__main__":
    main()
