"""``--format text``: the analysis document for a person at a terminal.

Order: a header line (files, events, units, processes, runtimes), one line per bad input
and note, the clock table, the hops, then each finding as a few lines — severity, kind and
id; the summary; the explanation steps numbered; when each of its events happened, as time
into its logical operation (adjusted time since the operation's root event) with its trace
id; the resources with where they were made.
Rendered with rich; colour only on a terminal (rich's own detection, and ``NO_COLOR``), and
lines never wrap mid-word when piped, so the output greps well.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from willowisp.display import TEXT_LIMIT, clip, short_trace_id
from willowisp.report.contention_cells import waited_and_hold

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# Control characters (ESC starts terminal escape sequences): shown as \xNN, never emitted.
# So are the Unicode bidirectional controls (embeddings, overrides, isolates, marks): a
# trace string holding U+202E would reverse the rest of the report's line as it displays.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _safe(value: Any) -> Any:
    """Every string that came from a trace, made inert for a terminal (the console also has
    rich markup switched off, so ``[bold]`` in a thread name is printed as is) and cut to
    a readable length. Keys too: a boundary's name, say, is a key."""
    if isinstance(value, str):
        return _cut(_CONTROL.sub(_escaped, value))
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe(v) for v in value]
    return value


def _cut(s: str) -> str:
    """``s`` cut as the HTML report cuts a string (its head, ``… (N characters left out)
    …``, its tail): a megabyte span name would otherwise be megabyte lines, four times over.
    Without the isolate marks the page puts around right-to-left text: here every bidi
    control is shown escaped, so a name cannot reorder the line around it anyway."""
    if len(s) <= TEXT_LIMIT:
        return s
    return clip(s).removeprefix("\u2068").removesuffix("\u2069")


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich would exit with status 1 itself; the CLI's handler (cli/main.py) says 141,
        # as for any other command whose reader went away
        self.quiet = True
        raise BrokenPipeError


def render_text(doc: dict[str, Any], out: TextIO, *, color: bool | None = None) -> None:
    """Write the report. ``color``: None = only if ``out`` is a terminal."""
    doc = _safe(doc)
    console = _Console(
        file=out,
        markup=False,
        highlight=False,
        soft_wrap=True,
        emoji=False,
        force_terminal=color,
        no_color=color is False,
        width=None if out.isatty() else 120,
    )
    _header(console, doc["trace"])
    _clocks(console, doc["clocks"], doc["processes"])
    _hops(console, doc["hops"])
    _boundaries(console, doc["trace"], doc["processes"])
    _contention(console, doc.get("contention") or [])
    _critical_path(console, doc.get("critical_paths"))
    _findings(console, doc["findings"])


def _n(x: int) -> str:
    return f"{x:,}"


def _count(x: int, word: str, words: str | None = None) -> str:
    return f"{x:,} {word if x == 1 else (words or word + 's')}"


def _header(console: Console, t: dict[str, Any]) -> None:
    runtimes = ", ".join(t["runtimes"]) or "none"
    parts = [
        _count(t["files"], "file"),
        _count(t["events"], "event"),
        _count(t["units"], "unit"),
        _count(t["processes"], "process", "processes"),
    ]
    console.print(" · ".join(parts) + f" · runtimes: {runtimes}", style="bold")
    for u in t["unreadable_files"]:
        kind = "damaged" if u["partial"] else "unreadable"
        console.print(Text(f"{kind}: {u['path']}: {u['error']}", style="red"))
    for note in t["notes"]:
        console.print(Text(f"note: {note}", style="dim"))
    if t["dropped_events"] or t["agent_faults"]:
        console.print(
            f"agents: {_n(t['dropped_events'])} events dropped,"
            f" {_n(t['agent_faults'])} fault{'' if t['agent_faults'] == 1 else 's'}",
            style="yellow",
        )


def _ms(ns: int | None) -> str:
    if ns is None:
        return "?"
    if abs(ns) < 1_000_000:
        return f"{ns / 1e3:+.1f} µs" if ns else "0"
    return f"{ns / 1e6:+.3f} ms"


