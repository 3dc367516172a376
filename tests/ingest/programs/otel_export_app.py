"""A real OpenTelemetry SDK app that exports to a collector over OTLP/HTTP or OTLP/gRPC.

Two roles, run as two processes so each has its own resource (and, under libfaketime, its
own clock):

    python otel_export_app.py server --via http|grpc --endpoint E [--token T]
        serves ``POST /charge`` on 127.0.0.1 (a SERVER span per request, its parent taken
        from the W3C ``traceparent`` header), prints ``port N``, runs until stdin closes,
        then flushes its exporter and prints its spans as one JSON line.
    python otel_export_app.py client --via http|grpc --endpoint E [--token T] [--server URL]
        a ``checkout`` root with three CLIENT children (calling URL when given, with the
        context injected by the SDK's propagator), an INTERNAL span linked to two of them,
        then flushes its exporter and prints its spans as one JSON line.

The spans printed are what an in-memory exporter, installed beside the OTLP one on the
same provider, saw: the test compares them with what the collector stored. Exit status 1
when the OTLP exporter reported a failed export.
"""

import argparse
import json
import sys
import threading
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Counting(SpanExporter):
    """Wraps the OTLP exporter to remember whether any export failed."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failed += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def otlp_exporter(via: str, endpoint: str, token: str) -> SpanExporter:
    headers = {"authorization": f"Bearer {token}"} if token else None
    if via == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, headers=headers, timeout=30)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    return GrpcExporter(endpoint=endpoint, insecure=True, headers=headers, timeout=30)


def summary(spans: Sequence[ReadableSpan]) -> list[dict[str, object]]:
    out = []
    for s in spans:
        ctx = s.get_span_context()
        assert ctx is not None
        out.append(
            {
                "name": s.name,
                "trace_id": f"{ctx.trace_id:032x}",
                "span_id": f"{ctx.span_id:016x}",
                "parent": f"{s.parent.span_id:016x}" if s.parent else "",
                "links": [f"{link.context.span_id:016x}" for link in s.links],
                "service": s.resource.attributes["service.name"],
                "start": s.start_time,
                "end": s.end_time,
            }
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["client", "server"])
    ap.add_argument("--via", choices=["http", "grpc"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--token", default="")
    ap.add_argument("--server", default="")
    args = ap.parse_args()
    memory = InMemorySpanExporter()
    otlp = Counting(otlp_exporter(args.via, args.endpoint, args.token))
    service = "shop" if args.role == "client" else "pay"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    # The batch goes out at force_flush (the delay never passes): one request per process.
    provider.add_span_processor(BatchSpanProcessor(otlp, schedule_delay_millis=60_000))
    tracer = provider.get_tracer(service)
    if args.role == "server":
        serve(tracer)
    else:
        client(tracer, args.server)
    provider.force_flush()
    provider.shutdown()
    print(json.dumps(summary(memory.get_finished_spans())), flush=True)
    return 1 if otlp.failed else 0


def serve(tracer: trace.Tracer) -> None:
    class Pay(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            ctx = propagate.extract({k.lower(): v for k, v in self.headers.items()})
            with tracer.start_as_current_span(
                "POST /charge",
                context=ctx,
                kind=trace.SpanKind.SERVER,
                attributes={"http.request.method": "POST", "url.path": "/charge"},
            ):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"port {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    server.shutdown()


def client(tracer: trace.Tracer, url: str) -> None:
    links = []
    with tracer.start_as_current_span("checkout"):
        for i in range(3):
            with tracer.start_as_current_span(
                "POST",
                kind=trace.SpanKind.CLIENT,
                attributes={"http.request.method": "POST", "url.full": url or "none"},
            ) as span:
                if i < 2:
                    links.append(trace.Link(span.get_span_context()))
                if url:
                    headers: dict[str, str] = {}
                    propagate.inject(headers)
                    request = urllib.request.Request(url, data=b"x", headers=headers)
                    urllib.request.urlopen(request, timeout=30).read()
    with tracer.start_as_current_span("settle", links=links):
        pass


if __name__ == "__main__":
    sys.exit(main())
