"""Context propagation formats: parse and format what crosses the wire. Standard library only.

Two kinds of module, meeting only through the Protocols in :mod:`.codec`:

- codecs, one per format: :mod:`.tracecontext` (W3C traceparent + :mod:`.tracestate`,
  with the id rules in :mod:`.traceparent`), :mod:`.baggage`, :mod:`.b3`, :mod:`.jaeger`,
  :mod:`.xray`;
- carriers, one per kind of container: :mod:`.carriers` (HTTP, gRPC, Kafka, AMQP, Thrift
  THeader, SQS), :mod:`.env` (child-process environment), :mod:`.payload` (JSON paths).

The agent depends on this package; nothing here depends on the rest of Willowisp except
:mod:`willowisp.errors`. See docs/wire.md.
"""
