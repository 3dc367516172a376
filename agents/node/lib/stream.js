'use strict';
// The native stream, agent side (docs/protocols.md, "Native stream"): with
// WILLOWISP_COLLECTOR set, the recorder's chunks go to `willowisp collect --native` instead
// of the segment file.
//
// How it fits: the recorder hands every finished chunk, in order, to `write(chunk)` (from
// its flush, once it is compressed off the event loop), exactly where it would append it to
// its file. The connection starts with a hello (process id, service, pid, token, format);
// the first chunk on it holds the process record; then chunks are sent unchanged and the
// collector acknowledges them once they are in its file.
//
// Off the hot path: the socket is a libuv stream, written with socket.write (the kernel
// usually takes a chunk at once) and read from 'data' callbacks, so neither sending nor
// waiting for acknowledgements blocks the event loop, and the socket is unref'd so the
// stream never keeps a finished program alive. The one exception is the end: in the
// process 'exit' handler no callback will run again, so the final chunk and the bye are
// written with write(2) on the socket's descriptor and the collector's bye is read with
// read(2), polling every millisecond for at most 2 s (only when nothing is left in libuv's
// own write queue, else that data and the rest go to the file). A program that ends
// normally gets a 'beforeExit' first; if the connection is still being set up then, the
// socket is ref'd until the hello is answered (at most 3 s), so short programs stream too.
// One that calls process.exit() while the hello is unanswered gets it finished in the
// 'exit' handler the same way, with write(2)/read(2) (helloSync); only an exit before the
// loop's first turn, when Node has not begun the connect, leaves everything to the file.
//
// Nothing is lost silently: chunks stay in memory until acknowledged (32 MiB or 4096
// chunks; over that the agent waits 5 s, then treats the collector as gone). When the
// collector cannot be reached (1 s), does not answer the hello (2 s), stalls a send (5 s),
// closes, says bye or sends an error, the sink falls back to the segment file the recorder
// would have written: a chunk with the process record and a fault record saying what
// happened (none for a bye: an orderly shutdown loses nothing, it is only counted in
// `fallbacks`), every unacknowledged chunk in order, then everything after. When it next has a
// chunk to write it tries the collector again, 1, 2, 4, 8 and 16 s apart, then every 30 s
// without end (WILLOWISP_STREAM_RETRY_S caps every delay; a good connection resets the
// schedule); while a reconnection is under way chunks go to the file.

const fs = require('node:fs');
const net = require('node:net');
const F = require('./frames.js');
const w = require('./wtrace.js');

const CONNECT_MS = 1000;
const HELLO_MS = 2000;
const SEND_MS = 5000;
const CLOSE_WAIT_MS = 2000;
const MAX_UNACKED_BYTES = 32 * 1024 * 1024;
const MAX_UNACKED_CHUNKS = 4096;
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 16000]; // then RETRY_MAX_MS, without end
const RETRY_MAX_MS = 30000;
const VERSIONS = [1];

