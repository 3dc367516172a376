"""``report.html``: the analysis as one self-contained page, for a person or a CI artifact.

The page says what the text report says, in the same order (trace summary, clock domains,
hops and their seams, boundaries, contention, the critical path, then each finding), and
adds what a terminal cannot show: a timeline per finding (:mod:`willowisp.report.
html_timeline`) — the finding's units as lanes of states over adjusted time, with the
causal edges between them — and a table of the finding's events with their source
locations. Each finding is an ``<article id="F-xxxxxx">``, so ``report.html#F-3a9c1e`` is
a stable link from a CI log (finding ids are stable across runs).

Self-contained and inert: inline CSS, no script, no external fetches, and a
Content-Security-Policy that forbids scripts and every remote load, so the page reads the
same offline and with scripts off. Every string from the trace goes through
:mod:`willowisp.report.html_markup` (escaped, control characters spelled out, long ones
clipped); the page's own markup is built from constants around it.

The trade-off: the document alone (a cached analysis, a JSON file) gives everything but the
lanes, which need the events; callers that have the trace pass it as ``source`` and get
timelines, callers that do not get the rest of the page with a note saying why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from willowisp.display import short_trace_id
from willowisp.report.html_markup import CELL_LIMIT, anchor, attr, text
from willowisp.report.html_sections import (
    boundaries_section,
    clocks_section,
    contention_section,
    count,
    critical_path_section,
    hops_section,
    overview,
    table,
    trace_section,
)
from willowisp.report.html_style import CSP, CSS, LEGEND
from willowisp.report.html_timeline import (
    MAX_LANES,
    Timeline,
    Timelines,
    duration,
    signed_duration,
    svg,
    wall,
)

if TYPE_CHECKING:
    from willowisp.analysis.engine import Analysis
    from willowisp.causality.link import Causality
    from willowisp.ingest.trace import Trace

    Source = Analysis | Causality | Trace | None

MAX_FINDINGS_DRAWN = 50  # findings given a timeline; the rest are listed without one


def render(
    doc: Mapping[str, Any], source: Source = None, *, title: str = "Willowisp report"
) -> str:
    """The page for ``doc`` (the ``analyze --format json`` document).

    ``source`` supplies the events the timelines are drawn from: the
    :class:`~willowisp.analysis.engine.Analysis` that made ``doc``, its ``Causality``, or
    the loaded ``Trace`` (then linked here, aligned to the reference clock ``doc`` names).
    With None the page has everything but the timelines and event tables, and says so.
    Trace strings are escaped; the result is a complete HTML document.
    """
    timelines = _timelines(doc, source)
    findings = list(doc.get("findings", []))
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="willowisp">',
        f"<title>{text(title)} — {count(len(findings), 'finding')}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header><h1>{text(title)}</h1>",
        overview(doc, findings),
        "</header><main>",
        trace_section(doc.get("trace", {}), doc.get("processes", [])),
        clocks_section(doc.get("clocks", []), doc.get("processes", [])),
        hops_section(doc.get("hops", [])),
        boundaries_section(doc.get("trace", {}), doc.get("processes", [])),
        contention_section(doc.get("contention") or []),
        critical_path_section(doc.get("critical_paths")),
        _findings_section(findings, timelines),
        "</main>",
        f'<footer class="muted"><p>schema {text(doc.get("schema", "?"))} · '
        "written by willowisp analyze; self-contained: no scripts, no network.</p></footer>",
        "</body></html>\n",
    ]
    return "\n".join(p for p in parts if p)


def write_report(
    path: str | os.PathLike[str],
    doc: Mapping[str, Any],
    source: Source = None,
    *,
    title: str = "Willowisp report",
) -> Path:
    """Render and write the page to ``path`` (UTF-8), creating its folder; returns the path.

    Raises OSError when the file cannot be written (the caller names it to the user).
    """
    out = Path(path)
    page = render(doc, source, title=title)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)  # a reader never sees half a page
    return out


# -- the source of the lanes ------------------------------------------------------------


def _timelines(doc: Mapping[str, Any], source: Source) -> Timelines | None:
    if source is None:
        return None
    # Imported here: only a caller with a trace pays for the analysis engine's imports.
    from willowisp.analysis.engine import Analysis
    from willowisp.causality.link import Causality, link
    from willowisp.errors import UsageError

    if isinstance(source, Analysis):
        return Timelines(source.causality)
    if isinstance(source, Causality):
        return Timelines(source)
    reference = _reference_process(doc)
    try:
        return Timelines(link(source, reference))
    except UsageError:
        return Timelines(link(source))


def _reference_process(doc: Mapping[str, Any]) -> str | None:
    """The first process of the document's reference clock domain, so lanes drawn from a
    re-linked trace use the same time line as the document's numbers."""
    for d in doc.get("clocks", []):
        if d.get("reference") and d.get("processes"):
            return str(d["processes"][0])
    return None


# -- findings ----------------------------------------------------------------------------


def _findings_section(findings: Sequence[Mapping[str, Any]], timelines: Timelines | None) -> str:
    out = ['<section id="findings"><h2>Findings</h2>']
    if not findings:
        out.append("<p>No findings.</p>")
    if findings and timelines is None:
        out.append(
            '<p class="note">Timelines and event locations need the trace itself; this '
            "report was made from the analysis document alone.</p>"
        )
    for n, f in enumerate(findings):
        drawn = timelines if n < MAX_FINDINGS_DRAWN else None
        out.append(_finding(f, drawn, n >= MAX_FINDINGS_DRAWN and timelines is not None))
    out.append("</section>")
    return "".join(out)


