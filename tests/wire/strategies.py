"""Hypothesis strategies shared by the wire tests."""

from __future__ import annotations

from hypothesis import strategies as st

from willowisp.wire.traceparent import TraceContext

hex_chars = "0123456789abcdef"
trace_ids = st.text(hex_chars, min_size=32, max_size=32).filter(lambda s: s != "0" * 32)
span_ids = st.text(hex_chars, min_size=16, max_size=16).filter(lambda s: s != "0" * 16)
contexts = st.builds(TraceContext, trace_ids, span_ids, st.integers(0, 255))
