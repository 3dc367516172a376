'use strict';
// A front service calling a downstream one (both in this process), sent 100 requests of
// which every tenth carries a sampled traceparent; then it waits for the agent's warm-up
// of the recording code to finish, prints `warm N` and exits when its stdin closes.
// Run with the agent in hops mode and a trace ratio strictly between 0 and 1.

const http = require('node:http');
const path = require('node:path');
const { warm } = require(path.join(__dirname, '..', '..', 'lib', 'http.js'));

const agent = new http.Agent({ keepAlive: true });

function get(port, p, headers) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, headers, agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      })
      .on('error', reject);
  });
}

function listen(handler) {
  return new Promise((resolve) => {
    const server = http.createServer(handler);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function main() {
  const back = await listen((req, res) => res.end('stock\n'));
  const front = await listen(async (req, res) => {
    await get(back.address().port, '/stock?id=1', {});
    res.end('ok\n');
  });
  for (let i = 0; i < 100; i += 1) {
    const flags = i % 10 === 0 ? '01' : '00';
    const id = String(1e15 + i);
    await get(front.address().port, `/order?n=${i}`, { traceparent: `00-${id}${id}-${id}-${flags}` });
  }
  while (warm.done < 3000) await new Promise((r) => setImmediate(r));
  process.stdout.write(`warm ${warm.done}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => {
    agent.destroy();
    front.close();
    back.close();
  });
}

main();
