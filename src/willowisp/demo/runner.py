"""``willowisp demo``: build the shop's services (build.py), run the shop (shop.py) with
every agent enabled, analyze the run, print one status line per runtime and the findings,
and write ``report.html`` beside the run.

The shop is recorded exactly as ``willowisp run`` would record it (the same environment:
``cli/run.py``'s ``build_env``); this process is not recorded itself. The risk engine runs
on a simulated host (hostsim.py: its own host name and a wall clock 300 ms behind where the
machine allows, otherwise a simulated offset that is announced and marked as such).

Whatever is missing is skipped with one line saying why; the demo succeeds (exit 0) when
the Python part ran, as the contract says. A service that failed (did not start, ended by
itself, or the shop itself) is named with the tail of its log; the demo exits 1 when the
Python part did not run (the shop failed, or no Python process was recorded). The shop
runs with ``python -P``: the user's working directory is not on its ``sys.path``, so a
``http.py`` there cannot stand in for the standard library's.
Every process it started is gone when it returns: the shop runs in a session of its own,
killed by that process group's id at the end whatever happened.
"""

from __future__ import annotations

import glob
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import IO, TYPE_CHECKING, Any, TextIO

from willowisp.demo.build import Service, build_all, cache_dir, checkout
from willowisp.errors import UsageError
from willowisp.hostsim import SimulatedHost, simulated_host

if TYPE_CHECKING:
    from willowisp.analysis.engine import Analysis

SKEW_NS = -300_000_000
SKEWED_SERVICE = "risk"
RUN_TIMEOUT_S = 120.0
RUNTIME_ORDER = ("python", "go", "nodejs", "java", "rust")
LOG_TAIL_LINES = 12


def _readline(stream: IO[str], timeout_s: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout_s)
    return stream.readline() if ready else ""


def _plan(services: list[Service], host: SimulatedHost) -> dict[str, list[str]]:
    """The shop's PLAN_JSON: the command of each service that can run."""
    plan = {}
    for s in services:
        if not s.ready:
            continue
        argv = list(s.argv)
        if s.name == SKEWED_SERVICE:
            argv = [*host.prefix, "env", *(f"{k}={v}" for k, v in host.env.items()), *argv]
        plan[s.name] = argv
    return plan


def record(
    out: str, services: list[Service], host: SimulatedHost, log: TextIO, fixed: bool = False
) -> list[str]:
    """Run the shop under the agents until it ends (it deadlocks, then stops its services
    and itself); relay its ``shop:`` lines. Returns the services that failed (``shop``
    when the shop itself did not run to its end with status 0), each named once."""
    from willowisp.cli.run import build_env, remove_stale_reserves

    env = build_env(out, "full", 1.0, [], "shop")
    runtime_of = {s.name: s.runtime for s in services}
    for s in services:
        if s.ready:
            env.update(s.env)
    # -P: the user's working directory stays off the shop's sys.path (a json.py or http.py
    # there would be imported instead of the standard library's); nothing else changes.
    argv = [sys.executable, "-P", "-m", "willowisp.demo.shop", json.dumps(_plan(services, host))]
    if fixed:
        argv.append("fixed")
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    with open(os.path.join(out, "logs", "shop.log"), "ab") as errors:
        shop = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
    assert shop.stdout is not None
    ended = False
    failed: list[str] = []
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            line = _readline(shop.stdout, max(0.0, deadline - time.monotonic()))
            if not line:
                ended = shop.poll() == 0
                if shop.returncode is not None:
                    break
                continue
            if line.startswith("shop: "):
                text = line[6:].rstrip()  # a service's own news is labelled with its runtime
                name = text.split(" ", 1)[0]
                label = runtime_of.get(name, "python")
                if text.startswith(f"{name} failed: ") and name not in failed:
                    failed.append(name)
                print(f"{label:8s} {text}", file=log, flush=True)
        else:
            print(f"python   the shop did not end within {RUN_TIMEOUT_S:.0f} s", file=log)
    finally:
        try:
            os.killpg(shop.pid, signal.SIGKILL)  # whatever of the session is left
        except ProcessLookupError:
            pass
        shop.wait()
        remove_stale_reserves(out)  # the full-disk reserves of the services killed here
    if not ended:
        failed.append("shop")
    return failed


def log_tail(out: str, name: str) -> list[str]:
    """The last lines of service ``name``'s stderr (``logs/<name>.log``), indented."""
    path = os.path.join(out, "logs", f"{name}.log")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()[-LOG_TAIL_LINES:]
    except OSError as exc:
        return [f"    ({path}: {exc.strerror})"]
    return [f"    {line}" for line in lines] or [f"    ({path} is empty)"]


