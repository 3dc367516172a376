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
const { Shape } = require('./wtrace.js');

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
  hookHasBoundaries: false, // the installed async hook includes boundaries.hooks
};

// Inside boundaries: the async-resource units whose callbacks run, innermost last (0 for a
// callback that is not one).
const stepUnits = [];

const als = new AsyncLocalStorage();
// Node 20's AsyncLocalStorage keeps its store on the execution resource under this symbol;
// the step hook, which has that resource in hand already, reads it there rather than
// through getStore() (which would fetch the resource a second time). Undefined where the
// implementation differs (Node 24's AsyncContextFrame): getStore() then.
const STORE_KEY = typeof als.kResourceStore === 'symbol' ? als.kResourceStore : undefined;

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

// The context for a new outgoing hop: a child of the current one (with the format its
// inbound request came in: tc.otherHeaders), or a new sampled-at-the-root trace.
function outgoing() {
  const cur = currentContext();
  if (cur !== null) return { traceId: cur.traceId, spanId: tc.newSpanId(), flags: cur.flags, style: cur.style || '' };
  return { traceId: tc.newTraceId(), spanId: tc.newSpanId(), flags: tc.rootFlags(), style: '' };
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
    const file = siteFile(site);
    if (program(file)) {
      return rec.location(file, site.getLineNumber() || 0, site.getFunctionName() || '<anonymous>');
    }
  }
  return 0;
}

// The location of a call the program repeats (a client request: same flow name, method,
// path and peer), without a stack capture every time: the first LOC_TRUST calls of a key
// capture it; when they all gave the same line it is reused, and checked again every
// LOC_RECHECK-th call; a key seen from two lines is captured on every call from then on.
// What that trades: a program that makes that very request from a new line after the
// first 16 gets the old line for up to 255 calls. A capture costs 6-25 us here, more than
// the rest of a recorded request. Both modes use it for every recorded client request: a
// learned key costs ~0.2 us (the key string and the map lookup, measured on Node 20 and
// 24), the recheck's capture ~0.02 us amortized over its 256 calls.
const LOC_TRUST = 16;
const LOC_RECHECK = 256;
const LOC_KEYS = 4096;
const learned = new Map(); // key -> {loc, seen, stable}

function repeatedCallerLoc(key, below) {
  let e = learned.get(key);
  if (e === undefined) {
    if (learned.size >= LOC_KEYS) learned.clear();
    e = { loc: -1, seen: 0, stable: true };
    learned.set(key, e);
  }
  e.seen += 1;
  if (e.stable && e.seen > LOC_TRUST && e.seen % LOC_RECHECK !== 0) return e.loc;
  const loc = callerLoc(below);
  if (e.loc === -1) e.loc = loc;
  else if (loc !== e.loc) {
    e.stable = false;
    e.loc = loc;
  }
  return loc;
}

// A call site's file: a path, also for an ES module's frame (a file: URL).
function siteFile(site) {
  const file = site.getFileName();
  return file && file.startsWith('file://') ? require('node:url').fileURLToPath(file) : file;
}

// The program's innermost (file, line) below `below`, or null.
function callerSite(below) {
  for (const site of sites(below, STACK_FRAMES)) {
    const file = siteFile(site);
    if (program(file)) return { file, line: site.getLineNumber() || 0 };
  }
  return null;
}

// --- flows ---------------------------------------------------------------------------

const FLOW_SHAPE = new Shape(['kind', 'name', 'parent', 'loc']);

// Starts an async flow: a unit of kind async-flow created by the current unit. `ctx` is
// its trace context (or null), `boundary` the boundary instance it opened (or null).
function newFlow(name, ctx, boundary, loc) {
  const rec = state.rec;
  const parent = currentUnit();
  const short = String(name).slice(0, 200);
  const unit = rec.newUnit(['async-flow', short, parent, loc], FLOW_SHAPE);
  rec.emit(K.UNIT_CREATE, parent, 0, unit, loc);
  rec.emit(K.UNIT_START, unit, 0, parent, 0);
  const flow = makeFlow(unit, ctx, boundary, false, short);
  if (state.full) {
    flow.fresh = true;
    born.push(flow);
  }
  return flow;
}

