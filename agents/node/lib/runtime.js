'use strict';
// The runtime's own units and events: the event loop (unit 1), worker_threads workers (one
// unit each, kind worker, created by the unit that constructed the Worker, ended when it
// exits), garbage-collector pauses from perf_hooks `gc` entries (gc.begin / gc.end on the
// event loop, at the pause's own times), and the loop's utilization per flush interval in
// the stats record (`loop_utilization`, per mille).
//
// A worker thread's own activity is not recorded: the agent records the main thread of
// each process (a preload that runs again inside a worker returns at once).

const { performance, PerformanceObserver } = require('node:perf_hooks');
const K = require('./kinds.js');
const agent = require('./agent.js');
const boundaries = require('./boundaries.js');

function installLoop(rec) {
  rec.defineUnit(agent.LOOP_UNIT, [['kind', 'event-loop'], ['name', 'main'], ['parent', 0], ['os_tid', process.pid]]);
  rec.emit(K.UNIT_START, agent.LOOP_UNIT, 0, 0, 0);
  let last = performance.eventLoopUtilization();
  let utilization = 0;
  rec.extraStats = () => {
    const now = performance.eventLoopUtilization();
    utilization = Math.round(performance.eventLoopUtilization(now, last).utilization * 1000);
    last = now;
    const extra = [['loop_utilization', utilization]];
    if (boundaries.any()) extra.push(['by_boundary', boundaries.byBoundaryJson()]);
    return extra;
  };
}

function installGc(rec) {
  // perf_hooks times are milliseconds on the monotonic clock since timeOrigin
  const mono0 = process.hrtime.bigint();
  const perf0 = performance.now();
  const mono = (ms) => mono0 + BigInt(Math.round((ms - perf0) * 1e6));
  const obs = new PerformanceObserver((list) => {
    try {
      for (const e of list.getEntries()) {
        const kind = e.detail && typeof e.detail.kind === 'number' ? e.detail.kind : 0;
        rec.emitAt(mono(e.startTime), K.GC_BEGIN, agent.LOOP_UNIT, 0, kind, 0);
        rec.emitAt(mono(e.startTime + e.duration), K.GC_END, agent.LOOP_UNIT, 0, 0, 0);
      }
    } catch (err) {
      rec.fault('gc', err);
    }
  });
  obs.observe({ entryTypes: ['gc'] });
}

function installWorkers(rec) {
  const wt = require('node:worker_threads');
  const Base = wt.Worker;
  class Worker extends Base {
    constructor(...args) {
      super(...args);
      try {
        const parent = agent.currentUnit();
        const loc = agent.callerLoc(Worker);
        const name = typeof args[0] === 'string' ? require('node:path').basename(args[0]) : 'worker';
        const unit = rec.newUnit([['kind', 'worker'], ['name', `${name} (thread ${this.threadId})`], ['parent', parent], ['loc', loc], ['os_tid', this.threadId]]);
        rec.emit(K.UNIT_CREATE, parent, 0, unit, loc);
        this.once('online', () => rec.emit(K.UNIT_START, unit, 0, parent, 0));
        this.once('exit', (code) => rec.emit(K.UNIT_END, unit, 0, code === 0 ? 0 : 1, 0));
      } catch (err) {
        rec.fault('worker_threads.Worker', err);
      }
    }
  }
  wt.Worker = Worker;
}

module.exports = { installLoop, installGc, installWorkers };
