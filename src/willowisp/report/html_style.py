"""The HTML report's look: its stylesheet, its legend and its Content-Security-Policy.

Kept apart from the markup so the page's modules stay about structure. The state colours
here are the ones :mod:`willowisp.report.html_timeline` names by class (``running``,
``blocked``, ``waiting``, ``suspended``) and that the browser test looks for in pixels.
"""

# No script may run and nothing may be fetched, whatever a trace string might smuggle in.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)

CSS = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #d9dce1; --bg: #fff; --panel: #f6f7f9; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); margin: 0 auto; max-width: 1100px; padding: 16px; }
h1 { font-size: 22px; margin: 4px 0 8px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 0 0 6px; }
code, .mono, td.mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 12.5px; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0 10px; width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; overflow-wrap: anywhere; }
th { background: var(--panel); font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
td { min-width: 5.5em; } td:first-child { min-width: 2em; }
.muted { color: var(--muted); }
.note { color: var(--muted); font-style: italic; }
.bad { color: #b3261e; }
nav ul { margin: 4px 0; padding-left: 18px; }
article.finding { border: 1px solid var(--line); border-left: 6px solid #999;
  border-radius: 6px; padding: 10px 14px; margin: 14px 0; overflow-x: auto; }
article.error { border-left-color: #b3261e; }
article.warning { border-left-color: #c77700; }
article.info { border-left-color: #1f6fb2; }
article.finding:target { box-shadow: 0 0 0 3px #ffd54f; }
.sev { font-weight: 700; text-transform: uppercase; margin-right: 6px; }
.sev.error { color: #b3261e; } .sev.warning { color: #c77700; } .sev.info { color: #1f6fb2; }
.summary { font-weight: 600; margin: 4px 0; overflow-wrap: anywhere; }
ol.explanation li { margin: 2px 0; overflow-wrap: anywhere; }
svg.timeline { display: block; margin: 8px 0; background: #fff; max-width: none; }
svg .tick { stroke: #eceff3; stroke-width: 1; }
svg .ticklabel { font: 10px system-ui, sans-serif; fill: #5f6368; }
svg .lanelabel { font: 12px system-ui, sans-serif; fill: #1d1d1f; }
svg .lanedetail { font: 9.5px system-ui, sans-serif; fill: #5f6368; }
svg rect.running { fill: #4caf50; }
svg rect.blocked { fill: #d32f2f; }
svg rect.waiting { fill: #f29900; }
svg rect.suspended { fill: #b0bec5; }
svg .lane rect:not(.running) { stroke: #fff; stroke-width: 0.6; }
svg .still { font: bold 13px system-ui, sans-serif; fill: #b3261e; }
svg line.edge { stroke: #1f4e9c; stroke-width: 1.6; }
svg line.uncertain { stroke-dasharray: 2 3; }
svg line.waits { stroke: #b3261e; stroke-width: 1.6; stroke-dasharray: 5 3; }
svg .mark circle { fill: #fff; stroke: #1d1d1f; stroke-width: 1.5; }
svg .mark text { font: bold 9px system-ui, sans-serif; fill: #1d1d1f; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 22px; height: 10px; margin-right: 4px;
  vertical-align: middle; }
.legend .running { background: #4caf50; } .legend .blocked { background: #d32f2f; }
.legend .waiting { background: #f29900; } .legend .suspended { background: #b0bec5; }
.legend .edge { height: 0; border-top: 2px solid #1f4e9c; }
.legend .waits { height: 0; border-top: 2px dashed #b3261e; }
@media print { article.finding { break-inside: avoid; } }
"""

LEGEND = (
    '<p class="legend">'
    '<span><i class="running"></i>running</span>'
    '<span><i class="blocked"></i>blocked on a resource</span>'
    '<span><i class="waiting"></i>waiting on a peer (reply, message, join)</span>'
    '<span><i class="suspended"></i>suspended between task steps</span>'
    '<span><i class="edge"></i>causal edge (dotted: below certainty)</span>'
    '<span><i class="waits"></i>waits for the holder</span>'
    "<span>① the finding's events, numbered as in the table</span>"
    "<span>… still alive when the trace ended</span></p>"
)