// Every flow object has this one shape (the hooks read it on every callback: keep it
// monomorphic). unit 0: a flow that is not recorded (unsampled in hops mode).
function makeFlow(unit, ctx, boundary, ended, name) {
  return { unit, ctx, boundary, ended, events0: 0, name: String(name).slice(0, 200), createdAt: checkpoint.n, wokeAt: -1, settled: 0, fresh: false };
}

// --- promise edges between flows (full mode) ----------------------------------------
//
// Node drains the microtask queue after each outermost callback the event loop runs (a
// step), and the queue is empty when a step starts. So a promise reaction that runs after
// flow B's step was enqueued by something B's step did (or by a reaction that step led
// to): when it belongs to another flow A (A awaited a promise that B's step settled), B's
// step happens before it. That is recorded as `sync.notify` by B on a `future` resource
// (one per settling flow, "promises settled by B") and `unit.wake` by A on it, which the
// analyzer turns into the edge B -> A. It costs nothing per promise beyond the step hook's
// call that full mode makes anyway: only reactions of another flow write events, once per
// (step, flow). A flow created during the step itself is skipped (its creation already
// orders it), and so are flows that ended.
const checkpoint = { n: 0, opener: undefined, notified: -1 };

function crossFlow(f) {
  const rec = state.rec;
  const b = checkpoint.opener;
  let rid;
  let src;
  if (b === undefined) {
    if (loopSettled === 0) loopSettled = rec.newResource([['kind', 'future'], ['name', 'promises settled by main']]);
    rid = loopSettled;
    src = LOOP_UNIT;
  } else {
    if (b.settled === 0) b.settled = rec.newResource([['kind', 'future'], ['name', `promises settled by ${b.name}`]]);
    rid = b.settled;
    src = b.unit;
  }
  if (checkpoint.notified !== checkpoint.n) {
    checkpoint.notified = checkpoint.n;
    rec.emit(K.SYNC_NOTIFY, src, rid, 1, 0);
  }
  f.wokeAt = checkpoint.n;
  rec.emit(K.UNIT_WAKE, f.unit, rid, K.WAKE_OK, 0);
}
let loopSettled = 0;

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

// Flows started during the current step (full mode). A flow starts running where it is
// created (unit.start), inside a step that belongs to someone else: an inbound request's
// flow is made in the 'request' emit of its connection's read, which is no flow's step. No
// `after` of that step pops the new flow, so without this its first unit.yield would only
// come at the end of its next step, and the time it then spent suspended (a timer, a
// socket) would count as running. So when the outermost step ends, every flow born in it
// yields. A flow born outside every step (the main script) yields at the next step's
// start, the earliest moment the agent sees. Until then the flow is `fresh`: a callback of
// its own nested in that step writes no unit.run/unit.yield (it runs already, and goes on
// running when the nested callback returns).
const born = [];

function yieldBorn(rec) {
  for (const f of born) {
    f.fresh = false;
    if (!f.ended) rec.emit(K.UNIT_YIELD, f.unit, 0, 0, 0);
  }
  born.length = 0;
}

// The end of a step the boundary hooks bracket themselves (an async-resource unit's
// callback, whose `after` does not reach the step hook): the flows born in it yield when
// it was the outermost one.
function endOfStep() {
  if (running.length === 0 && stepUnits.length === 0 && born.length > 0) yieldBorn(state.rec);
}

