'use strict';
// The recorder: the hot path that hooks write events into, and the flusher that turns them
// into .wtrace chunks for its output: the segment files (segments.js) or the native stream
// to a collector (stream.js), which falls back to the files.
//
// Hot path: an event is six stores into preallocated typed-array columns (kind, unit,
// time, res, arg, loc): no object per event, nothing for the garbage collector. Full
// batches wait in a list; at `maxRows` pending rows (WILLOWISP_MAX_BUFFER_BYTES / 29 bytes)
// events are dropped, counted per unit and written as agent.drop at the next flush.
//
// Flush (every WILLOWISP_FLUSH_MS, 50 ms by default, from an unref'd timer, so events are
// durable within 100 ms): the batches become one chunk payload (the columns are copied
// as bytes, already little-endian), deflated and framed off the event loop (compress.js:
// a thread of the agent's own in a process that records much, else libuv's thread pool),
// and appended with one write(2) when that is done, in order. The event loop pays for the
// encoding, a copy and the write call, not for compression. At exit (process 'exit', a signal) the
// flush is synchronous: whatever is still waiting for compression is written as it is.
//
// Errors never reach the program: the hooks call `fault(where, err)`, which counts the
// error and writes a `fault` record and an agent.fault event.
//
// A full disk (docs/agent-node.md, "A full disk"; segments.js does the files' side): the
// events of a chunk the file system refused are counted per unit in `unwritten` and said
// as agent.drop in the next chunk made.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const w = require('./wtrace.js');
const K = require('./kinds.js');
const { Compressor } = require('./compress.js');
const { SegmentFiles, makeDirs } = require('./segments.js');

const AGENT_VERSION = '0.1.0';
const BATCH_ROWS = 4096;
const ROW_BYTES = 29;
const ANCHOR_EVERY_NS = 1_000_000_000n;

const hrtime = process.hrtime.bigint;
// A wall-clock tick bracketed within this is good enough to prove a shared clock (the
// analyzer wants anchors to agree within 50 µs); past this many tries the best one is used.
const CALIBRATED_NS = 20_000n;
const CALIBRATION_TRIES = 20;
// A recalibration spins only when the next tick is predicted within this (plus half the
// best bracket's width).
const SPIN_AHEAD_NS = 200_000n;

class Batch {
  constructor() {
    this.n = 0;
    this.kind = new Uint8Array(BATCH_ROWS);
    this.unit = new Uint32Array(BATCH_ROWS);
    this.time = new BigUint64Array(BATCH_ROWS);
    this.res = new Uint32Array(BATCH_ROWS);
    this.arg = new BigInt64Array(BATCH_ROWS);
    this.loc = new Uint32Array(BATCH_ROWS);
  }
}

function readText(p) {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return '';
  }
}

function readLink(p) {
  try {
    return fs.readlinkSync(p);
  } catch {
    return '';
  }
}

function fakeTime() {
  for (const part of (process.env.LD_PRELOAD || '').split(/[:\s]+/)) {
    if (path.basename(part).includes('faketime')) return path.basename(part);
  }
  return '';
}

