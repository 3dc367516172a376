'use strict';
// Starting and stopping the agent: read the configuration, open the segment (or the
// native stream, with WILLOWISP_COLLECTOR), install the hooks, open the control channel
// (control.js), flush periodically and at exit. Called once by register.js.
//
// Exit paths: process 'exit' (normal end, process.exit) flushes synchronously; SIGTERM and
// SIGINT, when the program has no listener of its own, flush and then re-raise the signal
// with its default action, so the exit status stays what it would have been. A SIGKILL
// loses at most the last flush interval (events are durable within 100 ms).

const K = require('./kinds.js');
const agent = require('./agent.js');
const tc = require('./context.js');
const { fromEnv, disabled, ConfigError } = require('./config.js');
const { Recorder } = require('./recorder.js');
const boundaries = require('./boundaries.js');

function start() {
  if (disabled()) return null;
  const { isMainThread } = require('node:worker_threads');
  if (!isMainThread || agent.state.rec !== null) return null;
  const config = fromEnv(); // throws ConfigError on a bad value
  const rec = new Recorder(config); // throws when the folder cannot be written
  agent.state.rec = rec;
  agent.state.config = config;
  agent.state.full = config.mode === 'full';
  tc.configure(config.traceRatio);
  agent.state.processRoot = tc.parse(config.traceparent);
  boundaries.configure(config.boundaries, () => agent.ensureBoundaryHooks(), () => agent.dropBoundaryHooks());

  const installs = [
    ['runtime.loop', () => require('./runtime.js').installLoop(rec)],
    ['http', () => require('./http.js').install(rec)],
    ['http2', () => require('./http2.js').install(rec)],
    ['async-mutex', () => require('./mutex.js').install(rec)],
    ['esm', () => require('./esm.js').install(rec)],
    ['worker_threads', () => require('./runtime.js').installWorkers(rec)],
    ['child_process', () => require('./procs.js').install(rec)],
  ];
  if (agent.state.full) installs.push(['gc', () => require('./runtime.js').installGc(rec)]);
  if (agent.state.full || boundaries.any()) {
    installs.push(['async_hooks', () => agent.installSteps(boundaries.any() ? boundaries.hooks : null)]);
  }
  for (const [where, install] of installs) {
    try {
      install();
    } catch (err) {
      rec.fault(`install ${where}`, err);
    }
  }
  try {
    // ESM `import { request } from 'node:http'` sees the wrapped functions too
    require('node:module').syncBuiltinESMExports();
  } catch (err) {
    rec.fault('install esm', err);
  }
  if (agent.state.processRoot !== null) {
    // the other end of the parent's proc.spawn
    const rid = rec.newResource([
      ['kind', 'spawn'],
      ['name', 'TRACEPARENT'],
      ['trace_id', agent.state.processRoot.traceId],
      ['parent_span_id', agent.state.processRoot.spanId],
      ['sampled', agent.state.processRoot.flags & 1],
    ]);
    rec.emit(K.PROC_START, agent.LOOP_UNIT, rid, process.ppid, 0);
  }

  const http2 = require('./http2.js');
  const timer = setInterval(() => {
    rec.flush();
    http2.poll(rec);
  }, config.flushMs);
  timer.unref();
  const control = require('./control.js');
  control.startServer(rec, controlBackend(rec));
  const stop = () => {
    control.stopServer();
    rec.close();
  };
  process.on('exit', stop);
  for (const sig of ['SIGTERM', 'SIGINT']) {
    const onSignal = () => {
      if (process.listenerCount(sig) > 1) {
        rec.flushSync(); // the program handles the signal itself and may go on
        return;
      }
      stop();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig); // the default action, as if we had not been here
    };
    process.on(sig, onSignal);
  }
  rec.flush(); // the process record is on disk at once
  return rec;
}

// What the control channel's commands call (control.js): the agent's counters, and
// boundaries switched on and off. A SPEC that does not parse, or an unknown boundary, is
// refused (bad-boundary); anything else is an internal error there.
function controlBackend(rec) {
  const refuse = (fn) => (arg) => {
    try {
      return fn(arg);
    } catch (err) {
      if (err instanceof ConfigError) err.refused = true;
      throw err;
    }
  };
  return {
    status() {
      return {
        pid: rec.pid,
        process_id: rec.processId,
        service: rec.config.service,
        runtime: 'nodejs',
        agent_version: require('./recorder.js').AGENT_VERSION,
        mode: rec.config.mode,
        events: rec.totalEvents + rec.pendingRows,
        dropped: rec.totalDropped,
        faults: rec.faults,
        cost_ns_per_event: rec.costNs,
        boundaries: boundaries.statusList(),
        // whether the agent's async hook runs for every async resource (full mode, or a
        // boundary enabled or still open); hops mode without one has none
        async_hooks: agent.state.hook !== null,
        sink: rec.sinkStatus(),
      };
    },
    enable: refuse((arg) => boundaries.enable(arg)),
    disable: refuse((arg) => boundaries.disable(arg)),
  };
}

module.exports = { start };