def failure_lines(out: str, failed: list[str], runtime_of: dict[str, str]) -> list[str]:
    """What the demo says about each failed service: its name and its log's tail."""
    lines = []
    for name in failed:
        runtime = runtime_of.get(name, "python")
        path = os.path.join(out, "logs", f"{name}.log")
        lines.append(f"{runtime:8s} FAILED: {name} (its stderr, {path}, ends with:)")
        lines.extend(log_tail(out, name))
    return lines


def status_lines(doc: dict[str, Any], services: list[Service], host: SimulatedHost) -> list[str]:
    """One line per runtime: what ran (services, processes, events) or why it did not."""
    by_runtime: dict[str, list[dict[str, Any]]] = {}
    for p in doc["processes"]:
        by_runtime.setdefault(p["runtime"], []).append(p)
    notes = {s.runtime: s for s in services}
    lines = []
    for runtime in RUNTIME_ORDER:
        procs = by_runtime.get(runtime, [])
        service = notes.get(runtime)
        if procs:
            names = ", ".join(sorted({p["service"] for p in procs}))
            events = sum(int(p["agent"]["events"]) for p in procs)
            where = ""
            if service is not None and service.name == SKEWED_SERVICE:
                where = f"; on a simulated host: {host.description}"
            built = f" ({service.note})" if service is not None else ""
            lines.append(f"{runtime:8s} ran: {names}, {events} events{built}{where}")
        elif service is not None and not service.ready:
            lines.append(f"{runtime:8s} skipped: {service.note}")
        else:
            lines.append(f"{runtime:8s} did not record anything (see the lines above)")
    return lines


def write_html(analysis: Analysis, doc: dict[str, Any], out: str) -> str:
    """report.html in ``out`` through the HTML report, if this build has it; the line to
    print about it."""
    try:
        from willowisp.report.html_report import write_report
    except ImportError:
        return "report.html not written: this build has no HTML report yet"
    path = os.path.join(out, "report.html")
    try:
        write_report(path, doc, analysis, title="Willowisp demo: the shop")
    except Exception as exc:  # the demo's own output is still worth having: say, go on
        return f"report.html not written: {type(exc).__name__}: {exc}"
    return f"report: {path}"


def run(out: str, fmt: str, fixed: bool = False) -> int:
    from willowisp.analysis.engine import Options, analyze
    from willowisp.ingest.load import load
    from willowisp.report.json_report import render_json
    from willowisp.report.text_report import render_text

    os.makedirs(out, exist_ok=True)
    if glob.glob(os.path.join(out, "**", "*.wtrace"), recursive=True):
        raise UsageError(f"{out} already holds a run: give the demo an empty or new --out")
    log = sys.stderr if fmt == "json" else sys.stdout
    print(
        f"willowisp demo: building the shop's services (the first time takes a minute or "
        f"more; cached in {cache_dir()})",
        file=log,
        flush=True,
    )
    services = []
    for s in build_all(checkout(), cache_dir()):
        state = "ready" if s.ready else "skipped"
        print(f"{s.runtime:8s} {s.name}: {state}: {s.note}", file=log, flush=True)
        services.append(s)
    host = simulated_host(f"{SKEWED_SERVICE}-host", SKEW_NS)
    what = "the shop with its bugs fixed" if fixed else "the shop"
    print(f"willowisp demo: recording {what} into {out}", file=log, flush=True)
    failed = record(out, services, host, log, fixed)
    analysis = analyze(load([out]), Options())
    doc = analysis.document()
    print("", file=log)
    for line in status_lines(doc, services, host):
        print(line, file=log)
    print(write_html(analysis, doc, out), file=log)
    log.flush()
    if fmt == "json":
        sys.stdout.write(render_json(doc))
    else:
        print("", file=log)
        render_text(doc, sys.stdout)
    sys.stdout.flush()
    ran_python = any(p["runtime"] == "python" for p in doc["processes"])
    if failed:  # last, where the eye lands: which service failed and why
        runtime_of = {s.name: s.runtime for s in services}
        for line in failure_lines(out, failed, runtime_of):
            print(line, file=sys.stderr)
        print(f"willowisp demo: failed: {', '.join(failed)}", file=sys.stderr, flush=True)
    # the contract: exit 0 if the Python part ran (another runtime's failure is said above)
    return 0 if ran_python and "shop" not in failed else 1
