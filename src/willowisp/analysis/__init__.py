"""Analyses: one module per finding kind, all producing :class:`Finding`.

``engine.analyze`` links a trace once and runs them all; ``document`` turns the result
into the contract's JSON document, which the reports render.
"""

from willowisp.analysis.engine import Analysis, Options, analyze, analyze_paths
from willowisp.analysis.finding import Finding

__all__ = ["Analysis", "Finding", "Options", "analyze", "analyze_paths"]
