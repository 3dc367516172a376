"""``willowisp query PATH... "SQL"``: SQL over the trace's tables (DuckDB), printed.

Thin: parse, call :func:`willowisp.query.session.query`, print with
:mod:`willowisp.query.render`. Exit status: 0; 2 for bad SQL (one line: DuckDB's
message) or bad usage, and when an input was unreadable or damaged (one stderr line per
file; the query still runs over the readable ones and its answer is printed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from willowisp.errors import UsageError
from willowisp.model.boundary import merge_boundaries
from willowisp.project_config import load_project_config

EPILOG = """\
tables: events, units, resources, processes, edges, clocks, hops, findings, waits,
lock_holds; helpers: happens_before(a, b), concurrent(a, b), fmt_ns(ns). See docs/query.md.

examples:
  willowisp query RUN "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC"
  willowisp query RUN "SELECT resource_name, fmt_ns(max(duration_ns)) FROM waits
                       WHERE resource_kind = 'lock' GROUP BY ALL ORDER BY 2 DESC"
  willowisp query RUN "SELECT id, kind, summary FROM findings" --format json

The SQL runs in an in-memory database that holds only the trace's tables and cannot read
or write files. exit status: 0 done; 2 bad SQL, bad usage, or an input that could not be
read (each named on stderr; the query still runs over the readable ones)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "query",
        help="SQL over a trace's events, units, resources, edges and findings",
        description="Load runs or trace files, link them, and run one SQL statement (DuckDB "
        "dialect) over the trace as tables.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="a run folder (searched for *.wtrace) or a file"
    )
    p.add_argument("sql", metavar="SQL", help="the statement(s); the last one's result is printed")
    p.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="table for people (default), json (schema willowisp.query/1) or csv",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="project configuration (default: ./willowisp.toml if present): its boundaries, "
        "reference and suppression shape `findings` as they shape `analyze`",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write the results cache (RUN/.wisp-cache/)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.sql.strip(" \t\r\n;"):
        # nothing to run would print nothing and exit 0, which reads as "no rows"
        raise UsageError(
            "SQL: the statement is empty (e.g. 'SELECT kind, count(*) FROM events GROUP BY kind')"
        )
    # Imported here: DuckDB and numpy load only when a query runs. The options are built
    # as `analyze` builds them without flags, so both share the results cache.
    from willowisp.analysis.engine import Options
    from willowisp.query.render import render
    from willowisp.query.session import query

    project = load_project_config(args.config)
    options = Options(
        reference=project.analyze_option("reference"),
        boundaries=merge_boundaries((), project.boundaries),
        suppress=bool(project.analyze_option("suppress", True)),
    )
    answer = query(args.paths, args.sql, options, use_cache=not args.no_cache)
    render(answer.result, args.format, sys.stdout)
    sys.stdout.flush()
    for bad in answer.unreadable:
        print(f"willowisp query: {bad.path}: {bad.message}", file=sys.stderr)
    return 2 if answer.unreadable else 0
