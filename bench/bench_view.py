"""Benchmark: ``willowisp view`` on a 1,000,000-event run, measured in a real browser (not a
test).

The run is bench_analyze's: four services, threads and tasks, locks, queues, data accesses
and HTTP calls between them, one skewed clock. Timed here, in this order:

- the baseline: ``willowisp analyze RUN --format json`` cold, then warm (read back from the
  results cache beside the run) — what a user waits for today to see findings in text;
- ``willowisp view RUN``: cold (load, analyze, build and cache the view columns) and warm
  (the cached view), each to the moment it prints its URL;
- in headless Chromium (Debian's ``chromium``): from navigation to the first screen drawn;
- interaction: zooms, pans, lane scrolling, a mode switch, selecting a finding — each from
  the key press to the redrawn screen (the page marks ``body[data-idle=1]``);
- the server's peak RSS.

Target (issue 8): a 1M-event trace opens in ≤ 5 s using the cache beside the run, and pans
and zooms at interactive speed.

    python bench/bench_view.py [--events N] [--keep DIR]
    python bench/bench_view.py --run wisp-demo/<stamp>     # a recorded run, e.g. the demo's
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_analyze import SERVICES, generate

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def wisp(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "willowisp", *args], check=True, capture_output=True, timeout=900
    )
    return time.perf_counter() - t


def start_view(folder: Path) -> tuple[subprocess.Popen[str], str, float]:
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "view", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    took = time.perf_counter() - t
    match = re.search(r"http://\S+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"view did not start: {line!r}")
    return proc, match.group(0), took


def stop(proc: subprocess.Popen[str]) -> int:
    """Stop the server; its peak RSS in kB."""
    status = Path(f"/proc/{proc.pid}/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    proc.terminate()
    proc.wait(timeout=60)
    if proc.stdout is not None:
        proc.stdout.close()
    return peak


def browse(url: str) -> tuple[float, dict[str, list[float]]]:
    from playwright.sync_api import sync_playwright

    idle = "body[data-idle='1']"
    timings: dict[str, list[float]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        t = time.perf_counter()
        page.goto(url)
        page.wait_for_selector(idle, state="attached", timeout=120_000)
        first = time.perf_counter() - t

        def timed(name: str, key: str) -> None:
            t = time.perf_counter()
            page.keyboard.press(key)
            page.wait_for_selector(idle, state="attached", timeout=120_000)
            timings.setdefault(name, []).append(time.perf_counter() - t)
            body = page.locator("body")
            for part in ("fetchMs", "drawMs"):
                value = body.get_attribute(f"data-{part.lower().replace('ms', '-ms')}")
                timings.setdefault(f"  {part}", []).append(float(value or 0) / 1e3)

        for _ in range(6):
            timed("zoom in", "+")
        for _ in range(6):
            timed("pan", "ArrowRight")
        for _ in range(6):
            timed("zoom out", "-")
        for _ in range(6):
            timed("scroll lanes", "PageDown")
        timed("mode switch", "3")
        timed("mode switch", "1")
        timed("mode switch", "2")
        t = time.perf_counter()
        page.locator("#findings li").first.click()
        page.wait_for_selector(idle, state="attached", timeout=120_000)
        timings["select a finding"] = [time.perf_counter() - t]
        browser.close()
    return first, timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keep", metavar="DIR", help="write the run here and keep it")
    ap.add_argument("--run", metavar="DIR", help="measure this run instead (e.g. the demo's)")
    args = ap.parse_args()
    if args.run:
        args.keep = args.run
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wisp-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if not any(folder.glob("*.wtrace")):
            n = generate(folder, args.events)
            print(f"generated {n:,} events in {len(SERVICES)} processes")
        shutil.rmtree(folder / ".wisp-cache", ignore_errors=True)
        cold = wisp("analyze", str(folder), "--format", "json")
        warm = wisp("analyze", str(folder), "--format", "json")
        print(f"baseline: analyze --format json cold {cold:.2f} s, warm (cached) {warm:.2f} s")
        proc, url, view_cold = start_view(folder)
        rss_cold = stop(proc)
        proc, url, view_warm = start_view(folder)
        try:
            first, timings = browse(url)
        finally:
            rss_warm = stop(proc)
        print(
            f"view: cold start {view_cold:.2f} s ({view_cold / cold:.2f}x analyze cold), "
            f"warm start {view_warm:.2f} s ({view_warm / warm:.2f}x analyze warm); "
            f"first screen in the browser {first:.2f} s"
        )
        print(
            f"open with the cache, to the first screen: {view_warm + first:.2f} s "
            f"(target 5 s); server peak RSS cold {rss_cold / 1024:.0f} MB, "
            f"warm {rss_warm / 1024:.0f} MB"
        )
        for name, values in timings.items():
            print(
                f"  {name:<17} median {statistics.median(values) * 1e3:6.0f} ms, "
                f"max {max(values) * 1e3:6.0f} ms ({len(values)}x)"
            )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
