"""Willowisp: a debugger for concurrency in polyglot systems.

Layers, each importing only the ones before it:
model <- wtrace <- ingest <- causality <- analysis <- report / cli.
The agent (``willowisp.agent``) depends on model, wtrace, wire and channel (the live
protocols' frames, shared with the collector and ``willowisp ctl``) alone, and on the
standard library only, because it runs inside the observed program's interpreter.

This module re-exports the small public API and nothing heavy: importing ``willowisp``
must stay cheap, since every Python process started by ``willowisp run`` does it.
"""

from __future__ import annotations

from typing import Any

from willowisp.access import access

__version__ = "0.1.0"


def start(
    out: str | None = None,
    *,
    mode: str | None = None,
    service: str | None = None,
    trace_ratio: float | None = None,
) -> Any:
    """Start the Python agent in this process, writing a run into ``out`` (see agent.api).
    What is not given comes from WILLOWISP_OUT, WILLOWISP_MODE and WILLOWISP_TRACE_RATIO,
    else the defaults: ./wisp-traces/<UTC timestamp>/, full mode, every trace."""
    from willowisp.agent.api import start as _start

    return _start(out=out, mode=mode, service=service, trace_ratio=trace_ratio)


def stop() -> None:
    """Flush everything recorded so far, remove the hooks and stop the agent."""
    from willowisp.agent.api import stop as _stop

    _stop()


__all__ = ["__version__", "access", "start", "stop"]
