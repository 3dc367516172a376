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
  rec.flush(); // compressed on the thread pool, written when done
  await new Promise((resolve) => setTimeout(resolve, 200));
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
