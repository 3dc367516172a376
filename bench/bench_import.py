"""Benchmark: importing a 1,000,000-span OTLP JSON file (not a test). Target: ≤ 15 s.

Writes an OTLP JSON export shaped like a real one — 1,000 resources (10 services) of 1,000
spans each; one span in five crosses a process (SERVER, CLIENT, PRODUCER, CONSUMER) with HTTP
attributes; every span has four attributes and a parent — then times, each as the whole
command in a child process with its peak RSS:

- ``willowisp import big.json -o big.wtrace`` (read, identify, decode every span into units
  and hops to check and count them, store the input in the .wtrace) — the target;
- ``willowisp analyze big.wtrace --format json`` on the result, for scale (the whole
  analysis of a million units; no target).

Baselines measured in the same run: ``json.loads`` and ``orjson.loads`` of the same bytes in
a child process (what any Python reader of the file pays before it can look at a span).

    python bench/bench_import.py [--spans N] [--keep DIR] [--no-analyze]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 15.0
KINDS = [1, 1, 1, 1, 2, 1, 1, 1, 1, 3, 1, 1, 1, 1, 4, 1, 1, 1, 1, 5]


def generate(path: Path, spans: int, per: int = 1000) -> None:
    rnd = random.Random(1)
    t0 = 1_700_000_000_000_000_000
    with open(path, "w") as f:
        f.write('{"resourceSpans":[')
        for r in range(max(spans // per, 1)):
            tid = f"{rnd.getrandbits(128):032x}"
            root = f"{rnd.getrandbits(64):016x}"
            out = []
            for i in range(min(per, spans)):
                sid = root if i == 0 else f"{rnd.getrandbits(64):016x}"
                start = t0 + r * 10**9 + i * 1000
                s = {
                    "traceId": tid,
                    "spanId": sid,
                    "name": f"op{i % 20}",
                    "kind": KINDS[i % 20],
                    "startTimeUnixNano": str(start),
                    "endTimeUnixNano": str(start + 500),
                    "attributes": [
                        {"key": "http.request.method", "value": {"stringValue": "GET"}},
                        {"key": "url.path", "value": {"stringValue": f"/items/{i % 50}"}},
                        {"key": "http.response.status_code", "value": {"intValue": "200"}},
                        {"key": "n", "value": {"intValue": str(i)}},
                    ],
                    "status": {},
                }
                if i:
                    s["parentSpanId"] = root
                out.append(s)
            res = {
                "attributes": [{"key": "service.name", "value": {"stringValue": f"svc{r % 10}"}}]
            }
            if r:
                f.write(",")
            f.write(
                json.dumps(
                    {"resource": res, "scopeSpans": [{"scope": {"name": "x"}, "spans": out}]}
                )
            )
        f.write("]}")


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and stderr of a child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = p.communicate()
    wall = time.perf_counter() - t
    rss = _peak_rss_of_children()  # the largest child so far (ru_maxrss is a maximum)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {err.strip()[-500:]}")
    return wall, rss, err


def _peak_rss_of_children() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--keep", metavar="DIR", help="keep the files here")
    ap.add_argument("--no-analyze", action="store_true", help="skip the analyze run")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="wisp-bench-import-"))
    work.mkdir(parents=True, exist_ok=True)
    big, out = work / "big.json", work / "big.wtrace"
    try:
        t = time.perf_counter()
        generate(big, args.spans)
        size = big.stat().st_size
        took = time.perf_counter() - t
        print(f"generated {args.spans:,} spans, {size / 2**20:.0f} MiB in {took:.1f} s")
        py = sys.executable
        load = "import sys,{m};d=open(sys.argv[1],'rb').read();{m}.loads(d)"
        base = {}
        for mod in ("json", "orjson"):
            wall, _, _ = timed([py, "-c", load.format(m=mod), str(big)])
            base[mod] = wall
            print(f"baseline {mod}.loads in a child process: {wall:6.1f} s")
        out.unlink(missing_ok=True)
        wall, rss, err = timed([py, "-m", "willowisp", "import", str(big), "-o", str(out)])
        rate = args.spans / wall
        verdict = "met" if wall <= TARGET_S else "NOT met"
        print(
            f"willowisp import: {wall:6.1f} s  ({rate:,.0f} spans/s, peak RSS of children "
            f"{rss / 2**20:.1f} GiB)  target <= {TARGET_S:.0f} s: {verdict} "
            f"({wall / TARGET_S:.2f}x the target; {wall / base['json']:.1f}x json.loads, "
            f"{wall / base['orjson']:.1f}x orjson.loads)"
        )
        print(f"  {err.strip().splitlines()[-1] if err.strip() else ''}")
        print(f"  {out.name}: {out.stat().st_size / 2**20:.0f} MiB")
        if not args.no_analyze:
            wall, rss, _ = timed([py, "-m", "willowisp", "analyze", str(out), "--format", "json"])
            print(f"willowisp analyze of it: {wall:6.1f} s (for scale; no target)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
