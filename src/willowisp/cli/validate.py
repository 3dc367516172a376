"""``willowisp validate``: the CI gate (see docs/validate.md).

Thin: parse, call ``willowisp.validate``, print one line per problem (or, with ``--json``,
one JSON object), write the reports. A file still being written is a note on stderr (in
the JSON: ``in_progress``), never a problem. Exit status: 0 clean (or every problem
accepted by ``--baseline``); 1 problems (a corrupt or unreadable trace file is one); 2 bad
usage (a PATH that does not exist, a bad baseline or configuration, a report that cannot
be written, a staging URL that answers nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from willowisp.errors import UsageError
from willowisp.project_config import load_project_config

JSON_SCHEMA = "willowisp.validate/1"

EPILOG = """\
examples:
  willowisp validate --ci-mode wisp-traces/20250101T120000Z/
  willowisp validate --ci-mode run/ --last 200 --junit validate.xml --sarif validate.sarif
  willowisp validate --ci-mode run/ --baseline wisp-baseline.json
  willowisp validate --ci-mode run/ --write-baseline wisp-baseline.json   # accept today's
  willowisp validate --ci-mode --json run/ > validate.json
  willowisp validate --replay-against http://staging:8080 --rate 2 --last 50 \\
      --staging-run /srv/staging-traces recorded-run/

checks per trace (one W3C trace id): dropped context per hop (both sides' services,
runtimes and libraries named), missing spans, broken parent links across runtimes,
contracts declared in willowisp.toml ([[contract]]); per recording: unreadable, damaged or
cut-short files (a torn last chunk is data lost), agent buffer drops and faults, units no
record defines. A file whose writer is still running here and whose only fault is a
torn end (the chunk being appended) is in progress: a note, not a problem.

exit status: 0 clean; 1 problems (one line each on stdout); 2 bad usage."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "validate",
        help="CI gate: fail when traces are incomplete or lose context across hops",
        description="Check recorded traces for completeness and context propagation; one "
        "line per problem on stdout; JUnit XML and SARIF for CI.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="run folders, trace files or importable span files (with "
        "--replay-against: the recorded runs whose entry requests are re-issued)",
    )
    p.add_argument(
        "--ci-mode", action="store_true", help="check the recorded traces in PATH (the gate)"
    )
    p.add_argument(
        "--last",
        type=_positive,
        metavar="N",
        help="only the N traces that started last (by their root's start)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout (schema willowisp.validate/1) instead of lines",
    )
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML: one testcase per problem")
    p.add_argument("--sarif", metavar="FILE", help="write SARIF 2.1.0: one result per problem")
    p.add_argument(
        "--baseline",
        metavar="FILE",
        help="accept the problems whose ids this file lists (see docs/validate.md)",
    )
    p.add_argument(
        "--write-baseline",
        metavar="FILE",
        help="write every problem found into FILE as accepted, and exit 0",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="project configuration with [[contract]] tables (default: "
        "./willowisp.toml if present)",
    )
    r = p.add_argument_group("replay against staging")
    r.add_argument(
        "--replay-against",
        metavar="URL",
        help="re-issue the entry requests of the recorded traces in PATH against "
        "this base URL and check the traces staging records",
    )
    r.add_argument(
        "--rate",
        type=_rate,
        default=1.0,
        metavar="X",
        help="multiple of the recorded request rate (2 or 2x: twice as fast)",
    )
    r.add_argument(
        "--staging-run",
        metavar="DIR",
        help="the run folder the staging side records into (its 'willowisp run "
        "--out DIR' or 'willowisp collect --out DIR')",
    )
    r.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for staging's traces to arrive (default 30)",
    )
    r.add_argument(
        "--settle",
        type=float,
        default=0.3,
        metavar="SECONDS",
        help="extra wait once every entry's reply is recorded (default 0.3: the "
        "agents' durability bound, three times over)",
    )
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return n


def _rate(text: str) -> float:
    try:
        x = float(text.strip().lower().removesuffix("x"))
    except ValueError:
        x = 0.0
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate above 0 (like 2 or 2x)")
    return x


def run(args: argparse.Namespace) -> int:
    if args.ci_mode == bool(args.replay_against):
        raise UsageError("give exactly one of --ci-mode PATH... or --replay-against URL")
    if not args.paths:
        raise UsageError("no PATH given (run folders or trace files)")
    if args.baseline and args.write_baseline:
        # alternatives (docs/validate.md): reading one baseline while writing another would
        # leave it unclear whether the accepted problems belong in the new file
        raise UsageError("give --baseline FILE or --write-baseline FILE, not both")
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        raise UsageError(f"{missing[0]}: no such file or folder")
    if args.replay_against and not args.staging_run:
        raise UsageError("--replay-against needs --staging-run DIR (where staging records)")
    # Imported here: numpy loads only when there is something to check.
    from willowisp.ingest.load import load
    from willowisp.validate.baseline import read_baseline
    from willowisp.validate.gate import GateOptions, validate

    project = load_project_config(args.config)
    accepted = read_baseline(args.baseline) if args.baseline else frozenset()
    started = time.perf_counter()
    if args.ci_mode:
        options = GateOptions(
            last=args.last,
            contracts=project.contracts,
            baseline=accepted,
            paths=tuple(args.paths),
        )
        report = validate(load(args.paths), options)
        extra: list[Any] = []
    else:
        report, extra = _replay(args, project.contracts, accepted)
    seconds = time.perf_counter() - started
    return _finish(args, report, extra, seconds)


