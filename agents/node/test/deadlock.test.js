'use strict';
// A real program (tests/agents/programs/node/mutex_deadlock.js) whose two request flows
// deadlock through two async-mutex Mutexes, recorded by the agent and analyzed by
// `willowisp analyze`: the deadlock is found, naming both locks.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const AGENT = path.resolve(__dirname, '..');
const ROOT = path.resolve(AGENT, '../..');
const PROGRAM = path.join(ROOT, 'tests/agents/programs/node/mutex_deadlock.js');

// The Python that has Willowisp: WILLOWISP_PYTHON, else the dev venv, else python3.
function python() {
  if (process.env.WILLOWISP_PYTHON) return process.env.WILLOWISP_PYTHON;
  return fs.existsSync('/tmp/v/bin/python') ? '/tmp/v/bin/python' : 'python3';
}

test('two async flows deadlocked on two async-mutex locks are a deadlock finding', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-node-'));
  try {
    const run = spawnSync(process.execPath, ['--require', path.join(AGENT, 'register.js'), PROGRAM], {
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
});
