'use strict';
// The agent observes a client request's end without listening to it: an 'error' the
// program does not handle is thrown as it would be without the agent, and the failed
// request is still recorded (rpc.response -1).

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const K = require('../lib/kinds.js');
const { readFile } = require('./reader.js');

const AGENT = path.resolve(__dirname, '..');
const PROGRAM = path.join(__dirname, 'programs/unhandled_request_error.js');

test('an unhandled request error still ends the program, and is recorded', () => {
  const bare = spawnSync(process.execPath, [PROGRAM], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, NODE_OPTIONS: '' } });
  assert.strictEqual(bare.status, 1);
  assert.match(bare.stderr, /ECONNREFUSED/);

  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-errors-'));
  try {
    const run = spawnSync(process.execPath, ['--require', path.join(AGENT, 'register.js'), PROGRAM], {
      env: { ...process.env, WILLOWISP_OUT: out, WILLOWISP_SERVICE: 'errors' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.strictEqual(run.status, bare.status, 'the same exit status as without the agent');
    assert.match(run.stderr, /ECONNREFUSED/);
    assert.doesNotMatch(run.stderr, /willowisp/);
    const chunks = fs.readdirSync(out).flatMap((f) => readFile(fs.readFileSync(path.join(out, f))).chunks);
    const records = chunks.flatMap((c) => c.records);
    const events = chunks.flatMap((c) => c.events);
    const client = records.find((r) => r.type === 3 && r.attrs.kind === 'rpc' && r.attrs.target === '/gone?x=');
    assert.ok(client, 'the request is recorded');
    const responses = events.filter((e) => e.kind === K.RPC_RESPONSE && e.res === client.id);
    assert.deepStrictEqual(responses.map((e) => Number(e.arg)), [-1]);
    assert.ok(!events.some((e) => e.kind === K.AGENT_FAULT), 'no agent faults');
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
