// A real OpenTelemetry JS SDK app that exports to a collector (tests/cli/test_collect_otlp.py).
//
//   node app.mjs client --via http|proto|grpc --endpoint E [--token T]
//
// One process plays both sides of a call, each side with its own TracerProvider and
// resource (services "shop" and "pay"): a "checkout" root with three CLIENT children, each
// calling an HTTP server on 127.0.0.1 with the context injected by the W3C propagator, the
// server's SERVER span taking its parent from the traceparent header; then a "settle" span
// linked to two of the CLIENT spans. "http" exports OTLP/HTTP JSON, "proto" OTLP/HTTP
// protobuf, "grpc" OTLP/gRPC. The spans an in-memory exporter saw beside the OTLP one are
// printed as one JSON line; exit status 1 when an OTLP export failed.

import http from "node:http";
import { parseArgs } from "node:util";

import { Metadata, credentials } from "@grpc/grpc-js";
import { context, propagation, trace, SpanKind } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { ExportResultCode, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter as GrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from "@opentelemetry/sdk-trace";

const { values } = parseArgs({
  allowPositionals: true,
  options: {
    via: { type: "string" },
    endpoint: { type: "string" },
    token: { type: "string", default: "" },
  },
});

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());

let failed = 0;
const memory = new InMemorySpanExporter();

function otlpExporter() {
  const token = values.token;
  if (values.via === "grpc") {
    const metadata = new Metadata();
    if (token) metadata.set("authorization", `Bearer ${token}`);
    return new GrpcExporter({
      url: values.endpoint,
      credentials: credentials.createInsecure(),
      metadata,
    });
  }
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const Exporter = values.via === "proto" ? ProtoExporter : JsonExporter;
  return new Exporter({ url: values.endpoint, headers });
}

// Counts failed exports: the OTLP exporters only log them.
function counting(inner) {
  return {
    export(spans, done) {
      inner.export(spans, (result) => {
        if (result.code !== ExportResultCode.SUCCESS) failed += 1;
        done(result);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => (inner.forceFlush ? inner.forceFlush() : Promise.resolve()),
  };
}

function provider(service) {
  return new TracerProvider({
    resource: resourceFromAttributes({ "service.name": service }),
    spanProcessors: [
      new SimpleSpanProcessor({ exporter: memory }),
      // The batch goes out at forceFlush (the delay never passes): one request per provider.
      new BatchSpanProcessor({ exporter: counting(otlpExporter()), scheduledDelayMillis: 60000 }),
    ],
  });
}

const shopProvider = provider("shop");
const payProvider = provider("pay");
const shop = shopProvider.getTracer("shop");
const pay = payProvider.getTracer("pay");

const server = http.createServer((req, res) => {
  const parent = propagation.extract(context.active(), req.headers);
  const span = pay.startSpan(
    "POST /charge",
    { kind: SpanKind.SERVER, attributes: { "http.request.method": "POST", "url.path": "/charge" } },
    parent,
  );
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "Content-Length": "0" });
    res.end();
    span.end();
  });
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const url = `http://127.0.0.1:${server.address().port}/charge`;

function call(headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers }, (res) => {
      res.resume();
      res.on("end", resolve);
    });
    req.on("error", reject);
    req.end("x");
  });
}

const links = [];
await shop.startActiveSpan("checkout", async (root) => {
  for (let i = 0; i < 3; i++) {
    await shop.startActiveSpan(
      "POST",
      { kind: SpanKind.CLIENT, attributes: { "http.request.method": "POST", "url.full": url } },
      async (span) => {
        if (i < 2) links.push({ context: span.spanContext() });
        const headers = { "content-length": "1" };
        propagation.inject(context.active(), headers);
        await call(headers);
        span.end();
      },
    );
  }
  root.end();
});
shop.startSpan("settle", { links }).end();
server.close();

for (const p of [shopProvider, payProvider]) await p.forceFlush();
const spans = memory.getFinishedSpans().map((s) => ({
  name: s.name,
  trace_id: s.spanContext().traceId,
  span_id: s.spanContext().spanId,
  parent: s.parentSpanContext ? s.parentSpanContext.spanId : "",
  links: s.links.map((l) => l.context.spanId),
  service: s.resource.attributes["service.name"],
}));
for (const p of [shopProvider, payProvider]) await p.shutdown(); // clears `memory`
console.log(JSON.stringify(spans));
process.exit(failed ? 1 : 0);
