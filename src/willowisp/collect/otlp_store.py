"""What the OTLP receivers accept, and where it goes: checked requests into segment files.

Both OTLP receivers (``otlp_http.py``, ``otlp_grpc.py``) hand every request here. A request
is *checked* (:func:`check_proto`, :func:`check_json`): it must parse, and each span must
have a 16-byte trace id and an 8-byte span id, neither all zeros, and must not end before it
starts. A request that does not parse is refused whole (HTTP 400, gRPC INVALID_ARGUMENT);
spans that break the rules are only *counted*, and the client is told how many in the
response's ``partial_success``. The request is then *stored as it arrived* (the protobuf
bytes of an ``ExportTraceServiceRequest``, which are wire-identical to ``TracesData``, or
the JSON body after gzip is undone) as one ``embedded`` stream (docs/format.md, record 7)
of format ``otlp-proto`` or ``otlp-json``: decoding into spans happens when the run is
read, and the importer skips the same spans for the same reasons. Storing the original
keeps every field a later importer may learn to use, and costs no conversion on the hot
path (the trade-off: each read decodes again).

Durability: :meth:`OtlpStore.append` returns once the chunk is written with one
``write(2)`` (:class:`~willowisp.wtrace.writer.SegmentWriter`), and receivers answer only
after it returned, so everything acknowledged is in the kernel and survives the collector's
death (like every file an agent writes, nobody calls ``fsync``). There is no buffering to
flush, so "flushed at least every 100 ms" holds trivially.

Files: ``otlp-<pid>-<n>.wtrace`` in the out folder (``pid`` the collector's, ``n`` the first
free number, created exclusively), a new one once a file passes :data:`ROTATE_BYTES`;
stream numbers count from 1 in each file. One store is shared by all receivers of a
collector; a lock serialises the writes (each is one system call of at most a few MiB, so
the lock is held briefly).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from willowisp.wtrace.writer import SegmentWriter

MAX_BODY = 64 * 1024 * 1024  # a request, after decompression (HTTP 413 / gRPC limit beyond)
ROTATE_BYTES = 256 * 1024 * 1024
FORMAT_PROTO = "otlp-proto"
FORMAT_JSON = "otlp-json"
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_MAX_JSON_DEPTH_ERRORS = (RecursionError, MemoryError)


class BadRequest(ValueError):
    """The request body cannot be read as an OTLP trace request (the message says why)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What checking one request found: ``spans`` in it, ``rejected`` of them breaking the
    rules (see the module docstring), ``problem`` describing the first rejected one."""

    spans: int
    rejected: int
    problem: str = ""


@dataclass
class Stats:
    """Totals over every receiver of one collector, for its last line and for tests.
    Changed only under :attr:`OtlpStore.lock`."""

    requests: int = 0  # requests stored (acknowledged)
    spans: int = 0  # spans in them, the rejected ones included
    rejected: int = 0  # spans reported in partial_success
    bytes: int = 0  # request bytes stored (before the segment's own compression)
    refused: int = 0  # requests answered with an error (4xx/5xx, gRPC errors)
    files: list[str] = field(default_factory=list)


# --- checking ---------------------------------------------------------------------------


def check_proto(body: bytes) -> Verdict:
    """Check a protobuf ``ExportTraceServiceRequest``. Raises :class:`BadRequest` when it
    does not parse. Uses the upb-backed generated classes: about a million spans a second."""
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RuntimeError) as exc:
        raise BadRequest(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    spans = rejected = 0
    problem = ""
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                spans += 1
                why = _span_problem(
                    span.trace_id, span.span_id, span.start_time_unix_nano, span.end_time_unix_nano
                )
                if why:
                    rejected += 1
                    problem = problem or why
    return Verdict(spans, rejected, problem)


def _span_problem(trace_id: bytes, span_id: bytes, start: int, end: int) -> str:
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        return f"span {span_id.hex() or '(none)'}: trace id must be 16 bytes, not all zero"
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        return f"span {span_id.hex() or '(none)'}: span id must be 8 bytes, not all zero"
    if end < start:
        return f"span {span_id.hex()}: ends ({end}) before it starts ({start})"
    return ""


def check_json(body: bytes) -> Verdict:
    """Check an OTLP/JSON ``ExportTraceServiceRequest`` (ids in hex, 64-bit integers as
    strings or numbers). Raises :class:`BadRequest` when it is not such a JSON object."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"not JSON: {exc}") from None
    except _MAX_JSON_DEPTH_ERRORS:
        raise BadRequest("JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise BadRequest("an OTLP/JSON request must be a JSON object")
    spans = rejected = 0
    problem = ""
    for rs in _array(doc, "resourceSpans"):
        for ss in _array(rs, "scopeSpans"):
            for span in _array(ss, "spans"):
                spans += 1
                why = _json_span_problem(span)
                if why:
                    rejected += 1
                    problem = problem or why
    return Verdict(spans, rejected, problem)


def _array(obj: Any, key: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise BadRequest(f"expected an object holding {key!r}, found {type(obj).__name__}")
    value = obj.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"{key!r} must be an array, found {type(value).__name__}")
    return value


def _json_span_problem(span: dict[str, Any]) -> str:
    try:
        trace_id = bytes.fromhex(span.get("traceId") or "")
        span_id = bytes.fromhex(span.get("spanId") or "")
    except (TypeError, ValueError):
        return f"span {str(span.get('spanId'))[:40]!r}: ids must be hex strings"
    start, end = _nanos(span.get("startTimeUnixNano")), _nanos(span.get("endTimeUnixNano"))
    if start is None or end is None:
        return f"span {span_id.hex()}: times must be integers (or strings of digits)"
    return _span_problem(trace_id, span_id, start, end)


def _nanos(value: Any) -> int | None:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return int(value)
    return None


# --- answering --------------------------------------------------------------------------


def response_proto(verdict: Verdict) -> bytes:
    """The serialized ``ExportTraceServiceResponse`` for ``verdict``."""
    response = ExportTraceServiceResponse()
    if verdict.rejected:
        response.partial_success.rejected_spans = verdict.rejected
        response.partial_success.error_message = _partial_message(verdict)
    data: bytes = response.SerializeToString()
    return data


def response_json(verdict: Verdict) -> bytes:
    """The OTLP/JSON ``ExportTraceServiceResponse`` (an int64 is a string in proto JSON)."""
    if not verdict.rejected:
        return b"{}"
    partial = {"rejectedSpans": str(verdict.rejected), "errorMessage": _partial_message(verdict)}
    return json.dumps({"partialSuccess": partial}).encode()


def _partial_message(verdict: Verdict) -> str:
    return f"{verdict.rejected} of {verdict.spans} spans rejected (first: {verdict.problem})"


# --- storing ----------------------------------------------------------------------------


class OtlpStore:
    """Appends requests to ``otlp-<pid>-<n>.wtrace`` files in ``out``; thread-safe."""

    def __init__(self, out: str, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.out = os.path.abspath(out)
        self.rotate_bytes = rotate_bytes
        self.stats = Stats()
        self.lock = threading.Lock()  # guards everything below and ``stats``
        self._writer: SegmentWriter | None = None  # None until the first request, or closed
        self._stream = 0  # the last stream number used in the current file

    def append(self, fmt: str, body: bytes, verdict: Verdict) -> None:
        """Store one checked request. Returns once it is written (then acknowledge it);
        raises OSError when it cannot be (then answer with a server error)."""
        with self.lock:
            writer = self._writer
            if writer is None or writer.size >= self.rotate_bytes:
                writer = self._open()
            self._stream += 1
            writer.write_embedded(self._stream, fmt, body)
            st = self.stats
            st.requests += 1
            st.spans += verdict.spans
            st.rejected += verdict.rejected
            st.bytes += len(body)

    def refused(self) -> None:
        """Count one request answered with an error."""
        with self.lock:
            self.stats.refused += 1

    def close(self) -> None:
        with self.lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def _open(self) -> SegmentWriter:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        os.makedirs(self.out, exist_ok=True)
        for n in range(len(self.stats.files) + 1, 1_000_000):
            path = os.path.join(self.out, f"otlp-{os.getpid()}-{n}.wtrace")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                continue
            os.close(fd)
            self._writer = SegmentWriter(path)  # empty: it writes the file header
            self._stream = 0
            self.stats.files.append(path)
            return self._writer
        raise OSError(f"no free segment name otlp-{os.getpid()}-N.wtrace in {self.out}")
