'use strict';
// The running agent's state and what every hook shares: the current unit, the current
// trace context, source locations and async flows.
//
// Units: unit 1 is the event loop (kind event-loop). An async flow (kind async-flow) is a
// logical operation that starts at an inbound request (http.js) or at `flow(name, fn)`;
// AsyncLocalStorage carries it through every callback and promise the operation makes, so
// whatever runs on its behalf is recorded for its unit. In `full` mode an async_hooks
// before/after pair brackets each callback that runs for a flow with unit.run (arg: the
// event loop, its carrier) and unit.yield, which is what shows the loop's busy periods and
// which flow kept it busy. Individual promises and async resources become units only inside
// a declared boundary (boundaries.js), because hooking every promise at that detail costs
// 2-11x on promise-heavy code.

const path = require('node:path');
const { AsyncLocalStorage, createHook, executionAsyncResource } = require('node:async_hooks');
const K = require('./kinds.js');
const tc = require('./context.js');

// The agent's own files: frames in them are never the program's line.
const AGENT_DIR = __dirname + path.sep;
const AGENT_FILES = new Set(['register.js', 'index.js'].map((f) => path.resolve(__dirname, '..', f)));
const LOOP_UNIT = 1;

const state = {
  rec: null, // the Recorder, null when the agent is not running
  config: null,
  full: false, // mode === 'full'
  processRoot: null, // the context inherited through TRACEPARENT
  hook: null,
  stepUnit: 0, // inside a boundary: the async-resource unit whose callback runs, else 0
};

// Inside boundaries: the async-resource units whose callbacks run, innermost last (0 for a
// callback that is not one).
const stepUnits = [];

const als = new AsyncLocalStorage();

// The flow running now (or undefined outside every flow).
function currentFlow() {
  return als.getStore();
}

function currentUnit() {
  if (state.stepUnit !== 0) return state.stepUnit;
  const f = als.getStore();
  return f === undefined || f.unit === 0 ? LOOP_UNIT : f.unit; // unit 0: an unrecorded flow
}

// The context the code running now belongs to, or null.
function currentContext() {
  const f = als.getStore();
  return f !== undefined && f.ctx !== null ? f.ctx : state.processRoot;
}

// The context for a new outgoing hop: a child of the current one, or a new sampled-at-the-
// root trace.
function outgoing() {
  const cur = currentContext();
  if (cur !== null) return { traceId: cur.traceId, spanId: tc.newSpanId(), flags: cur.flags };
  return { traceId: tc.newTraceId(), spanId: tc.newSpanId(), flags: tc.rootFlags() };
}

// Is an operation in this context recorded? In hops mode only sampled ones are.
function recorded(ctx) {
  return state.full || (ctx !== null && (ctx.flags & 1) === 1);
}

// --- source locations ----------------------------------------------------------------

function program(file) {
  return file && !file.startsWith('node:') && !file.startsWith(AGENT_DIR) && !AGENT_FILES.has(file) && !file.includes(`${path.sep}node_modules${path.sep}`)
    && !file.startsWith('internal/');
}

// Frames looked at for the program's line: enough to get out of Node's http internals
// and a library or two; each frame more costs about 0.3 us per capture.
const STACK_FRAMES = 10;

function sites(below, limit) {
  const savedPrepare = Error.prepareStackTrace;
  const savedLimit = Error.stackTraceLimit;
  try {
    Error.stackTraceLimit = limit;
    Error.prepareStackTrace = (_, cs) => cs;
    const holder = {};
    Error.captureStackTrace(holder, below);
    return holder.stack || [];
  } finally {
    Error.prepareStackTrace = savedPrepare;
    Error.stackTraceLimit = savedLimit;
  }
}

// The location number of the program's innermost frame below `below` (a function of the
// agent), skipping Node's internals, the agent and node_modules; 0 if there is none.
// A stack capture costs a few microseconds: hooks call this once per lock operation or
// resource definition, never per promise.
function callerLoc(below) {
  const rec = state.rec;
  if (rec === null) return 0;
  for (const site of sites(below, STACK_FRAMES)) {
    let file = site.getFileName();
    if (file && file.startsWith('file://')) file = require('node:url').fileURLToPath(file);
    if (program(file)) {
      return rec.location(file, site.getLineNumber() || 0, site.getFunctionName() || '<anonymous>');
    }
  }
  return 0;
}

// The program's innermost (file, line) below `below`, or null.
function callerSite(below) {
  for (const site of sites(below, STACK_FRAMES)) {
    const file = site.getFileName();
    if (program(file)) return { file, line: site.getLineNumber() || 0 };
  }
  return null;
}

// --- flows ---------------------------------------------------------------------------

// Starts an async flow: a unit of kind async-flow created by the current unit. `ctx` is
// its trace context (or null), `boundary` the boundary instance it opened (or null).
function newFlow(name, ctx, boundary, loc) {
  const rec = state.rec;
  const parent = currentUnit();
  const unit = rec.newUnit([['kind', 'async-flow'], ['name', String(name).slice(0, 200)], ['parent', parent], ['loc', loc]]);
  rec.emit(K.UNIT_CREATE, parent, 0, unit, loc);
  rec.emit(K.UNIT_START, unit, 0, parent, 0);
  return { unit, ctx, boundary, ended: false, events0: 0 };
}

function endFlow(flow, status) {
  if (flow.ended) return;
  flow.ended = true;
  state.rec.emit(K.UNIT_END, flow.unit, 0, status, 0);
  if (flow.boundary !== null) require('./boundaries.js').leave(flow.boundary);
}

// --- busy periods (full mode) --------------------------------------------------------

// Flows whose callback is running, innermost last (callbacks nest when one is made
// synchronously from another).
const running = [];

function installSteps(boundaryHooks) {
  const rec = state.rec;
  // An exception escaping an async hook kills the process: every hook catches.
  // Steps are the callbacks the event loop runs for a flow: I/O, timers, immediates.
  // Promise reactions (microtasks) are skipped: they run right after the step that
  // resolved them and are recorded for the flow all the same, and bracketing each one
  // would double the agent's cost on promise-heavy code.
  const SKIP = null;
  const steps = {
    before() {
      try {
        const r = executionAsyncResource();
        if (r instanceof Promise) {
          running.push(SKIP);
          return;
        }
        const f = als.getStore();
        running.push(f);
        if (f !== undefined && !f.ended) rec.emit(K.UNIT_RUN, f.unit, 0, LOOP_UNIT, 0);
      } catch (err) {
        rec.fault('async_hooks.before', err);
      }
    },
    after() {
      try {
        const f = running.pop();
        if (f !== SKIP && f !== undefined && !f.ended) rec.emit(K.UNIT_YIELD, f.unit, 0, 0, 0);
      } catch (err) {
        rec.fault('async_hooks.after', err);
      }
    },
  };
  const quiet = { before() {}, after() {} }; // hops mode: no steps outside boundaries
  const outside = state.full ? steps : quiet;
  const hooks = boundaryHooks !== null ? boundaryHooks(outside) : outside;
  state.hook = createHook(hooks);
  state.hook.enable();
}

module.exports = {
  state,
  als,
  LOOP_UNIT,
  AGENT_DIR,
  currentFlow,
  currentUnit,
  currentContext,
  outgoing,
  recorded,
  callerLoc,
  callerSite,
  newFlow,
  endFlow,
  installSteps,
  stepUnits,
  executionAsyncResource,
};
