"""``willowisp collect --out DIR [--native PORT] [--otlp-http PORT] [--otlp-grpc PORT]``.

Receives traces over the network into a run folder. Agents started with
``WILLOWISP_COLLECTOR=host:port`` stream their chunks (the native stream,
``docs/protocols.md``), each connection becoming one segment; OpenTelemetry SDKs export
OTLP/HTTP (``POST /v1/traces``, protobuf or JSON) or OTLP/gRPC, each request stored as it
arrived in ``otlp-<pid>-<n>.wtrace`` segments (``docs/collect.md``). Any combination of the
three runs in one process, sharing the folder, the bind address and the token. Loopback
only unless ``--host`` says otherwise, and then only with a token. SIGTERM or Ctrl-C stops
accepting, lets every request or chunk in flight finish (everything acknowledged is in
DIR), prints one line of totals and exits 0.
"""

from __future__ import annotations

import _thread
import argparse
import ipaddress
import os
import signal
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any, Protocol

from willowisp.collect.native import NativeReceiver
from willowisp.errors import UsageError

if TYPE_CHECKING:
    from willowisp.collect.otlp_store import OtlpStore

SIGNAL_POLL_S = 0.2  # how often the main thread wakes to run a signal handler (see run)
OTLP_HTTP_PORT = "4318"  # OpenTelemetry's default ports, used when the flag has no value
OTLP_GRPC_PORT = "4317"


class _Receiver(Protocol):
    def start(self) -> str: ...
    def stop(self, timeout: float = 10.0) -> None: ...


def register(sub: Any) -> None:
    p = sub.add_parser(
        "collect",
        help="receive traces (native agents, OTLP/HTTP, OTLP/gRPC) into a run folder",
        description="Receive the native stream of Willowisp agents (programs started with "
        "WILLOWISP_COLLECTOR=HOST:PORT), OTLP/HTTP (POST /v1/traces, protobuf or JSON, "
        "gzip) and OTLP/gRPC exports from OpenTelemetry SDKs, in any combination, and "
        "write them as .wtrace segments into DIR. Binds 127.0.0.1 unless --host is given; "
        "anything but loopback requires a token (--token or WILLOWISP_TOKEN), which agents "
        "send as WILLOWISP_TOKEN and OTLP exporters as the header 'Authorization: Bearer "
        "T'. Stops cleanly on SIGTERM or Ctrl-C: everything acknowledged is in DIR. A port "
        "of 0 picks a free one and prints it.",
        epilog="Without --native, --otlp-http or --otlp-grpc all three are started: OTLP on "
        f"{OTLP_HTTP_PORT} and {OTLP_GRPC_PORT}, the native stream on a free port.  "
        "examples: willowisp collect --native 4319 --out ./traces   then run programs "
        "with WILLOWISP_COLLECTOR=127.0.0.1:4319;  willowisp collect --otlp-http --otlp-grpc "
        "--out ./traces   then export with OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder the segments go into")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--native",
        metavar="PORT|unix:PATH",
        help="receive the native stream on this TCP port (0: any free one) or Unix socket",
    )
    p.add_argument(
        "--otlp-http",
        metavar="PORT",
        nargs="?",
        const=OTLP_HTTP_PORT,
        help=f"receive OTLP/HTTP on this port (without a value: {OTLP_HTTP_PORT}; 0: any)",
    )
    p.add_argument(
        "--otlp-grpc",
        metavar="PORT",
        nargs="?",
        const=OTLP_GRPC_PORT,
        help=f"receive OTLP/gRPC on this port (without a value: {OTLP_GRPC_PORT}; 0: any)",
    )
    p.add_argument(
        "--token",
        metavar="T",
        help="bearer token every agent must send (default: WILLOWISP_TOKEN)",
    )
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _port(flag: str, value: str) -> int:
    if value.isdigit() and int(value) < 65536:
        return int(value)
    raise UsageError(f"{flag} {value!r} is not a port number")


def _token(args: argparse.Namespace) -> str:
    token: str = args.token if args.token is not None else os.environ.get("WILLOWISP_TOKEN", "")
    if not is_loopback(args.host) and not token:
        raise UsageError(
            f"--host {args.host} is not loopback: give --token T (or set WILLOWISP_TOKEN) so "
            "that only your agents can send"
        )
    if token and (len(token) > 256 or not token.isprintable() or not token.isascii()):
        raise UsageError("the token must be at most 256 printable ASCII characters")
    return token


def _writable_folder(path: str) -> str:
    """The absolute ``--out`` folder, made if missing and proven writable by a probe file.

    Checked before anything binds: a collector that announces its ports but cannot store
    what it receives would fail every request later, long after the pipeline went green.
    """
    out = os.path.abspath(path)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"cannot write into --out {out}: it is a file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".willowisp-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"cannot write into --out {out}: {exc.strerror or exc}") from None
    return out


