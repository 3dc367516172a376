'use strict';
// Compressing and framing chunks off the event loop.
//
// zlib.deflate (async) compresses on libuv's thread pool, but what it does on the event
// loop before that is not small: each call builds a zlib stream (a Transform) and
// initializes a new zlib state (deflateInit2: ~256 KiB that glibc maps and the kernel
// zeroes page by page), then frees it: ~60 us on an idle machine and 0.2-0.5 ms on a
// loaded one, per flush — measured on the service benchmark as about a third of what the
// agent cost a recorded request on the loop. So a process that records enough to matter
// (a payload of COMPRESS_THREAD_BYTES or more, or POOL_PAYLOADS small ones: a service
// recording one trace in ten flushes a few KiB every interval, and paid that per flush)
// starts one worker thread of the agent's own: the loop copies the payload into a transferable buffer and posts it; the thread
// deflates it, computes the CRC, frames the chunk (wtrace.deflateChunk) and posts it back;
// the loop writes it. A small process (a script, a test) never starts the thread: it
// uses zlib.deflate as before, and so does everything if the thread fails to start or
// dies (a fault; nothing is lost: the payloads it held are compressed again).
//
// The thread is the original worker_threads.Worker (captured before runtime.js replaces
// it, so it is never a unit of the program), unref'd except while it holds payloads (as
// zlib's pool request would be);
// a preload of the agent that runs inside it returns at once (start.js). At exit the
// recorder compresses whatever is still out synchronously (recorder.flushSync).

const path = require('node:path');
const zlib = require('node:zlib');
const { Worker } = require('node:worker_threads'); // the original class
const w = require('./wtrace.js');

const COMPRESS_THREAD_BYTES = 16 * 1024;
// Small payloads compressed with zlib.deflate before the thread starts: a script or a test
// flushes a few times and ends; a process still recording after this many flushes (~0.4 s
// of events at the default 50 ms interval) is one that keeps recording.
const POOL_PAYLOADS = 8;

const THREAD_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const w = require(${JSON.stringify(path.join(__dirname, 'wtrace.js'))});
parentPort.on('message', (m) => {
  let chunk = null;
  let error = '';
  try {
    const framed = w.deflateChunk(Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.length));
    chunk = new Uint8Array(framed.length); // its own ArrayBuffer: transferable
    chunk.set(framed);
  } catch (err) {
    error = String(err && err.message ? err.message : err);
  }
  parentPort.postMessage({ id: m.id, chunk, error }, chunk !== null ? [chunk.buffer] : []);
});
`;

class Compressor {
  // `onFault(where, err)` records an agent fault.
  constructor(onFault) {
    this.onFault = onFault;
    this.thread = null; // the worker, once started
    this.failed = false; // the thread could not start or died: zlib.deflate from then on
    this.pending = new Map(); // id -> {raw, done}: payloads the thread holds
    this.nextId = 1;
    this.pooled = 0; // payloads compressed with zlib.deflate so far
  }

  // Compresses and frames `raw` (a Buffer the caller keeps); calls done(chunk) later, on
  // the event loop, in no particular order (the recorder writes in order).
  compress(raw, done) {
    if (!this.failed && (this.thread !== null || raw.length >= COMPRESS_THREAD_BYTES || this.pooled >= POOL_PAYLOADS)) {
      try {
        this.post(raw, done);
        return;
      } catch (err) {
        this.fail(err);
      }
    }
    this.pooled += 1;
    deflateOnPool(raw, done, this.onFault);
  }

  post(raw, done) {
    if (this.thread === null) this.start();
    const id = this.nextId++;
    const copy = new Uint8Array(raw.length); // the caller keeps raw (the exit path needs it)
    copy.set(raw);
    // ref'd while it holds payloads, as zlib's pool request would be: a program that ends
    // meanwhile gets its chunk written by the thread rather than by the exit path
    if (this.pending.size === 0) this.thread.ref();
    this.pending.set(id, { raw, done });
    this.thread.postMessage({ id, raw: copy }, [copy.buffer]);
  }

  start() {
    const t = new Worker(THREAD_SOURCE, { eval: true, stdout: false, stderr: false });
    t.on('message', (m) => this.received(m));
    t.on('error', (err) => this.fail(err));
    t.on('exit', (code) => {
      if (!this.failed && this.thread === t) this.fail(new Error(`compression thread exited with ${code}`));
    });
    // unref'd after the listeners: adding a 'message' listener refs the worker's port
    // again (Node 20), which kept every process that had started the thread from ever
    // ending by itself; ref'd only while it holds payloads (post, received)
    t.unref();
    this.thread = t;
  }

  received(m) {
    const p = this.pending.get(m.id);
    if (p === undefined) return;
    this.pending.delete(m.id);
    if (this.pending.size === 0 && this.thread !== null) this.thread.unref();
    if (m.chunk === null) {
      this.onFault('compress.thread', new Error(m.error));
      p.done(w.plainChunk(p.raw));
      return;
    }
    p.done(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.length));
  }

  // The thread is gone: what it held is compressed on the pool, and so is everything next.
  fail(err) {
    if (this.failed) return;
    this.failed = true;
    this.onFault('compress.thread', err);
    const t = this.thread;
    this.thread = null;
    if (t !== null) {
      t.removeAllListeners('message');
      t.terminate().catch(() => {});
    }
    const held = [...this.pending.values()];
    this.pending.clear();
    for (const p of held) deflateOnPool(p.raw, p.done, this.onFault);
  }

  close() {
    const t = this.thread;
    this.thread = null;
    this.failed = true;
    this.pending.clear();
    if (t !== null) t.terminate().catch(() => {});
  }
}

// zlib on libuv's thread pool (what every small process uses).
function deflateOnPool(raw, done, onFault) {
  zlib.deflate(raw, { level: 1 }, (err, compressed) => {
    let chunk;
    try {
      chunk = err ? w.plainChunk(raw) : w.deflateChunk(raw, compressed);
    } catch (e) {
      onFault('flush.compress', e);
      return;
    }
    done(chunk);
  });
}

module.exports = { Compressor, COMPRESS_THREAD_BYTES, POOL_PAYLOADS };
