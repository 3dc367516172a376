"""``willowisp export PATH... --to chrome|perfetto -o OUT``: an analysis for third-party viewers.

Thin: load and analyze the inputs, build the document with ``willowisp.export``, write it
atomically. Exit status 0; 2 for bad usage, a format that is not available yet, or an
unreadable input (one line on stderr per bad file; the readable ones are still exported;
when none is readable nothing is written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  willowisp export wisp-traces/20250101T120000Z/ --to chrome -o run.json
  willowisp export wisp-traces/20250101T120000Z/ --to perfetto -o run.pftrace
  then open the file in https://ui.perfetto.dev (or run.json in chrome://tracing)
  willowisp export run/ --to otlp-json -o spans.json   (Jaeger UI: "JSON File" upload;
  any OTLP backend: POST it to /v1/traces)

formats: chrome (Chrome trace-event JSON); perfetto (Perfetto protobuf, TrackEvent);
otlp-json (OTLP TracesData: units and hop sides as spans; imported OTLP spans as they came).
exit status: 0 done; 2 bad usage, or an input that could not be read (each named on
stderr; the readable ones are still exported; when none could be read, OUT is not written).
"""


# willowisp.export's FORMATS, named here so that building the command line does not import
# the exporters (and numpy with them: its BLAS threads would start in every command,
# `willowisp run` too, which takes its signals in one thread; tests/cli/test_export.py
# checks the two agree)
FORMATS = ("perfetto", "chrome", "otlp-json")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="write the analysis for third-party viewers (Perfetto UI, chrome://tracing)",
        description="Export runs or trace files, linked and clock-aligned, with waits, lock "
        "holds, happens-before flows and findings, in a format other viewers open.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="runs, trace files, importables")
    p.add_argument(
        "--to",
        "--format",  # what the other commands call their output format
        dest="to",
        choices=FORMATS,
        required=True,
        help="the output format",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from willowisp.export import AVAILABLE

    if args.to not in AVAILABLE:  # pragma: no cover - every listed format is built
        print(f"willowisp export: --to {args.to} is not available", file=sys.stderr)
        return 2
    from willowisp.analysis.engine import analyze
    from willowisp.export import chrome_trace, otlp_json, perfetto_trace, write_bytes, write_json
    from willowisp.ingest.load import load

    trace = load(args.paths)
    for u in trace.unreadable:
        print(f"willowisp export: {u.path}: {u.message}", file=sys.stderr)
    if trace.unreadable and not trace.files:
        # Every input failed: an empty document would pass for an empty recording.
        print(
            f"willowisp export: nothing to export: no input could be read; {args.output} "
            "not written",
            file=sys.stderr,
        )
        return 2
    a = analyze(trace)
    try:
        if args.to == "perfetto":
            write_bytes(perfetto_trace(a), args.output)
        elif args.to == "otlp-json":
            doc, notes = otlp_json(a, args.paths)
            for note in notes:
                print(f"willowisp export: {note}", file=sys.stderr)
            write_json(doc, args.output)
        else:
            write_json(chrome_trace(a), args.output)
    except OSError as exc:
        print(f"willowisp export: {output_problem(args.output, exc)}", file=sys.stderr)
        return 2
    return 2 if trace.unreadable else 0


def output_problem(path: str | os.PathLike[str], exc: OSError) -> str:
    """One line on why OUT could not be written: ``OUT: cannot write it: why``.

    The error's own file name is left out: it is the temporary file beside OUT, which the
    user never named. A missing folder is named as such, not as a missing file.
    """
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    if isinstance(exc, FileNotFoundError) and not folder.is_dir():
        why = f"folder {folder} does not exist"
    elif isinstance(exc, NotADirectoryError):
        why = f"{folder} is not a folder"
    else:
        why = (exc.strerror or str(exc) or type(exc).__name__).lower()
    return f"{out}: cannot write it: {why}"
