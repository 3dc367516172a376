"""Causality: what happened before what, across units, processes and clocks.

``link(trace)`` matches hops through propagated context (:mod:`hops`), groups processes
into clock domains and bounds their offsets from causal constraints (:mod:`clock_domains`,
:mod:`offsets`; a drifting clock follows a fitted line, :mod:`drift`), builds the
happens-before graph (:mod:`graph`), and times every event from the root of its logical
operation (:mod:`operations`). :mod:`program_order` and :mod:`waits` give the per-unit
views (next event, waits, lock holds) analyses build on.
"""

from willowisp.causality.link import Causality, link

__all__ = ["Causality", "link"]
