"""The HTML report's tables: trace summary, clock domains, hops and seams, boundaries,
contention and the critical path — the text report's sections, same facts, same order.

Each function takes its part of the analysis document and returns escaped HTML; cells go
through :func:`willowisp.report.html_markup.text`, so a trace string can only ever be text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from willowisp.display import short_trace_id
from willowisp.report.contention_cells import waited_and_hold
from willowisp.report.html_markup import anchor, attr, text
from willowisp.report.html_timeline import duration

MAX_HOPS = 200  # rows of the hops table
CONTENTION_SHOWN = 10  # resources in the contention table
PATH_ROWS = 40  # segments of the critical path table (the longest)


def count(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def ms(ns: int | None) -> str:
    """An offset: ``+1.250 ms``, ``-12.0 µs``, ``0``; ``?`` when unknown."""
    if ns is None:
        return "?"
    if abs(ns) < 1_000_000:
        return f"{ns / 1e3:+.1f} µs" if ns else "0"
    return f"{ns / 1e6:+.3f} ms"


def table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    """A table whose cells are already-escaped HTML; columns in ``numeric`` align right."""
    out = ["<table><thead><tr>", *(f"<th>{text(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            out.append(f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def overview(doc: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> str:
    t = doc.get("trace", {})
    line = " · ".join(
        [
            count(int(t.get("files", 0)), "file"),
            count(int(t.get("events", 0)), "event"),
            count(int(t.get("units", 0)), "unit"),
            count(int(t.get("processes", 0)), "process", "processes"),
            "runtimes: " + (", ".join(map(str, t.get("runtimes", []))) or "none"),
        ]
    )
    out = [f"<p>{text(line)}</p>"]
    if not findings:
        out.append("<p><strong>No findings.</strong></p>")
        return "".join(out)
    by_sev: dict[str, int] = {}
    for f in findings:
        by_sev[str(f.get("severity"))] = by_sev.get(str(f.get("severity")), 0) + 1
    out.append(
        f"<p><strong>{text(count(len(findings), 'finding'))}</strong>: "
        + text(", ".join(f"{n} {s}" for s, n in by_sev.items()))
        + "</p><nav><ul>"
    )
    for f in findings:
        fid = anchor(f.get("id"))
        out.append(
            f'<li><a href="#{fid}">{text(f.get("id"))}</a> '
            f'<span class="sev {attr(f.get("severity"))}">{text(f.get("severity"))}</span>'
            f"{text(f.get('kind'))} — {text(f.get('summary'), 200)}</li>"
        )
    out.append(
        '</ul></nav><p class="muted"><a href="#trace">trace</a> · <a href="#clocks">clocks</a>'
        ' · <a href="#hops">hops</a> · <a href="#findings">findings</a></p>'
    )
    return "".join(out)


def trace_section(t: Mapping[str, Any], procs: Sequence[Mapping[str, Any]]) -> str:
    out = ['<section id="trace"><h2>Trace</h2>']
    facts = [
        ("files", t.get("files", 0)),
        ("events", t.get("events", 0)),
        ("units", t.get("units", 0)),
        ("processes", t.get("processes", 0)),
        ("runtimes", ", ".join(map(str, t.get("runtimes", []))) or "none"),
        ("dropped events", t.get("dropped_events", 0)),
        ("agent faults", t.get("agent_faults", 0)),
        ("unknown events skipped", t.get("unknown_events", 0)),
        ("unreadable files", len(t.get("unreadable_files", []))),
    ]
    out.append(
        table(
            [f for f, _ in facts],
            [[text(f"{v:,}" if isinstance(v, int) else v) for _, v in facts]],
            set(),
        )
    )
    bad = t.get("unreadable_files", [])
    if bad:
        out.append('<ul class="bad">')
        for u in bad:
            kind = "damaged (good chunks used)" if u.get("partial") else "unreadable"
            out.append(
                f"<li>{text(kind)}: <code>{text(u.get('path'))}</code>: {text(u.get('error'))}</li>"
            )
        out.append("</ul>")
    for note in t.get("notes", []):
        out.append(f'<p class="note">note: {text(note)}</p>')
    if t.get("dropped_events") or t.get("agent_faults"):
        faults = int(t.get("agent_faults", 0))
        out.append(
            f'<p class="bad">agents: {int(t.get("dropped_events", 0)):,} events dropped, '
            f"{faults:,} fault{'' if faults == 1 else 's'}</p>"
        )
    if procs:
        rows = []
        for p in procs:
            agent = p.get("agent", {})
            rows.append(
                [
                    text(p.get("service")),
                    text(p.get("pid")),
                    text(p.get("host")),
                    text(p.get("runtime")),
                    text(p.get("clock_domain")),
                    text(f"{int(agent.get('events', 0)):,}"),
                    text(f"{int(agent.get('dropped', 0)):,}"),
                    text(f"{int(agent.get('faults', 0)):,}"),
                    f'<span class="mono">{text(p.get("id"))}</span>',
                ]
            )
        head = ["service", "pid", "host", "runtime", "clock", "events", "dropped", "faults", "id"]
        out.append(table(head, rows, {1, 5, 6, 7}))
    out.append("</section>")
    return "".join(out)


def clocks_section(clocks: Sequence[Mapping[str, Any]], procs: Sequence[Mapping[str, Any]]) -> str:
    if not clocks:
        return empty_section("clocks", "Clock domains", "none: the trace has no clock domains")
    by_id = {p.get("id"): p for p in procs}
    rows = []
    for d in clocks:
        names = ", ".join(
            f"{by_id[p].get('service')} ({by_id[p].get('pid')})" if p in by_id else str(p)
            for p in d.get("processes", [])
        )
        lo, hi = d.get("offset_min_ns"), d.get("offset_max_ns")
        allowed = (
            "-"
            if d.get("reference")
            else f"{'-inf' if lo is None else ms(lo)} .. {'+inf' if hi is None else ms(hi)}"
        )
        unc = d.get("uncertainty_ns")
        flags = [
            name
            for name, on in (
                ("reference", d.get("reference")),
                ("simulated", d.get("simulated")),
                ("drift applied", d.get("drift_applied")),
            )
            if on
        ]
        rows.append(
            [
                text(d.get("id")),
                text(names),
                text(d.get("host")),
                text(d.get("runtime")),
                text(ms(d.get("offset_ns"))),
                text("unbounded" if unc is None else ms(unc).lstrip("+")),
                text(allowed),
                text(f"{d.get('drift_ns_per_s', 0)} ns"),
                text(" ".join(flags)),
            ]
        )
    head = ["domain", "processes", "host", "runtime", "offset", "±", "allowed", "drift/s", ""]
    return (
        '<section id="clocks"><h2>Clock domains</h2>'
        '<p class="muted">Offset: what is added to a domain\'s raw time to put it on the '
        "reference domain's line, the midpoint of the interval the causal edges allow; ± is "
        "that interval's half-width. Simulated: the skew was injected "
        "(WILLOWISP_CLOCK_OFFSET_NS), not measured on a real clock.</p>"
        + table(head, rows, {4, 5, 7})
        + "</section>"
    )


def _side(s: Mapping[str, Any]) -> str:
    if s.get("service") is None:
        return f"? ({s['peer']})" if s.get("peer") else "? (not traced)"
    runtime = s.get("runtime")
    return f"{s.get('service')} ({runtime})" if runtime else str(s.get("service"))


SEAM_PARTS = ("marshal", "transit", "structural", "handler", "reply")


def _seams(seams: Mapping[str, Any] | None) -> str:
    if not seams:
        return ""
    parts = []
    for name in SEAM_PARTS:
        part = seams.get(f"{name}_ns")
        if not part:
            continue
        unc = part.get("uncertainty_ns")
        pm = "" if unc == 0 else (" ±?" if unc is None else f" ±{duration(unc)}")
        parts.append(f"{name} {duration(part['p50'])}{pm} ({duration(part['p99'])})")
    return " · ".join(parts)


def empty_section(anchor: str, title: str, body: str) -> str:
    """A section the analysis has nothing for: its heading and anchor stay (docs/report.md
    promises ``#hops``, ``#boundaries``, ... as stable links) with one line saying so."""
    return f'<section id="{anchor}"><h2>{title}</h2><p class="muted">{body}</p></section>'


def hops_section(hops: Sequence[Mapping[str, Any]]) -> str:
    if not hops:
        return empty_section("hops", "Hops and seams", "none: the trace has no hops")
    rows = []
    for h in hops[:MAX_HOPS]:
        src = _side(h.get("from", {}))
        if h.get("from", {}).get("service") is None and set(h.get("unlinked", {})) == {
            "caller-not-sampled"
        }:
            src = "? (caller did not sample)"
        unlinked = ", ".join(f"{k} {v}" for k, v in (h.get("unlinked") or {}).items())
        lat = h.get("latency_ns")
        rows.append(
            [
                text(src),
                text(_side(h.get("to", {}))),
                text(h.get("protocol")),
                text(", ".join(map(str, h.get("libraries", []))) or "-"),
                text(f"{int(h.get('count', 0)):,}"),
                text(f"{int(h.get('linked', 0)):,}"),
                text(unlinked or "-"),
                text(f"{duration(lat['p50'])} / {duration(lat['p99'])}" if lat else "-"),
                text(_seams(h.get("seams")) or "-"),
            ]
        )
    head = ["from", "to", "protocol", "libraries", "count", "linked", "unlinked", "p50 / p99"]
    more = (
        f'<p class="note">… and {len(hops) - MAX_HOPS:,} more hop groups not shown.</p>'
        if len(hops) > MAX_HOPS
        else ""
    )
    return (
        '<section id="hops"><h2>Hops and seams</h2>'
        '<p class="muted">Seams: each part of a hop\'s latency, p50 ± the clock uncertainty '
        "across domains (p99).</p>"
        + table([*head, "seams p50 (p99)"], rows, {4, 5})
        + more
        + "</section>"
    )


def boundaries_section(t: Mapping[str, Any], procs: Sequence[Mapping[str, Any]]) -> str:
    bounds = t.get("boundaries") or []
    if not bounds:
        return empty_section("boundaries", "Boundaries", "none: the analysis has no boundaries")
    rows = []
    for b in bounds:
        lat = b.get("latency_ns")
        rows.append(
            [
                text(b.get("entry")),
                text(b.get("source")),
                text(f"{int(b.get('instances', 0)):,}"),
                text(f"{int(b.get('events', 0)):,}"),
                text(f"{int(b.get('units', 0)):,}"),
                text(",".join(map(str, b.get("runtimes", []))) or "-"),
                text(f"{duration(lat['p50'])} / {duration(lat['p99'])}" if lat else "-"),
            ]
        )
    head = ["entry", "source", "instances", "events", "units", "runtimes", "p50 / p99"]
    out = ['<section id="boundaries"><h2>Boundaries</h2>', table(head, rows, {2, 3, 4})]
    for p in procs:
        for name, c in sorted((p.get("agent", {}).get("by_boundary") or {}).items()):
            out.append(
                f'<p class="muted">agent cost in {text(name)}: {text(p.get("service"))} '
                f"({text(p.get('pid'))}) {text(count(int(c.get('events', 0)), 'event'))}, "
                f"{text(duration(int(c.get('cost_ns', 0))))}</p>"
            )
    if t.get("suppress") and t.get("suppressed_findings"):
        out.append(
            f'<p class="note">{text(count(int(t["suppressed_findings"]), "finding"))} outside '
            "the boundaries suppressed (--no-suppress shows them).</p>"
        )
    out.append("</section>")
    return "".join(out)


def contention_section(resources: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for r in [r for r in resources if r["wait_ns"]["total"] > 0][:CONTENTION_SHOWN]:
        res = r["resource"]
        waited, hold = waited_and_hold(r, duration)
        rows.append(
            [
                text(
                    f"{res['kind']} {res['name']}" + (f" ({res['where']})" if res["where"] else "")
                ),
                text(r.get("service") or "?"),
                text(waited),
                text(duration(r["wait_ns"]["total"])),
                text(duration(r["wait_ns"]["max"])),
                text(hold),
                text(str(r["longest_run"]) if r.get("convoys") else "-"),
                text(str(r.get("max_queue", "-"))),
            ]
        )
    if not rows:
        return empty_section(
            "contention", "Contention (top by total wait)", "none: no resource was waited for"
        )
    head = ["resource", "service", "waited", "wait", "worst", "hold p50/p99", "convoy", "queue"]
    return (
        '<section id="contention"><h2>Contention (top by total wait)</h2>'
        + table(head, rows, {2, 3, 4, 5, 6, 7})
        + "</section>"
    )


def critical_path_section(section: Mapping[str, Any] | None) -> str:
    if not section or not section.get("paths") or not section["paths"][0].get("segments"):
        return empty_section(
            "critical-path", "Critical path", "none: no operation has a critical path"
        )
    p = section["paths"][0]
    state = "" if p.get("complete") else ", the walk stopped before the root"
    head = (
        f"slowest of {count(int(section.get('operations', 0)), 'operation')}, trace "
        f"{short_trace_id(str(p.get('trace_id')))}… {duration(int(p['duration_ns']))}, "
        f"{' → '.join(map(str, p.get('services', [])))}{state}"
    )
    segs = p["segments"]
    shown = sorted(sorted(range(len(segs)), key=lambda i: -segs[i]["duration_ns"])[:PATH_ROWS])
    rows = []
    for i in shown:
        s = segs[i]
        unc = s.get("uncertainty_ns")
        pm = "" if unc == 0 else (" ±?" if unc is None else f" ±{duration(unc)}")
        res = s.get("resource")
        rows.append(
            [
                text(ms(s.get("at_ns"))),
                text(s.get("kind")),
                text(duration(int(s["duration_ns"])) + pm),
                text(f"{s.get('service')} {s.get('unit', {}).get('name')}"),
                text(f"{res['kind']} {res['name']}" if res else "-"),
                f'<span class="mono">{text(s.get("where") or "-")}</span>',
            ]
        )
    out = [
        '<section id="critical-path"><h2>Critical path</h2>',
        f"<p>{text(head)}</p>",
        table(["at", "kind", "duration", "unit", "resource", "where"], rows, {0, 2}),
    ]
    if len(segs) > len(shown):
        out.append(f'<p class="note">{len(segs) - len(shown):,} shorter segments not shown.</p>')
    if p.get("segments_omitted"):
        out.append(
            f'<p class="note">… and {int(p["segments_omitted"]):,} short segments not in the '
            "document.</p>"
        )
    totals = sorted(((ns, k) for k, ns in (p.get("totals_ns") or {}).items() if ns), reverse=True)
    if totals:
        out.append(
            '<p class="muted">time: '
            + text(" · ".join(f"{k} {duration(ns)}" for ns, k in totals))
            + "</p>"
        )
    out.append("</section>")
    return "".join(out)