function installSteps(boundaryHooks) {
  const rec = state.rec;
  // An exception escaping an async hook kills the process: every hook catches.
  // Steps are the callbacks the event loop runs for a flow: I/O, timers, immediates.
  // Promise reactions (microtasks) and process.nextTick callbacks are skipped: they run
  // right after the step that queued them (Node drains both queues before the next step),
  // their events are recorded for their flow all the same, and bracketing each one would
  // double the agent's cost on promise-heavy code and triple the events of an HTTP
  // request (Node's streams run about 20 ticks per request).
  const SKIP = null;
  const steps = {
    before() {
      try {
        const r = executionAsyncResource();
        if (r instanceof Promise) {
          running.push(SKIP);
          if (running.length === 1) {
            // a reaction in the microtask checkpoint after a step: another flow's?
            const f = STORE_KEY !== undefined ? r[STORE_KEY] : als.getStore();
            if (f !== undefined && f !== checkpoint.opener && f.wokeAt !== checkpoint.n && f.createdAt !== checkpoint.n && !f.ended && f.unit !== 0) {
              const b = checkpoint.opener;
              if (b === undefined || (!b.ended && b.unit !== 0)) crossFlow(f);
            }
          }
          return;
        }
        if (Object.getPrototypeOf(r) === Object.prototype) {
          // a process.nextTick callback (its resource is a plain object): part of the
          // checkpoint of the step that queued it
          running.push(SKIP);
          return;
        }
        const f = STORE_KEY !== undefined && r !== null && typeof r === 'object' ? r[STORE_KEY] : als.getStore();
        if (running.length === 0) {
          if (born.length > 0 && stepUnits.length === 0) yieldBorn(rec); // born outside every step
          checkpoint.n += 1; // a new outermost step: a new microtask checkpoint follows it
          checkpoint.opener = f;
        }
        running.push(f);
        if (f !== undefined && !f.ended && !f.fresh) rec.emit(K.UNIT_RUN, f.unit, 0, LOOP_UNIT, 0);
      } catch (err) {
        rec.fault('async_hooks.before', err);
      }
    },
    after() {
      try {
        const f = running.pop();
        if (f !== SKIP && f !== undefined && !f.ended && !f.fresh) rec.emit(K.UNIT_YIELD, f.unit, 0, 0, 0);
        if (running.length === 0 && stepUnits.length === 0 && born.length > 0) yieldBorn(rec);
      } catch (err) {
        rec.fault('async_hooks.after', err);
      }
    },
  };
  const quiet = { before() {}, after() {} }; // hops mode: no steps outside boundaries
  const outside = state.full ? steps : quiet;
  const hooks = boundaryHooks !== null ? boundaryHooks(outside) : outside;
  const next = createHook(hooks);
  // A hook replaced while a callback runs (a boundary switched on from the control
  // channel): the new hook's `after` pops what the old `before` pushed (the stacks are
  // shared), so the pairs stay balanced.
  if (state.hook !== null) state.hook.disable();
  state.hook = next;
  state.hookHasBoundaries = boundaryHooks !== null;
  next.enable();
}

// No boundary is enabled and no instance is open any more: in `hops` mode the async hook
// goes (the program then pays only for AsyncLocalStorage again); in `full` mode the step
// hook without the boundary callbacks replaces it. Called from inside some callback whose
// `after` the removed hook will not see: the stacks start empty again.
function dropBoundaryHooks() {
  if (state.rec === null || !state.hookHasBoundaries) return;
  if (state.full) {
    installSteps(null); // its `after` pops `running` as the old hook's would have
    stepUnits.length = 0; // used by the boundary callbacks only
    state.stepUnit = 0;
    return;
  }
  state.hook.disable();
  state.hook = null;
  state.hookHasBoundaries = false;
  stepUnits.length = 0;
  running.length = 0;
  state.stepUnit = 0;
}

// A boundary was switched on at run time: make sure the hooks that turn resources into
// units inside instances run (installed then; resources made before are not seen).
function ensureBoundaryHooks() {
  if (state.rec === null || state.hookHasBoundaries) return;
  installSteps(require('./boundaries.js').hooks);
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
  repeatedCallerLoc,
  callerSite,
  newFlow,
  makeFlow,
  endFlow,
  endOfStep,
  installSteps,
  ensureBoundaryHooks,
  dropBoundaryHooks,
  stepUnits,
  executionAsyncResource,
};
