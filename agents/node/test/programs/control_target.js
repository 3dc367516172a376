'use strict';
// The observed program of control.test.js: says `ready` once its agent's control
// descriptor is in place, reports any exception that reaches it, and keeps itself alive
// (a ref'd interval) only until its stdin ends; then it ends by itself, the agent's
// channel (even with a connection open) must not keep it alive.

const fs = require('node:fs');

let uncaught = 0;
process.on('uncaughtException', (err) => {
  uncaught += 1;
  process.stdout.write(`UNCAUGHT ${err && err.stack}\n`);
});
process.on('unhandledRejection', (err) => {
  uncaught += 1;
  process.stdout.write(`UNHANDLED ${err && err.stack}\n`);
});

const keepAlive = setInterval(() => {}, 1000);
let ticks = 0;
const work = setInterval(() => {
  ticks += 1; // the program keeps doing its own work while garbage arrives
}, 5);

(function announce() {
  const dir = process.env.WILLOWISP_RUNTIME_DIR;
  if (!fs.readdirSync(dir).some((f) => f.startsWith(`${process.pid}-`) && f.endsWith('.json'))) {
    setImmediate(announce);
    return;
  }
  process.stdout.write('ready\n');
})();

process.stdin.resume();
process.stdin.on('end', () => {
  clearInterval(keepAlive);
  clearInterval(work);
  process.stdin.pause();
  process.stdout.write(`done uncaught=${uncaught} ticks=${ticks > 0}\n`);
});
