'use strict';
// The recorder: what it writes is readable, complete and bounded.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Recorder } = require('../lib/recorder.js');
const { fromEnv } = require('../lib/config.js');
const K = require('../lib/kinds.js');
const { readFile } = require('./reader.js');

function recorder(extra = {}) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-rec-'));
  const config = fromEnv({ WILLOWISP_OUT: out, WILLOWISP_SERVICE: 'unit test', ...extra }, ['node', 'x.js']);
  return { rec: new Recorder(config), out };
}

function events(file) {
  return readFile(fs.readFileSync(file)).chunks.flatMap((c) => c.events);
}

test('the segment is named <service>-<pid>-<8 hex>-<n>.wtrace and starts with the process record', () => {
  const { rec, out } = recorder();
  rec.close();
  const [name] = fs.readdirSync(out);
  assert.match(name, new RegExp(`^unit_test-${process.pid}-[0-9a-f]{8}-1\\.wtrace$`));
  const file = readFile(fs.readFileSync(path.join(out, name)));
  assert.deepStrictEqual([file.major, file.minor], [1, 2]);
  const proc = file.chunks[0].records[0];
  assert.strictEqual(proc.type, 1);
  assert.strictEqual(proc.attrs.runtime, 'nodejs');
  assert.strictEqual(proc.attrs.process_id, rec.processId);
  assert.strictEqual(proc.attrs.pid, process.pid);
  assert.strictEqual(proc.attrs.mode, 'full');
  assert.ok('boot_id' in proc.attrs && 'time_ns' in proc.attrs);
  assert.strictEqual(file.chunks[0].events[0].kind, K.CLOCK_ANCHOR);
  const wall = Number(file.chunks[0].events[0].arg / 1_000_000n);
  assert.ok(Math.abs(wall - Date.now()) < 5000, 'the anchor holds wall-clock time');
});

test('events across many batches arrive in order with contiguous sequence numbers', async () => {
  const { rec, out } = recorder();
  const unit = rec.newUnit([['kind', 'async-flow'], ['name', 'f']]);
  for (let i = 0; i < 10_000; i += 1) rec.emit(K.LOCK_ACQUIRED, unit, 1, i, 0);
  rec.flush(); // compressed off the event loop, written when done
  await rec.whenWritten();
  for (let i = 0; i < 10; i += 1) rec.emit(K.LOCK_RELEASE, unit, 1, i, 0);
  rec.close();
  const file = path.join(out, fs.readdirSync(out)[0]);
  const evs = events(file);
  const mine = evs.filter((e) => e.unit === unit);
  assert.strictEqual(mine.length, 10_010);
  assert.deepStrictEqual(mine.slice(0, 10_000).map((e) => Number(e.arg)), [...Array(10_000).keys()]);
  evs.forEach((e, i) => assert.strictEqual(e.seq, i + 1));
  assert.ok(readFile(fs.readFileSync(file)).chunks.some((c) => c.codec === 1), 'a deflate chunk');
});

test('a full buffer drops events, counts them per unit and says so in agent.drop', () => {
  const { rec, out } = recorder({ WILLOWISP_MAX_BUFFER_BYTES: '65536' });
  for (let i = 0; i < 20_000; i += 1) rec.emit(K.SYNC_NOTIFY, 7, 0, 1, 0);
  rec.close();
  const file = readFile(fs.readFileSync(path.join(out, fs.readdirSync(out)[0])));
  const evs = file.chunks.flatMap((c) => c.events);
  const kept = evs.filter((e) => e.kind === K.SYNC_NOTIFY).length;
  const drop = evs.find((e) => e.kind === K.AGENT_DROP);
  assert.ok(kept < 20_000);
  assert.strictEqual(drop.unit, 7);
  assert.strictEqual(kept + Number(drop.arg), 20_000);
  const stats = file.chunks.at(-1).records.find((r) => r.type === 6);
  assert.strictEqual(stats.attrs.dropped, 20_000 - kept);
});

test('an error inside a hook becomes a fault record and an agent.fault event', () => {
  const { rec, out } = recorder();
  rec.fault('test.hook', new Error('boom'));
  rec.close();
  const file = readFile(fs.readFileSync(path.join(out, fs.readdirSync(out)[0])));
  const fault = file.chunks.flatMap((c) => c.records).find((r) => r.type === 5);
  assert.deepStrictEqual(fault.attrs, { message: 'Error: boom', where: 'test.hook' });
  const ev = file.chunks.flatMap((c) => c.events).find((e) => e.kind === K.AGENT_FAULT);
  assert.strictEqual(Number(ev.arg), fault.id);
});

test('bad settings are refused with the variable named', () => {
  const { ConfigError } = require('../lib/config.js');
  for (const [k, v] of [['WILLOWISP_TRACE_RATIO', '2'], ['WILLOWISP_MODE', 'x'], ['WILLOWISP_CLOCK_OFFSET_NS', '1e3'], ['WILLOWISP_BOUNDARIES', 'exit=http:reply']]) {
    assert.throws(() => fromEnv({ [k]: v }), (err) => err instanceof ConfigError && err.message.includes(k));
  }
  const b = fromEnv({ WILLOWISP_BOUNDARIES: 'entry=http:POST /checkout;runtimes=python,nodejs' }).boundaries[0];
  // the same id the Python agent derives: sha256("http:POST /checkout")[:8]
  assert.strictEqual(b.id, require('node:crypto').createHash('sha256').update('http:POST /checkout').digest('hex').slice(0, 8));
});

