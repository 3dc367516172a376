'use strict';
// HTTP/2 client and server streams in a real process: traceparent injected by the client,
// extracted by the server (stream API and compatibility API), the hops linked by span id,
// the handler's downstream call continuing the trace and blocking its flow until answered.

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
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-h2-'));
  try {
    const run = spawnSync(process.execPath, ['--require', path.join(AGENT, 'register.js'), program], {
      env: { ...process.env, WILLOWISP_OUT: out, WILLOWISP_SERVICE: 'h2', ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.strictEqual(run.status, 0, run.stderr);
    assert.strictEqual(run.stderr, '');
    const chunks = fs.readdirSync(out).flatMap((f) => readFile(fs.readFileSync(path.join(out, f))).chunks);
    const records = chunks.flatMap((c) => c.records);
    const byType = (t) => new Map(records.filter((r) => r.type === t).map((r) => [r.id, r.attrs]));
    return { stdout: JSON.parse(run.stdout), events: chunks.flatMap((c) => c.events), units: byType(2), resources: byType(3) };
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

for (const mode of ['full', 'hops']) {
  test(`http2 hops are injected, extracted and linked (${mode} mode)`, () => {
    const t = record(path.join(__dirname, 'programs/http2_hops.js'), { WILLOWISP_MODE: mode });
    assert.strictEqual(t.stdout.status, 200);
    assert.strictEqual(t.stdout.down.status, 201);
    const rpcs = [...t.resources].filter(([, r]) => r.kind === 'rpc');
    // both sides are `node:http2`; the server's resource says how the context came in
    const one = (server, tgt) => {
      const found = rpcs.filter(([, r]) => r.library === 'node:http2' && ('propagation' in r) === server && r.target === tgt);
      assert.strictEqual(found.length, 1, `one ${server ? 'server' : 'client'} ${tgt}`);
      return found[0];
    };
    const [frontClientId, frontClient] = one(false, '/front');
    const [frontServerId, frontServer] = one(true, '/front');
    const [leafClientId, leafClient] = one(false, '/leaf?id=');
    const [leafServerId, leafServer] = one(true, '/leaf?id=');
    // the wire: each client's span id is what its server saw as the parent
    assert.strictEqual(t.stdout.seen, `00-${frontClient.trace_id}-${frontClient.span_id}-01`);
    assert.strictEqual(frontServer.parent_span_id, frontClient.span_id);
    assert.strictEqual(frontServer.propagation, 'w3c');
    assert.strictEqual(t.stdout.down.body, `00-${leafClient.trace_id}-${leafClient.span_id}-01`);
    assert.strictEqual(leafServer.parent_span_id, leafClient.span_id);
    for (const r of [frontServer, leafClient, leafServer]) assert.strictEqual(r.trace_id, frontClient.trace_id, 'one trace');
    assert.strictEqual(leafServer.method, 'GET');

    const ev = (kind, rid) => t.events.filter((e) => e.kind === kind && e.res === rid);
    // the front server's flow made the downstream call and waited for it
    const frontFlow = ev(K.MSG_RECV, frontServerId)[0].unit;
    assert.strictEqual(t.units.get(frontFlow).kind, 'async-flow');
    assert.strictEqual(t.units.get(frontFlow).name, 'GET /front');
    assert.strictEqual(ev(K.MSG_SEND, leafClientId)[0].unit, frontFlow);
    assert.strictEqual(ev(K.UNIT_BLOCK, leafClientId)[0].unit, frontFlow);
    assert.strictEqual(Number(ev(K.RPC_RESPONSE, leafClientId)[0].arg), 201);
    assert.strictEqual(Number(ev(K.RPC_REPLY, leafServerId)[0].arg), 201, 'the compatibility API reply');
    assert.strictEqual(Number(ev(K.RPC_REPLY, frontServerId)[0].arg), 200, 'the stream API reply');
    assert.strictEqual(Number(ev(K.RPC_RESPONSE, frontClientId)[0].arg), 200);
    // both server flows ended cleanly
    for (const rid of [frontServerId, leafServerId]) {
      const flow = ev(K.MSG_RECV, rid)[0].unit;
      const end = t.events.filter((e) => e.kind === K.UNIT_END && e.unit === flow);
      assert.deepStrictEqual(end.map((e) => Number(e.arg)), [0]);
    }
    assert.ok(!t.events.some((e) => e.kind === K.AGENT_FAULT), 'no agent faults');
  });
}