def _clocks(console: Console, clocks: list[dict[str, Any]], procs: list[dict[str, Any]]) -> None:
    if not clocks:
        return
    console.print()
    by_id = {p["id"]: p for p in procs}
    table = Table(
        title="clock domains", title_justify="left", box=None, pad_edge=False, show_edge=False
    )
    for col in ("domain", "processes", "offset", "±", "allowed", "drift/s", ""):
        table.add_column(col, no_wrap=col != "processes")
    for d in clocks:
        names = ", ".join(f"{by_id[p]['service']} ({by_id[p]['pid']})" for p in d["processes"])
        allowed = (
            "-"
            if d["reference"]
            else f"{_ms(d['offset_min_ns']) if d['offset_min_ns'] is not None else '-inf'} .. "
            f"{_ms(d['offset_max_ns']) if d['offset_max_ns'] is not None else '+inf'}"
        )
        flags = [
            f
            for f, on in (
                ("reference", d["reference"]),
                ("simulated", d["simulated"]),
                ("drift applied", d.get("drift_applied", False)),
            )
            if on
        ]
        table.add_row(
            d["id"],
            names,
            _ms(d["offset_ns"]),
            "-" if d["uncertainty_ns"] is None else _ms(d["uncertainty_ns"]).lstrip("+"),
            allowed,
            f"{d['drift_ns_per_s']} ns",
            " ".join(flags),
        )
    console.print(table)


def _side(s: dict[str, Any]) -> str:
    """``orders (python)``; just ``orders`` when the runtime is not known (Zipkin spans)."""
    if s["service"] is None:
        return f"? ({s['peer']})" if s.get("peer") else "? (not traced)"
    return f"{s['service']} ({s['runtime']})" if s.get("runtime") else str(s["service"])


def _hops(console: Console, hops: list[dict[str, Any]]) -> None:
    if not hops:
        return
    console.print()
    console.print("hops", style="bold")
    for h in hops:
        src = _side(h["from"])
        if h["from"]["service"] is None and set(h["unlinked"]) == {"caller-not-sampled"}:
            src = "? (caller did not sample)"
        line = (
            f"  {src} → {_side(h['to'])}  {h['protocol']}  "
            f"{', '.join(h['libraries']) or '-'}  "
            f"{_count(h['count'], 'spawn' if h['protocol'] == 'process' else 'request')}, "
            f"{_n(h['linked'])} linked"
        )
        if h["unlinked"]:
            line += " (unlinked: " + ", ".join(f"{k} {v}" for k, v in h["unlinked"].items()) + ")"
        if h["latency_ns"]:
            lat = h["latency_ns"]
            line += f"  p50 {_ms(lat['p50']).lstrip('+')}  p99 {_ms(lat['p99']).lstrip('+')}"
        console.print(Text(line))
        _seams(console, h.get("seams"))


def _boundaries(console: Console, t: dict[str, Any], procs: list[dict[str, Any]]) -> None:
    bounds = t.get("boundaries") or []
    if not bounds:
        return
    console.print()
    console.print("boundaries", style="bold")
    for b in bounds:
        line = (
            f"  {b['entry']}  ({b['source']})  {_count(b['instances'], 'instance')}, "
            f"{_count(b['events'], 'event')} inside, {_count(b['units'], 'unit')}"
        )
        if b["runtimes"]:
            line += "  runtimes: " + ",".join(b["runtimes"])
        if b["latency_ns"]:
            lat = b["latency_ns"]
            line += f"  p50 {_ms(lat['p50']).lstrip('+')}  p99 {_ms(lat['p99']).lstrip('+')}"
        console.print(Text(line))
    for p in procs:
        for name, c in sorted(p["agent"].get("by_boundary", {}).items()):
            console.print(
                Text(
                    f"  agent cost in {name}: {p['service']} ({p['pid']}) "
                    f"{_count(int(c.get('events', 0)), 'event')}, "
                    f"{_ms(int(c.get('cost_ns', 0))).lstrip('+')} "
                    f"(hooks {_ms(int(c.get('hook_ns', 0))).lstrip('+')}, "
                    f"encoding {_ms(int(c.get('serialize_ns', 0))).lstrip('+')})"
                )
            )
    if t.get("suppress") and t.get("suppressed_findings"):
        console.print(
            Text(
                f"  {_count(t['suppressed_findings'], 'finding')} outside the boundaries "
                "suppressed (--no-suppress shows them)",
                style="dim",
            )
        )


