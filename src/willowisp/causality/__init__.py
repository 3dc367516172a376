"""Causality: what happened before what, across units, processes and clocks.

``link(trace)`` matches hops through propagated context (:mod:`hops`), groups processes
into clock domains and bounds their offsets from causal constraints (:mod:`clock_domains`,
:mod:`offsets`), and builds the happens-before graph (:mod:`graph`). :mod:`program_order`
and :mod:`waits` give the per-unit views (next event, waits, lock holds) analyses build on.
"""

from willowisp.causality.link import Causality, link

__all__ = ["Causality", "link"]