class Recorder {
  // Opens the first segment (throws if the folder cannot be written: the caller reports it
  // and records nothing).
  constructor(config) {
    this.config = config;
    this.processId = require('node:crypto').randomBytes(16).toString('hex');
    this.pid = process.pid;
    this.stream = null; // the native stream (stream.js) when WILLOWISP_COLLECTOR is set
    this.files = new SegmentFiles(this);
    // A full disk: events of chunks the file system refused, counted per unit until a
    // chunk says them (agent.drop).
    this.unwritten = new Map(); // unit -> events lost with refused chunks, not yet said
    this.eventsAt = new WeakMap(); // payload -> where its event section starts
    this.needProcessRecord = false; // the next chunk starts with the process record
    if (config.collector) {
      // the file is opened only if the stream falls back to it
      this.files.segment = 1;
      this.files.path = this.files.segmentPath();
      this.needProcessRecord = true;
    } else {
      makeDirs(config.out);
      try {
        this.files.open();
      } catch (err) {
        this.files.dropReserve();
        throw err;
      }
    }

    // Invariant: `batch` is the batch being filled; `full` holds filled ones, oldest first;
    // pendingRows = rows in full + batch.n. Changed only by emit* and flush.
    this.batch = new Batch();
    this.full = [];
    this.spare = []; // emptied batches, reused: a Batch is ~120 KiB of columns to allocate
    this.pendingRows = 0;
    this.maxRows = Math.max(BATCH_ROWS * 2, Math.floor(config.maxBufferBytes / ROW_BYTES));
    this.nextSeq = 1;
    this.dropped = new Map(); // unit -> events dropped since the last flush
    this.totalDropped = 0;
    this.totalEvents = 0;
    this.faults = 0;
    // Records defined since the last flush, encoded as they are defined (in definition
    // order) into the next chunk's payload; the first chunk starts with the process record.
    this.enc = new w.ChunkEncoder();
    if (this.needProcessRecord) {
      this.enc.record(w.RECORD.process, 0, this.processRecord().attrs, undefined);
      this.needProcessRecord = false;
    }
    this.nextUnit = 2; // unit 1 is the event loop
    this.nextResource = 1;
    this.nextLocation = 1;
    this.locations = new Map(); // "file\0line\0func" -> location number
    this.faultMessages = new Set();
    // Chunks waiting to be written, in order: {raw, chunk (null until compressed)}.
    this.queue = [];
    this.written = []; // whenWritten() waiters
    this.costNs = 0; // measured cost of one event on the hot path
    this.closed = false;
    this.extraStats = null; // () => [[key, value]...], set by hooks that add figures
    this.compressor = new Compressor((where, err) => this.fault(where, err));

    // Wall clock: Date.now() has millisecond resolution only, so wall time is the wall
    // clock at one known monotonic instant plus monotonic time elapsed, re-based on
    // Date.now() if the two drift apart by more than 5 ms (the system clock was stepped).
    // That instant is found by watching Date.now() tick to its next millisecond: the tick
    // lies between two monotonic readings taken ~0.1 µs apart, which is what lets the
    // analyzer prove this process shares a clock with others on the host (anchors must
    // agree within 50 µs). performance.timeOrigin would be simpler, but it is read at
    // start apart from the monotonic clock, and on a busy machine that gap is larger.
    // Under contention (a program started beside others on a busy host) a tick can be
    // bracketed only loosely; then the first flushes try again until it is tight, and the
    // first anchor waits for that (anchors may come anywhere in the stream).
    this.calibration = calibrateWall(3);
    [this.mono0, this.wall0] = [this.calibration.mono, this.calibration.wall];
    this.calibrationTries = 0;
    this.calibrationSkips = 0;
    this.lastAnchor = -ANCHOR_EVERY_NS;
    if (this.calibrated()) this.anchor();
    this.measureCost();
    if (config.collector) {
      const { StreamSink } = require('./stream.js');
      this.stream = new StreamSink(this, config.collector, config.token);
    }
  }

  processRecord() {
    const c = this.config;
    return {
      type: w.RECORD.process,
      id: 0,
      attrs: [
        ['process_id', this.processId],
        ['pid', this.pid],
        ['ppid', process.ppid],
        ['host', os.hostname()],
        ['service', c.service],
        ['runtime', 'nodejs'],
        ['runtime_version', process.versions.node],
        ['agent_version', AGENT_VERSION],
        ['boot_id', readText('/proc/sys/kernel/random/boot_id')],
        ['time_ns', readLink('/proc/self/ns/time')],
        ['fake_time', fakeTime()],
        ['simulated_offset_ns', c.clockOffsetNs],
        ['argv', process.argv.join(' ').slice(0, 4096)],
        ['traceparent', c.traceparent],
        ['parent_process_id', c.parentProcess],
        ['mode', c.mode],
        ['boundaries', c.boundaries.map((b) => b.spec).join('|')],
        ['segment', this.files.segment],
        ['run_root', c.runPid && process.ppid === c.runPid ? 1 : 0],
      ],
    };
  }

  // --- hot path ------------------------------------------------------------------------

  // Records one event now. `arg` is a number (an integer below 2^53) or a bigint.
  emit(kind, unit, res, arg, loc) {
    let b = this.batch;
    if (b.n === BATCH_ROWS) {
      b = this.nextBatch();
      if (b === null) {
        this.drop(unit);
        return;
      }
    }
    const i = b.n;
    b.kind[i] = kind;
    b.unit[i] = unit;
    b.time[i] = hrtime();
    b.res[i] = res;
    b.arg[i] = arg === 0 ? 0n : BigInt(arg);
    b.loc[i] = loc;
    b.n = i + 1;
    this.pendingRows += 1;
  }

