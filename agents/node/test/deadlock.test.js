'use strict';
// A real program (tests/agents/programs/node/mutex_deadlock.js) whose two request flows
// deadlock through two async-mutex Mutexes, recorded by the agent and analyzed by
// `willowisp analyze`: the deadlock is found, naming both locks. The same program as an ES
// module (test/programs/mutex_deadlock.mjs: async-mutex imported, its own ESM build) too.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const AGENT = path.resolve(__dirname, '..');
const ROOT = path.resolve(AGENT, '../..');
const PROGRAM = path.join(ROOT, 'tests/agents/programs/node/mutex_deadlock.js');
const ESM_PROGRAM = path.join(__dirname, 'programs', 'mutex_deadlock.mjs');

// The Python that has Willowisp: WILLOWISP_PYTHON, else the dev venv, else python3.
function python() {
  if (process.env.WILLOWISP_PYTHON) return process.env.WILLOWISP_PYTHON;
  return fs.existsSync('/tmp/v/bin/python') ? '/tmp/v/bin/python' : 'python3';
}

function deadlockFound(program) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-node-'));
  try {
    const run = spawnSync(process.execPath, ['--require', path.join(AGENT, 'register.js'), program], {
      env: { ...process.env, WILLOWISP_OUT: out, NODE_PATH: path.join(AGENT, 'node_modules') },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.strictEqual(run.status, 0, run.stderr);
    assert.match(run.stdout, /both flows blocked: true/);
    const analyzed = spawnSync(python(), ['-m', 'willowisp', 'analyze', out, '--format', 'json'], {
      env: { ...process.env, PYTHONPATH: path.join(ROOT, 'src') },
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.ok([0, 1].includes(analyzed.status), `analyze failed: ${analyzed.stderr}`);
    const doc = JSON.parse(analyzed.stdout);
    const deadlocks = doc.findings.filter((f) => f.kind === 'deadlock');
    assert.strictEqual(deadlocks.length, 1, JSON.stringify(doc.findings.map((f) => f.kind)));
    assert.deepStrictEqual(deadlocks[0].resources.map((r) => r.name).sort(), ['accounts', 'ledger']);
    assert.ok(deadlocks[0].units.every((u) => u.kind === 'async-flow' && u.runtime === 'nodejs'));
    assert.strictEqual(doc.trace.agent_faults, 0);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

test('two async flows deadlocked on two async-mutex locks are a deadlock finding', () => {
  deadlockFound(PROGRAM);
});

test('the same with async-mutex imported as an ES module', () => {
  deadlockFound(ESM_PROGRAM);
});

// The ESM load hook is registered only where a package the agent patches can be found.
function esmHookIn(cwd) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-node-'));
  try {
    const run = spawnSync(
      process.execPath,
      ['--require', path.join(AGENT, 'register.js'), '-e', "process.stdout.write(typeof globalThis[Symbol.for('willowisp.esm')])"],
      { cwd, env: { ...process.env, WILLOWISP_OUT: out }, encoding: 'utf8', timeout: 60_000 },
    );
    assert.strictEqual(run.status, 0, run.stderr);
    return run.stdout;
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

test('a program where async-mutex cannot be found gets no ESM load hook', () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-node-empty-'));
  try {
    assert.strictEqual(esmHookIn(empty), 'undefined');
    // Node 20 (off-thread hooks, ~40 ms a start) only for an ES module main script
    assert.strictEqual(esmHookIn(AGENT), typeof require('node:module').registerHooks === 'function' ? 'function' : 'undefined');
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
  }
});

test('an ES module main script is told by its extension or its package type', () => {
  const { entryIsModule } = require('../lib/esm.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-node-type-'));
  try {
    assert.strictEqual(entryIsModule(path.join(dir, 'a.mjs')), true);
    assert.strictEqual(entryIsModule(path.join(dir, 'a.cjs')), false);
    fs.mkdirSync(path.join(dir, 'app', 'src'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'app', 'package.json'), '{"type": "module"}');
    assert.strictEqual(entryIsModule(path.join(dir, 'app', 'src', 'main.js')), true);
    fs.writeFileSync(path.join(dir, 'app', 'package.json'), '{"name": "x"}');
    assert.strictEqual(entryIsModule(path.join(dir, 'app', 'src', 'main.js')), false);
    fs.writeFileSync(path.join(dir, 'app', 'package.json'), '{not json');
    assert.strictEqual(entryIsModule(path.join(dir, 'app', 'src', 'main.js')), false);
    assert.strictEqual(entryIsModule(undefined), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the load hook appends the hand-over to the ES modules of the package only', () => {
  const { transform } = require('../lib/esm.js');
  const url = 'file:///app/node_modules/async-mutex/index.mjs';
  const src = 'export class Mutex {}\n';
  const out = transform(url, { format: 'module', source: Buffer.from(src) });
  assert.ok(out.source.startsWith(src));
  assert.match(out.source, /import \* as __willowisp_self from "file:\/\/\/app\/node_modules\/async-mutex\/index\.mjs";/);
  assert.match(out.source, /\?\.\("async-mutex", __willowisp_self\);/);
  const cjs = { format: 'commonjs', source: src };
  assert.strictEqual(transform(url, cjs), cjs);
  const other = { format: 'module', source: src };
  assert.strictEqual(transform('file:///app/node_modules/left-pad/index.mjs', other), other);
  assert.strictEqual(transform('node:fs', other), other);
});