// host:port, tcp://host:port, [v6]:port or unix:/absolute/path -> net.connect options;
// throws for anything else.
function parseAddress(address) {
  let a = String(address).trim();
  if (a.startsWith('unix:')) {
    let p = a.slice(5);
    if (p.startsWith('//')) p = p.slice(2);
    if (!p.startsWith('/')) throw new Error(`collector ${JSON.stringify(address)}: a Unix socket path must be absolute`);
    return { path: p };
  }
  if (a.startsWith('tcp://')) a = a.slice(6);
  const colon = a.lastIndexOf(':');
  let host = colon > 0 ? a.slice(0, colon) : '';
  const port = colon > 0 ? a.slice(colon + 1) : '';
  if (!host || !/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new Error(`collector ${JSON.stringify(address)} is not host:port, tcp://host:port or unix:/path`);
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(port) };
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleepMs(ms) {
  Atomics.wait(sleeper, 0, 0, ms);
}

class StreamSink {
  // `rec` provides processChunk(), faultRecord(where, message) -> record (counted, with its
  // agent.fault event), and files.write(chunk) (the segment files, opened on first use).
  constructor(rec, address, token) {
    this.rec = rec;
    this.address = address;
    this.token = token;
    // WILLOWISP_STREAM_RETRY_S in ms (0: none): caps every reconnection delay
    this.retryCapMs = (rec.config && rec.config.streamRetryMs) || 0;
    // Invariants: state is 'connecting' (first connection under way: chunks wait in
    // `pending`), 'open' (chunks are sent; `unacked` holds those sent and not yet
    // acknowledged, numbered on this connection), 'file' (fallen back: chunks go to the
    // file; `conn` may be a reconnection under way) or 'closed'.
    // unackedBytes == the sum of the unacked chunks' lengths.
    this.state = 'connecting';
    this.conn = null; // {sock, reader, helloDone, timer}
    this.sock = null; // the open connection
    this.pending = [];
    this.unacked = [];
    this.unackedBytes = 0;
    this.sent = 0;
    this.retries = 0; // failed reconnections since the last good connection (never capped)
    this.retryAt = 0;
    this.noRetry = false; // a bad address will not get better
    this.overSince = 0; // when the unacked bound was passed (0: not over)
    this.collectorFile = '';
    this.chunksSent = 0;
    this.fallbacks = 0;
    this.byeSeen = false;
    this.openReader = null; // the open connection's FrameReader
    this.beforeExitRef = false;
    this.sendTimer = undefined;
    this.connect(true);
    process.on('beforeExit', () => this.beforeExit());
  }

  // The control channel's `sink`, in the fields and words every agent uses (docs/protocols.md,
  // the status result): `streaming` only while a connection carries the chunks; otherwise
  // `file`, with the fallback file once there is one ("" while the first connection is
  // still being set up and the chunks wait in memory). `phase` is this sink's own state,
  // which tells that wait apart.
  status() {
    return {
      kind: 'stream',
      collector: this.address,
      state: this.state === 'open' ? 'streaming' : 'file',
      collector_file: this.collectorFile,
      file: this.rec.files.fd >= 0 ? this.rec.files.path : '', // named in advance, made on fallback
      unacked: this.unacked.length,
      retries: this.retries,
      phase: this.state,
      chunks_sent: this.chunksSent,
      fallbacks: this.fallbacks,
    };
  }

  // --- connection ------------------------------------------------------------------------

  connect(first) {
    let opts;
    try {
      opts = parseAddress(this.address);
    } catch (err) {
      this.noRetry = true; // a bad address will not get better
      this.fallBack(`cannot reach collector ${this.address}: ${err.message}`);
      return;
    }
    const sock = net.connect(opts);
    sock.unref();
    const conn = { sock, reader: new F.FrameReader(F.STREAM_MAGIC, F.MAX_MESSAGE_BODY), helloSent: false, helloDone: false, timer: null, first };
    this.conn = conn;
    const fail = (why) => this.connectFailed(conn, why);
    conn.timer = setTimeout(() => fail(`cannot reach collector ${this.address}: no connection within ${CONNECT_MS} ms`), CONNECT_MS);
    conn.timer.unref();
    sock.on('error', (err) => {
      if (!conn.helloDone) fail(`cannot reach collector ${this.address}: ${err.code || err.message}`);
      else if (this.sock === sock) this.fallBack(`collector ${this.address} went away: ${err.code || err.message}`);
    });
    sock.on('close', () => {
      if (!conn.helloDone) fail(`cannot reach collector ${this.address}: connection closed at hello`);
      else if (this.sock === sock) this.fallBack(`collector ${this.address} went away: connection closed`);
    });
    sock.on('connect', () => {
      clearTimeout(conn.timer);
      conn.timer = setTimeout(() => fail(`cannot reach collector ${this.address}: no answer to hello within ${HELLO_MS} ms`), HELLO_MS);
      conn.timer.unref();
      try {
        if (!opts.path) sock.setNoDelay(true);
        if (!conn.helloSent) {
          conn.helloSent = true;
          sock.write(this.helloFrame());
        }
      } catch (err) {
        fail(`cannot reach collector ${this.address}: ${err.message}`);
      }
    });
    sock.on('data', (data) => {
      try {
        conn.reader.push(data, (body) => this.onMessage(conn, F.parseObject(body)));
      } catch (err) {
        const why = err instanceof F.ProtocolError ? `${err.code}: ${err.message}` : err.message;
        if (!conn.helloDone) fail(`collector ${this.address} refused the hello: ${why}`);
        else if (this.sock === sock) this.fallBack(`collector ${this.address} went away: ${why}`);
      }
    });
  }

  helloFrame() {
    const r = this.rec;
    return F.packFrame(F.STREAM_MAGIC, {
      op: 'hello',
      versions: VERSIONS,
      token: this.token,
      format: [w.FORMAT_MAJOR, w.FORMAT_MINOR],
      process_id: r.processId,
      service: r.config.service.slice(0, 256),
      pid: r.pid,
      runtime: 'nodejs',
      segment: r.files.segment,
    });
  }

  // A connection attempt that did not reach an answered hello.
  connectFailed(conn, why) {
    if (this.conn !== conn || conn.helloDone) return;
    clearTimeout(conn.timer);
    this.conn = null;
    conn.sock.destroy();
    if (this.state === 'connecting') {
      this.fallBack(why);
    } else {
      // a reconnection that failed: try again later, the file goes on meanwhile
      this.retries += 1;
      this.retryAt = Date.now() + this.retryDelay();
    }
  }

  onMessage(conn, msg) {
    if (!conn.helloDone) {
      if (msg.ok !== true) {
        const err = msg.error && typeof msg.error === 'object' ? msg.error : {};
        throw new F.ProtocolError(String(err.code || 'refused'), String(err.message || 'hello refused').slice(0, 300));
      }
      this.helloAnswered(conn, msg);
      return true;
    }
    if (Number.isSafeInteger(msg.chunks)) this.acked(msg.chunks);
    if (msg.op === 'bye') {
      this.byeSeen = true;
      // an orderly shutdown: every unacknowledged chunk goes to the file, nothing is lost,
      // so it is counted (fallbacks) but is no fault
      if (this.state !== 'closed') this.fallBack(`collector ${this.address} went away: collector is shutting down`, false);
      return false;
    }
    if (msg.op === 'error' || msg.ok === false) {
      const err = msg.error && typeof msg.error === 'object' ? msg.error : {};
      this.fallBack(`collector ${this.address} went away: ${String(err.code || 'error')}: ${String(err.message || '').slice(0, 300)}`);
      return false;
    }
    return true;
  }

  helloAnswered(conn, msg) {
    clearTimeout(conn.timer);
    conn.helloDone = true;
    this.conn = null;
    this.sock = conn.sock;
    this.openReader = conn.reader;
    this.byeSeen = false;
    if (this.beforeExitRef) this.sock.unref();
    this.collectorFile = String(msg.file || '');
    this.sent = 0;
    this.retries = 0;
    const waiting = this.state === 'connecting' ? this.pending : [];
    this.pending = [];
    this.state = 'open';
    // every destination starts self-describing: the first connection gets the recorder's
    // first chunk, which holds the process record; a later one gets it again first
    if (!conn.first) this.send(this.rec.processChunk());
    for (const chunk of waiting) this.send(chunk);
  }

  beforeExit() {
    // The program ends normally while the first connection is still being set up: keep
    // the loop alive until the hello is answered (or fails), so the chunks go to the
    // collector rather than to a fallback file.
    if (this.conn !== null && this.state === 'connecting' && !this.beforeExitRef) {
      this.beforeExitRef = true;
      this.conn.sock.ref();
      this.conn.timer.ref();
    }
  }

  // --- sending ---------------------------------------------------------------------------

  write(chunk) {
    try {
      if (this.state === 'connecting') {
        this.pending.push(chunk);
        this.unackedBytes += chunk.length;
        if (this.tooMany(this.pending.length)) this.fallBack(`collector ${this.address} did not answer while ${this.pending.length} chunks waited`);
        return;
      }
      if (this.state === 'file') {
        if (this.conn === null && !this.noRetry && Date.now() >= this.retryAt) this.connect(false);
        this.rec.files.write(chunk);
        return;
      }
      if (this.state === 'open') this.send(chunk);
      else this.rec.files.write(chunk); // closed: the end of the program, after the bye
    } catch (err) {
      this.rec.fault('stream', err);
    }
  }

  send(chunk) {
    this.sent += 1;
    this.unacked.push([this.sent, chunk]);
    this.unackedBytes += chunk.length;
    this.chunksSent += 1;
    const sock = this.sock;
    sock.write(chunk);
    if (sock.writableLength > 0 && this.sendTimer === undefined) {
      // the kernel did not take it all: the collector must drain it within 5 s
      this.sendTimer = setTimeout(() => {
        this.sendTimer = undefined;
        if (this.sock === sock && sock.writableLength > 0) this.fallBack(`collector ${this.address} went away: a send did not complete within ${SEND_MS} ms`);
      }, SEND_MS);
      this.sendTimer.unref();
      sock.once('drain', () => {
        clearTimeout(this.sendTimer);
        this.sendTimer = undefined;
      });
    }
    if (this.tooMany(this.unacked.length)) {
      if (this.overSince === 0) this.overSince = Date.now();
      else if (Date.now() - this.overSince > SEND_MS) {
        this.fallBack(`collector ${this.address} went away: ${this.unacked.length} chunks not acknowledged within ${SEND_MS} ms`);
      }
    }
  }

  tooMany(n) {
    return this.unackedBytes > MAX_UNACKED_BYTES || n > MAX_UNACKED_CHUNKS;
  }

  acked(n) {
    let drop = 0;
    while (drop < this.unacked.length && this.unacked[drop][0] <= n) {
      this.unackedBytes -= this.unacked[drop][1].length;
      drop += 1;
    }
    if (drop > 0) this.unacked.splice(0, drop);
    if (!this.tooMany(this.unacked.length)) this.overSince = 0;
  }

  // --- falling back to the file --------------------------------------------------------------

  fallBack(why, fault = true) {
    if (this.state === 'file' && this.sock === null) return;
    const sock = this.sock;
    this.sock = null;
    if (sock !== null) sock.destroy();
    if (this.conn !== null && this.state === 'connecting') {
      clearTimeout(this.conn.timer);
      this.conn.sock.destroy();
      this.conn = null;
    }
    this.fallbacks += 1;
    const waiting = [...this.unacked.map(([, c]) => c), ...this.pending];
    this.unacked = [];
    this.pending = [];
    this.unackedBytes = 0;
    if (this.state !== 'closed') this.state = 'file';
    try {
      const records = fault ? [this.rec.faultRecord('stream', why.slice(0, 500))] : [];
      this.rec.files.write(this.rec.processChunk(records));
      for (const chunk of waiting) this.rec.files.write(chunk);
    } catch (err) {
      this.rec.fault('stream fallback', err);
    }
    this.retryAt = Date.now() + this.retryDelay();
  }

  // The delay before the next reconnection: 1, 2, 4, 8, 16 s, then 30 s without end, each
  // capped by WILLOWISP_STREAM_RETRY_S.
  retryDelay() {
    const ms = this.retries < RETRY_DELAYS_MS.length ? RETRY_DELAYS_MS[this.retries] : RETRY_MAX_MS;
    return this.retryCapMs > 0 ? Math.min(ms, this.retryCapMs) : ms;
  }

  // --- the end (process 'exit': synchronous) --------------------------------------------------

  // Sends the bye and waits (at most 2 s) for the collector's; what is still not
  // acknowledged goes to the file, with a fault.
  closeSync() {
    if (this.state === 'closed') return;
    if (this.state === 'connecting' && !this.helloSync(Date.now() + HELLO_MS)) {
      this.state = 'closed';
      this.fallBackClosed(`collector ${this.address} had not answered the hello when the program ended`);
      return;
    }
    if (this.conn !== null) {
      this.conn.sock.destroy(); // a reconnection under way: the file has everything
      this.conn = null;
    }
    const sock = this.sock;
    if (this.state !== 'open' || sock === null) {
      this.state = 'closed';
      return;
    }
    this.state = 'closed';
    const fd = sock._handle && typeof sock._handle.fd === 'number' ? sock._handle.fd : -1;
    if (fd < 0 || sock.writableLength > 0) {
      this.fallBackClosed(`collector ${this.address}: ${this.unacked.length} chunks were still being sent when the program ended`);
      return;
    }
    const deadline = Date.now() + CLOSE_WAIT_MS;
    try {
      writeAllSync(fd, F.packFrame(F.STREAM_MAGIC, { op: 'bye' }), deadline);
      readSyncUntil(fd, deadline, () => this.byeSeen, (data) => this.readAtEnd(data));
    } catch (err) {
      if (this.unacked.length > 0) {
        this.fallBackClosed(`collector ${this.address} went away: ${err.code || err.message}`);
        return;
      }
    } finally {
      this.sock = null;
      sock.destroy();
    }
    if (this.unacked.length > 0) {
      this.fallBackClosed(`collector ${this.address} did not acknowledge ${this.unacked.length} chunks within ${CLOSE_WAIT_MS} ms of the end`);
    }
  }

  // The program ends (process.exit) while the first connection is still being set up: the
  // connect and the hello are finished here with write(2)/read(2) on the socket's descriptor
  // (a connect in progress makes write say EAGAIN until it is done), so a short program
  // streams too. Returns whether the hello was answered (the sink is then open, its waiting
  // chunks handed to the socket); false leaves the rest to the fallback.
  helloSync(deadline) {
    const conn = this.conn;
    if (conn === null || conn.helloDone) return conn !== null;
    const sock = conn.sock;
    const fd = sock._handle && typeof sock._handle.fd === 'number' ? sock._handle.fd : -1;
    if (fd < 0 || sock.writableLength > 0) return false; // no descriptor, or the hello still queued in libuv
    try {
      if (!conn.helloSent) {
        conn.helloSent = true;
        writeAllSync(fd, this.helloFrame(), deadline);
      }
      const done = () => conn.helloDone;
      const onData = (data) => conn.reader.push(data, (body) => this.onMessage(conn, F.parseObject(body)));
      if (!readSyncUntil(fd, deadline, done, onData)) return false; // closed
    } catch {
      return false; // refused, closed, or an answer that does not parse: the fallback says so
    }
    return conn.helloDone && this.state === 'open';
  }

  readAtEnd(data) {
    // the connection's own reader: a message may be half read already
    this.openReader.push(data, (body) => {
      const msg = F.parseObject(body);
      if (Number.isSafeInteger(msg.chunks)) this.acked(msg.chunks);
      if (msg.op === 'bye' || msg.op === 'error' || msg.ok === false) {
        this.byeSeen = true;
        return false;
      }
      return true;
    });
  }

  fallBackClosed(why) {
    this.state = 'closed';
    this.fallbacks += 1;
    const waiting = [...this.unacked.map(([, c]) => c), ...this.pending];
    this.unacked = [];
    this.pending = [];
    this.unackedBytes = 0;
    if (this.sock !== null) {
      this.sock.destroy();
      this.sock = null;
    }
    try {
      const fault = this.rec.faultRecord('stream', why.slice(0, 500));
      this.rec.files.write(this.rec.processChunk([fault]));
      for (const chunk of waiting) this.rec.files.write(chunk);
    } catch {
      // at exit: nothing more can be done
    }
  }
}

// write(2) all of `data` on a non-blocking descriptor, waiting 1 ms whenever it is full.
function writeAllSync(fd, data, deadline) {
  let at = 0;
  while (at < data.length) {
    try {
      at += fs.writeSync(fd, data, at, data.length - at);
    } catch (err) {
      if ((err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') && Date.now() < deadline) {
        sleepMs(1);
        continue;
      }
      throw err;
    }
  }
}

// read(2) on a non-blocking descriptor until done() or the deadline, waiting 1 ms whenever
// nothing is there; each read's bytes go to onData. False when the peer closed.
function readSyncUntil(fd, deadline, done, onData) {
  const buf = Buffer.allocUnsafe(65536);
  while (!done() && Date.now() < deadline) {
    let n;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') {
        sleepMs(1);
        continue;
      }
      throw err;
    }
    if (n === 0) return false;
    onData(buf.subarray(0, n));
  }
  return true;
}

module.exports = { StreamSink, parseAddress, writeAllSync };
