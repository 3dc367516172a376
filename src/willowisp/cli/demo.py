"""``willowisp demo [--out DIR] [--format text|json]``: the bundled demo (see demo/runner.py)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the bundled demo: a real cross-process deadlock and a skewed clock",
        description="Start two real Python services that deadlock across processes over "
        "HTTP, one on a simulated host whose clock is 300 ms off; record them, kill them, "
        "and print the analysis.",
    )
    p.add_argument(
        "--out", metavar="DIR", help="where to write the run (default ./wisp-demo/<UTC timestamp>)"
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text (default) or the analysis JSON on stdout",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from willowisp.demo.runner import run as run_demo

    out = os.path.abspath(
        args.out or os.path.join("wisp-demo", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    )
    return run_demo(out, args.format)