  // As emit, with a given monotonic time (bigint ns): for events observed after the fact
  // (GC pauses from perf_hooks).
  emitAt(time, kind, unit, res, arg, loc) {
    let b = this.batch;
    if (b.n === BATCH_ROWS) {
      b = this.nextBatch();
      if (b === null) {
        this.drop(unit);
        return;
      }
    }
    const i = b.n;
    b.kind[i] = kind;
    b.unit[i] = unit;
    b.time[i] = time;
    b.res[i] = res;
    b.arg[i] = BigInt(arg);
    b.loc[i] = loc;
    b.n = i + 1;
    this.pendingRows += 1;
  }

  nextBatch() {
    if (this.closed || this.pendingRows + BATCH_ROWS > this.maxRows) return null;
    this.full.push(this.batch);
    this.batch = this.freshBatch();
    return this.batch;
  }

  freshBatch() {
    const b = this.spare.pop();
    if (b === undefined) return new Batch();
    b.n = 0;
    return b;
  }

  drop(unit) {
    this.dropped.set(unit, (this.dropped.get(unit) ?? 0) + 1);
    this.totalDropped += 1;
  }

  // --- definitions ---------------------------------------------------------------------

  // `attrs`: [[key, value], ...] or [key, value, ...]; or, with a wtrace.Shape, the values
  // only, in the shape's key order (what per-request hooks pass: see wtrace.Shape). The
  // record is encoded now; a value that cannot be (a bug of the agent) is a fault, and the
  // number is still returned.
  newUnit(attrs, shape) {
    const id = this.nextUnit++;
    this.define(w.RECORD.unit, id, attrs, shape);
    return id;
  }

  defineUnit(id, attrs) {
    this.define(w.RECORD.unit, id, attrs, undefined);
  }

  newResource(attrs, shape) {
    const id = this.nextResource++;
    this.define(w.RECORD.resource, id, attrs, shape);
    return id;
  }

  updateResource(id, attrs) {
    this.define(w.RECORD.resource, id, attrs, undefined);
  }

  define(type, id, attrs, shape) {
    try {
      this.enc.record(type, id, attrs, shape);
    } catch (err) {
      this.fault('record', err);
    }
  }

  location(file, line, func) {
    const key = `${file}\0${line}\0${func}`;
    let id = this.locations.get(key);
    if (id === undefined) {
      if (this.locations.size > 100_000) this.locations.clear();
      id = this.nextLocation++;
      this.locations.set(key, id);
      this.define(w.RECORD.location, id, [['file', file], ['line', line], ['func', func]], undefined);
    }
    return id;
  }

  // An error inside the agent: counted, recorded, never rethrown.
  fault(where, err, unit = 1) {
    try {
      this.faults += 1;
      const message = String(err && err.stack ? err.stack.split('\n')[0] : err).slice(0, 500);
      const id = this.faults;
      this.enc.record(w.RECORD.fault, id, [['message', message], ['where', where]], undefined);
      this.emit(K.AGENT_FAULT, unit, 0, id, 0);
    } catch {
      // nothing left to do: the agent must not raise
    }
  }

  // --- flushing ------------------------------------------------------------------------

  /** Is the wall clock's tick bracketed tightly enough (or have we tried enough)? */
  calibrated() {
    return this.calibration.width <= CALIBRATED_NS || this.calibrationTries >= CALIBRATION_TRIES;
  }

  /** One more try at a tight bracket (≤ 1 ms of spinning, at a flush, not on the hot path). */
  recalibrate() {
    // The best bracket so far predicts when Date.now() ticks next: a try spins only when
    // that is near (a try's spin is otherwise up to 1 ms, half a millisecond on average, on
    // the program's event loop), or after three flushes skipped in a row (the flush timer
    // may keep firing at the same phase of the millisecond).
    const width = this.calibration.width;
    const sinceTick = (this.wall0 + (hrtime() - this.mono0)) % 1_000_000n;
    if (1_000_000n - sinceTick > SPIN_AHEAD_NS + width / 2n && this.calibrationSkips < 3) {
      this.calibrationSkips += 1;
      return;
    }
    this.calibrationSkips = 0;
    this.calibrationTries += 1;
    const again = calibrateWall(1);
    if (again.width < this.calibration.width) {
      this.calibration = again;
      [this.mono0, this.wall0] = [again.mono, again.wall];
    }
  }

  // The next chunk carries a clock anchor (after chunks were lost).
  anchorNext() {
    this.lastAnchor = -ANCHOR_EVERY_NS;
  }

  anchor() {
    const mono = hrtime();
    this.emitAt(mono, K.CLOCK_ANCHOR, 1, 0, this.wallAt(mono) + this.config.clockOffsetNs, 0);
    this.lastAnchor = mono;
  }

