"""Benchmark: ``willowisp query`` (and the results cache) on a 1,000,000-event run (not a test).

Generates the run of ``bench_analyze.py`` (four Python services calling each other over
HTTP, threads and tasks on contended locks, queues, conditions; one clock 40 ms off), then
times, each as the whole command in a child process (with its peak RSS):

- ``query`` first answers for a few typical queries (none names ``findings``: load, link,
  build the named tables, run);
- ``query`` over ``findings`` with no cache entry (the whole analysis runs and is stored),
  then again (read from the cache);
- ``analyze --format json`` cold and then cached.

Baselines measured in the same run: the time to load the files (``willowisp.ingest.load``
in a child process: what any answer must pay) and to read and decompress every chunk
(what any reader pays before it can look at an event). Ratios are against the load.

    python bench/bench_query.py [--events N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_analyze import SERVICES, baseline, generate
from willowisp.analysis.cache import FOLDER

QUERIES = {
    "events per kind": "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC",
    "longest lock waits": "SELECT resource_name, unit, max(duration_ns) AS longest FROM waits "
    "WHERE resource_kind = 'lock' GROUP BY ALL ORDER BY longest DESC LIMIT 5",
    "longest lock holds": "SELECT lock_name, count(*) AS holds, max(duration_ns) AS longest "
    "FROM lock_holds GROUP BY ALL ORDER BY longest DESC LIMIT 5",
    "edges per kind": "SELECT kind, provenance, count(*) FROM edges GROUP BY ALL",
    "100 hops, send hb recv": "SELECT count(*) FILTER (WHERE happens_before(send, recv)) "
    "FROM (SELECT send, recv FROM hops WHERE linked ORDER BY send LIMIT 100)",
    "20 hops, recv hb send (no)": "SELECT count(*) FILTER (WHERE happens_before(recv, send)) "
    "FROM (SELECT send, recv FROM hops WHERE linked ORDER BY send LIMIT 20)",
    "one event by id": "SELECT * FROM events WHERE id = '02020202020202020202020202020202:4242'",
}
FINDINGS = "SELECT kind, count(*) FROM findings GROUP BY kind"


def command(*args: str) -> tuple[float, float, int, str]:
    """Run ``python -m willowisp ARGS``: (wall s, peak RSS MB, exit status, stdout)."""
    cmd = [sys.executable, "-m", "willowisp", *args]
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    return wall, usage.ru_maxrss / 1024, proc.returncode, text


def _load_seconds(folder: Path) -> float:
    """``load`` timed in a child, so this process stays small: a child's peak RSS counts
    the memory it was forked with."""
    code = (
        "import sys, time\n"
        "from willowisp.ingest import load\n"
        "t = time.perf_counter()\n"
        "load([sys.argv[1]])\n"
        "print(time.perf_counter() - t)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True
    )
    return float(done.stdout)


Result = tuple[float, float, int, str]
RUNS = 2  # each figure is the best of this many runs (a shared machine is noisy)


def best(run: Callable[[], Result]) -> Result:
    return min((run() for _ in range(RUNS)), key=lambda r: r[0])


def row(name: str, result: Result, base: float) -> None:
    wall, rss, code, _ = result
    status = "" if code == 0 else f"  exit {code}"
    print(f"{name:<38} {wall:6.2f}s {wall / base:5.1f}x {rss:6.0f}MB{status}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keep", metavar="DIR", help="write the run here and keep it")
    args = ap.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wisp-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if any(folder.glob("*.wtrace")):
            what = f"reused {folder}"
        else:
            what = f"{generate(folder, args.events):,} events in {len(SERVICES)} processes"
        size = sum(f.stat().st_size for f in folder.glob("*.wtrace"))
        print(f"run: {what}, {size / 1e6:.1f} MB on disk")
        shutil.rmtree(folder / FOLDER, ignore_errors=True)

        read = min(baseline(folder) for _ in range(3))
        base = min(_load_seconds(folder) for _ in range(3))
        print(f"baseline: read + decompress every chunk {read:.2f} s; load {base:.2f} s")
        print()
        print(f"{'query (first answer, end to end)':<38} {'wall':>7} {'/load':>6} {'RSS':>8}")
        for name, sql in QUERIES.items():
            row(
                name,
                best(lambda sql=sql: command("query", str(folder), sql, "--format", "csv")),
                base,
            )

        print()

        def cold(*args: str) -> Result:
            shutil.rmtree(folder / FOLDER, ignore_errors=True)
            return command(*args)

        q = ("query", str(folder), FINDINGS, "--format", "csv")
        a = ("analyze", str(folder), "--format", "json")
        for name, args_ in (("query findings", q), ("analyze --format json", a)):
            first = best(lambda args_=args_: cold(*args_))
            again = best(lambda args_=args_: command(*args_))
            assert first[3] == again[3], f"{name}: the cached answer differs"
            row(f"{name}, no cache entry", first, base)
            row(f"{name}, cached", again, base)
        entries = sorted((folder / FOLDER).glob("*"))
        kb = sum(e.stat().st_size for e in entries) / 1e3
        print(f"cache: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {kb:.0f} kB")
        print(f"a cached analyze takes 1/{first[0] / again[0]:.0f} of the time")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    main()
