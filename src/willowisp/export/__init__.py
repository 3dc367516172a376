"""Exports of an analysis for third-party viewers (``willowisp export``).

``chrome`` is the Chrome trace-event JSON that chrome://tracing and ui.perfetto.dev open
(see docs/export.md); ``perfetto`` is Perfetto's native protobuf (TrackEvent); OTLP JSON
is later work.
"""

from willowisp.export.chrome import chrome_trace, write_json
from willowisp.export.perfetto import perfetto_trace, write_bytes

FORMATS = ("perfetto", "chrome", "otlp-json")
AVAILABLE = ("perfetto", "chrome")

__all__ = [
    "AVAILABLE",
    "FORMATS",
    "chrome_trace",
    "perfetto_trace",
    "write_bytes",
    "write_json",
]
