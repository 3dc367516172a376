"""The agent's configuration: one frozen object, read once from the environment.

``willowisp run`` passes everything through ``WILLOWISP_*`` variables (so child processes
inherit it); :func:`willowisp.start` builds the same object from its arguments. Decided
once at start, so hooks never look at the environment per event.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from willowisp.errors import UsageError

RESERVE_PREFIX = ".willowisp-reserve-"  # + pid: the room an agent keeps in its run folder
MODES = ("full", "hops")
STREAM_RETRY_MAX_S = 30.0  # the native stream's longest reconnect delay (docs/protocols.md)


def read_stream_retry_s(env: Any, *, strict: bool = True) -> float:
    """WILLOWISP_STREAM_RETRY_S: the cap on every reconnect delay of the native stream, a
    positive number of seconds (empty: STREAM_RETRY_MAX_S). A bad value is a UsageError,
    or (``strict=False``) the default."""
    raw = (env.get("WILLOWISP_STREAM_RETRY_S", "") or "").strip()
    if not raw:
        return STREAM_RETRY_MAX_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and value > 0:
        return value
    if strict:
        raise UsageError(f"WILLOWISP_STREAM_RETRY_S={raw!r} is not a positive number of seconds")
    return STREAM_RETRY_MAX_S


@dataclass(frozen=True, slots=True)
class AgentConfig:
    out: str
    mode: str = "full"
    trace_ratio: float = 1.0
    service: str = "python"
    boundaries: tuple[str, ...] = ()
    clock_offset_ns: int = 0  # simulated skew added to wall-clock anchors
    run_pid: int = 0  # pid of the `willowisp run` that started the program, 0 if none
    flush_interval_s: float = 0.05  # how often the flusher writes a chunk
    max_buffer_bytes: int = 64 * 1024 * 1024  # all event buffers of the process together
    collector: str = ""  # WILLOWISP_COLLECTOR: stream chunks there instead of files
    token: str = field(default="", repr=False)  # WILLOWISP_TOKEN, sent in the stream's hello
    # WILLOWISP_STREAM_RETRY_S: caps every reconnect delay (the default reads the variable,
    # so a config built from a few fields still has it; from_env refuses a bad value)
    stream_retry_s: float = field(
        default_factory=lambda: read_stream_retry_s(os.environ, strict=False)
    )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not 0.0 <= self.trace_ratio <= 1.0:
            raise UsageError(f"trace ratio {self.trace_ratio} is not between 0 and 1")
        if not 0.001 <= self.flush_interval_s <= 3600:
            raise UsageError(f"flush interval {self.flush_interval_s} s is out of range")
        if not (math.isfinite(self.stream_retry_s) and self.stream_retry_s > 0):
            raise UsageError(f"stream retry cap {self.stream_retry_s} s is not positive")


def default_service() -> str:
    """WILLOWISP_SERVICE, OTEL_SERVICE_NAME, else the program's name (``-m pkg.mod`` -> ``mod``).

    Uses ``sys.orig_argv``: when the agent starts (from sitecustomize) ``sys.argv`` is not
    yet the program's.
    """
    name = os.environ.get("WILLOWISP_SERVICE") or os.environ.get("OTEL_SERVICE_NAME")
    if name:
        return name
    return program_name(list(getattr(sys, "orig_argv", sys.argv)))


def program_name(argv: list[str]) -> str:
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-m" and i + 1 < len(args):
            return args[i + 1].rsplit(".", 1)[-1]
        if a.startswith("-m") and len(a) > 2:
            return a[2:].rsplit(".", 1)[-1]
        if a == "-c" or a.startswith("-c"):
            return "python"
        if a in ("-W", "-X", "-Q"):
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        base = os.path.basename(a)
        return base[:-3] if base.endswith(".py") else (base or "python")
    return "python"


def default_out() -> str:
    import time

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return os.path.join(os.getcwd(), "wisp-traces", stamp)


def _number(env: Any, name: str, default: str, kind: Callable[[str], Any]) -> Any:
    """A numeric WILLOWISP_* variable (empty: the default); UsageError naming it."""
    raw = env.get(name, default) or default
    try:
        return kind(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number") from None


def from_env(env: dict[str, str] | None = None) -> AgentConfig:
    """Read WILLOWISP_* variables. Raises UsageError on a malformed value."""
    e = os.environ if env is None else env
    ratio = _number(e, "WILLOWISP_TRACE_RATIO", "1", float)
    offset = _number(e, "WILLOWISP_CLOCK_OFFSET_NS", "0", int)
    run_pid = _number(e, "WILLOWISP_RUN_PID", "0", int)
    flush_ms = _number(e, "WILLOWISP_FLUSH_MS", "50", float)
    max_bytes = _number(e, "WILLOWISP_MAX_BUFFER_BYTES", str(64 * 1024 * 1024), int)
    retry_s = read_stream_retry_s(e)
    mode = e.get("WILLOWISP_MODE", "full") or "full"
    if mode not in MODES:
        raise UsageError(f"WILLOWISP_MODE={mode!r} is not one of {', '.join(MODES)}")
    if not 0.0 <= ratio <= 1.0:
        raise UsageError(f"WILLOWISP_TRACE_RATIO={ratio!r} is not between 0 and 1")
    bounds = tuple(b for b in e.get("WILLOWISP_BOUNDARIES", "").split("|") if b.strip())
    return AgentConfig(
        out=e.get("WILLOWISP_OUT") or default_out(),
        mode=mode,
        trace_ratio=ratio,
        service=default_service(),
        boundaries=bounds,
        clock_offset_ns=offset,
        run_pid=run_pid,
        flush_interval_s=flush_ms / 1000.0,
        max_buffer_bytes=max_bytes,
        collector=e.get("WILLOWISP_COLLECTOR", "").strip(),
        token=e.get("WILLOWISP_TOKEN", ""),
        stream_retry_s=retry_s,
    )
