"""A real OpenTelemetry SDK app: ``shop`` calls ``pay`` over HTTP on 127.0.0.1, the context
carried by the SDK's own W3C propagator, each service with its own TracerProvider and
resource. The finished spans are encoded by the OTLP exporter's own encoder and written as
OTLP JSON (ids in hex, as the OTLP/JSON spec wants; protobuf's JSON mapping would give
base64) to the file named by argv[1] — or, when its name ends in ``.pb``, as the protobuf
bytes the exporter would send. The spans use every field a round trip must keep: events,
links, an error status with a message, array and double attributes.

    python otel_sdk_app.py OUT.json|OUT.pb
"""

import base64
import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()


def provider(service: str) -> TracerProvider:
    p = TracerProvider(resource=Resource.create({"service.name": service, "host.name": service}))
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


shop = provider("shop").get_tracer("shop")
pay = provider("pay").get_tracer("pay")


class Pay(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        ctx = propagate.extract({k.lower(): v for k, v in self.headers.items()})
        with pay.start_as_current_span(
            "POST /charge",
            context=ctx,
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": "POST", "url.path": "/charge"},
        ):
            span = trace.get_current_span()
            span.add_event("charged", {"amount": 3.5, "currency": "EUR", "tries": [1, 2]})
            span.set_attribute("pay.cards", ["visa", "amex"])
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Pay)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}/charge"
with shop.start_as_current_span("warmup") as warm:
    pass
warm_link = trace.Link(warm.get_span_context(), {"why": "x"})
with shop.start_as_current_span("checkout", links=[warm_link]):
    trace.get_current_span().set_status(trace.Status(trace.StatusCode.ERROR, "declined"))
    for _ in range(3):
        with shop.start_as_current_span(
            "POST",
            kind=trace.SpanKind.CLIENT,
            attributes={"http.request.method": "POST", "url.full": url},
        ):
            headers: dict[str, str] = {}
            propagate.inject(headers)
            urllib.request.urlopen(urllib.request.Request(url, data=b"x", headers=headers)).read()
server.shutdown()

request = encode_spans(exporter.get_finished_spans())
if sys.argv[1].endswith(".pb"):
    with open(sys.argv[1], "wb") as fb:
        fb.write(request.SerializeToString())
else:
    doc = MessageToDict(request, use_integers_for_enums=True)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for obj in [s, *s.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if obj.get(key):
                            obj[key] = base64.b64decode(obj[key]).hex()
    with open(sys.argv[1], "w") as f:
        json.dump(doc, f)
print(len(exporter.get_finished_spans()))
