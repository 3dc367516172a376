'use strict';
// Starts children every way child_process offers, inside a flow: each prints the
// TRACEPARENT it got and whether the agent's NODE_OPTIONS reached it, even through an
// environment the program built itself.
const cp = require('node:child_process');
const { flow } = require('../../index.js');

const show = 'process.stdout.write(JSON.stringify({tp: process.env.TRACEPARENT || "", opts: (process.env.NODE_OPTIONS || "").includes("register.js"), parent: process.env.WILLOWISP_PARENT_PROCESS || ""}))';
const node = process.execPath;

flow('starter', async () => {
  const out = {};
  const done = (name) => (p) => new Promise((resolve) => {
    let s = '';
    p.stdout.on('data', (d) => (s += d));
    p.on('close', () => resolve((out[name] = JSON.parse(s))));
  });
  await done('spawn')(cp.spawn(node, ['-e', show]));
  await done('ownEnv')(cp.spawn(node, ['-e', show], { env: { PATH: process.env.PATH } }));
  await new Promise((resolve) => cp.execFile(node, ['-e', show], (err, stdout) => resolve((out.execFile = JSON.parse(stdout)))));
  out.spawnSync = JSON.parse(cp.spawnSync(node, ['-e', show], { encoding: 'utf8' }).stdout);
  out.execSync = JSON.parse(cp.execSync(`"${node}" -e '${show}'`, { encoding: 'utf8' }));
  process.stdout.write(JSON.stringify(out));
});
