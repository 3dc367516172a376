'use strict';
// Declared full-fidelity boundaries (WILLOWISP_BOUNDARIES, docs/agent-python.md
// "Boundaries"): an inbound hop matching a boundary's entry, or carrying the tracestate
// member `wisp=b-<id>` of one this process knows, opens an instance that lasts until the
// request's flow ends. Inside an instance every async resource the flow creates (each
// promise, timer, socket request; not the timers Node arms unreferenced for its own
// housekeeping, see housekeeping()) is a unit of kind async-resource: created by the unit
// that made it, started and run around each of its callbacks (unit.start / unit.run,
// unit.yield), ended when a promise resolves. In `hops` mode the instance also opens the
// gate for concurrency events (locks, data accesses) of its flow.
//
// Cost: the async_hooks init/before/after/promiseResolve hooks run for every async resource
// in the process once any boundary is declared; outside instances they return after one
// AsyncLocalStorage read. bench/bench_node_agent.py measures both sides.

const K = require('./kinds.js');
const agent = require('./agent.js');

const STATE_KEY = 'wisp';
const UNIT = Symbol('willowisp.unit');

// name (entry) -> {boundary, enabled, source, entries, propagated, active, units, events}.
// Invariant: `enabled` is changed only by configure/enable/disable (the control channel);
// a disabled boundary opens no new instance, instances in flight finish. `units` and
// `events` are what the hooks below recorded for the boundary's instances: each event
// counted once, for the one boundary whose instance made its unit, however many
// instances of this or another boundary are open at the time (so the boundaries' events
// add up to at most the process's).
const declared = new Map();

// Called when a boundary is switched on at run time, so that the async hooks that make
// resources units inside instances are installed then (set by start.js).
let onFirstEnable = null;

function declare(b, source) {
  let d = declared.get(b.entry);
  if (d === undefined) {
    d = { boundary: b, enabled: true, source, entries: 0, propagated: 0, active: 0, units: 0, events: 0 };
    declared.set(b.entry, d);
  }
  return d;
}

// Called when no boundary is enabled and no instance is open (set by start.js): the
// async hooks can go.
let onAllIdle = null;

function configure(boundaries, whenEnabled = null, whenIdle = null) {
  declared.clear();
  onFirstEnable = whenEnabled;
  onAllIdle = whenIdle;
  for (const b of boundaries) {
    if (b.allowsNode) declare(b, 'config');
  }
}

function any() {
  return declared.size > 0;
}

function find(name) {
  const key = String(name).trim();
  for (const d of declared.values()) {
    const b = d.boundary;
    if (key === b.entry || key === b.spec || key === b.id || key === `b-${b.id}`) return d;
  }
  return null;
}

// --- what the control channel calls (control.js) -------------------------------------

// Switches a boundary on: a known one by name (its entry), spec or id, or a new one from a
// full SPEC. Returns its name; throws ConfigError for a SPEC that does not parse.
function enable(specOrName) {
  let d = find(specOrName);
  if (d === null) {
    const b = require('./config.js').parseBoundary(String(specOrName).trim(), 'enable');
    d = declare(b, 'ctl');
  }
  d.enabled = true;
  if (onFirstEnable !== null) onFirstEnable();
  return d.boundary.entry;
}

// Switches a known boundary off (instances in flight finish). Returns its name; throws
// ConfigError for a boundary this process does not know.
function disable(name) {
  const d = find(name);
  if (d === null) {
    const known = [...declared.keys()].map((k) => JSON.stringify(k)).join(', ') || 'none';
    const { ConfigError } = require('./config.js');
    throw new ConfigError(`no boundary ${JSON.stringify(String(name).slice(0, 64))} in this process (known: ${known.slice(0, 300)})`);
  }
  d.enabled = false;
  retireIfIdle();
  return d.boundary.entry;
}

function retireIfIdle() {
  if (onAllIdle === null) return;
  for (const d of declared.values()) {
    if (d.enabled || d.active > 0) return;
  }
  onAllIdle();
}

// A boundary's counters and its cost: its events at the measured cost of one event.
function costs(d, cost) {
  return {
    entries: d.entries,
    propagated: d.propagated,
    active: d.active,
    events: d.events,
    hook_ns: d.events * cost,
    serialize_ns: 0,
    cost_ns: d.events * cost,
  };
}

// The list `status` reports, one object per boundary.
function statusList() {
  const cost = agent.state.rec ? agent.state.rec.costNs : 0;
  return [...declared.values()].map((d) => ({
    name: d.boundary.entry,
    spec: d.boundary.spec,
    id: d.boundary.id,
    enabled: d.enabled,
    source: d.source,
    runtimes: d.boundary.runtimes,
    ...costs(d, cost),
  }));
}

