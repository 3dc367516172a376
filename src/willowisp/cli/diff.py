"""``willowisp diff A B``: structural, duration and interleaving differences between two runs.

Thin: load and analyze each side, compute ``willowisp.analysis.diff``, print it. Exit status
0 when both sides were read; 2 for bad usage or an unreadable input (named on stderr; the
diff of what could be read is still printed, unless a side has nothing readable at all: a
mistyped path would make every operation of the other side look vanished or new).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

EPILOG = """\
examples:
  willowisp diff wisp-traces/fast/ wisp-traces/slow/
  willowisp diff before.wtrace after.wtrace --format json

A and B are run folders or trace files (one side each). Keys are what survives a re-run:
services, request names, resource names and creation places, code locations.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "diff",
        help="what changed between two runs: operations, durations, interleavings",
        description="Compare two runs of the same system: which operations and hops appear or "
        "vanish (structural), which operations got slower and where their time went "
        "(duration), which pairs of code locations took a lock or touched data in the "
        "other order (interleaving), and how the runs' makespan, lock waits and units "
        "changed (run; all there is to compare in traces without trace context).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", metavar="A", help="the first run (folder or trace file)")
    p.add_argument("b", metavar="B", help="the second run (folder or trace file)")
    p.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from willowisp.analysis.diff import diff
    from willowisp.analysis.engine import analyze
    from willowisp.ingest.load import load

    sides = []
    bad = 0
    empty = False
    for path in (args.a, args.b):
        trace = load([path])
        for u in trace.unreadable:
            print(f"willowisp diff: {u.path}: {u.message}", file=sys.stderr)
            bad += 1
        if not trace.processes:
            # a side with nothing in it (a mistyped path): a diff would call everything
            # of the other side vanished or new
            if not trace.unreadable:
                print(f"willowisp diff: {path}: no trace files in it", file=sys.stderr)
            empty = True
            continue
        sides.append(analyze(trace))
    if empty:
        print("willowisp diff: nothing to compare against: no diff printed", file=sys.stderr)
        return 2
    doc = diff(sides[0], sides[1])
    if args.format == "json":
        sys.stdout.write(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    else:
        render_text(doc, sys.stdout)
    return 2 if bad else 0


def _ms(ns: int) -> str:
    if ns < 0:
        return "?"
    return f"{ns / 1e6:.2f} ms" if ns >= 100_000 else f"{ns / 1e3:.1f} µs"


def _safe(text: object) -> str:
    """Trace strings, printable: control characters shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def render_text(doc: dict[str, Any], out: TextIO) -> None:
    a, b = doc["a"], doc["b"]
    out.write(
        f"A: {a['events']:,} events, {a['operations']:,} operations · "
        f"B: {b['events']:,} events, {b['operations']:,} operations\n"
    )
    if not a["operations"] and not b["operations"]:
        # a Go execution trace, a JFR recording, a Chrome trace: "the same operations"
        # would read as "nothing changed" when nothing could be compared
        out.write(
            "\nno operations to compare: these traces carry no trace context (no W3C trace "
            "ids: no request or message between services; Go execution traces, JFR "
            "recordings and Chrome traces have none), so the runs are compared as a whole "
            "(run, below)\n"
        )
        _render_hops_only(doc["structural"]["hops"], out)
    else:
        _render_structural(doc["structural"], out)
        _render_durations(doc["duration"]["operations"], out)
    out.write("\ninterleaving\n")
    flips = doc["interleaving"]
    if not flips:
        out.write("  no pair of code locations changed order\n")
    for f in flips:
        r = f["resource"]
        out.write(
            f"  {r['kind']} {_safe(r['name'])} ({_safe(r['where'])}): "
            f"{_safe(f['first'])} then {_safe(f['second'])} "
            f"A {f['a']['first_then_second']}:{f['a']['second_then_first']}  "
            f"B {f['b']['first_then_second']}:{f['b']['second_then_first']}\n"
        )
    _render_run(doc["run"], out)


def _render_durations(ops: list[dict[str, Any]], out: TextIO) -> None:
    out.write("\nduration (p50, A → B)\n")
    if not ops:
        out.write("  no operation in both runs\n")
    for o in ops[:10]:
        ratio = f"{o['ratio_p50']:.2f}x" if o["ratio_p50"] is not None else "-"
        out.write(
            f"  {_safe(o['key'])}  {_ms(o['a']['p50_ns'])} → {_ms(o['b']['p50_ns'])}  ({ratio}, "
            f"{o['a']['count']} / {o['b']['count']} operations)\n"
        )
        segments = [g for g in o.get("segments", []) if g["delta_ns"]]
        for g in segments[:3]:
            sign = "+" if g["delta_ns"] > 0 else "-"
            label = " ".join(
                x
                for x in (g["service"], g["kind"], g["resource"], g["where"] and f"at {g['where']}")
                if x
            )
            out.write(
                f"      {_safe(label)}: {_ms(g['a_ns'])} → {_ms(g['b_ns'])} "
                f"({sign}{_ms(abs(g['delta_ns']))})\n"
            )
        if not segments:
            for g in o["by_place"][:3]:
                if g["delta_ns"]:
                    sign = "+" if g["delta_ns"] > 0 else "-"
                    out.write(
                        f"      {_safe(g['where'])}: {_ms(g['a_ns'])} → {_ms(g['b_ns'])} "
                        f"({sign}{_ms(abs(g['delta_ns']))})\n"
                    )


def _render_hops_only(hops: list[dict[str, Any]], out: TextIO) -> None:
    if hops:
        out.write("\nstructural\n")
    for o in hops:
        out.write(f"  {o['change']:9s} {_safe(o['key'])}  A {o['a']}  B {o['b']}\n")


def _render_structural(st: dict[str, Any], out: TextIO) -> None:
    out.write("\nstructural\n")
    if not st["operations"] and not st["hops"]:
        out.write("  the same operations and hops\n")
    for o in st["operations"] + st["hops"]:
        out.write(f"  {o['change']:9s} {_safe(o['key'])}  A {o['a']}  B {o['b']}\n")


def _change(a_ns: int, b_ns: int) -> str:
    delta = b_ns - a_ns
    return f"{_ms(a_ns)} → {_ms(b_ns)} ({'+' if delta >= 0 else '-'}{_ms(abs(delta))})"


def _render_run(run: dict[str, Any], out: TextIO) -> None:
    out.write("\nrun (A → B)\n")
    m = run["makespan"]
    out.write(f"  makespan {_change(m['a_ns'], m['b_ns'])}\n")
    for d in run["locks"][:10]:
        r, la, lb = d["resource"], d["a"], d["b"]
        out.write(
            f"  {r['kind']} {_safe(r['name'])} ({_safe(r['where'])}): waited "
            f"{_change(la['wait_ns'], lb['wait_ns'])} in {la['waits']} → {lb['waits']} waits, "
            f"worst {_ms(la['max_wait_ns'])} → {_ms(lb['max_wait_ns'])}\n"
        )
    for d in run["units"][:10]:
        ua, ub = d["a"], d["b"]
        blocked = ua["blocked_ns"] or ub["blocked_ns"]
        out.write(
            f"  {_safe(d['key'])}: {ua['count']} → {ub['count']} units, "
            + (f"blocked {_change(ua['blocked_ns'], ub['blocked_ns'])}, " if blocked else "")
            + f"alive {_ms(ua['alive_ns'])} → {_ms(ub['alive_ns'])}\n"
        )
    more = max(len(run["locks"]) - 10, 0) + max(len(run["units"]) - 10, 0)
    if more:
        out.write(f"  ... {more} more changed (--format json lists them all)\n")
    if run["same"]:
        out.write("  the same makespan, lock waits and units (within 100 µs)\n")