def _replay(args: argparse.Namespace, contracts: Any, accepted: frozenset[str]) -> Any:
    from willowisp.analysis.finding import finding_id
    from willowisp.ingest.load import load
    from willowisp.validate.gate import GateOptions, validate
    from willowisp.validate.problems import Problem
    from willowisp.validate.replay_against import recorded_entries, replay, wait_for_traces

    recorded = load(args.paths)
    entries = recorded_entries(recorded, args.last)
    for why, n in sorted(entries.skipped.items()):
        print(f"willowisp validate: {n} trace(s) not re-issued: {why}", file=sys.stderr)
    if not entries.requests:
        raise UsageError(f"{', '.join(args.paths)}: no entry request to re-issue")
    sent = replay(entries.requests, args.replay_against, args.rate)
    answered = [s for s in sent if s.status]
    if not answered:
        first = sent[0].error if sent else "nothing sent"
        raise UsageError(f"--replay-against {args.replay_against}: no answer ({first})")
    failed = len(sent) - len(answered)
    if failed:
        print(f"willowisp validate: {failed} replayed request(s) got no answer", file=sys.stderr)
    staging, missing = wait_for_traces(
        args.staging_run, answered, timeout_s=args.wait, settle_s=args.settle
    )
    options = GateOptions(
        contracts=contracts,
        baseline=accepted,
        known_parents=frozenset((s.trace_id, s.span_id) for s in answered),
        only=frozenset(s.trace_id for s in answered),
        paths=(args.staging_run,),
    )
    report = validate(staging, options)
    extra: list[Problem] = []
    for s in answered:
        if s.trace_id in missing:
            what = f"{s.entry.method} {s.entry.target.split('?', 1)[0]}"
            pid = finding_id("missing-span", ("replay", f"request|{what}"))
            if pid not in accepted:
                extra.append(
                    Problem(
                        pid,
                        "missing-span",
                        f"replayed {what}: staging answered {s.status} but its trace never "
                        f"reached {args.staging_run}",
                        (s.trace_id,),
                        detail=("the staging service is not recorded, or records elsewhere",),
                    )
                )
    return report, extra


def _finish(args: argparse.Namespace, report: Any, extra: list[Any], seconds: float) -> int:
    from dataclasses import replace

    from willowisp.validate.baseline import write_baseline
    from willowisp.validate.junit import render_junit
    from willowisp.validate.sarif import render_sarif

    merged: dict[str, Any] = {}
    for p in [*report.problems, *extra]:
        if p.id in merged:
            traces = tuple(sorted(set(merged[p.id].traces) | set(p.traces)))
            merged[p.id] = replace(merged[p.id], traces=traces)
        else:
            merged[p.id] = p
    report = replace(report, problems=tuple(merged.values()))
    if args.write_baseline:
        found = [*report.problems, *report.accepted]
        _write(args.write_baseline, lambda f: write_baseline(f, found))
        if args.json:  # what the gate now says: every problem found is accepted
            print(json.dumps(_json(replace(report, problems=(), accepted=tuple(found))), indent=1))
        print(
            f"willowisp validate: {len(report.problems) + len(report.accepted)} problem(s) "
            f"written to {args.write_baseline} as accepted",
            file=sys.stderr,
        )
        return 0
    total = len(report.traces)
    if args.json:
        print(json.dumps(_json(report), indent=1))
    else:
        for p in report.problems:
            print(p.line(total))
    sys.stdout.flush()
    for live in report.in_progress:
        print(f"willowisp validate: in progress: {live.line()}", file=sys.stderr)
    if args.junit:
        data = render_junit(report, seconds)
        _write(args.junit, lambda f: _put(f, data))
    if args.sarif:
        text = render_sarif(report).encode("utf-8")
        _write(args.sarif, lambda f: _put(f, text))
    print(f"willowisp validate: {report.summary()}", file=sys.stderr)
    return 1 if report.problems else 0


def _json(report: Any) -> dict[str, Any]:
    """The ``--json`` document: ``schema`` first; fields are added, never renamed."""
    return {
        "schema": JSON_SCHEMA,
        "ok": report.ok,
        "traces": len(report.traces),
        "files": report.files,
        "problems": [p.to_json() for p in report.problems],
        "accepted": [p.to_json() for p in report.accepted],
        "in_progress": [live.to_json() for live in report.in_progress],
    }


def _put(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _write(path: str, how: Any) -> None:
    try:
        how(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
