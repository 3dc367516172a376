"""Simulated hosts on one machine: a UTS namespace (its own host name) and a shifted wall
clock (libfaketime), where the machine allows; otherwise a simulated offset that the agent
applies to its clock anchors (WILLOWISP_CLOCK_OFFSET_NS) and that the trace says is simulated.

Used by the demo, ``willowisp doctor`` and the tests, so all three agree on what is real.
"""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass

_FAKETIME_GLOBS = (
    "/usr/lib/*-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/lib64/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


def faketime_library() -> str | None:
    """Path of libfaketime.so.1 if installed."""
    for pattern in _FAKETIME_GLOBS:
        for path in sorted(glob.glob(pattern)):
            if os.path.isfile(path):
                return path
    return None


def can_unshare_uts() -> bool:
    """True when we may create a UTS namespace (root, and util-linux's unshare present)."""
    return (
        os.geteuid() == 0
        and shutil.which("unshare") is not None
        and shutil.which("hostname") is not None
    )


@dataclass(frozen=True, slots=True)
class SimulatedHost:
    """How to start a command as another host with its wall clock shifted by ``skew_ns``."""

    prefix: tuple[str, ...]  # put before the command
    env: dict[str, str]  # add to the command's environment
    real_host: bool  # its own host name through a UTS namespace
    real_clock: bool  # its wall clock really shifted (libfaketime), not simulated
    description: str


def simulated_host(hostname: str, skew_ns: int) -> SimulatedHost:
    lib = faketime_library()
    uts = can_unshare_uts()
    prefix: tuple[str, ...] = ()
    env: dict[str, str] = {}
    parts = []
    if uts:
        prefix = ("unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', hostname)
        parts.append(f"host name {hostname!r} in its own UTS namespace")
    else:
        parts.append("same host name (no UTS namespace: needs root and unshare)")
    if lib:
        sign = "+" if skew_ns >= 0 else "-"
        env = {
            "LD_PRELOAD": lib,
            "FAKETIME": f"{sign}{abs(skew_ns) / 1e9:.6f}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
        parts.append(f"wall clock shifted {skew_ns / 1e6:+.0f} ms by libfaketime")
    else:
        env = {"WILLOWISP_CLOCK_OFFSET_NS": str(skew_ns)}
        parts.append(f"wall clock SIMULATED {skew_ns / 1e6:+.0f} ms (libfaketime not installed)")
    return SimulatedHost(prefix, env, uts, lib is not None, "; ".join(parts))
