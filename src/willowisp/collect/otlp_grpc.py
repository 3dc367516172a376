"""The OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

Built on grpcio (a main dependency of the collector; when it is missing ``--otlp-grpc``
says which package to install, see :func:`load_grpc`). The method is registered with a
*generic* handler and no request deserializer, so the handler gets the message's bytes
exactly as they arrived (after gRPC's own message decompression): those bytes are what
the store keeps, and they are parsed once more only to check them
(:func:`~willowisp.collect.otlp_store.check_proto`).

Answers: ``ExportTraceServiceResponse`` (with ``partial_success`` when spans were
rejected) once the request is written; ``UNAUTHENTICATED`` without the bearer token in the
``authorization`` metadata when one is set; ``INVALID_ARGUMENT`` for bytes that do not
parse; ``UNAVAILABLE`` when the request cannot be written; ``RESOURCE_EXHAUSTED`` from
gRPC itself for a message over 64 MiB or when :data:`MAX_CONCURRENT_RPCS` are already in
progress — that limit is also what bounds the memory held by requests (at most that many
messages of at most 64 MiB). :meth:`OtlpGrpcReceiver.stop` refuses new calls and lets those
in progress finish.
"""

from __future__ import annotations

import concurrent.futures
import importlib
from types import ModuleType
from typing import Any

from willowisp.channel.frames import same_token
from willowisp.collect.otlp_store import (
    FORMAT_PROTO,
    MAX_BODY,
    BadRequest,
    OtlpStore,
    check_proto,
    response_proto,
)
from willowisp.errors import UsageError

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
WORKERS = 4
MAX_CONCURRENT_RPCS = 8


def load_grpc() -> ModuleType:
    """The ``grpc`` module, or UsageError naming the package to install."""
    try:
        return importlib.import_module("grpc")
    except ImportError:
        raise UsageError(
            "--otlp-grpc needs the grpcio package: pip install grpcio (or willowisp[otlp])"
        ) from None


class OtlpGrpcReceiver:
    """Serves ``TraceService/Export`` on ``host:port`` into ``store``.

    ``token``: when non-empty every call needs ``authorization: Bearer <token>`` metadata.
    ``start()`` binds (OSError if it cannot) and returns ``host:port``; ``stop()`` drains.
    """

    def __init__(self, store: OtlpStore, *, host: str, port: int, token: str = "") -> None:
        self.grpc = load_grpc()
        self.store = store
        self.host = host
        self.port = port
        self.token = token
        self.address = ""
        self._server: Any = None

    def start(self) -> str:
        grpc = self.grpc
        server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="wisp-otlp-grpc"),
            options=[
                ("grpc.max_receive_message_length", MAX_BODY),
                ("grpc.max_send_message_length", 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
        )
        handler = grpc.unary_unary_rpc_method_handler(
            self._export, request_deserializer=None, response_serializer=None
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),)
        )
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        try:
            port = server.add_insecure_port(f"{host}:{self.port}")
        except RuntimeError as exc:  # newer grpcio raises instead of returning 0
            raise OSError(f"cannot bind {host}:{self.port}: {exc}") from None
        if not port:
            raise OSError(f"cannot bind {host}:{self.port} (address in use?)")
        server.start()
        self._server = server
        self.address = f"{host}:{port}"
        return self.address

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new calls; calls in progress finish (up to ``timeout``)."""
        if self._server is not None:
            self._server.stop(grace=timeout).wait(timeout + 5)
            self._server = None

    def _export(self, request: bytes, context: Any) -> bytes:
        """One Export call, on a worker thread."""
        code = self.grpc.StatusCode
        if self.token:
            given = dict(context.invocation_metadata()).get("authorization", "")
            scheme, _, value = str(given).partition(" ")
            if scheme.lower() != "bearer" or not same_token(value.strip(), self.token):
                self.store.refused()
                context.abort(code.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            verdict = check_proto(request)
        except BadRequest as exc:
            self.store.refused()
            context.abort(code.INVALID_ARGUMENT, str(exc))
            raise  # not reached: abort raises
        try:
            self.store.append(FORMAT_PROTO, request, verdict)
        except OSError as exc:
            self.store.refused()
            context.abort(code.UNAVAILABLE, f"cannot store the request: {exc.strerror or exc}")
        return response_proto(verdict)