CONTENTION_SHOWN = 5  # resources in the text report's contention table


def _contention(console: Console, resources: list[dict[str, Any]]) -> None:
    """The top resources by total wait, one row each; nothing if no unit waited."""
    rows = [r for r in resources if r["wait_ns"]["total"] > 0][:CONTENTION_SHOWN]
    if not rows:
        return
    console.print()
    table = Table(
        title="contention (top by total wait)",
        title_justify="left",
        box=None,
        pad_edge=False,
        show_edge=False,
    )
    columns = ("resource", "service", "waited", "wait", "worst", "hold p50/p99", "convoy", "queue")
    for col in columns:
        table.add_column(col, justify="left" if col in ("resource", "service") else "right")
    for r in rows:
        res = r["resource"]
        waited, hold = waited_and_hold(r, _dur)
        table.add_row(
            f"{res['kind']} {res['name']}" + (f" ({res['where']})" if res["where"] else ""),
            r["service"] or "?",
            waited,
            _dur(r["wait_ns"]["total"]),
            _dur(r["wait_ns"]["max"]),
            hold,
            str(r["longest_run"]) if r["convoys"] else "-",
            str(r["max_queue"]),
        )
    console.print(table)


def _dur(ns: int) -> str:
    """A duration at a glance: 850 ns, 12.5 µs, 3.2 ms, 2.0 s; a negative one signed the
    same way (a part measured across two clock domains can come out below zero)."""
    if ns < 0:
        return f"-{_dur(-ns)}"
    if ns < 1_000:
        return f"{ns} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.1f} s"


def _findings(console: Console, findings: list[dict[str, Any]]) -> None:
    console.print()
    if not findings:
        console.print("no findings", style="green")
        return
    console.print(f"findings ({len(findings)})", style="bold")
    for f in findings:
        console.print()
        head = Text()
        head.append(f["severity"].upper(), style=STYLE.get(f["severity"], ""))
        head.append(f" {f['kind']} {f['id']}")
        if f.get("occurrences"):
            head.append(f" (seen {f['occurrences']} times)")
        console.print(head)
        console.print(Text(f"  {f['summary']}"))
        for i, step in enumerate(f["explanation"], 1):
            console.print(Text(f"    {i}. {step}"))
        _event_times(console, f.get("event_times") or {})
        if f["resources"]:
            res = ", ".join(
                f"{r['kind']} {r['name']}" + (f" ({r['where']})" if r["where"] else "")
                for r in f["resources"]
            )
            console.print(Text(f"  resources: {res}", style="dim"))


EVENT_TIMES_SHOWN = 8  # a finding with more events lists the first ones and a count


def _event_times(console: Console, times: dict[str, dict[str, Any]]) -> None:
    """One line per event: ``b0b0b000…:5 +95.300 ms into trace 55555555… (root
    a91a9100…:3, D2)``, or ``... after its unit tree began`` for an event in no trace."""
    if not times:
        return
    console.print(
        Text("  times (adjusted, since the root of each event's operation):", style="dim")
    )
    for eid, t in list(times.items())[:EVENT_TIMES_SHOWN]:
        rel = _ms(t["root_rel_ns"]) if t["root_rel_ns"] else "+0"
        tid = short_trace_id(t["trace_id"] or "")
        if t["trace_id"] and eid == t["root"]:
            line = f"{_short(eid)} the root of trace {tid}… ({t['clock_domain']})"
        else:
            what = f"into trace {tid}…" if t["trace_id"] else "after its unit tree began"
            where = f"root {_short(t['root'])}, {t['clock_domain']}"
            line = f"{_short(eid)} {rel} {what} ({where})"
        console.print(Text(f"    {line}", style="dim"))
    if len(times) > EVENT_TIMES_SHOWN:
        console.print(Text(f"    … and {len(times) - EVENT_TIMES_SHOWN} more", style="dim"))


