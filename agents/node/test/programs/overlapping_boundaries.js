'use strict';
// The observed program of boundary_costs.test.js (run with two boundaries declared,
// `GET /a` and `GET /b`): two `/a` requests and one `/b` are in flight at once, so
// instances of the same boundary and of the other overlap; each `/a` handler waits until
// `/b` has come in, `/b` lets them go, and `/c` (no boundary) runs beside them. Says
// `ready` once every response is in and its agent's control descriptor is in place,
// then keeps itself alive until its stdin ends.

const fs = require('node:fs');
const http = require('node:http');

let bArrived;
const bIn = new Promise((resolve) => (bArrived = resolve));
let aArrived;
const asIn = new Promise((resolve) => (aArrived = resolve));
let as = 0;

async function work(n) {
  let acc = 0;
  for (let i = 0; i < n; i += 1) acc += await Promise.resolve(i);
  return acc;
}

const server = http.createServer(async (req, res) => {
  if (req.url === '/a') {
    as += 1;
    if (as === 2) aArrived();
    await bIn; // an /a instance stays open while /b runs
  }
  if (req.url === '/b') bArrived();
  const n = await work(req.url === '/b' ? 5 : 3);
  await new Promise((resolve) => setTimeout(resolve, 1));
  res.end(`${req.url} ${n}\n`);
});

function get(port, path) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        res.resume();
        res.on('end', resolve);
      })
      .on('error', reject);
  });
}

function descriptorReady() {
  const dir = process.env.WILLOWISP_RUNTIME_DIR;
  return fs.readdirSync(dir).some((f) => f.startsWith(`${process.pid}-`) && f.endsWith('.json'));
}

const keepAlive = setInterval(() => {}, 1000);
server.listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  const a = [get(port, '/a'), get(port, '/a')];
  await asIn; // /b once both /a handlers are waiting
  await Promise.all([...a, get(port, '/b'), get(port, '/c')]);
  server.close();
  (function announce() {
    if (!descriptorReady()) {
      setImmediate(announce);
      return;
    }
    process.stdout.write('ready\n');
  })();
});

process.stdin.resume();
process.stdin.on('end', () => {
  clearInterval(keepAlive);
  process.stdin.pause();
});