  // The wall time (ns) at monotonic instant `mono` (now).
  wallAt(mono) {
    const wall = this.wall0 + (mono - this.mono0);
    const coarse = BigInt(Date.now()) * 1_000_000n;
    const gap = coarse > wall ? coarse - wall : wall - coarse;
    if (gap <= 5_000_000n) return wall;
    // the system clock was stepped: re-base on it
    this.wall0 = coarse;
    this.mono0 = mono;
    return coarse;
  }

  // The agent's own cost of one event, measured once at start on this machine.
  measureCost() {
    const saved = this.batch;
    const probe = new Batch();
    this.batch = probe;
    let best = Infinity;
    for (let round = 0; round < 4; round += 1) {
      probe.n = 0;
      const t0 = hrtime();
      for (let i = 0; i < 1000; i += 1) this.emit(K.UNIT_RUN, 1, 0, 1, 0);
      best = Math.min(best, Number((hrtime() - t0) / 1000n));
    }
    this.costNs = best;
    this.batch = saved;
    this.pendingRows -= 4000;
  }

  statsRecord() {
    const attrs = [
      ['events', this.totalEvents],
      ['dropped', this.totalDropped],
      ['faults', this.faults],
      ['cost_ns_per_event', this.costNs],
    ];
    if (this.extraStats !== null) {
      try {
        attrs.push(...this.extraStats());
      } catch (err) {
        this.fault('stats', err);
      }
    }
    return { type: w.RECORD.stats, id: 0, attrs };
  }

  // Takes everything recorded so far and turns it into chunk payloads: none, one, or (when
  // a new segment began since the records of this one were encoded) a chunk with the
  // process record first.
  takePayloads() {
    const batches = this.full;
    this.full = [];
    if (this.batch.n > 0) {
      batches.push(this.batch);
      this.batch = this.freshBatch();
    }
    this.pendingRows = 0;
    if (this.files.writeError !== '' && batches.length === 0 && this.enc.count === 0 && this.dropped.size === 0) {
      // a full disk, and nothing new since the refused chunk: no chunk made only to be
      // refused again (what it would hold waits for the next one with news)
      return [];
    }
    // the agent's own events go into the fresh batch, after the program's: they are never
    // dropped for lack of room
    if (!this.calibrated()) this.recalibrate();
    if (this.calibrated() && hrtime() - this.lastAnchor >= ANCHOR_EVERY_NS) this.anchor();
    for (const [unit, n] of this.dropped) this.emit(K.AGENT_DROP, unit, 0, n, 0);
    this.dropped.clear();
    if (this.unwritten.size > 0) {
      // lost with chunks the file system refused (already in totalDropped): said now
      for (const [unit, n] of this.unwritten) this.emit(K.AGENT_DROP, unit, 0, n, 0);
      this.unwritten.clear();
    }
    if (this.batch.n > 0) {
      batches.push(this.batch);
      this.batch = this.freshBatch();
      this.pendingRows = 0;
    }
    const n = batches.reduce((s, b) => s + b.n, 0);
    const out = [];
    if (this.needProcessRecord) {
      out.push(w.encodePayload([this.processRecord()], null));
      this.needProcessRecord = false;
    }
    if (n === 0 && this.enc.count === 0) return out;
    this.totalEvents += n;

    const enc = this.enc;
    this.enc = new w.ChunkEncoder();
    const stats = this.statsRecord();
    enc.record(stats.type, stats.id, stats.attrs, undefined);
    let events = null;
    if (n > 0) {
      const one = batches.length === 1 ? batches[0] : concat(batches, n);
      events = { firstSeq: this.nextSeq, n, kind: one.kind, unit: one.unit, time: one.time, res: one.res, arg: one.arg, loc: one.loc };
      this.nextSeq += n;
    }
    const raw = enc.finish(events); // copies the columns
    this.eventsAt.set(raw, enc.eventsAt);
    out.push(raw);
    for (const b of batches) if (this.spare.length < 4) this.spare.push(b);
    return out;
  }

  // Periodic flush: the payload is compressed off the event loop, then written in order.
  flush() {
    if (this.closed) return;
    let payloads;
    try {
      payloads = this.takePayloads();
    } catch (err) {
      this.fault('flush', err);
      return;
    }
    for (const raw of payloads) {
      const item = { raw, chunk: null };
      this.queue.push(item);
      this.compressor.compress(raw, (chunk) => {
        if (item.chunk !== null || this.closed) return; // written synchronously meanwhile
        try {
          item.chunk = chunk;
          this.writeReady();
        } catch (e) {
          this.fault('flush.write', e);
        }
      });
    }
  }

