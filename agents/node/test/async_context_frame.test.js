'use strict';
// Where AsyncLocalStorage is an AsyncContextFrame (Node 24 by default), `hops` mode adds no
// async hook at all: the flows ride on the frame, and no JavaScript runs per async
// resource or promise. On Node 20 (and with --no-async-context-frame) the only init hook
// is AsyncLocalStorage's own. `full` mode's step hook has before/after and never init.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const AGENT = path.resolve(__dirname, '..');
const PROGRAM = path.join(__dirname, 'programs/hook_state.js');

function hooks(mode, extraArgs = []) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-acf-'));
  try {
    const args = ['--expose-internals', ...extraArgs];
    if (mode !== null) args.push('--require', path.join(AGENT, 'register.js'));
    const run = spawnSync(process.execPath, [...args, PROGRAM], {
      env: { ...process.env, NODE_OPTIONS: '', WILLOWISP_OUT: out, WILLOWISP_MODE: mode ?? 'hops', WILLOWISP_CONTROL: 'off' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.strictEqual(run.status, 0, run.stderr);
    return JSON.parse(run.stdout.trim().split('\n').at(-1));
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

test('hops mode adds no async hook where AsyncLocalStorage is an AsyncContextFrame', () => {
  const bare = hooks(null);
  const hops = hooks('hops');
  const full = hooks('full');
  assert.strictEqual(hops.frame, bare.frame);
  if (hops.frame) {
    assert.deepStrictEqual([hops.init, hops.any], [bare.init, bare.any], 'hops: nothing more than without the agent');
    assert.strictEqual(full.init, false, 'full: the step hook has no init callback');
  } else {
    assert.strictEqual(hops.init, true, "AsyncLocalStorage's init hook (Node 20)");
  }
  assert.strictEqual(full.any, true, "full: the step hook's before/after");
  if (process.allowedNodeEnvironmentFlags.has('--no-async-context-frame')) {
    // Node 24 turned back to Node 20's AsyncLocalStorage: its init hook is back
    const old = hooks('hops', ['--no-async-context-frame']);
    assert.deepStrictEqual([old.frame, old.init], [false, true]);
  }
});