// A recorder with a few records and `n` events of one unit (a payload of ~29 bytes each).
function busy(rec, n, from = 0) {
  const unit = rec.newUnit([['kind', 'async-flow'], ['name', `f${from}`]]);
  for (let i = 0; i < n; i += 1) rec.emit(K.LOCK_ACQUIRED, unit, 1, from + i, 0);
  return unit;
}

function allArgs(out, kind = K.LOCK_ACQUIRED) {
  const file = readFile(fs.readFileSync(path.join(out, fs.readdirSync(out)[0])));
  return { file, args: file.chunks.flatMap((c) => c.events).filter((e) => e.kind === kind).map((e) => Number(e.arg)) };
}

test('a large payload is compressed and framed on the agent thread, a small one on the pool, in order', async () => {
  const { rec, out } = recorder();
  busy(rec, 10, 0);
  rec.flush(); // small: zlib on the thread pool, no thread started
  await rec.whenWritten();
  assert.strictEqual(rec.compressor.thread, null);
  busy(rec, 5000, 10);
  rec.flush(); // ~150 KiB: the thread starts and compresses it
  assert.notStrictEqual(rec.compressor.thread, null);
  busy(rec, 3, 5010);
  rec.flush(); // once started, every payload goes to the thread
  await rec.whenWritten();
  assert.strictEqual(rec.compressor.pending.size, 0);
  rec.close();
  const { file, args } = allArgs(out);
  assert.deepStrictEqual(args, [...Array(5013).keys()]);
  assert.ok(file.chunks.filter((c) => c.codec === 1).length >= 2, 'deflate chunks');
  assert.ok(!file.chunks.some((c) => c.records.some((r) => r.type === 5)), 'no fault');
});

test('a process that keeps flushing small payloads moves to the agent thread', async () => {
  const { rec, out } = recorder();
  const { POOL_PAYLOADS } = require('../lib/compress.js');
  let n = 0;
  for (let i = 0; i < POOL_PAYLOADS; i += 1) {
    busy(rec, 10, n);
    n += 10;
    rec.flush(); // small: zlib on the thread pool
    await rec.whenWritten();
    assert.strictEqual(rec.compressor.thread, null, `flush ${i + 1}`);
  }
  busy(rec, 10, n);
  n += 10;
  rec.flush(); // one more small one: the process keeps recording, the thread starts
  assert.notStrictEqual(rec.compressor.thread, null);
  await rec.whenWritten();
  rec.close();
  const { file, args } = allArgs(out);
  assert.deepStrictEqual(args, [...Array(n).keys()]);
  assert.ok(!file.chunks.some((c) => c.records.some((r) => r.type === 5)), 'no fault');
});

test('a payload still on the agent thread at exit is written by close, once', () => {
  const { rec, out } = recorder();
  busy(rec, 5000, 0);
  rec.flush(); // posted to the thread
  assert.strictEqual(rec.compressor.pending.size, 1);
  rec.close(); // at exit: compressed synchronously
  assert.deepStrictEqual(allArgs(out).args, [...Array(5000).keys()]);
});

test('the agent thread dying is a fault; what it held is compressed on the pool', async () => {
  const { rec, out } = recorder();
  busy(rec, 5000, 0);
  rec.flush();
  const thread = rec.compressor.thread;
  busy(rec, 5000, 5000);
  rec.flush();
  await thread.terminate();
  await new Promise((resolve) => (rec.compressor.failed ? resolve() : thread.once('exit', () => setImmediate(resolve))));
  assert.strictEqual(rec.compressor.failed, true);
  busy(rec, 5000, 10000);
  rec.flush(); // the pool from now on
  assert.strictEqual(rec.compressor.thread, null);
  await rec.whenWritten();
  rec.close();
  const { file, args } = allArgs(out);
  assert.deepStrictEqual(args, [...Array(15000).keys()]);
  const fault = file.chunks.flatMap((c) => c.records).find((r) => r.type === 5);
  assert.strictEqual(fault.attrs.where, 'compress.thread');
});

test('records are encoded as defined: a bad value is a fault and the chunk stays whole', () => {
  const { rec, out } = recorder();
  const a = rec.newResource([['kind', 'rpc'], ['name', 'before']]);
  const bad = rec.newResource([['kind', 'rpc'], ['name', 'fresh string'], ['oops', { not: 'a value' }]]);
  const c = rec.newResource([['kind', 'rpc'], ['name', 'after']]);
  rec.close();
  const file = readFile(fs.readFileSync(path.join(out, fs.readdirSync(out)[0])));
  const records = file.chunks.flatMap((ch) => ch.records);
  const resources = records.filter((r) => r.type === 3);
  assert.deepStrictEqual(resources.map((r) => [r.id, r.attrs.name]), [[a, 'before'], [c, 'after']]);
  assert.notStrictEqual(bad, 0);
  const fault = records.find((r) => r.type === 5);
  assert.strictEqual(fault.attrs.where, 'record');
});

test('a segment begun after records were encoded starts with its own process record', async () => {
  const { rec, out } = recorder();
  rec.flush(); // the first chunk: process record
  await rec.whenWritten();
  const unit = rec.newUnit([['kind', 'async-flow'], ['name', 'spans two segments']]);
  rec.files.open(); // what a segment reaching 256 MiB does
  rec.emit(K.UNIT_START, unit, 0, 1, 0);
  rec.close();
  const second = fs.readdirSync(out).find((f) => f.endsWith('-2.wtrace'));
  const chunks = readFile(fs.readFileSync(path.join(out, second))).chunks;
  assert.strictEqual(chunks[0].records[0].type, 1);
  assert.strictEqual(chunks[0].records[0].attrs.segment, 2);
  const later = chunks.slice(1).flatMap((ch) => ch.records);
  assert.ok(later.some((r) => r.type === 2 && r.id === unit), 'the unit, after the process record');
});
