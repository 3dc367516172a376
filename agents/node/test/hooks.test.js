'use strict';
// The hooks in a real process started with `--require register.js`: trace context goes out
// on fetch and http.get and is recorded on both sides, a worker thread is a unit, and the
// public API records data accesses and linked messages.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const K = require('../lib/kinds.js');
const { readFile } = require('./reader.js');

const AGENT = path.resolve(__dirname, '..');

function record(program, env = {}) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-hooks-'));
  const run = spawnSync(process.execPath, ['--require', path.join(AGENT, 'register.js'), program], {
    env: { ...process.env, WILLOWISP_OUT: out, WILLOWISP_SERVICE: 'tour', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.strictEqual(run.status, 0, run.stderr);
  assert.strictEqual(run.stderr, '');
  const files = fs.readdirSync(out);
  assert.strictEqual(files.length, 1);
  const chunks = readFile(fs.readFileSync(path.join(out, files[0]))).chunks;
  fs.rmSync(out, { recursive: true, force: true });
  const records = chunks.flatMap((c) => c.records);
  const byType = (t) => new Map(records.filter((r) => r.type === t).map((r) => [r.id, r.attrs]));
  return { stdout: JSON.parse(run.stdout), events: chunks.flatMap((c) => c.events), units: byType(2), resources: byType(3) };
}

test('a tour of the hooks records linked hops, a worker, accesses and messages', () => {
  const t = record(path.join(__dirname, 'programs/hooks_tour.js'));
  const rpcs = [...t.resources.values()].filter((r) => r.kind === 'rpc');
  for (const [library, target] of [['undici', '/fetched?token='], ['http', '/got']]) {
    const client = rpcs.find((r) => r.library === library);
    assert.ok(client, `a ${library} client resource`);
    assert.strictEqual(client.target, target, 'query values are elided');
    const server = rpcs.find((r) => r.library === 'http.server' && r.parent_span_id === client.span_id);
    assert.ok(server, `the server side of the ${library} request`);
    assert.strictEqual(server.trace_id, client.trace_id);
    assert.ok(t.stdout[library === 'undici' ? 'viaFetch' : 'viaGet'].includes(client.span_id));
    const rid = [...t.resources].find(([, r]) => r === client)[0];
    const response = t.events.find((e) => e.kind === K.RPC_RESPONSE && e.res === rid);
    assert.strictEqual(Number(response.arg), 201);
  }
  const worker = [...t.units].find(([, u]) => u.kind === 'worker');
  assert.ok(worker, 'a worker unit');
  const kinds = t.events.filter((e) => e.unit === worker[0]).map((e) => e.kind);
  assert.deepStrictEqual(kinds, [K.UNIT_START, K.UNIT_END]);
  assert.ok(t.events.some((e) => e.kind === K.UNIT_CREATE && Number(e.arg) === worker[0]));

  const flow = [...t.units].find(([, u]) => u.kind === 'async-flow' && u.name === 'checkout')[0];
  const cart = [...t.resources].find(([, r]) => r.kind === 'data' && r.name === 'cart:42');
  assert.strictEqual(cart[1].store, 'api');
  const accesses = t.events.filter((e) => e.kind === K.DATA_ACCESS && e.res === cart[0]);
  assert.deepStrictEqual(accesses.map((e) => Number(e.arg)), [0, 1, 0]);
  assert.strictEqual(accesses[0].unit, flow);
  assert.ok(accesses.every((e) => e.loc > 0), 'accesses are located at the program line');

  const send = [...t.resources.values()].find((r) => r.kind === 'message' && r.name === 'send orders/new');
  const recv = [...t.resources.values()].find((r) => r.kind === 'message' && r.name === 'recv orders/new');
  assert.strictEqual(recv.parent_span_id, send.span_id);
  assert.strictEqual(recv.trace_id, send.trace_id);
  assert.strictEqual(send.message_id, 'm-1');
  assert.strictEqual(t.stdout.refused, true);
  assert.ok(!t.events.some((e) => e.kind === K.AGENT_FAULT), 'no agent faults');
});

test('hops mode with a zero trace ratio records no hop but still propagates the decision', () => {
  const t = record(path.join(__dirname, 'programs/hooks_tour.js'), { WILLOWISP_MODE: 'hops', WILLOWISP_TRACE_RATIO: '0' });
  assert.ok(t.stdout.viaGet.endsWith('-00'), `unsampled flag travels: ${t.stdout.viaGet}`);
  assert.strictEqual([...t.resources.values()].filter((r) => r.kind === 'rpc').length, 0);
});

test('WILLOWISP_DISABLED=1 leaves the program alone: no file, no hooks', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-off-'));
  const run = spawnSync(process.execPath, ['--require', path.join(AGENT, 'register.js'), path.join(__dirname, 'programs/hooks_tour.js')], {
    env: { ...process.env, WILLOWISP_OUT: out, WILLOWISP_DISABLED: '1' },
    encoding: 'utf8',
  });
  assert.strictEqual(run.status, 0, run.stderr);
  assert.strictEqual(JSON.parse(run.stdout).viaGet, 'none');
  assert.deepStrictEqual(fs.readdirSync(out), []);
  fs.rmSync(out, { recursive: true, force: true });
});

test('SIGTERM: the agent flushes, then the signal ends the process as it would have', async () => {
  const { spawn } = require('node:child_process');
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-sig-'));
  const child = spawn(process.execPath, ['--require', path.join(AGENT, 'register.js'), path.join(__dirname, 'programs/wait_for_signal.js')], {
    env: { ...process.env, WILLOWISP_OUT: out, WILLOWISP_FLUSH_MS: '100' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve) => child.stdout.once('data', resolve));
  child.kill('SIGTERM');
  const [code, signal] = await new Promise((resolve) => child.once('exit', (c, s) => resolve([c, s])));
  assert.deepStrictEqual([code, signal], [null, 'SIGTERM']);
  const chunks = readFile(fs.readFileSync(path.join(out, fs.readdirSync(out)[0]))).chunks;
  const data = chunks.flatMap((c) => c.records).find((r) => r.type === 3 && r.attrs.name === 'before-signal');
  assert.ok(data, 'the access recorded before the signal is in the file');
  assert.ok(chunks.flatMap((c) => c.events).some((e) => e.kind === K.DATA_ACCESS && e.res === data.id));
  fs.rmSync(out, { recursive: true, force: true });
});
