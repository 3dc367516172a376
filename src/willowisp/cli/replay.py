"""``willowisp replay PATH [--delay TARGET=DURATION]... [--script FILE]``: step through a
recording in causal order, or re-simulate it with delays (see replay/)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from willowisp.errors import UsageError

EPILOG = """\
examples:
  willowisp replay run/                              the terminal UI
  willowisp replay run/ --script steps.txt           run replay commands, print states
  willowisp replay run/ --delay hop:stock=50ms       what if every call to stock were 50 ms slower
  willowisp replay run/ --delay resource:cart_lock=2ms --delay unit:worker-3=10ms

script commands (one per line, # comments): next [N] · prev [N] · goto STEP|start|end ·
goto finding ID · unit NAME · next-unit · follow · back ·
break resource=NAME|unit=NAME|finding=ID|kind=KIND · clear · continue · state

--delay TARGET: unit:NAME, resource:NAME, hop:TEXT (services a->b or the operation),
event:PROCESS:SEQ, or a bare name. DURATION: 50ms, 1.5s, 300us, 20ns.
unit:NAME and resource:NAME (and the script's unit NAME) take the exact name first
(case-sensitive), else a glob (worker-*) or any name containing it; ~TEXT always means
containing TEXT; each delay's line lists what it took. The answer gives the makespan
and each operation's end-to-end.
What-if is a timed re-simulation of one schedule, not a proof over all interleavings
(docs/replay.md)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "replay",
        help="step through a recording in causal order; what-if with --delay",
        description="Step through a saved trace in causal order — next event, next on a "
        "unit, follow an edge across runtimes, breakpoints — with every unit's state, the "
        "locks held and the requests in flight at each step; or re-simulate it with delays "
        "and report the new critical path, reordered conflicts and wait cycles.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="a run folder or a trace file")
    p.add_argument(
        "--delay",
        action="append",
        default=[],
        metavar="TARGET=DURATION",
        help="re-simulate with this delay (repeatable)",
    )
    p.add_argument("--script", metavar="FILE", help="run replay commands from FILE ('-': stdin)")
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="what-if output format"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from willowisp.analysis.engine import analyze
    from willowisp.ingest.load import load
    from willowisp.replay.targets import parse_delay

    delays = [parse_delay(d) for d in args.delay]
    script = _read_script(args.script) if args.script else None
    if not delays and script is None and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("replay needs a terminal for its UI; use --script FILE or --delay")
    trace = load(args.paths)
    for bad in trace.unreadable:
        print(f"willowisp replay: {bad.path}: {bad.message}", file=sys.stderr)
    if not len(trace.events):
        raise UsageError("nothing to replay: no events were read")
    a = analyze(trace)
    if delays:
        from willowisp.replay import whatif, whatif_report
        from willowisp.replay.targets import resolve

        outcome = whatif.simulate(a, resolve(a, delays))
        if args.format == "json":
            print(json.dumps(whatif_report.report(a, outcome), indent=2, ensure_ascii=False))
        else:
            print("\n".join(whatif_report.text(a, outcome)))
    if script is not None:
        from willowisp.replay.script import Session
        from willowisp.replay.steps import Stepper

        session = Session(Stepper(a))
        name = args.script
        for n, line in enumerate(script, 1):
            if not line.split("#", 1)[0].strip():
                continue
            print(f"> {line.strip()}")
            try:
                out = session.run(line)
            except UsageError as e:
                raise UsageError(f"{name}:{n}: {e}") from None
            print("\n".join(out), flush=True)
    elif not delays:
        from willowisp.replay.tui import run_tui

        run_tui(a)
    return 2 if trace.unreadable else 0


def _read_script(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(path, encoding="utf-8") as f:
            if os.fstat(f.fileno()).st_size > 1_000_000:
                raise UsageError(f"{path}: a script of more than 1 MB")
            return f.read().splitlines()
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
