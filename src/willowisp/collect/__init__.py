"""Receivers for ``willowisp collect``: traces arriving over the network become run folders.

``native.py`` receives the native stream of every Willowisp agent (``docs/protocols.md``):
a hello, then ``.wtrace`` chunks written unchanged into one segment file per connection,
each acknowledged once it is in the file. ``otlp_http.py`` (``POST /v1/traces``, protobuf
and JSON) and ``otlp_grpc.py`` (``TraceService/Export``) receive OpenTelemetry exports;
``otlp_store.py`` checks each request's spans (for ``partial_success``) and appends it, as
it arrived, to a segment as an ``embedded`` stream before it is acknowledged
(``docs/collect.md``).
"""
