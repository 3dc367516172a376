"""The ``.wtrace`` binary format: framing, payload codec, writer, reader, text twin.

Depends only on ``willowisp.model`` (and the standard library for writing, so the agent
can write from any interpreter); the reader uses numpy for its columns.
"""

from willowisp.wtrace.payload import DecodedEvents, EventBatch, Record
from willowisp.wtrace.reader import TraceFile, read_bytes, read_file
from willowisp.wtrace.writer import SegmentWriter, encode_chunk, write_file

__all__ = [
    "DecodedEvents",
    "EventBatch",
    "Record",
    "SegmentWriter",
    "TraceFile",
    "encode_chunk",
    "read_bytes",
    "read_file",
    "write_file",
]