  // Writes the chunks at the head of the queue that are ready, in order.
  writeReady() {
    while (this.queue.length > 0 && this.queue[0].chunk !== null) {
      const { chunk, raw } = this.queue.shift();
      this.writeChunk(chunk, raw);
    }
    if (this.queue.length === 0 && this.written.length > 0) for (const resolve of this.written.splice(0)) resolve();
  }

  // Resolves once every chunk flushed so far is written (for tests).
  whenWritten() {
    return this.queue.length === 0 ? Promise.resolve() : new Promise((resolve) => this.written.push(resolve));
  }

  writeChunk(chunk, raw) {
    if (this.stream !== null) this.stream.write(chunk);
    else this.files.write(chunk, raw);
  }

  // A chunk holding the process record (and `extra` records): how every stream connection
  // and every fallback file starts.
  processChunk(extra = []) {
    return w.deflateChunk(w.encodePayload([this.processRecord(), ...extra], null));
  }

  // A fault whose record the caller writes itself (the stream's fallback file): counted,
  // with its agent.fault event; returns the record.
  faultRecord(where, message) {
    this.faults += 1;
    const id = this.faults;
    this.emit(K.AGENT_FAULT, 1, 0, id, 0);
    return { type: w.RECORD.fault, id, attrs: [['message', String(message).slice(0, 500)], ['where', where]] };
  }

  // At exit: everything still in memory goes out now, synchronously, in order.
  flushSync() {
    this.calibrationTries = CALIBRATION_TRIES; // the last flush: the best bracket so far
    if (this.closed) return;
    try {
      for (const raw of this.takePayloads()) this.queue.push({ raw, chunk: null });
      for (const item of this.queue) if (item.chunk === null) item.chunk = w.deflateChunk(item.raw);
      this.writeReady();
    } catch {
      // the file system refused: nothing more can be done at exit
    }
  }

  // Where chunks go, for the control channel's status.
  sinkStatus() {
    return this.stream !== null ? this.stream.status() : { kind: 'file', path: this.files.path };
  }

  close() {
    if (this.closed) return;
    this.flushSync();
    this.compressor.close();
    if (this.stream !== null) {
      try {
        this.stream.closeSync();
      } catch {
        // at exit: nothing more can be done
      }
      // a fallback at the end recorded a fault event: it goes to the file too
      if (this.batch.n > 0 || this.full.length > 0) this.flushSync();
    }
    this.closed = true;
    this.files.close();
  }
}

function concat(batches, n) {
  const out = w.newColumns(n);
  let at = 0;
  for (const b of batches) {
    out.kind.set(b.kind.subarray(0, b.n), at);
    out.unit.set(b.unit.subarray(0, b.n), at);
    out.time.set(b.time.subarray(0, b.n), at);
    out.res.set(b.res.subarray(0, b.n), at);
    out.arg.set(b.arg.subarray(0, b.n), at);
    out.loc.set(b.loc.subarray(0, b.n), at);
    at += b.n;
  }
  return out;
}

module.exports = { Recorder, AGENT_VERSION };

/**
 * A (monotonic ns, wall ns) pair read at the same instant, to well under a microsecond:
 * spin until Date.now() moves to its next millisecond, three times (at most ~3 ms, once),
 * and keep the tick bracketed by the closest pair of monotonic readings. Falls back to
 * performance.timeOrigin if the clock does not tick (a frozen clock under a fake time).
 */
function calibrateWall(rounds) {
  let best = null;
  for (let round = 0; round < rounds; round++) {
    // `before` is always read just before the Date.now() that gave `last`: reading it after
    // (as the previous reading's `after`) would let a preemption between the two reads
    // move the tick before the bracket while the bracket still looks tight.
    let before = hrtime();
    let last = Date.now();
    const deadline = before + 5_000_000n;
    for (;;) {
      const ahead = hrtime();
      const now = Date.now();
      const after = hrtime();
      if (now !== last) {
        // the tick happened after `last` was read (so after `before`) and before `now` was
        // read (so before `after`)
        const width = after - before;
        if (best === null || width < best.width) {
          best = { mono: before + width / 2n, wall: BigInt(now) * 1_000_000n, width };
        }
        break;
      }
      if (after > deadline) break;
      last = now;
      before = ahead;
    }
  }
  if (best === null) {
    const mono = hrtime();
    const wall = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
    return { mono, wall, width: 1_000_000n };
  }
  return best;
}