def _native(args: argparse.Namespace, out: str, token: str) -> tuple[NativeReceiver, str]:
    native: str = args.native
    port, unix_path = 0, ""
    if native.startswith("unix:"):
        unix_path = os.path.abspath(native[5:])
    elif native.isdigit() and int(native) < 65536:
        port = int(native)
    else:
        raise UsageError(f"--native {native!r} is not a port number or unix:PATH")
    receiver = NativeReceiver(out, host=args.host, port=port, unix_path=unix_path, token=token)
    return receiver, unix_path or f"{args.host}:{port}"


def run(args: argparse.Namespace) -> int:
    if args.native is None and args.otlp_http is None and args.otlp_grpc is None:
        # no receiver named: all three, OTLP on OpenTelemetry's default ports (what an SDK
        # exports to unless told otherwise), the native stream on a free port it prints
        args.native = "0"
        args.otlp_http = OTLP_HTTP_PORT
        args.otlp_grpc = OTLP_GRPC_PORT
    token = _token(args)
    out = _writable_folder(args.out)
    # Everything is validated (ports, grpcio present) before anything binds.
    planned: list[tuple[str, _Receiver, str]] = []
    native: NativeReceiver | None = None
    store: OtlpStore | None = None
    if args.native is not None:
        native, where = _native(args, out, token)
        planned.append(("native", native, where))
    if args.otlp_http is not None or args.otlp_grpc is not None:
        store = _otlp_store(out)  # imported here: the OTLP classes cost every command time
    if args.otlp_http is not None:
        from willowisp.collect.otlp_http import OtlpHttpReceiver

        assert store is not None
        port = _port("--otlp-http", args.otlp_http)
        http = OtlpHttpReceiver(store, host=args.host, port=port, token=token)
        planned.append(("http", http, f"{args.host}:{port}"))
    if args.otlp_grpc is not None:
        from willowisp.collect.otlp_grpc import OtlpGrpcReceiver

        assert store is not None
        port = _port("--otlp-grpc", args.otlp_grpc)
        grpc = OtlpGrpcReceiver(store, host=args.host, port=port, token=token)
        planned.append(("grpc", grpc, f"{args.host}:{port}"))
    started: list[_Receiver] = []
    lines: list[str] = []
    try:
        for what, receiver, where in planned:
            try:
                address = receiver.start()
            except OSError as exc:
                raise UsageError(f"cannot listen on {where}: {exc.strerror or exc}") from None
            started.append(receiver)
            lines.extend(_listening(what, address, out, token))
    except UsageError:
        _stop_all(started, store)
        raise
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        # Not stop.set() here: the handler runs on the main thread between two bytecodes,
        # maybe inside Event.set's own lock after an earlier signal (SIGTERM to the group
        # and one forwarded by a parent arrive together), and would wait on itself.
        _thread.start_new_thread(stop.set, ())

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    for line in lines:
        print(f"willowisp collect: {line}", flush=True)
    try:
        # wakes every 0.2 s: the kernel may deliver SIGTERM to one of the receivers' threads
        # (gRPC's among them), and a main thread blocked in an untimed wait is then never
        # interrupted to run the handler (it hung a CI run for a minute)
        while not stop.wait(SIGNAL_POLL_S):
            pass
    finally:
        _stop_all(started, store)
        for s, h in old.items():
            signal.signal(s, h)
    print(f"willowisp collect: stopped; {_totals(native, store, out)}", file=sys.stderr)
    return 0


def _otlp_store(out: str) -> OtlpStore:
    try:
        from willowisp.collect.otlp_store import OtlpStore
    except ImportError as exc:
        raise UsageError(
            f"OTLP receiving needs the opentelemetry-proto package ({exc}): "
            "pip install opentelemetry-proto"
        ) from None
    return OtlpStore(out)


def _listening(what: str, address: str, out: str, token: str) -> list[str]:
    """The lines saying where a receiver listens (tests and scripts parse the first one)."""
    if what == "native":
        return [
            f"native stream on {address}, writing into {out}",
            f"run agents with WILLOWISP_COLLECTOR={address}"
            + (" and WILLOWISP_TOKEN set" if token else ""),
        ]
    if what == "http":
        return [f"OTLP/HTTP on http://{address}/v1/traces, writing into {out}"]
    return [f"OTLP/gRPC on {address}, writing into {out}"]


def _stop_all(started: list[_Receiver], store: OtlpStore | None) -> None:
    """Stop every receiver at once (each drains what it has in flight), then the store."""
    threads = [threading.Thread(target=r.stop) for r in started]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if store is not None:
        store.close()


def _totals(native: NativeReceiver | None, store: OtlpStore | None, out: str) -> str:
    parts = []
    if native is not None:
        st = native.stats
        parts.append(
            f"{plural(st.chunks, 'chunk')} from {plural(st.connections, 'connection')} "
            f"in {plural(len(st.files), 'segment')}"
        )
    if store is not None:
        o = store.stats
        parts.append(
            f"{plural(o.requests, 'OTLP request')} ({plural(o.spans, 'span')}, "
            f"{o.rejected} rejected, {plural(o.bytes, 'byte')}, {o.refused} refused) "
            f"in {plural(len(o.files), 'segment')}"
        )
    return "; ".join(parts) + f" in {out}"


def plural(n: int, word: str) -> str:
    """``1 segment``, ``2 segments``: digits without separators, so scripts can match them."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
