"""Benchmark: what the Java agent (agents/java) costs on a lock-heavy workload.

The workload (written below as Java source, compiled once with ``javac``): T threads each
do N operations; an operation takes one of K ``ReentrantLock``s (every other one a
``synchronized`` monitor instead), does W iterations of work inside (~1 us by default:
the lock-heavy but realistic case of a short critical section), releases it and does the
same amount of work outside. The JVM first runs the workload at a quarter of its size
(warm-up: JIT compilation, and the agent's start-up work in the background), then the
measured run: by default 4 threads x 500,000 operations, a few seconds of steady
lock-heavy work (2 million recorded lock events) on the 2-CPU test machine.

Two workloads: ``steady`` (the default, and the one the target is judged on: a thread
pool and the same locks in the warm-up and the measured run, as a server runs) and
``fresh`` (the measured run starts new threads and new locks, so it also pays the JIT's
and the agent's first-use costs again).

What is judged: the measured run's wall time against the no-agent baseline of the same
benchmark run. Start-up (premain, Byte Buddy's retransformation, JFR's start) is a one-time
cost per JVM and is reported separately: the process's wall time minus both runs
(``start ms``, which also holds the exit), and the whole process's CPU.

Configurations: no agent (baseline); the agent at default settings (``full`` mode: every
ReentrantLock acquisition and release recorded, JFR streaming with 10 ms thresholds, the
100 ms stuck-thread sampler, chunks stored uncompressed at this event rate); the same
with every chunk deflated; with JFR or the hooks switched off (where the cost is); full
fidelity (``WILLOWISP_JAVA_SYNC=LockHeavy``: the ``synchronized`` blocks are instrumented
too, every monitor acquisition recorded); a stack walk on every acquisition; ``hops`` mode.
Rounds alternate the configurations (each round runs the baseline first); the figures
per configuration are the median and the best round, the median of the per-round ratios
(``paired``: each against the baseline run of the same round, which cancels most of the
slow drifts of other load on a shared machine), the process's CPU during the measured run
(what the wall time follows when the CPUs are saturated, as here) and that CPU by thread
kind (program threads, JIT compiler, agent threads, JFR, GC), so the cost is attributed,
not guessed. Prints figures and ratios; asserts nothing.

    python bench/bench_java_agent.py [--threads 4] [--ops 500000] [--work 1000] [--rounds 5]
                                     [--workload steady|fresh|both] [--configs default,hops]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "agents" / "java"
JAR = AGENT / "target" / "willowisp-agent.jar"
JAVA = shutil.which("java") or "java"
JAVAC = shutil.which("javac") or "javac"

WORKLOAD = r"""
import java.util.concurrent.locks.ReentrantLock;

public class LockHeavy {
  static volatile long sink;

  public static void main(String[] args) throws Exception {
    int threads = Integer.parseInt(args[0]);
    int ops = Integer.parseInt(args[1]);
    int work = Integer.parseInt(args[2]);
    // steady: the measured run reuses the warm-up's threads (a pool) and locks, as a server
    // does; fresh: new threads and new locks, so the JIT meets new locks after it compiled
    steady = args.length > 3 && args[3].equals("steady");
    if (steady) pool = java.util.concurrent.Executors.newFixedThreadPool(threads);
    // warm-up: the same workload at a quarter of the size, so the JIT has compiled it (and
    // the agent's start-up has settled) before the measured run
    long warm = run(threads, Math.max(1, ops / 4), work);
    com.sun.management.OperatingSystemMXBean os = (com.sun.management.OperatingSystemMXBean)
        java.lang.management.ManagementFactory.getOperatingSystemMXBean();
    java.util.Map<String, Long> before = threadTicks();
    long cpu0 = os.getProcessCpuTime();
    long ns = run(threads, ops, work);
    long cpu = os.getProcessCpuTime() - cpu0;
    java.util.Map<String, Long> after = threadTicks();
    System.out.println("WORK_NS " + ns);
    System.out.println("WARM_NS " + warm);
    System.out.println("WORK_CPU_NS " + cpu);
    // CPU of the threads that outlive the run, by kind (10 ms ticks); the workers' share is
    // the rest (fresh workers are gone by now)
    for (java.util.Map.Entry<String, Long> e : after.entrySet()) {
      long d = e.getValue() - before.getOrDefault(e.getKey(), 0L);
      if (d > 0) System.out.println("THREAD_CPU_NS " + e.getKey() + " " + d * 10_000_000L);
    }
    if (pool != null) pool.shutdown();
  }

