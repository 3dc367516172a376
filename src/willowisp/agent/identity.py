"""Who this process is, and what proves which clock it shares: the ``process`` record.

The clock-domain keys (boot id, time-namespace identity, a preloaded fake-time library,
a simulated offset) are read here, once per record, from the kernel and the environment;
the analyzer merges processes into one clock domain only when they match.
"""

from __future__ import annotations

import os
import re
import socket
import sys

from willowisp.agent.config import AgentConfig
from willowisp.wtrace.payload import AttrValue

AGENT_VERSION = "0.1.0"


def process_attrs(cfg: AgentConfig, process_id: str, segment: int) -> dict[str, AttrValue]:
    return {
        "process_id": process_id,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "host": socket.gethostname(),
        "service": cfg.service,
        "runtime": "python",
        "runtime_version": ".".join(map(str, sys.version_info[:3])),
        "agent_version": AGENT_VERSION,
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),
        "time_ns": _readlink("/proc/self/ns/time"),
        "fake_time": fake_time(),
        "simulated_offset_ns": cfg.clock_offset_ns,
        "argv": " ".join(getattr(sys, "orig_argv", sys.argv))[:4096],
        "traceparent": os.environ.get("TRACEPARENT", ""),
        "parent_process_id": os.environ.get("WILLOWISP_PARENT_PROCESS", ""),
        "run_root": 1 if cfg.run_pid and os.getppid() == cfg.run_pid else 0,
        "mode": cfg.mode,
        "boundaries": "|".join(cfg.boundaries),
        "segment": segment,
    }


def fake_time() -> str:
    """The fake-time library preloaded into this process ('' if none)."""
    preload = os.environ.get("LD_PRELOAD", "")
    for part in re.split(r"[:\s]+", preload):
        if "faketime" in os.path.basename(part):
            return os.path.basename(part)
    return ""


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
