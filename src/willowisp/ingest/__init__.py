"""Getting traces in: ``.wtrace`` runs and files into one columnar :class:`Trace`.

Importers of foreign formats (OTLP, Jaeger, Chrome, ...) will convert to the same model
here, at the edge, so nothing downstream knows where an event came from.
"""

from willowisp.ingest.load import build_trace, load
from willowisp.ingest.trace import Events, Trace

__all__ = ["Events", "Trace", "build_trace", "load"]