function globMatch(text, glob) {
  const re = new RegExp(`^${glob.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(text);
}

function matches(b, protocol, method, target) {
  if (b.protocol !== protocol) return false;
  if (protocol === 'http') {
    let [want, wantPath] = b.what.split(/\s+/, 2);
    if (wantPath === undefined && want.startsWith('/')) [want, wantPath] = ['', want];
    if (want && want !== '*' && want.toUpperCase() !== method.toUpperCase()) return false;
    return !wantPath || globMatch(target.split('?')[0], wantPath);
  }
  return globMatch(target, b.what);
}

// The instance an inbound hop opens, or null. `member` is the inbound `wisp` tracestate
// member ('' if none).
function enter(protocol, method, target, member) {
  if (declared.size === 0) return null;
  for (const d of declared.values()) {
    if (!d.enabled) continue;
    const direct = matches(d.boundary, protocol, method, target);
    if (direct || member === `b-${d.boundary.id}`) {
      if (direct) d.entries += 1;
      else d.propagated += 1;
      d.active += 1;
      return { d, member: `b-${d.boundary.id}` };
    }
  }
  return null;
}

function leave(inst) {
  inst.d.active -= 1;
  if (inst.d.active === 0 && !inst.d.enabled) retireIfIdle();
}

// The tracestate member outgoing requests of the current flow carry, or ''.
function outgoingMember() {
  const f = agent.currentFlow();
  return f !== undefined && f.boundary !== null ? f.boundary.member : '';
}

// Attributes a server resource gets when a boundary forced its recording.
const NO_ATTRS = Object.freeze([]);
function forcedAttrs(inst, flags) {
  if (inst === null) return NO_ATTRS;
  const attrs = [['boundary', inst.d.boundary.entry]];
  if ((flags & 1) === 0) attrs.push(['caller_sampled', 0]);
  return attrs;
}

function byBoundaryJson() {
  const out = {};
  const cost = agent.state.rec ? agent.state.rec.costNs : 0;
  for (const [name, d] of declared) {
    out[name] = { spec: d.boundary.spec, source: d.source, enabled: d.enabled, ...costs(d, cost) };
  }
  return JSON.stringify(out);
}

// A timer Node makes unreferenced for its own housekeeping while it serves the flow: a
// socket's idle or keep-alive timeout (re-armed on every request of the connection), the
// HTTP Date header's cache reset. Nothing waits for it, not even the process, and it fires
// long after the request (up to 1 s for the Date cache, 5 s for keep-alive) or never:
// recorded as a unit of the instance, its callback became the operation's end, and the
// critical path of a 7 ms request read 1 s. The program's own timers are referenced when
// made (`setTimeout`, even one it unrefs later) and stay units; the one exception,
// `timers/promises` with `ref: false`, is not a unit either (a flow awaiting it shows the
// wait on its promise).
function housekeeping(timeout) {
  return typeof timeout.hasRef === 'function' && !timeout.hasRef();
}

// The async_hooks callbacks that make async resources units inside instances; merged with
// the step hooks of agent.js (which get `steps`).
function hooks(steps) {
  const rec = agent.state.rec;
  const resolving = new Map(); // asyncId -> unit, for promises inside instances
  return {
    init(asyncId, type, triggerAsyncId, resource) {
      const f = agent.als.getStore();
      if (f === undefined || f.boundary === null || f.ended) return;
      if (type === 'Timeout' && housekeeping(resource)) return;
      try {
        const parent = agent.state.stepUnit || f.unit;
        const unit = rec.newUnit([['kind', 'async-resource'], ['name', type], ['parent', parent]]);
        const d = f.boundary.d;
        counted(d, K.UNIT_CREATE, parent, unit);
        const u = { unit, d, started: false, running: 0, ended: false, endPending: false };
        resource[UNIT] = u;
        d.units += 1;
        if (type === 'PROMISE') resolving.set(asyncId, u);
      } catch (err) {
        rec.fault('boundaries.init', err);
      }
    },
    before(asyncId) {
      try {
        stepBefore(asyncId);
      } catch (err) {
        rec.fault('boundaries.before', err);
      }
    },
    after(asyncId) {
      try {
        stepAfter(asyncId);
      } catch (err) {
        rec.fault('boundaries.after', err);
      }
    },
    promiseResolve(asyncId) {
      try {
        resolved(asyncId);
      } catch (err) {
        rec.fault('boundaries.promiseResolve', err);
      }
    },
  };

  // Records one event of an instance's unit and counts it for its boundary `d`, once
  // (a dropped event, full buffers, is not counted: it is not among the process's events).
  function counted(d, kind, unit, arg) {
    const before = rec.pendingRows;
    rec.emit(kind, unit, 0, arg, 0);
    d.events += rec.pendingRows - before;
  }

  function stepBefore(asyncId) {
    const r = agent.executionAsyncResource();
    const u = r !== null && typeof r === 'object' ? r[UNIT] : undefined;
    if (u === undefined) {
      steps.before(asyncId);
      agent.stepUnits.push(0);
      return;
    }
    agent.stepUnits.push(u);
    agent.state.stepUnit = u.unit;
    u.running += 1;
    if (u.ended) return;
    if (u.started) counted(u.d, K.UNIT_RUN, u.unit, agent.LOOP_UNIT);
    else {
      u.started = true;
      counted(u.d, K.UNIT_START, u.unit, 0);
    }
  }

  function stepAfter(asyncId) {
    const u = agent.stepUnits.pop();
    const top = agent.stepUnits.length ? agent.stepUnits[agent.stepUnits.length - 1] : 0;
    agent.state.stepUnit = top === 0 ? 0 : top.unit;
    if (u === 0 || u === undefined) {
      steps.after(asyncId);
      return;
    }
    u.running -= 1;
    if (!u.ended) {
      if (u.endPending && u.running === 0) {
        u.ended = true;
        counted(u.d, K.UNIT_END, u.unit, 0);
      } else counted(u.d, K.UNIT_YIELD, u.unit, 0);
    }
    agent.endOfStep(); // flows born in this step, when it was the outermost
  }

  function resolved(asyncId) {
    const u = resolving.get(asyncId);
    if (u === undefined) return;
    resolving.delete(asyncId);
    if (u.running > 0) u.endPending = true; // ends when its running callback returns
    else {
      u.ended = true;
      counted(u.d, K.UNIT_END, u.unit, 0);
    }
  }
}

module.exports = { configure, any, enable, disable, statusList, enter, leave, outgoingMember, forcedAttrs, byBoundaryJson, hooks, STATE_KEY };