  static boolean steady;
  static java.util.concurrent.ExecutorService pool;
  static ReentrantLock[] steadyLocks;
  static Object[] steadyMonitors;

  /** CPU ticks per thread kind, from /proc/self/task/N/stat. */
  static java.util.Map<String, Long> threadTicks() {
    java.util.Map<String, Long> m = new java.util.TreeMap<>();
    try (java.nio.file.DirectoryStream<java.nio.file.Path> ds =
        java.nio.file.Files.newDirectoryStream(java.nio.file.Paths.get("/proc/self/task"))) {
      for (java.nio.file.Path p : ds) {
        String stat;
        try {
          stat = new String(java.nio.file.Files.readAllBytes(p.resolve("stat")));
        } catch (java.io.IOException gone) {
          continue;
        }
        String name = stat.substring(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        String kind = name.startsWith("C1 ") || name.startsWith("C2 ") ? "jit"
            : name.startsWith("willowisp-") ? "agent"
            : name.startsWith("JFR") ? "jfr"
            : name.startsWith("GC") || name.startsWith("G1") ? "gc"
            : name.startsWith("worker-") || name.startsWith("pool-") ? "workers"
            : "other";
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        m.merge(kind, Long.parseLong(f[11]) + Long.parseLong(f[12]), Long::sum);
      }
    } catch (Exception e) {
      // no /proc: no breakdown
    }
    return m;
  }

  static long run(int threads, int ops, int work) throws Exception {
    int k = 16;
    if (steadyLocks == null || !steady) {
      steadyLocks = new ReentrantLock[k];
      steadyMonitors = new Object[k];
      for (int i = 0; i < k; i++) {
        steadyLocks[i] = new ReentrantLock();
        steadyMonitors[i] = new Object();
      }
    }
    ReentrantLock[] locks = steadyLocks;
    Object[] monitors = steadyMonitors;
    long[] shared = new long[k];
    Thread[] ts = new Thread[threads];
    java.util.List<java.util.concurrent.Future<?>> done = new java.util.ArrayList<>();
    long start = System.nanoTime();
    for (int t = 0; t < threads; t++) {
      final int seed = t;
      Runnable body = () -> {
        long x = seed * 7919L + 1;
        for (int i = 0; i < ops; i++) {
          x ^= x << 13; x ^= x >>> 7; x ^= x << 17;
          int j = (int) ((x >>> 1) % k);
          if ((i & 1) == 0) {
            locks[j].lock();
            try {
              shared[j] += spin(x, work);
            } finally {
              locks[j].unlock();
            }
          } else {
            synchronized (monitors[j]) {
              shared[j] += spin(x, work);
            }
          }
          sink += spin(x, work);
        }
      };
      if (steady) {
        done.add(pool.submit(body));
      } else {
        ts[t] = new Thread(body, "worker-" + t);
        ts[t].start();
      }
    }
    if (steady) {
      for (java.util.concurrent.Future<?> f : done) f.get();
    } else {
      for (Thread t : ts) t.join();
    }
    long ns = System.nanoTime() - start;
    long total = 0;
    for (long v : shared) total += v;
    sink += total;
    return ns;
  }

  static long spin(long x, int n) {
    for (int i = 0; i < n; i++) { x ^= x << 13; x ^= x >>> 7; x ^= x << 17; }
    return x;
  }
}
"""

CONFIGS: dict[str, dict[str, str] | None] = {
    "no agent": None,
    "agent (default, full mode)": {},
    "agent, chunks deflated (JAVA_CODEC=deflate)": {"WILLOWISP_JAVA_CODEC": "deflate"},
    "agent, JFR off (hooks + sampler)": {"WILLOWISP_JAVA_JFR": "0"},
    "agent, hooks off (JFR + sampler)": {"WILLOWISP_JAVA_HOOKS": "0"},
    "agent, full fidelity (synchronized too)": {"WILLOWISP_JAVA_SYNC": "LockHeavy"},
    "agent, stack on every acquisition": {"WILLOWISP_JAVA_STACKS": "all"},
    "agent, hops mode": {"WILLOWISP_MODE": "hops"},
}


def env_for(extra: dict[str, str] | None, out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    env.pop("JAVA_TOOL_OPTIONS", None)
    if extra is not None:
        # a copy taken at the start, so a rebuild during the benchmark does not mix jars
        env["JAVA_TOOL_OPTIONS"] = f"-javaagent:{out.parent / JAR.name}"
        env["WILLOWISP_OUT"] = str(out)
        env.update(extra)
    return env


class Run(NamedTuple):
    work: int  # the measured run's wall ns (inside the JVM)
    warm: int  # the warm-up run's wall ns (inside the JVM)
    proc: int  # the whole process's wall ns
    cpu: int  # the process's CPU ns during the measured run
    total: int  # the whole process's CPU ns
    threads: dict[str, int]  # CPU ns during the measured run by thread kind (jit, agent, ...)


def run_once(
    classes: Path, args: argparse.Namespace, workload: str, extra: dict[str, str] | None, out: Path
) -> Run:
    """One JVM: the workload (fresh or steady) under one configuration."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter_ns()
    done = subprocess.run(
        [JAVA, "-cp", str(classes), "LockHeavy", str(args.threads), str(args.ops), str(args.work)]
        + [workload],
        capture_output=True,
        text=True,
        env=env_for(extra, out),
        check=True,
        timeout=600,
    )
    wall = time.perf_counter_ns() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    lines = done.stdout.splitlines()
    work = next(int(line.split()[1]) for line in lines if line.startswith("WORK_NS "))
    warm = next(int(line.split()[1]) for line in lines if line.startswith("WARM_NS "))
    cpu = next(int(line.split()[1]) for line in lines if line.startswith("WORK_CPU_NS "))
    threads = {
        line.split()[1]: int(line.split()[2]) for line in lines if line.startswith("THREAD_CPU_NS ")
    }
    threads["workers"] = cpu - sum(v for k, v in threads.items() if k != "workers")
    return Run(work, warm, wall, cpu, int(total_cpu * 1e9), threads)


def events_in(out: Path) -> int:
    """Events the agent wrote (from `willowisp analyze`'s trace summary)."""
    import json
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", str(out), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    try:
        return int(json.loads(done.stdout)["trace"]["events"])
    except (ValueError, KeyError):
        return -1


def report(
    args: argparse.Namespace, workload: str, runs: dict[str, list[Run]], outs: dict[str, Path]
) -> None:
    base = runs["no agent"]
    base_med = statistics.median(r.work for r in base)
    base_min = min(r.work for r in base)
    base_cpu = statistics.median(r.cpu for r in base)
    base_start = statistics.median(r.proc - r.work - r.warm for r in base)
    base_total = statistics.median(r.total for r in base)
    acquisitions = args.threads * args.ops // 2  # in the measured run
    print()
    print(
        f"{workload} workload: {args.threads} threads x {args.ops} ops "
        f"({acquisitions} ReentrantLock + {acquisitions} monitor acquisitions), "
        f"work {args.work}, {args.rounds} rounds, {os.cpu_count()} CPUs, {JAVA}"
    )
    print(
        "measured run (after the warm-up): wall median and best, the median of the per-round"
        " ratios (each against the baseline run just before it), the process's CPU during it;"
        " start-up + exit (process wall minus both runs) and the whole process's CPU; events;"
        " the measured run's CPU by thread (median s)"
    )
    print(
        f"{'configuration':44} {'median ms':>9} {'ratio':>6} {'best ms':>8} {'ratio':>6} "
        f"{'paired':>6} {'CPU s':>6} {'ratio':>6} | {'start ms':>8} {'+ms':>6} {'CPU s':>6} "
        f"{'ratio':>6} {'events':>9} | {'workers':>7} {'jit':>5} {'agent':>5} {'jfr':>5} "
        f"{'gc':>5} {'other':>5}"
    )
    for name, extra in CONFIGS.items():
        rs = runs[name]
        med = statistics.median(r.work for r in rs)
        best = min(r.work for r in rs)
        paired = statistics.median(r.work / b.work for r, b in zip(rs, base, strict=True))
        start = statistics.median(r.proc - r.work - r.warm for r in rs)
        used = statistics.median(r.cpu for r in rs)
        whole = statistics.median(r.total for r in rs)
        ev = events_in(outs[name]) if extra is not None else 0
        by = {
            k: statistics.median(r.threads.get(k, 0) for r in rs) / 1e9
            for k in ("workers", "jit", "agent", "jfr", "gc", "other")
        }
        print(
            f"{name:44} {med / 1e6:9.1f} {med / base_med:6.3f} {best / 1e6:8.1f} "
            f"{best / base_min:6.3f} {paired:6.3f} {used / 1e9:6.2f} {used / base_cpu:6.3f} | "
            f"{start / 1e6:8.1f} {(start - base_start) / 1e6:+6.0f} {whole / 1e9:6.2f} "
            f"{whole / base_total:6.3f} {ev:9d} | {by['workers']:7.2f} {by['jit']:5.2f} "
            f"{by['agent']:5.2f} {by['jfr']:5.2f} {by['gc']:5.2f} {by['other']:5.2f}"
        )
    print("each round's measured-run wall time, ms (ratio to that round's baseline):")
    for name in CONFIGS:
        rounds = "  ".join(
            f"{r.work / 1e6:7.0f} ({r.work / b.work:5.3f})"
            for r, b in zip(runs[name], base, strict=True)
        )
        print(f"  {name:42} {rounds}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--ops", type=int, default=500_000, help="operations per thread")
    ap.add_argument(
        "--work", type=int, default=1000, help="xorshift rounds (~1 ns each) inside and outside"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--workload",
        choices=("fresh", "steady", "both"),
        default="steady",
        help="steady (judged): a pool and the same locks, as a server; fresh: new threads and"
        " locks in the measured run",
    )
    ap.add_argument(
        "--configs", default="", help="comma-separated substrings of configuration names to run"
    )
    args = ap.parse_args()
    if args.configs:
        wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
        for name in list(CONFIGS):
            if name != "no agent" and not any(w in name for w in wanted):
                del CONFIGS[name]
    if not JAR.exists():
        subprocess.run(["mvn", "-q", "-o", "package", "-DskipTests"], cwd=AGENT, check=True)
    workloads = ("fresh", "steady") if args.workload == "both" else (args.workload,)
    with tempfile.TemporaryDirectory(prefix="wisp-bench-java-") as tmp:
        tmpdir = Path(tmp)
        shutil.copy(JAR, tmpdir / JAR.name)
        (tmpdir / "LockHeavy.java").write_text(WORKLOAD)
        classes = tmpdir / "classes"
        subprocess.run([JAVAC, "-d", str(classes), str(tmpdir / "LockHeavy.java")], check=True)
        for workload in workloads:
            runs: dict[str, list[Run]] = {name: [] for name in CONFIGS}
            outs: dict[str, Path] = {}
            for r in range(args.rounds):
                for i, (name, extra) in enumerate(CONFIGS.items()):
                    out = tmpdir / f"run-{workload}-{r}-{i}"
                    runs[name].append(run_once(classes, args, workload, extra, out))
                    outs[name] = out
            report(args, workload, runs, outs)
    print(
        "target (issue 7): agent (default) <= 1.1x the baseline's wall time of the measured"
        " run (steady workload; start-up is reported separately)"
    )


if __name__ == "__main__":
    main()
