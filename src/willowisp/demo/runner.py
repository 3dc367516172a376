"""``willowisp demo``: run two real Python services that deadlock across processes, with the
second one on a simulated host whose wall clock is 300 ms behind, record them, kill them
(as a user would kill -9 a hung system), and analyze the run.

Everything is real where the machine allows it (a UTS namespace for the host name,
libfaketime for the clock); what is simulated instead is said in the status lines and
recorded in the trace.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from typing import IO, TextIO

from willowisp.demo.watch import wait_until_blocked
from willowisp.hostsim import simulated_host

SKEW_NS = -300_000_000
DEADLOCK_TIMEOUT_S = 60.0


def _readline(stream: IO[str], timeout_s: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout_s)
    return stream.readline() if ready else ""


def record(out: str, log: TextIO) -> tuple[bool, str]:
    """Run the two services under the agent until they deadlock; (deadlocked, host note)."""
    from willowisp.cli.run import build_env

    host = simulated_host("stock-host", SKEW_NS)
    env = build_env(out, "full", 1.0, [], None)
    env.pop("WILLOWISP_SERVICE", None)
    env.pop("OTEL_SERVICE_NAME", None)
    stock_cmd = [
        *host.prefix,
        "env",
        *(f"{k}={v}" for k, v in host.env.items()),
        sys.executable,
        "-m",
        "willowisp.demo.stock",
    ]
    print(
        f"python   orders (asks stock to reserve while holding its lock) + stock "
        f"({host.description})",
        file=log,
    )
    orders = subprocess.Popen(
        [sys.executable, "-m", "willowisp.demo.orders", *stock_cmd],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert orders.stdout is not None
    deadlocked = False
    try:
        deadline = time.monotonic() + DEADLOCK_TIMEOUT_S
        line = ""
        while "placing order" not in line and time.monotonic() < deadline:
            line = _readline(orders.stdout, max(0.0, deadline - time.monotonic()))
            if not line and orders.poll() is not None:
                break
        if "placing order" in line:
            # Every wait of the cycle must be on disk before the kill: each process flushes on
            # its own, so seeing orders' handler blocked says nothing yet about stock's file.
            deadlocked = all(
                wait_until_blocked(out, name, 1, DEADLOCK_TIMEOUT_S)
                for name in ("state_lock", "GET /price", "GET /reserve?sku=&qty=")
            )
    finally:
        try:
            os.killpg(orders.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        orders.wait()
    if deadlocked:
        print("python   the system hung; killed it with SIGKILL, as you would", file=log)
    else:
        print(
            "python   the system did not hang within "
            f"{DEADLOCK_TIMEOUT_S:.0f} s; analyzing what was recorded",
            file=log,
        )
    return deadlocked, host.description


def run(out: str, fmt: str) -> int:
    from willowisp.cli.main import main as cli_main

    os.makedirs(out, exist_ok=True)
    log = sys.stderr if fmt == "json" else sys.stdout
    print(f"willowisp demo: recording into {out}", file=log)
    for runtime in ("go", "java", "rust", "nodejs"):
        print(f"{runtime:8s} skipped: its agent is not part of this release yet", file=log)
    record(out, log)
    log.flush()
    status = cli_main(["analyze", out, "--format", fmt])
    return 0 if status in (0, 1) else status
