"""``willowisp analyze PATH...``: load runs or trace files, analyze, print the findings.

Thin: parse, call ``willowisp.analysis``, print with ``willowisp.report``. Exit status: 0;
1 when a ``--fail-on`` kind was found; 2 when any input was unreadable or damaged (one
line on stderr per bad file; the good ones are still analyzed and printed).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from willowisp.analysis.finding import FINDING_KINDS
from willowisp.errors import UsageError
from willowisp.model.boundary import Boundary, merge_boundaries, parse_boundary
from willowisp.project_config import load_project_config

EPILOG = """\
examples:
  willowisp analyze wisp-traces/20250101T120000Z/
  willowisp analyze run/ --format json --fail-on deadlock,race
  willowisp analyze a.wtrace b.wtrace --reference orders
  willowisp analyze run/ --html report.html   # also write a self-contained HTML report

exit status: 0 done; 1 a --fail-on kind was found; 2 bad usage, an input that could not
be read (each named on stderr; the readable ones are still analyzed and printed), or an
--html FILE that could not be written (its folder must exist).

finding kinds: """ + ", ".join(FINDING_KINDS)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="find deadlocks, clock skew and false causality in recorded runs",
        description="Load runs (folders of .wtrace files) or trace files, link them across "
        "processes and clocks, and report findings: deadlocks across threads, tasks and "
        "processes; clock skew between clock domains; false causality in raw timestamps; "
        "dropped events and agent faults.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a run folder (searched for *.wtrace) or a trace file",
    )
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default), json for scripts (schema willowisp.findings/1)",
    )
    p.add_argument(
        "--boundary",
        action="append",
        default=[],
        metavar="SPEC",
        type=_boundary,
        help="a declared transaction, e.g. 'entry=http:POST /checkout;"
        "exit=http:reply;runtimes=python,go' (repeatable); boundaries the agents were given "
        "apply too",
    )
    p.add_argument(
        "--no-suppress",
        action="store_true",
        default=None,
        help="also report findings outside the declared boundaries (by default, with "
        "boundaries declared, only failures are reported outside them)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="project configuration (default: ./willowisp.toml if present); options given "
        "here win over it, boundaries from both apply",
    )
    p.add_argument(
        "--reference",
        metavar="PROCESS",
        help="the clock every other is aligned to: a process id prefix, a pid or "
        "a service name (default: the process 'willowisp run' started)",
    )
    p.add_argument(
        "--fail-on",
        metavar="KIND,...",
        type=_kinds,
        default=(),
        help="exit 1 if any finding of these kinds is reported",
    )
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write the report as one self-contained HTML page (no scripts, no "
        "network): findings with their timelines, clocks, hops; each finding linkable as "
        "FILE#<finding id> (see docs/report.md)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the results cache (RUN/.wisp-cache/, see docs/query.md)",
    )
    p.set_defaults(func=run)


def _boundary(spec: str) -> Boundary:
    try:
        return parse_boundary(spec)
    except UsageError as exc:  # argparse turns ArgumentTypeError into a usage error
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FINDING_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown finding kind {', '.join(unknown) or repr(text)}; "
            f"known: {', '.join(FINDING_KINDS)}"
        )
    return kinds


def _config_kinds(path: str, kinds: list[str]) -> tuple[str, ...]:
    if not kinds:
        return ()
    try:
        return _kinds(",".join(kinds))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{path}: [analyze] fail_on: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    # Imported here: numpy and rich load only when there is something to analyze.
    from willowisp.analysis import cache
    from willowisp.analysis.engine import Options, analyze
    from willowisp.ingest.load import load
    from willowisp.report.json_report import render_json
    from willowisp.report.text_report import render_text

    if args.html:
        # Refused before any work, as `export -o` refuses: a report is written into an
        # existing folder, never into one a typo would create.
        folder = os.path.dirname(args.html) or "."
        if not os.path.isdir(folder):
            raise UsageError(f"--html {args.html}: no such folder {folder}")
    project = load_project_config(args.config)
    suppress = (
        not args.no_suppress
        if args.no_suppress is not None
        else bool(project.analyze_option("suppress", True))
    )
    fail_on = args.fail_on or _config_kinds(project.path, project.analyze_option("fail_on", []))
    options = Options(
        reference=args.reference or project.analyze_option("reference"),
        boundaries=merge_boundaries(tuple(args.boundary), project.boundaries),
        suppress=suppress,
    )
    # The results cache (analysis/cache.py): the same inputs and options print the same
    # document, read back instead of recomputed; any cache problem means recomputing.
    where = None if args.no_cache else cache.slot(args.paths, options, "analysis")
    doc = cache.load(where) if where is not None else None
    analysis = None
    if doc is None:
        analysis = analyze(load(args.paths), options)
        doc = analysis.document()
        if where is not None:
            cache.store(where, doc)
    if args.format == "json":
        sys.stdout.write(render_json(doc))
    else:
        render_text(doc, sys.stdout)
    sys.stdout.flush()
    unreadable = doc["trace"]["unreadable_files"]
    for bad in unreadable:
        print(f"willowisp analyze: {bad['path']}: {bad['error']}", file=sys.stderr)
    if args.html and not _write_html(args.html, doc, analysis, args.paths):
        return 2
    if unreadable:
        return 2
    found = {f["kind"] for f in doc["findings"]}
    return 1 if found & set(fail_on) else 0


def _write_html(path: str, doc: dict[str, Any], analysis: Any, paths: list[str]) -> bool:
    """Write the HTML report; its timelines need the events, so a document read from the
    cache comes with the trace loaded again (linking is redone, the analyses are not)."""
    from willowisp.ingest.load import load
    from willowisp.report.html_report import write_report

    try:
        write_report(path, doc, analysis if analysis is not None else load(paths))
    except OSError as exc:
        print(f"willowisp analyze: --html {path}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True
