"""``willowisp demo [--out DIR] [--format text|json]``: the bundled polyglot demo (the shop
in demo/, run by willowisp/demo/runner.py)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the bundled polyglot demo: a small shop in five runtimes with seeded bugs",
        description="Build (with the toolchains this machine has; dependencies and builds "
        "are cached under ~/.cache/willowisp/demo/) and run a small shop: an asyncio Python "
        "orchestrator, a Go inventory service, a Node pricing worker, a Java ledger and a "
        "Rust risk engine on a simulated host with a skewed clock. Record it with every "
        "agent, analyze it, print one status line per runtime and the findings, and write "
        "the run and report.html into DIR. Seeded bugs: a deadlock through three runtimes, "
        "a race between two, the skewed clock, a hop that drops the trace header and a "
        "polling consumer. A runtime whose toolchain is missing is skipped with the reason; "
        "exit status 0 when the Python part ran, 1 when it did not; a service that was started "
        "and failed is named on stderr with the tail of its log.",
    )
    p.add_argument(
        "--out", metavar="DIR", help="where to write the run (default ./wisp-demo/<UTC timestamp>)"
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text (default), or the analysis JSON on stdout (status lines on stderr)",
    )
    p.add_argument(
        "--fixed",
        action="store_true",
        help="run the shop with its bugs fixed (settle before score, the gateway forwards "
        "the trace context, no deadlock): to compare, or to check a fix with replay --delay",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from willowisp.demo.runner import run as run_demo

    out = os.path.abspath(
        args.out or os.path.join("wisp-demo", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    )
    return run_demo(out, args.format, args.fixed)
