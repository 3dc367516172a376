'use strict';
// Two requests to one service deadlock through two async-mutex Mutexes: POST /transfer
// holds `accounts` and then wants `ledger`; POST /audit holds `ledger` and then wants
// `accounts`. The interleaving is forced (each handler waits until the other holds its
// first lock), so the deadlock happens on every run. Once both handlers are stuck, the
// program says so and exits 0; the agent's exit flush records the stuck state.

const http = require('node:http');
// the ES module build when test/programs/mutex_deadlock.mjs imported it and runs this
const { Mutex } = globalThis.WISP_ASYNC_MUTEX || require('async-mutex');

const accounts = new Mutex();
const ledger = new Mutex();

function signal() {
  let fire;
  const done = new Promise((resolve) => (fire = resolve));
  return { done, fire };
}
const transferHolds = signal();
const auditHolds = signal();

async function transfer(res) {
  await accounts.acquire();
  transferHolds.fire();
  await auditHolds.done;
  await ledger.acquire(); // never returns: audit holds ledger and waits for accounts
  res.end('transferred');
}

async function audit(res) {
  await ledger.acquire();
  auditHolds.fire();
  await transferHolds.done;
  await accounts.acquire(); // never returns: transfer holds accounts and waits for ledger
  res.end('audited');
}

const server = http.createServer((req, res) => {
  if (req.url === '/transfer') transfer(res);
  else audit(res);
});

server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address();
  for (const path of ['/transfer', '/audit']) {
    http.request({ host: '127.0.0.1', port, path, method: 'POST' }).on('error', () => {}).end();
  }
  await Promise.all([transferHolds.done, auditHolds.done]);
  // both handlers now run `await x.acquire()` in the microtasks queued behind these
  await new Promise((resolve) => setImmediate(resolve));
  console.log('both flows blocked:', accounts.isLocked() && ledger.isLocked());
  process.exit(0);
});
