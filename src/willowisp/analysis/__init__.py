"""Analyses: one module per finding kind, all producing :class:`Finding`.

``engine.analyze`` links a trace once and runs them all; ``document`` turns the result
into the contract's JSON document, which the reports render.
"""

from typing import Any

__all__ = ["Analysis", "Finding", "Options", "analyze", "analyze_paths"]


def __getattr__(name: str) -> Any:
    # Lazy: the engine pulls in numpy, and `willowisp run` / `--help` must start fast.
    if name in ("Analysis", "Options", "analyze", "analyze_paths"):
        from willowisp.analysis import engine

        return getattr(engine, name)
    if name == "Finding":
        from willowisp.analysis.finding import Finding

        return Finding
    raise AttributeError(name)
