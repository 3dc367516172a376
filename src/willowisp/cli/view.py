"""``willowisp view PATH... [--port N]``: the web viewer on 127.0.0.1 (see view/server.py)."""

from __future__ import annotations

import _thread
import argparse
import signal
import sys
import threading
import time
from typing import Any

from willowisp.errors import UsageError

EPILOG = """\
examples:
  willowisp view wisp-traces/20250101T120000Z/
  willowisp view run/ other.wtrace --port 8765

The server listens on 127.0.0.1 only and prints one URL with a per-session token; open it
in a browser on this machine (over SSH: ssh -L PORT:127.0.0.1:PORT host). The first open of
a run analyzes it and caches the view beside it (RUN/.wisp-cache/); later opens read that.
Ctrl-C stops the server.

exit status: 0 stopped; 2 bad usage, or an input that could not be read (each named on
stderr; the readable ones are still served; when none could be read, no server starts)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "view",
        help="open runs in the web viewer (lanes per unit, causal edges, three time modes)",
        description="Serve a timeline of every execution unit in every runtime, with the "
        "causal edges between them, raw and adjusted clocks and a causal-order layout, and "
        "the findings, to a browser on this machine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="a run folder or a trace file")
    p.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one, printed)"
    )
    p.add_argument(
        "--no-cache", action="store_true", help="neither read nor write RUN/.wisp-cache/"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from willowisp.view.server import ViewServer
    from willowisp.view.store import open_view

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port number")
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"willowisp view: {line} ({time.monotonic() - started:.1f} s)", file=sys.stderr)

    data, bad = open_view(args.paths, use_cache=not args.no_cache, progress=progress)
    for line in bad:
        print(f"willowisp view: {line}", file=sys.stderr)
    if bad and not data.meta.get("trace", {}).get("files"):
        # Every input failed: an empty viewer would only hide the error above.
        print("willowisp view: nothing to show: no input could be read", file=sys.stderr)
        return 2
    try:
        server = ViewServer(data, args.port)
    except OSError as e:
        raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {e.strerror}") from None
    from willowisp.analysis.naming import plural

    lanes = plural(len(data.meta["lanes"]), "lane")
    findings = plural(len(data.meta["findings"]), "finding")
    stop = threading.Event()
    # Installed before the URL is printed (a script stops the viewer as soon as it read
    # it). The handler runs on the main thread between two bytecodes, maybe inside the
    # Event's own lock in the wait below: so it sets the event from a thread of its own.
    signal.signal(signal.SIGTERM, lambda *_: _thread.start_new_thread(stop.set, ()))
    print(f"willowisp view: {lanes}, {findings}; open {server.url}", flush=True)
    thread = threading.Thread(target=server.serve_forever, name="view-server", daemon=True)
    thread.start()
    threading.Thread(target=server.warm, name="view-warm", daemon=True).start()
    try:
        # wakes every 0.2 s: a signal the kernel delivers to the server's threads must still
        # get the main thread to run its handler (an untimed wait is never interrupted then)
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    server.server_close()
    return 2 if bad else 0
