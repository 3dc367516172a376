"""Exports of an analysis for third-party viewers (``willowisp export``).

``chrome`` is the Chrome trace-event JSON that chrome://tracing and ui.perfetto.dev open
(see docs/export.md); ``perfetto`` is Perfetto's native protobuf (TrackEvent);
``otlp-json`` is OTLP's JSON (TracesData) for Jaeger, Tempo and other OTLP backends.
"""

from willowisp.export.chrome import chrome_trace, write_bytes, write_json
from willowisp.export.otlp_json import otlp_json
from willowisp.export.perfetto import perfetto_trace

FORMATS = ("perfetto", "chrome", "otlp-json")
AVAILABLE = ("perfetto", "chrome", "otlp-json")

__all__ = [
    "AVAILABLE",
    "FORMATS",
    "chrome_trace",
    "otlp_json",
    "perfetto_trace",
    "write_bytes",
    "write_json",
]