def _finding(f: Mapping[str, Any], timelines: Timelines | None, over_cap: bool) -> str:
    fid = anchor(f.get("id"))
    sev = str(f.get("severity", "info"))
    sev_class = sev if sev in ("error", "warning", "info") else "info"
    out = [
        f'<article class="finding {sev_class}" id="{fid}">',
        f'<h3><a href="#{fid}">{text(f.get("id"))}</a> '
        f'<span class="sev {sev_class}">{text(sev)}</span>{text(f.get("kind"))}',
    ]
    if f.get("occurrences"):
        out.append(f' <span class="muted">(seen {int(f["occurrences"])} times)</span>')
    out.append(f'</h3><p class="summary">{text(f.get("summary"))}</p>')
    steps = f.get("explanation", [])
    if steps:
        out.append('<ol class="explanation">')
        out += [f"<li>{text(step)}</li>" for step in steps]
        out.append("</ol>")
    if timelines is not None:
        t = timelines.timeline(f)
        if t is not None:
            out.append(_timeline_block(t, f))
        elif f.get("units"):
            out.append('<p class="note">No unit of this finding is in the trace to draw.</p>')
        rows, more = timelines.event_rows(f)
        if rows:
            out.append(_event_table(rows, more, f.get("event_times") or {}, t))
    elif over_cap:
        out.append(
            f'<p class="note">Timeline not drawn: only the first {MAX_FINDINGS_DRAWN} findings '
            "get one.</p>"
        )
    out.append(_resources(f.get("resources", [])))
    out.append(_units(f.get("units", [])))
    out.append("</article>")
    return "".join(out)


def _timeline_block(t: Timeline, f: Mapping[str, Any]) -> str:
    label = f"timeline of finding {f.get('id')}"
    notes = []
    if t.lanes_left_out:
        notes.append(
            f"{count(t.lanes_left_out, 'more unit')} not drawn (at most {MAX_LANES} lanes)"
        )
    if t.marks_left_out:
        notes.append(f"{count(t.marks_left_out, 'event')} not marked")
    if t.arrows_left_out:
        notes.append(f"{count(t.arrows_left_out, 'edge')} not drawn")
    cut = sum(lane.segments_left_out for lane in t.lanes)
    if cut:
        notes.append(f"{count(cut, 'short state')} not drawn (the longest are)")
    if t.not_in_trace:
        notes.append(f"{count(len(t.not_in_trace), 'unit')} named by the finding not in the trace")
    whole = ""
    if (t.t0, t.t1) != (t.first, t.last):
        whole = (
            f"; the finding's events are drawn, the units' lives span "
            f"{duration(t.last - t.first)} (a lane that goes on past an edge is marked there)"
        )
    out = [
        f'<p class="muted">Adjusted time (reference clock) from {text(wall(t.t0))}, '
        f"showing {text(duration(t.t1 - t.t0))}{text(whole)}.</p>",
        svg(t, label, "m-" + anchor(f.get("id"))),
        LEGEND,
    ]
    if notes:
        out.append(f'<p class="note">Left out: {text("; ".join(notes))}.</p>')
    return "".join(out)


def _event_table(
    rows: Sequence[Any], more: int, times: Mapping[str, Any], t: Timeline | None
) -> str:
    body = []
    for r in rows:
        op = times.get(r.event_id)
        into = "-"
        if op:
            into = signed_duration(int(op.get("root_rel_ns") or 0)) + (
                f" into trace {short_trace_id(str(op['trace_id']))}…"
                if op.get("trace_id")
                else " after its unit tree began"
            )
        body.append(
            [
                text(r.number),
                f'<span class="mono" title="{attr(r.event_id)}">{text(_short(r.event_id))}</span>',
                text(r.unit, CELL_LIMIT),
                text(r.what, CELL_LIMIT * 2),
                f'<span class="mono">{text(r.where or "-")}</span>',
                text(signed_duration(r.at - t.t0) if t is not None else wall(r.at)),
                text(wall(r.raw).split(" ")[1]),
                text(into),
            ]
        )
    head = [
        "#",
        "event",
        "unit",
        "what",
        "where (source)",
        "at (adjusted)",
        "raw clock",
        "in its operation",
    ]
    out = table(head, body, {0, 5, 6})
    if more:
        out += f'<p class="note">… and {more:,} more events not listed.</p>'
    return out


def _resources(resources: Sequence[Mapping[str, Any]]) -> str:
    if not resources:
        return ""
    rows = [
        [
            text(r.get("kind")),
            text(r.get("name"), CELL_LIMIT * 2),
            f'<span class="mono">{text(r.get("where") or "-")}</span>',
        ]
        for r in resources
    ]
    return "<h4>Resources</h4>" + table(["kind", "name", "created at"], rows, set())


def _units(units: Sequence[Mapping[str, Any]]) -> str:
    if not units:
        return ""
    rows = [
        [
            text(u.get("name"), CELL_LIMIT),
            text(u.get("kind")),
            text(u.get("service")),
            text(u.get("pid")),
            text(u.get("host")),
            text(u.get("runtime")),
            f'<span class="mono">{text(u.get("id"))}</span>',
        ]
        for u in units
    ]
    return "<h4>Units</h4>" + table(
        ["name", "kind", "service", "pid", "host", "runtime", "id"], rows, {3}
    )


def _short(event_id: str) -> str:
    """``a91a9100…:3``: 8 hex digits tell processes apart; the full id is in the title."""
    pid, _, seq = event_id.rpartition(":")
    return f"{pid[:8]}…:{seq}" if len(pid) > 8 else event_id
