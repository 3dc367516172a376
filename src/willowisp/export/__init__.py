"""Exports of an analysis for third-party viewers (``willowisp export``).

``chrome`` is the Chrome trace-event JSON that chrome://tracing and ui.perfetto.dev open
(see docs/export.md); Perfetto protobuf and OTLP JSON are later work.
"""

from willowisp.export.chrome import chrome_trace, write_json

FORMATS = ("perfetto", "chrome", "otlp-json")
AVAILABLE = ("chrome",)

__all__ = ["AVAILABLE", "FORMATS", "chrome_trace", "write_json"]
