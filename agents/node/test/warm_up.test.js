'use strict';
// The warm-up of the recording code (lib/http.js warmUp): with a trace ratio below 1, a
// server that has served 64 requests rehearses the recording of a hop into a scratch batch
// and encoder, so V8 optimizes that code although it runs for the sampled requests only.
// Checked in a real process: the functions are optimized (V8's own --trace-opt report)
// after 100 requests of which 10 were recorded, and nothing of the rehearsal reaches the
// trace (units, resources and events are exactly those of the 10 recorded requests).

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { readFile } = require('./reader.js');

const AGENT = path.resolve(__dirname, '..');
const PROGRAM = path.join(__dirname, 'programs', 'warm_server.js');
// The rehearsal's driver and the recording functions it calls that V8 compiles on their own
// (a small one such as clientSend is often inlined into rehearseHop instead: optimized all
// the same, but with no line of its own in V8's report).
const REHEARSED = ['rehearseHop', 'recordServer', 'newFlow', 'headersJson', 'write', 'newUnit'];

// Runs the program; resolves once `until(stdout)` holds (then closes its stdin) or it
// exits, with its output and exit code.
function run(out, nodeFlags, until) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeFlags, '--require', path.join(AGENT, 'register.js'), PROGRAM], {
      env: { ...process.env, WILLOWISP_OUT: out, WILLOWISP_MODE: 'hops', WILLOWISP_TRACE_RATIO: '0.5', NODE_OPTIONS: '' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let ended = false;
    const deadline = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (!ended && until(stdout)) {
        ended = true;
        child.stdin.end();
      }
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(deadline);
      resolve({ code, stdout, stderr });
    });
  });
}

function optimized(stdout, name) {
  return new RegExp(`completed (compiling|optimizing) .*<JSFunction ${name} .*\\(target (TURBOFAN|MAGLEV)\\)`).test(stdout);
}

test('the rehearsed recording code is optimized after 10 recorded requests in 100', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-warm-'));
  try {
    const r = await run(out, ['--trace-opt'], (s) => s.includes('warm ') && REHEARSED.every((n) => optimized(s, n)));
    assert.strictEqual(r.code, 0, r.stderr);
    const missing = REHEARSED.filter((n) => !optimized(r.stdout, n));
    assert.deepStrictEqual(missing, [], 'not optimized by V8');
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test('nothing of the rehearsal reaches the trace', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-warm-'));
  try {
    const r = await run(out, [], (s) => s.includes('warm '));
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /^warm 3000$/m);
    const files = fs.readdirSync(out).filter((f) => f.endsWith('.wtrace'));
    assert.strictEqual(files.length, 1);
    const { chunks } = readFile(fs.readFileSync(path.join(out, files[0])));
    const records = chunks.flatMap((c) => c.records);
    const events = chunks.flatMap((c) => c.events);
    const attrs = (r) => r.attrs;
    const units = records.filter((r) => r.type === 2);
    const flows = units.filter((u) => attrs(u).kind === 'async-flow');
    const rpcs = records.filter((r) => r.type === 3 && attrs(r).kind === 'rpc');
    // 10 recorded requests: a front flow and a downstream flow each; the program's call,
    // the front server resource, its downstream call and the downstream server resource
    assert.strictEqual(flows.length, 20);
    assert.strictEqual(rpcs.length, 40);
    assert.deepStrictEqual(rpcs.filter((r) => /rehears|downstream/.test(attrs(r).name)), []);
    // numbers given again after the rehearsal: no gap, every event on a defined unit
    const ids = units.map((u) => Number(u.id)).sort((a, b) => a - b);
    assert.deepStrictEqual(ids, ids.map((_, i) => ids[0] + i));
    const defined = new Set([1, ...ids]);
    assert.deepStrictEqual(events.filter((e) => !defined.has(Number(e.unit))), []);
    const seqs = events.map((e) => Number(e.seq)).sort((a, b) => a - b);
    assert.deepStrictEqual(seqs, seqs.map((_, i) => seqs[0] + i));
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
