"""``willowisp collect --out DIR [--native PORT] ...``: receive agents' traces over the network.

Agents started with ``WILLOWISP_COLLECTOR=host:port`` stream their chunks here instead of
writing files (the native stream, ``docs/protocols.md``); each connection becomes one
segment in DIR. Loopback only unless ``--host`` says otherwise, and then only with a token.
SIGTERM or Ctrl-C stops accepting, lets every connection finish the chunk it is writing
(everything acknowledged is in DIR) and exits 0. OTLP receiving is not implemented yet: its
options are accepted by the parser but refused with exit status 2 rather than ignored.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import threading
from typing import Any

from willowisp.collect.native import NativeReceiver
from willowisp.errors import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "collect",
        help="receive traces from agents over the network into a run folder",
        description="Receive the native stream of Willowisp agents (programs started with "
        "WILLOWISP_COLLECTOR=HOST:PORT) and write each connection as a .wtrace segment "
        "into DIR. Binds 127.0.0.1 unless --host is given; anything but loopback requires "
        "a token (--token or WILLOWISP_TOKEN), which agents send as WILLOWISP_TOKEN. "
        "Stops cleanly on SIGTERM or Ctrl-C: every chunk an agent was told is stored is in "
        "DIR. With --native 0 it picks a free port and prints it.",
        epilog="example: willowisp collect --native 4319 --out ./traces   then run programs "
        "with WILLOWISP_COLLECTOR=127.0.0.1:4319",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder the segments go into")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--native",
        metavar="PORT|unix:PATH",
        help="receive the native stream on this TCP port (0: any free one) or Unix socket",
    )
    p.add_argument(
        "--otlp-http", metavar="PORT", help="OTLP/HTTP receiver (not available yet: exits 2)"
    )
    p.add_argument(
        "--otlp-grpc", metavar="PORT", help="OTLP/gRPC receiver (not available yet: exits 2)"
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


def run(args: argparse.Namespace) -> int:
    if args.otlp_http is not None or args.otlp_grpc is not None:
        raise UsageError(
            "OTLP receiving is not available yet; use --native (agents' WILLOWISP_COLLECTOR)"
        )
    if args.native is None:
        raise UsageError("nothing to receive: give --native PORT (or --native unix:PATH)")
    token = args.token if args.token is not None else os.environ.get("WILLOWISP_TOKEN", "")
    if not is_loopback(args.host) and not token:
        raise UsageError(
            f"--host {args.host} is not loopback: give --token T (or set WILLOWISP_TOKEN) so "
            "that only your agents can send"
        )
    if token and (len(token) > 256 or not token.isprintable() or not token.isascii()):
        raise UsageError("the token must be at most 256 printable ASCII characters")
    native: str = args.native
    port, unix_path = 0, ""
    if native.startswith("unix:"):
        unix_path = os.path.abspath(native[5:])
    elif native.isdigit() and int(native) < 65536:
        port = int(native)
    else:
        raise UsageError(f"--native {native!r} is not a port number or unix:PATH")
    out = os.path.abspath(args.out)
    receiver = NativeReceiver(out, host=args.host, port=port, unix_path=unix_path, token=token)
    try:
        address = receiver.start()
    except OSError as exc:
        where = unix_path or f"{args.host}:{port}"
        raise UsageError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    print(f"willowisp collect: native stream on {address}, writing into {out}", flush=True)
    print(
        f"willowisp collect: run agents with WILLOWISP_COLLECTOR={address}"
        + (" and WILLOWISP_TOKEN set" if token else ""),
        flush=True,
    )
    try:
        stop.wait()
    finally:
        receiver.stop()
        for s, h in old.items():
            signal.signal(s, h)
    st = receiver.stats
    print(
        f"willowisp collect: stopped; {st.chunks} chunks from {st.connections} connections "
        f"in {len(st.files)} segments in {out}",
        file=sys.stderr,
    )
    return 0
