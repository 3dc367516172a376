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
  return { stdout: JSON.parse(run.stdout), events: chunks.flatMap((c) => c.events), units: byType(2), resources: byType(3), locations: byType(4) };
}

test('a tour of the hooks records linked hops, a worker, accesses and messages', () => {
  const t = record(path.join(__dirname, 'programs/hooks_tour.js'));
  const rpcs = [...t.resources.values()].filter((r) => r.kind === 'rpc');
  for (const [library, target] of [['undici', '/fetched?token='], ['node:http', '/got']]) {
    // client and server of node:http share the label: the server side is the one that
    // says how the context came in (`propagation`)
    const client = rpcs.find((r) => r.library === library && !('propagation' in r));
    assert.ok(client, `a ${library} client resource`);
    assert.strictEqual(client.target, target, 'query values are elided');
    const server = rpcs.find((r) => r.library === 'node:http' && 'propagation' in r && r.parent_span_id === client.span_id);
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

test('a flow awaiting a promise another flow settles gets an edge from it (full mode)', () => {
  const t = record(path.join(__dirname, 'programs/promise_edges.js'));
  const unitOf = (name) => [...t.units].find(([, u]) => u.kind === 'async-flow' && u.name === name)[0];
  assert.strictEqual(t.stdout.waiterGot, 42);
  const [waiter, settler, alone] = ['waiter', 'settler', 'alone'].map(unitOf);
  const future = [...t.resources].find(([, r]) => r.kind === 'future' && r.name === 'promises settled by settler');
  assert.ok(future, 'a future resource for the settling flow');
  const on = t.events.filter((e) => e.res === future[0]);
  assert.deepStrictEqual(on.map((e) => [e.kind, e.unit]), [[K.SYNC_NOTIFY, settler], [K.UNIT_WAKE, waiter]]);
  assert.ok(on[0].seq < on[1].seq);
  const woken = t.events.filter((e) => e.kind === K.UNIT_WAKE).map((e) => e.unit);
  assert.ok(!woken.includes(alone) && !woken.includes(settler), 'no edge for a flow resolving its own promises');
});

test('child processes get TRACEPARENT and the agent, and the parent records proc.spawn', () => {
  // started through NODE_OPTIONS, as `willowisp run` does, so the children inherit the agent
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-spawn-'));
  const run = spawnSync(process.execPath, [path.join(__dirname, 'programs/spawn_children.js')], {
    env: { ...process.env, NODE_OPTIONS: `--require ${path.join(AGENT, 'register.js')}`, WILLOWISP_OUT: out, WILLOWISP_SERVICE: 'parent' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.strictEqual(run.status, 0, run.stderr);
  const files = fs.readdirSync(out);
  const read = (f) => readFile(fs.readFileSync(path.join(out, f))).chunks;
  const parent = read(files.find((f) => f.startsWith('parent-')));
  fs.rmSync(out, { recursive: true, force: true });
  const stdout = JSON.parse(run.stdout);
  const ways = ['spawn', 'ownEnv', 'execFile', 'spawnSync', 'execSync'];
  assert.deepStrictEqual(Object.keys(stdout).sort(), ways.slice().sort());
  assert.strictEqual(files.length, 1 + ways.length, 'every child recorded itself');
  const records = parent.flatMap((c) => c.records);
  const events = parent.flatMap((c) => c.events);
  const processId = records.find((r) => r.type === 1).attrs.process_id;
  const spawns = records.filter((r) => r.type === 3 && r.attrs.kind === 'spawn');
  assert.strictEqual(spawns.length, ways.length);
  for (const way of ways) {
    const child = stdout[way];
    assert.ok(child.opts, `${way}: NODE_OPTIONS with the agent reached the child`);
    assert.strictEqual(child.parent, processId);
    const spanId = child.tp.split('-')[2];
    const res = spawns.find((r) => r.attrs.span_id === spanId);
    assert.ok(res, `${way}: the child's TRACEPARENT is a recorded spawn`);
    assert.ok(events.some((e) => e.kind === K.PROC_SPAWN && e.res === res.id));
  }
  assert.strictEqual(new Set(ways.map((w) => stdout[w].tp.split('-')[1])).size, 1, 'one trace');
});

test("a flow's wait for a reply starts where it ends the request, in that step", () => {
  const t = record(path.join(__dirname, 'programs/request_wait.js'));
  const sender = [...t.units].find(([, u]) => u.kind === 'async-flow' && u.name === 'sender')[0];
  const rid = [...t.resources].find(([, r]) => r.kind === 'rpc' && r.library === 'node:http' && !('propagation' in r))[0];
  const mine = t.events.filter((e) => e.unit === sender);
  const at = (pred) => mine.findIndex(pred);
  const send = at((e) => e.kind === K.MSG_SEND && e.res === rid);
  const marker = at((e) => e.kind === K.DATA_ACCESS);
  const block = at((e) => e.kind === K.UNIT_BLOCK && e.res === rid);
  const response = at((e) => e.kind === K.RPC_RESPONSE && e.res === rid);
  assert.ok(send >= 0 && send < marker && marker < block && block < response, JSON.stringify(mine.map((e) => e.kind)));
  assert.ok(!mine.slice(marker, block).some((e) => e.kind === K.UNIT_YIELD), 'the block is in the step that called end()');
});

test('hops mode: client sends carry the line that sent them, learned per call site', () => {
  const program = path.join(__dirname, 'programs/hops_client_sites.js');
  const t = record(program, { WILLOWISP_MODE: 'hops' });
  const { lines, captures, requests } = t.stdout;
  const sends = t.events.filter((e) => e.kind === K.MSG_SEND && t.resources.get(e.res)?.kind === 'rpc');
  assert.strictEqual(sends.length, requests, 'every request recorded (trace ratio 1)');
  for (const [target, line] of [['/one', lines.one], ['/two?id=', lines.two]]) {
    const mine = sends.filter((e) => t.resources.get(e.res).target === target);
    assert.ok(mine.length > 0, target);
    for (const e of mine) {
      const where = t.locations.get(e.loc);
      assert.ok(where, `${target}: a location`);
      assert.deepStrictEqual([where.file, where.line], [program, line], target);
      assert.strictEqual(t.resources.get(e.res).loc, e.loc);
    }
  }
  // the first 16 calls of a site capture a stack, then its line is reused: not one per request
  assert.ok(captures <= 2 * 16, `${captures} stack captures for ${requests} requests`);
});

test('each fetch send carries the line of its own fetch() call, also two in flight at once', () => {
  const program = path.join(__dirname, 'programs/fetch_sites.js');
  const rounds = 20;
  const t = record(program, { WILLOWISP_MODE: 'hops' });
  const { lines, spans } = t.stdout;
  assert.deepStrictEqual([t.stdout.name, t.stdout.length], ['fetch', 1], 'the wrapper looks like fetch');
  assert.strictEqual(t.stdout.bad, 'TypeError: Failed to parse URL from no scheme', 'a bad call fails as it would');
  const sends = t.events.filter((e) => e.kind === K.MSG_SEND && t.resources.get(e.res)?.library === 'undici');
  assert.strictEqual(sends.length, 2 * rounds, 'every fetch recorded');
  const seen = { left: 0, right: 0 };
  for (const e of sends) {
    const client = t.resources.get(e.res);
    assert.strictEqual(client.target, '/same?from=');
    const side = spans[client.span_id];
    assert.ok(side, `the server saw span ${client.span_id}`);
    const where = t.locations.get(e.loc);
    assert.ok(where, `${side}: a location`);
    assert.deepStrictEqual([where.file, where.line], [program, lines[side]], side);
    assert.strictEqual(client.loc, e.loc);
    seen[side] += 1;
  }
  assert.deepStrictEqual(seen, { left: rounds, right: rounds });
  assert.ok(!t.events.some((e) => e.kind === K.AGENT_FAULT), 'no agent faults');
});
