"""``willowisp import [--from FORMAT] IN... -o OUT.wtrace``: other tools' traces into one file.

Each input is identified by its content (``--from`` overrides), decoded once to check it
and count what it holds, and stored in OUT as an ``embedded`` stream (docs/format.md) in the
form its importer keeps: the input itself for JSON formats, the helper's output for Go
execution traces and binary JFR recordings — so reading OUT later needs no toolchain. OUT
is written to a temporary name and renamed, so it is never half-written. Bad inputs are
named on stderr, one line each; the good ones are still imported and the exit status is 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from willowisp.outfile import is_special

EPILOG = """\
formats (sniffed from content when --from is not given):
  otlp-json   OTLP JSON: a TracesData object, or JSON Lines of them; Jaeger api_v3 output
  otlp-proto  OTLP protobuf: TracesData / ExportTraceServiceRequest bytes
  jaeger      Jaeger UI JSON ({"data": [...]}, one trace, or an array of traces)
  zipkin      Zipkin v2 JSON (an array of spans, or of traces)
  chrome      Chrome / Perfetto trace-event JSON
  go          Go execution traces (runtime/trace); needs the wisp-goimport helper
  jfr         JDK Flight Recorder recordings (.jfr, or `jfr print --json` output)

examples:
  willowisp import jaeger-export.json otel-spans.jsonl -o prod.wtrace
  willowisp import --from go trace.out -o go.wtrace
  willowisp analyze prod.wtrace wisp-traces/20250101T120000Z/

exit status: 0 every input imported; 2 bad usage, or an input that could not be imported
(each named on stderr; the others are still in OUT).
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "import",
        help="convert other tools' traces (OTLP, Jaeger, Zipkin, Chrome, Go, JFR) to .wtrace",
        description="Import traces from other tools into one .wtrace file that analyze, "
        "query, diff and export read like a recorded run. Imported spans and recorded events "
        "of the same system link to each other through the trace ids that crossed the wire.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="IN", help="files to import")
    p.add_argument(
        "--from",
        dest="fmt",
        metavar="FORMAT",
        help="the inputs' format (default: sniffed from each file's content)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.wtrace", help="file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from willowisp.cli.export import output_problem
    from willowisp.errors import TraceFormatError, UsageError
    from willowisp.ingest import formats
    from willowisp.ingest.spans import shared_spans
    from willowisp.wtrace.writer import SegmentWriter

    # checked here, not by the parser: naming the importers imports them (numpy too), which
    # building the command line of every command must not
    if args.fmt is not None and args.fmt not in formats.names():
        raise UsageError(f"--from {args.fmt}: not a format (one of: {', '.join(formats.names())})")
    out = Path(args.output)
    if out.is_dir():
        raise UsageError(f"-o {out}: is a folder; give a file name such as {out}/import.wtrace")
    inputs = [os.fspath(i) for i in args.inputs]
    if any(os.path.abspath(i) == os.path.abspath(out) for i in inputs):
        raise UsageError(f"-o {out} is also an input")
    bad = 0
    kept = 0
    try:
        tmp = _temp_name(out)
    except OSError as exc:  # the folder is missing or not writable: say so before any work
        print(f"willowisp import: {output_problem(out, exc)}", file=sys.stderr)
        return 2
    try:
        with SegmentWriter(tmp) as w:
            for stream, path in enumerate(inputs, 1):
                t0 = time.perf_counter()
                try:
                    prepared = formats.prepare(path, args.fmt)
                    # decoded once to check every record and count what is there; span
                    # formats stop at their spans (building events would only be counted)
                    with shared_spans() as spans:
                        files, notes = formats.decode(prepared.stored, prepared.data, path)
                        spans.require_some()
                except TraceFormatError as exc:
                    print(f"willowisp import: {path}: {exc}", file=sys.stderr)
                    bad += 1
                    continue
                except OSError as exc:
                    print(f"willowisp import: {path}: {exc.strerror or exc}", file=sys.stderr)
                    bad += 1
                    continue
                span_procs = [p for p in spans.procs.values() if len(p)]
                if not files and not span_procs:
                    print(f"willowisp import: {path}: nothing to import in it", file=sys.stderr)
                    bad += 1
                    continue
                w.write_embedded(stream, prepared.stored, prepared.data)
                kept += 1
                for note in notes:
                    print(f"willowisp import: {note}", file=sys.stderr)
                held = [
                    _plural(len(files) + len(span_procs), "process", "processes"),
                    *([_plural(sum(len(p) for p in span_procs), "span")] if span_procs else []),
                    *([_plural(sum(_units(f) for f in files), "unit")] if files else []),
                    *([_plural(sum(f.events for f in files), "event")] if files else []),
                ]
                print(
                    f"{path}: {prepared.name}, {', '.join(held)} "
                    f"({time.perf_counter() - t0:.1f} s)",
                    file=sys.stderr,
                )
        if not kept:
            print("willowisp import: nothing imported; no file written", file=sys.stderr)
            return 2
        if is_special(out):  # /dev/null, a FIFO: written, never replaced
            with open(tmp, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            os.replace(tmp, out)
    except OSError as exc:
        print(f"willowisp import: {output_problem(out, exc)}", file=sys.stderr)
        return 2
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {out} ({_plural(kept, 'input')})")
    return 2 if bad else 0


def _temp_name(out: Path) -> str:
    """A free name beside OUT for the file being written (renamed to OUT at the end).

    Made by creating and removing a file, which proves the folder exists and is writable
    (OSError otherwise); the writer then creates it again with the umask's mode.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent or ".")
    os.close(fd)
    os.unlink(tmp)
    return tmp


def _units(tf: Any) -> int:
    return sum(1 for c in tf.chunks for r in c.records if r.rtype == 2)


def _plural(n: int, word: str, many: str = "") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"
