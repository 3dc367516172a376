// Willowisp viewer. Draws what the server's level-of-detail API returns on one canvas.
// Every string that came from a trace reaches the page only as a text node (textContent)
// or as canvas text: nothing here builds markup from data.
"use strict";
(() => {
  const token = new URLSearchParams(location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const ROW = 20, AXIS = 26, LABEL = 250;
  const STATE_COLORS = { 1: "#343c46", 2: "#2b4f6e", 3: "#6a5acd", 4: "#3fb950", 5: "#d29922", 6: "#f85149" };
  const HOLD_COLOR = "#a371f7";
  const EDGE_COLORS = {
    spawn: "#8b949e", join: "#8b949e", lock: "#c297ff", queue: "#58a6ff", notify: "#58a6ff",
    request: "#f0b429", reply: "#ffd36e", process: "#db61a2", message: "#39c5cf",
  };
  const MODES = ["raw", "adjusted", "causal"];

  let meta = null;
  let mode = "adjusted";
  const view = {}; // mode -> {t0, t1}, relative to the mode's base
  let rows = []; // {group: g} or {lane: l}
  let shown = null; // Set of lanes, or null for every lane
  let runtime = "";
  let hideInternal = false; // the runtimes' own units (GC workers, the tracer...)
  let scroll = 0;
  let tile = null, inflight = false, again = false, drawn = 0;
  let focus = null, step = -1;
  let edgesOnScreen = [];
  let tipTimer = 0, tipSeq = 0, searchTimer = 0;
  let drag = null;
  let error = "";

  async function api(path, params) {
    const q = new URLSearchParams(params || {});
    q.set("token", token);
    const r = await fetch(path + "?" + q.toString());
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // A trace string in the page: its own <bdi> (bidi isolation), so a right-to-left name
  // cannot reorder the text around it. The server already spelled out control characters
  // (\u202e, \x1b) and shortened long strings.
  function iso(text) { return el("bdi", text); }

  // -- time ---------------------------------------------------------------------------

  function fmtSpan(ns) {
    if (mode === "causal") return `${Math.round(ns)} steps`;
    const a = Math.abs(ns);
    if (a < 1e3) return `${ns.toFixed(0)} ns`;
    if (a < 1e6) return `${(ns / 1e3).toFixed(a < 1e4 ? 2 : 1)} µs`;
    if (a < 1e9) return `${(ns / 1e6).toFixed(a < 1e7 ? 3 : 1)} ms`;
    return `${(ns / 1e9).toFixed(3)} s`;
  }

  // a tick label with as many decimals as the tick step needs
  function fmtTick(t, stepT) {
    const a = Math.max(Math.abs(t), stepT);
    const [unit, name] = a < 1e3 ? [1, "ns"] : a < 1e6 ? [1e3, "µs"] : a < 1e9 ? [1e6, "ms"] : [1e9, "s"];
    const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(stepT / unit) + 1e-9)));
    return `+${(t / unit).toFixed(decimals)} ${name}`;
  }

  function timeWidth() { return Math.max(canvas.clientWidth - LABEL, 10); }
  function xOf(t) { const v = view[mode]; return LABEL + (t - v.t0) * timeWidth() / (v.t1 - v.t0); }
  function tOf(x) { const v = view[mode]; return v.t0 + (x - LABEL) * (v.t1 - v.t0) / timeWidth(); }

  function fit(t0, t1) {
    const ext = meta.extent[mode];
    if (t0 === undefined) { t0 = ext[0]; t1 = ext[1]; }
    const pad = Math.max((t1 - t0) * 0.04, mode === "causal" ? 1 : 1000);
    view[mode] = { t0: t0 - pad, t1: t1 + pad };
  }

  function zoom(factor, x) {
    const v = view[mode];
    const at = x === undefined ? (v.t0 + v.t1) / 2 : tOf(x);
    let span = (v.t1 - v.t0) * factor;
    span = Math.max(span, mode === "causal" ? 4 : 200);
    const left = (at - v.t0) / (v.t1 - v.t0);
    view[mode] = { t0: at - span * left, t1: at - span * left + span };
    changed();
  }

  function pan(dt) { const v = view[mode]; view[mode] = { t0: v.t0 + dt, t1: v.t1 + dt }; changed(); }

  // -- lanes --------------------------------------------------------------------------

  function laneVisible(l) {
    const lane = meta.lanes[l];
    if (runtime && meta.groups[lane.group].runtime !== runtime) return false;
    if (hideInternal && lane.internal && !(focus && focus.lanes.includes(l))) return false;
    return shown === null || shown.has(l);
  }

  function buildRows() {
    rows = [];
    let last = -1;
    meta.lanes.forEach((lane, l) => {
      if (!laneVisible(l)) return;
      if (lane.group !== last) { rows.push({ group: lane.group }); last = lane.group; }
      rows.push({ lane: l });
    });
    scroll = Math.max(0, Math.min(scroll, rows.length - 1));
  }

  function visibleRows() {
    const n = Math.ceil((canvas.clientHeight - AXIS) / ROW);
    return rows.slice(scroll, scroll + n);
  }

  function laneY() {
    const y = new Map();
    visibleRows().forEach((r, i) => { if (r.lane !== undefined) y.set(r.lane, AXIS + i * ROW); });
    return y;
  }

  // -- fetching -----------------------------------------------------------------------

  function changed() { schedule(); requestAnimationFrame(draw); }

  function schedule() {
    document.body.dataset.idle = "0";
    if (inflight) { again = true; return; }
    fetchTile();
  }

  async function fetchTile() {
    inflight = true;
    const lanes = visibleRows().filter((r) => r.lane !== undefined).map((r) => r.lane);
    const v = view[mode];
    const params = {
      mode, t0: Math.floor(v.t0), t1: Math.ceil(v.t1) + 1, px: Math.round(timeWidth()),
      lanes: lanes.join(","),
    };
    try {
      const asked = performance.now();
      if (lanes.length === 0) tile = { ...params, lanes: [], runs: [], holds: [], ticks: [], edges: [], total: 0, shown: 0, count: 0 };
      else tile = await api("/api/tiles", params);
      tile.index = new Map(tile.lanes.map((l, i) => [l, i]));
      document.body.dataset.fetchMs = String(Math.round(performance.now() - asked));
      error = "";
    } catch (e) {
      error = String(e.message || e);
    }
    inflight = false;
    drawn += 1;
    draw();
    document.body.dataset.tiles = String(drawn);
    document.body.dataset.mode = mode;
    if (again) { again = false; fetchTile(); } else document.body.dataset.idle = "1";
  }

  // -- drawing ------------------------------------------------------------------------

  function draw() {
    if (!meta) return;
    const began = performance.now();
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#101418"; ctx.fillRect(0, 0, w, h);
    ctx.font = "12px system-ui, sans-serif";
    ctx.direction = "ltr";
    ctx.textBaseline = "middle";
    drawAxis(w);
    const ys = laneY();
    drawRows(w, ys);
    if (tile && tile.mode === mode) { drawCells(ys); drawTicks(ys); drawEdges(ys, h); }
    drawFocus(ys);
    status();
    document.body.dataset.drawMs = String(Math.round(performance.now() - began));
  }

  function niceStep(span, px) {
    const raw = span / Math.max(px / 110, 1);
    const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-9))));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  function drawAxis(w) {
    const v = view[mode];
    ctx.fillStyle = "#161b22"; ctx.fillRect(0, 0, w, AXIS);
    ctx.fillStyle = "#8b949e";
    ctx.fillText(mode === "causal" ? "causal order (no time)" : `${mode} clock, from the first event`, 8, AXIS / 2);
    const stepT = niceStep(v.t1 - v.t0, timeWidth());
    ctx.strokeStyle = "#2a3038";
    for (let t = Math.ceil(v.t0 / stepT) * stepT; t < v.t1; t += stepT) {
      const x = xOf(t);
      ctx.beginPath(); ctx.moveTo(x, AXIS - 6); ctx.lineTo(x, canvas.clientHeight); ctx.stroke();
      ctx.fillText(mode === "causal" ? `#${Math.round(t)}` : fmtTick(t, stepT), x + 3, AXIS / 2);
    }
  }

  function clipText(text, max) {
    if (ctx.measureText(text).width <= max) return text;
    let lo = 0, hi = text.length;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (ctx.measureText(text.slice(0, mid) + "…").width <= max) lo = mid; else hi = mid - 1; }
    return text.slice(0, lo) + "…";
  }

  function groupLabel(g) {
    const grp = meta.groups[g];
    let clock = `${grp.domain}`;
    if (mode === "adjusted" && grp.uncertainty_ns) clock += ` ±${fmtSpan(grp.uncertainty_ns)}`;
    if (grp.simulated) clock += " simulated skew";
    return `${grp.runtime} · ${grp.service} (pid ${grp.pid}, ${grp.host}) · clock ${clock}`;
  }

  function drawRows(w, ys) {
    visibleRows().forEach((r, i) => {
      const y = AXIS + i * ROW;
      if (r.group !== undefined) {
        ctx.fillStyle = "#1b2128"; ctx.fillRect(0, y, w, ROW);
        ctx.fillStyle = "#f0b429";
        ctx.fillText(clipText(groupLabel(r.group), w - 16), 8, y + ROW / 2);
      } else {
        const lane = meta.lanes[r.lane];
        const focused = focus && focus.lanes.includes(r.lane);
        ctx.fillStyle = focused ? "#2d2a1a" : (i % 2 ? "#12171c" : "#101418");
        ctx.fillRect(0, y, w, ROW);
        ctx.fillStyle = lane.internal ? "#6e7681" : "#d8dee4";
        const label = `${lane.name}  ${lane.kind}${lane.internal ? " (runtime)" : ""}`;
        ctx.fillText(clipText(label, LABEL - 24), 16, y + ROW / 2);
      }
    });
    ctx.strokeStyle = "#2a3038";
    ctx.beginPath(); ctx.moveTo(LABEL - 0.5, AXIS); ctx.lineTo(LABEL - 0.5, canvas.clientHeight); ctx.stroke();
  }

  // a pixel of the fetched tile -> an x on the screen now (pan/zoom before the next tile)
  function tileX(px) {
    return xOf(tile.t0 + px * (tile.t1 - tile.t0) / tile.px);
  }

  function drawCells(ys) {
    ctx.save();
    ctx.beginPath(); ctx.rect(LABEL, AXIS, timeWidth(), canvas.clientHeight - AXIS); ctx.clip();
    for (const [lane, y] of ys) {
      const i = tile.index.get(lane);
      if (i === undefined) continue;
      const runs = tile.runs[i];
      for (let k = 0; k < runs.length; k += 3) {
        const x0 = tileX(runs[k]), x1 = tileX(runs[k] + runs[k + 1]);
        const s = runs[k + 2];
        ctx.fillStyle = STATE_COLORS[s] || "#555";
        const inset = s === 1 ? 8 : 3;
        ctx.fillRect(x0, y + inset, Math.max(x1 - x0, 1), ROW - 2 * inset);
      }
      const holds = tile.holds[i];
      ctx.fillStyle = HOLD_COLOR;
      for (let k = 0; k < holds.length; k += 3) {
        const x0 = tileX(holds[k]), x1 = tileX(holds[k] + holds[k + 1]);
        ctx.fillRect(x0, y + ROW - 3, Math.max(x1 - x0, 1), 2);
      }
    }
    ctx.restore();
  }

  function drawTicks(ys) {
    const t = tile.ticks;
    ctx.fillStyle = "#d8dee4";
    for (let k = 0; k < t.length; k += 4) {
      const y = ys.get(t[k]);
      if (y === undefined) continue;
      const x = tileX(t[k + 1] + 0.5);
      if (x < LABEL) continue;
      ctx.fillRect(x, y + 2, 1, 4);
    }
  }

  function drawEdges(ys, h) {
    edgesOnScreen = [];
    const e = tile.edges;
    const top = AXIS, bottom = h;
    ctx.save();
    ctx.beginPath(); ctx.rect(LABEL, AXIS, timeWidth(), h - AXIS); ctx.clip();
    for (let k = 0; k < e.length; k += 7) {
      const ya = ys.get(e[k]), yb = ys.get(e[k + 2]);
      if (ya === undefined && yb === undefined) continue;
      const kind = meta.edge_kinds[e[k + 4] - 1] || "";
      const x0 = tileX(e[k + 1] + 0.5), x1 = tileX(e[k + 3] + 0.5);
      const y0 = ya === undefined ? (offAbove(e[k]) ? top : bottom) : ya + ROW / 2;
      const y1 = yb === undefined ? (offAbove(e[k + 2]) ? top : bottom) : yb + ROW / 2;
      const cross = kind === "request" || kind === "reply" || kind === "process" || kind === "message";
      ctx.strokeStyle = EDGE_COLORS[kind] || "#8b949e";
      ctx.lineWidth = cross ? 1.6 : 1;
      ctx.setLineDash(ya === undefined || yb === undefined ? [3, 3] : []);
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
      arrowHead(x0, y0, x1, y1);
      if (mode === "adjusted") uncertainty(e[k], x0, y0, e[k + 2], x1, y1);
      edgesOnScreen.push({ x0, y0, x1, y1, kind, prov: meta.provenance[e[k + 5]] || "", row: e[k + 6] });
    }
    ctx.restore();
    ctx.setLineDash([]); ctx.lineWidth = 1;
  }

  function offAbove(lane) {
    const first = visibleRows().find((r) => r.lane !== undefined);
    return first !== undefined && lane < first.lane;
  }

  function arrowHead(x0, y0, x1, y1) {
    const a = Math.atan2(y1 - y0, x1 - x0);
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x1 - 7 * Math.cos(a - 0.4), y1 - 7 * Math.sin(a - 0.4));
    ctx.lineTo(x1 - 7 * Math.cos(a + 0.4), y1 - 7 * Math.sin(a + 0.4));
    ctx.closePath();
    ctx.fillStyle = ctx.strokeStyle; ctx.fill();
  }

  // In adjusted mode an edge end on a clock with an uncertain offset could sit anywhere in
  // a band of ± the domain's uncertainty: draw the band, so a tidy-looking gap is not
  // mistaken for a measured one.
  function uncertainty(laneA, x0, y0, laneB, x1, y1) {
    const per = timeWidth() / (view[mode].t1 - view[mode].t0);
    for (const [lane, x, y] of [[laneA, x0, y0], [laneB, x1, y1]]) {
      const u = meta.groups[meta.lanes[lane].group].uncertainty_ns;
      if (!u) continue;
      const half = u * per;
      if (half < 1) continue;
      ctx.fillStyle = "rgba(240,180,41,0.18)";
      ctx.fillRect(x - half, y - 4, 2 * half, 8);
    }
  }

  // Circles every event of the current step that is on screen (a clock-skew step cites
  // two, one in each process).
  function drawFocus(ys) {
    const circled = [];
    ctx.strokeStyle = "#ffffff"; ctx.lineWidth = 2;
    for (const ev of stepEvents()) {
      const y = ys.get(ev.lane);
      const x = xOf(ev.t[mode]);
      if (y === undefined || x < LABEL || x > canvas.clientWidth) continue;
      ctx.beginPath(); ctx.arc(x, y + ROW / 2, 7, 0, 2 * Math.PI); ctx.stroke();
      circled.push(ev.id);
    }
    ctx.lineWidth = 1;
    document.body.dataset.circled = circled.join(" "); // for tests: what the circles mark
  }

  function status() {
    const v = view[mode];
    const parts = [mode, fmtSpan(v.t1 - v.t0) + " in view", `${rows.filter((r) => r.lane !== undefined).length} lanes`];
    if (tile && tile.mode === mode) {
      parts.push(`${tile.shown}/${tile.total} edges`);
      parts.push(`${tile.count} events in view`);
    }
    if (error) parts.push("error: " + error);
    $("status").textContent = parts.join(" · ");
  }

  // -- findings -----------------------------------------------------------------------

  function listFindings() {
    const ol = $("findings");
    ol.replaceChildren();
    if (!meta.findings.length) ol.append(el("li", "no findings", "sev-info"));
    meta.findings.forEach((f, i) => {
      const li = el("li");
      li.append(el("span", f.kind, `sev-${f.severity}`), document.createTextNode(" "), iso(f.summary));
      li.dataset.finding = f.id;
      li.addEventListener("click", () => selectFinding(i));
      ol.append(li);
    });
  }

  // Selecting a finding replaces an active search (the box is cleared): the lanes shown are
  // the finding's, every one its units or events are on.
  function selectFinding(i) {
    focus = meta.findings[i];
    [...$("findings").children].forEach((li, k) => li.classList.toggle("on", k === i));
    $("search").value = "";
    clearTimeout(searchTimer);
    shown = focus.lanes.length ? new Set(focus.lanes) : null;
    scroll = 0;
    buildRows();
    $("story").hidden = false;
    $("story-title").textContent = `${focus.kind} ${focus.id}`;
    const note = $("story-note");
    note.hidden = focus.lanes.length > 0;
    note.textContent = focus.events.length ? "" : "this finding names no event on the timeline";
    if (!focus.lanes.length) note.textContent += (note.textContent ? " and " : "this finding names ") + "no unit: every lane is shown";
    const steps = $("steps");
    steps.replaceChildren(...storySteps(focus).map(storyLine));
    const res = $("story-resources");
    res.replaceChildren();
    if (focus.resources.length) {
      res.append("resources: ");
      focus.resources.forEach((r, k) => res.append(...(k ? ["; "] : []), iso(r)));
    }
    step = -1;
    fitFocus();
    setStep(0);
  }

  // The story's steps, each with its events (indices into focus.events; none when the
  // step names no event of its own) and its line as parts, the trace's names apart; a
  // finding without explanation steps through its events.
  function storySteps(f) {
    if (f.explanation.length) {
      return f.explanation.map((text, k) => ({ text, parts: f.story ? f.story[k] : null, events: f.steps ? f.steps[k] : [] }));
    }
    return f.events.map((e, k) => ({ text: describeEvent(e), parts: null, events: [k] }));
  }

  // One step of the story: the analysis's words as text, each name from the trace in a
  // <bdi> of its own, so a right-to-left name cannot reorder the words around it.
  function storyLine(s) {
    const li = el("li");
    if (!s.parts) { li.append(iso(s.text)); return li; }
    for (const p of s.parts) li.append(p.name !== undefined ? iso(p.name) : p.text);
    return li;
  }

  function stepEvents() {
    if (!focus || step < 0) return [];
    const s = storySteps(focus)[step];
    return s ? s.events.map((k) => focus.events[k]).filter((e) => e) : [];
  }

  // `f` and the fit button: with a finding selected, its events; else everything
  function fitAll() { if (focus) fitFocus(); else { fit(); changed(); } }

  function fitFocus() {
    const ts = focus.events.map((e) => e.t[mode]);
    if (ts.length) fit(Math.min(...ts), Math.max(...ts)); else fit();
    changed();
  }

  function setStep(k) {
    if (!focus) return;
    const n = storySteps(focus).length;
    if (!n) return;
    step = Math.max(0, Math.min(k, n - 1));
    [...$("steps").children].forEach((li, i) => li.classList.toggle("on", i === step));
    const evs = stepEvents();
    const box = $("step-event");
    box.replaceChildren();
    if (evs.length) {
      box.append(`step ${step + 1}, circled:`);
      for (const ev of evs) {
        const lane = ev.lane >= 0 ? meta.lanes[ev.lane] : null;
        box.append("\n", ...(lane ? [iso(lane.name), " · "] : []), iso(describeEvent(ev)), `\nevent ${ev.id}`);
      }
      showEvents(evs);
    } else {
      box.append(`step ${step + 1} names no event of its own: nothing is circled`);
    }
    requestAnimationFrame(draw);
  }

  // Brings every event of a step on screen: pans when they fit the current zoom, zooms
  // out to them when they do not; scrolls the lanes so that all their rows show if they
  // can, else the first.
  function showEvents(evs) {
    const v = view[mode], ts = evs.map((e) => e.t[mode]);
    const lo = Math.min(...ts), hi = Math.max(...ts);
    const margin = (v.t1 - v.t0) * 0.05;
    if (hi - lo > v.t1 - v.t0 - 2 * margin) { fit(lo, hi); changed(); }
    else if (lo < v.t0 + margin || hi > v.t1 - margin) pan((lo + hi) / 2 - (v.t0 + v.t1) / 2);
    const idx = evs.map((e) => rows.findIndex((r) => r.lane === e.lane)).filter((i) => i >= 0);
    if (!idx.length) return;
    const first = Math.min(...idx), last = Math.max(...idx);
    const visible = Math.floor((canvas.clientHeight - AXIS) / ROW);
    if (first >= scroll && last < scroll + visible) return;
    scroll = last - first < visible - 3 ? Math.max(0, first - 3) : first;
    changed();
  }

  function clearFocus() {
    focus = null; step = -1; shown = null;
    $("story").hidden = true;
    $("step-event").replaceChildren();
    [...$("findings").children].forEach((li) => li.classList.remove("on"));
    $("search").value = "";
    buildRows(); changed();
  }

  // -- hover and details --------------------------------------------------------------

  function nearEdge(x, y) {
    let best = null, bestD = 5;
    for (const e of edgesOnScreen) {
      const dx = e.x1 - e.x0, dy = e.y1 - e.y0;
      const len2 = dx * dx + dy * dy || 1;
      const u = Math.max(0, Math.min(1, ((x - e.x0) * dx + (y - e.y0) * dy) / len2));
      const d = Math.hypot(e.x0 + u * dx - x, e.y0 + u * dy - y);
      if (d < bestD) { bestD = d; best = e; }
    }
    return best;
  }

  function rowAt(y) {
    if (y < AXIS) return null;
    return rows[scroll + Math.floor((y - AXIS) / ROW)] || null;
  }

  function showTip(text, ev) {
    const tip = $("tip");
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = `${Math.min(ev.clientX + 14, window.innerWidth - 540)}px`;
    tip.style.top = `${ev.clientY + 14}px`;
  }

  function hideTip() { $("tip").hidden = true; }

  function describeEvent(e) {
    const parts = [`${e.kind}`];
    if (e.resource) parts.push(e.resource);
    if (e.where) parts.push("at " + e.where);
    parts.push(mode === "causal" ? `step ${e.t.causal}` : `+${fmtSpan(e.t[mode])}`);
    return parts.join("  ");
  }

  function onMove(ev) {
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left, y = ev.clientY - r.top;
    if (drag) {
      const per = (view[mode].t1 - view[mode].t0) / timeWidth();
      view[mode] = { t0: drag.t0 - (x - drag.x) * per, t1: drag.t1 - (x - drag.x) * per };
      const rowsMoved = Math.round((drag.y - y) / ROW);
      scroll = Math.max(0, Math.min(rows.length - 1, drag.scroll + rowsMoved));
      changed();
      return;
    }
    const e = nearEdge(x, y);
    if (e) { showTip(`${e.kind} edge · provenance: ${e.prov}\nclick for both ends`, ev); return; }
    const row = rowAt(y);
    if (!row || row.lane === undefined || x < LABEL) {
      if (row && row.group !== undefined) showTip(groupLabel(row.group), ev); else hideTip();
      return;
    }
    clearTimeout(tipTimer);
    const seq = ++tipSeq;
    tipTimer = setTimeout(async () => {
      try {
        const lines = await whatIsAt(row.lane, x);
        if (seq !== tipSeq) return;
        showTip(lines.join("\n"), ev);
      } catch (err) { /* the next move asks again */ }
    }, 120);
  }

  // What the hover shows: the lane's states and events under the pointer (±3 pixels).
  async function whatIsAt(lane, x) {
    const per = (view[mode].t1 - view[mode].t0) / timeWidth();
    const at = await api("/api/at", { mode, lane, t: Math.round(tOf(x)), tol: Math.ceil(per * 3) });
    const lines = [`${at.lane.name} (${at.lane.kind})`];
    for (const iv of at.intervals) lines.push(`${iv.state}${iv.resource ? " on " + iv.resource : ""}` + (iv.end ? "" : " (still at the end)"));
    for (const e of at.events) lines.push("• " + describeEvent(e) + `  (event ${e.id})`);
    return lines;
  }

  async function onClick(ev) {
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left, y = ev.clientY - r.top;
    const e = nearEdge(x, y);
    const box = $("detail");
    if (!e) { pin(x, y, box); return; }
    try {
      const d = await api("/api/edge", { row: e.row });
      box.replaceChildren(el("h3", `${d.kind} edge`), el("div", `provenance: ${d.provenance}, confidence ${d.confidence}`));
      for (const [label, end] of [["from", d.src], ["to", d.dst]]) {
        const lane = meta.lanes[end.lane];
        const grp = meta.groups[lane.group];
        const line = el("div", `${label}: `);
        line.append(iso(grp.runtime), " ", iso(grp.service), " · ", iso(lane.name), "\n  ", iso(describeEvent(end)), `\n  event ${end.id}`);
        box.append(line);
        const go = el("button", `go to ${label === "from" ? "source" : "destination"}`);
        go.addEventListener("click", () => goTo(end));
        box.append(go);
      }
    } catch (err) { box.textContent = String(err.message || err); }
  }

  // A click on a lane pins what the hover shows there in the side panel.
  async function pin(x, y, box) {
    const row = rowAt(y);
    if (!row || row.lane === undefined || x < LABEL) return;
    try {
      const lines = await whatIsAt(row.lane, x);
      box.replaceChildren(el("h3", "at the click"));
      for (const line of lines) { const d = el("div"); d.append(iso(line)); box.append(d); }
      box.dataset.pinned = String(row.lane);
    } catch (err) { box.textContent = String(err.message || err); }
  }

  function goTo(end) {
    if (!laneVisible(end.lane)) { shown = null; runtime = ""; $("runtime").value = ""; buildRows(); }
    const idx = rows.findIndex((r) => r.lane === end.lane);
    if (idx >= 0) scroll = Math.max(0, idx - 3);
    const v = view[mode];
    pan(end.t[mode] - (v.t0 + v.t1) / 2);
  }

  // -- input --------------------------------------------------------------------------

  function setMode(m) {
    if (!MODES.includes(m) || m === mode) return;
    const old = view[mode], ext = meta.extent[mode];
    const f0 = (old.t0 - ext[0]) / (ext[1] - ext[0] || 1), f1 = (old.t1 - ext[0]) / (ext[1] - ext[0] || 1);
    mode = m;
    if (focus) { fitFocus(); }
    else {
      const e = meta.extent[mode];
      view[mode] = { t0: e[0] + f0 * (e[1] - e[0]), t1: e[0] + f1 * (e[1] - e[0]) };
      if (view[mode].t1 <= view[mode].t0) fit();
    }
    document.querySelectorAll("[data-mode]").forEach((b) => b.classList.toggle("on", b.dataset.mode === mode));
    tile = null;
    changed();
  }

  function onKey(ev) {
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) {
      if (ev.key === "Escape") ev.target.blur(); // only leaves the box
      return;
    }
    const v = view[mode], span = v.t1 - v.t0;
    const page = Math.max(1, Math.floor((canvas.clientHeight - AXIS) / ROW) - 1);
    const keys = {
      ArrowLeft: () => pan(-span * 0.15), ArrowRight: () => pan(span * 0.15),
      ArrowUp: () => { scroll = Math.max(0, scroll - 1); changed(); },
      ArrowDown: () => { scroll = Math.min(rows.length - 1, scroll + 1); changed(); },
      PageUp: () => { scroll = Math.max(0, scroll - page); changed(); },
      PageDown: () => { scroll = Math.min(rows.length - 1, scroll + page); changed(); },
      "+": () => zoom(0.5), "=": () => zoom(0.5), "-": () => zoom(2),
      f: fitAll,
      i: () => toggleInternal(),
      1: () => setMode("raw"), 2: () => setMode("adjusted"), 3: () => setMode("causal"),
      "/": () => $("search").focus(),
      Escape: () => clearFocus(),
      n: () => setStep(step + 1), p: () => setStep(step - 1),
      "]": () => selectFinding(focus ? (meta.findings.indexOf(focus) + 1) % meta.findings.length : 0),
      "[": () => selectFinding(focus ? (meta.findings.indexOf(focus) - 1 + meta.findings.length) % meta.findings.length : meta.findings.length - 1),
    };
    const act = keys[ev.key];
    if (!act || ((ev.key === "[" || ev.key === "]") && !meta.findings.length)) return;
    ev.preventDefault();
    act();
  }

  function onWheel(ev) {
    ev.preventDefault();
    const r = canvas.getBoundingClientRect();
    if (ev.ctrlKey || ev.altKey || ev.metaKey) zoom(Math.exp(ev.deltaY * 0.002), ev.clientX - r.left);
    else if (ev.shiftKey) pan((ev.deltaY || ev.deltaX) * (view[mode].t1 - view[mode].t0) / timeWidth());
    else { scroll = Math.max(0, Math.min(rows.length - 1, scroll + Math.sign(ev.deltaY) * 3)); changed(); }
  }

  function onSearch() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(async () => {
      const q = $("search").value.trim();
      if (!q) { shown = focus && focus.lanes.length ? new Set(focus.lanes) : null; buildRows(); changed(); return; }
      try {
        const hit = await api("/api/search", { q });
        shown = new Set(hit.lanes);
        scroll = 0;
        buildRows(); changed();
        const box = $("detail");
        box.replaceChildren(`${hit.lanes.length} lanes match` + (hit.more ? ` (+${hit.more} more)` : ""));
        if (hit.resources.length) {
          box.append("\nresources: ");
          hit.resources.forEach((r, k) => box.append(...(k ? ["; "] : []), iso(r)));
        }
      } catch (err) { error = String(err.message || err); status(); }
    }, 200);
  }

  function toggleInternal() {
    hideInternal = !hideInternal;
    $("internal").classList.toggle("on", !hideInternal);
    buildRows(); changed();
  }

  function legend() {
    const box = $("legend");
    box.replaceChildren(el("div", "states:"));
    const states = el("div");
    for (const [code, name] of Object.entries(meta.states)) {
      const sw = el("span", undefined, "sw");
      sw.style.background = code === "7" ? HOLD_COLOR : STATE_COLORS[code];
      states.append(sw, document.createTextNode(name));
    }
    const edges = el("div");
    for (const kind of meta.edge_kinds) {
      const sw = el("span", undefined, "sw");
      sw.style.background = EDGE_COLORS[kind] || "#8b949e";
      edges.append(sw, document.createTextNode(kind));
    }
    box.append(states, el("div", "edges:"), edges,
      el("div", "keys: ←/→ pan · +/− zoom · ↑/↓ lanes · f fit · 1/2/3 modes · / search · i runtime internals · Esc all lanes · n/p story steps · [/] findings · click a lane to pin its detail · ctrl+wheel zoom · drag to pan"));
  }

  async function start() {
    try {
      meta = await api("/api/meta");
    } catch (e) {
      $("status").textContent = "cannot load: " + (e.message || e);
      return;
    }
    for (const m of MODES) { mode = m; fit(); }
    mode = "adjusted";
    const runtimes = [...new Set(meta.groups.map((g) => g.runtime))].sort();
    for (const rt of runtimes) { const o = el("option", rt); o.value = rt; $("runtime").append(o); }
    document.querySelectorAll("[data-mode]").forEach((b) => {
      b.classList.toggle("on", b.dataset.mode === mode);
      b.addEventListener("click", () => setMode(b.dataset.mode));
    });
    $("fit").addEventListener("click", fitAll);
    // a clicked button must not keep the focus: Space or Enter would press it again
    document.querySelectorAll("#bar button").forEach((b) => b.addEventListener("click", () => b.blur()));
    $("clear").addEventListener("click", clearFocus);
    $("internal").addEventListener("click", toggleInternal);
    $("internal").classList.add("on");
    $("runtime").addEventListener("change", () => { runtime = $("runtime").value; buildRows(); changed(); });
    $("search").addEventListener("input", onSearch);
    document.addEventListener("keydown", onKey);
    canvas.addEventListener("mousemove", onMove);
    canvas.addEventListener("mouseleave", () => { hideTip(); drag = null; });
    canvas.addEventListener("mousedown", (ev) => {
      const r = canvas.getBoundingClientRect();
      drag = { x: ev.clientX - r.left, y: ev.clientY - r.top, t0: view[mode].t0, t1: view[mode].t1, scroll, moved: false };
    });
    window.addEventListener("mouseup", (ev) => {
      const was = drag; drag = null;
      if (was && Math.abs(ev.clientX - canvas.getBoundingClientRect().left - was.x) < 3) onClick(ev);
    });
    canvas.addEventListener("wheel", onWheel, { passive: false });
    window.addEventListener("resize", changed);
    listFindings();
    legend();
    buildRows();
    document.body.dataset.ready = "1";
    changed();
  }

  start();
})();
