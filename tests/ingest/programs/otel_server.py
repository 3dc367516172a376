"""An HTTP service instrumented only with the OpenTelemetry SDK (no Willowisp agent): each
request's SERVER span continues the caller's W3C trace context. Prints ``PORT`` once it
listens; on a line ``stop`` (or EOF) on stdin it stops and writes its spans as OTLP JSON to
argv[1] (hex ids, as OTLP/JSON wants).

    python otel_server.py OUT.json
"""

import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "inventory"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("inventory")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ctx = propagate.extract({k.lower(): v for k, v in self.headers.items()})
        with tracer.start_as_current_span(
            f"GET {self.path}",
            context=ctx,
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": "GET", "url.path": self.path},
        ):
            body = b"42"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
for line in sys.stdin:
    if line.strip() == "stop":
        break
server.shutdown()
doc = MessageToDict(encode_spans(exporter.get_finished_spans()), use_integers_for_enums=True)
for rs in doc.get("resourceSpans", []):
    for ss in rs.get("scopeSpans", []):
        for s in ss.get("spans", []):
            for key in ("traceId", "spanId", "parentSpanId"):
                if s.get(key):
                    s[key] = base64.b64decode(s[key]).hex()
with open(sys.argv[1], "w") as f:
    json.dump(doc, f)