def _short(event_id: str) -> str:
    """``a91a9100…:3``: a process id is 32 hex digits; 8 tell processes apart."""
    pid, _, seq = event_id.rpartition(":")
    return f"{pid[:8]}…:{seq}" if len(pid) > 8 else event_id


SEAM_PARTS = ("marshal", "transit", "structural", "handler", "reply")


def _seams(console: Console, seams: dict[str, Any] | None) -> None:
    """One line under a hop: each part's p50 (p99), ± the clock uncertainty across domains."""
    if not seams:
        return
    parts = []
    for name in SEAM_PARTS:
        part = seams.get(f"{name}_ns")
        if not part:
            continue
        unc = part["uncertainty_ns"]
        pm = "" if unc == 0 else (" ±?" if unc is None else f" ±{_dur(unc)}")
        parts.append(f"{name} {_dur(part['p50'])}{pm} ({_dur(part['p99'])})")
    if parts:
        console.print(Text("      seams p50 (p99): " + " · ".join(parts), style="dim"))


PATH_LINES = 20  # segments listed for the slowest operation; the rest are folded


def _critical_path(console: Console, section: dict[str, Any] | None) -> None:
    """The slowest operation's critical path: one line per segment (the longest ones when
    there are many, the others folded into a count), then the time per kind."""
    if section and not section["operations"]:
        console.print()
        console.print(
            Text(
                "critical path: none — no operation recorded (an operation is a W3C trace: "
                "a request or message carrying trace context); `willowisp replay --delay` "
                "asks what-if of the whole run",
                style="dim",
            )
        )
        return
    if not section or not section["paths"] or not section["paths"][0]["segments"]:
        return
    p = section["paths"][0]
    console.print()
    state = "" if p["complete"] else ", the walk stopped before the root"
    console.print(
        Text(
            f"critical path: slowest of {_count(section['operations'], 'operation')}, "
            f"trace {short_trace_id(p['trace_id'])}… {_dur(p['duration_ns'])}, "
            f"{' → '.join(p['services'])}{state}",
            style="bold",
        )
    )
    segs = p["segments"]
    shown = set(range(len(segs)))
    if len(segs) > PATH_LINES:
        longest = sorted(range(len(segs)), key=lambda i: -segs[i]["duration_ns"])
        shown = set(longest[:PATH_LINES])
    folded: list[dict[str, Any]] = []
    for i, s in enumerate(segs):
        if i not in shown:
            folded.append(s)
            continue
        _fold(console, folded)
        folded = []
        console.print(Text("  " + _segment_line(s)))
    _fold(console, folded)
    if p["segments_omitted"]:
        console.print(Text(f"  … and {p['segments_omitted']} short segments not in the document"))
    totals = sorted(((ns, k) for k, ns in p["totals_ns"].items() if ns), reverse=True)
    console.print(Text("  time: " + " · ".join(f"{k} {_dur(ns)}" for ns, k in totals), style="dim"))


def _segment_line(s: dict[str, Any]) -> str:
    unc = s["uncertainty_ns"]
    pm = "" if unc == 0 else (" ±?" if unc is None else f" ±{_dur(unc)}")
    what = [f"{s['service']} {s['unit']['name']}"]
    if s["resource"]:
        what.append(f"{s['resource']['kind']} {s['resource']['name']}")
    if s["other_unit"] and s["other_unit"]["service"] != s["service"]:
        what.append(f"from {s['other_unit']['service']}")
    elif s["other_unit"] and s["kind"] == "lock-blocked":
        what.append(f"held by {s['other_unit']['name']}")
    if s["where"]:
        what.append(s["where"])
    head = f"{_ms(s['at_ns']):>12}  {s['kind']:<12} {_dur(s['duration_ns']):>10}{pm}"
    return head + "  " + "  ".join(what)


def _fold(console: Console, folded: list[dict[str, Any]]) -> None:
    if not folded:
        return
    total = sum(s["duration_ns"] for s in folded)
    kinds = sorted({s["kind"] for s in folded})
    console.print(
        Text(
            f"  {'':>12}  … {_count(len(folded), 'segment')} folded, {_dur(total)} "
            f"({', '.join(kinds)})",
            style="dim",
        )
    )
