'use strict';
// pricing: the demo shop's Node worker (willowisp.demo.shop starts it with the shop's port
// and the edge gateway's port). An HTTP server:
//
//   /quote?order=N  prices the order's item, publishes the price on the shop's work queue
//                   (POST /jobs; the agent's sendMessage puts the trace context into the
//                   job's headers) and records it with the ledger through the shop's edge
//                   gateway (POST /prices; seeded bug: the gateway drops the trace header)
//   /d              acquire the async-mutex Mutex `priceTable`, print "node-d-holding",
//                   call the shop's /hold (the deadlock's holder, seeded bug)
//   /c              start acquiring priceTable, print "node-c-waiting", wait for it (the
//                   deadlock's waiter)
//
// Prints "PORT <n>" once it listens; SIGTERM ends it (the agent flushes its recording
// first). The agent's API comes from WILLOWISP_NODE_API (the agent package's folder),
// async-mutex from NODE_PATH (the demo's cache).

const http = require('node:http');

const { Mutex } = require('async-mutex');

const api = process.env.WILLOWISP_NODE_API
  ? require(process.env.WILLOWISP_NODE_API)
  : { sendMessage: (o) => o.headers };
const shopPort = Number(process.argv[2]);
const gatewayPort = Number(process.argv[3]);
const priceTable = new Mutex();

function call(port, method, target, body) {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {};
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// GET /quote?order=N: a new price for the order's item, published on the shop's work queue
// for inventory (sendMessage puts the trace context into the job's headers) and recorded
// with the ledger, through the gateway.
async function quote(res, url) {
  try {
    const order = url.searchParams.get('order');
    const job = { id: `price-${order}`, sku: 'sku-1', price: 40 + (Number(order) % 7), headers: {} };
    api.sendMessage({
      protocol: 'workqueue',
      library: 'demo',
      destination: 'prices',
      messageId: job.id,
      headers: job.headers,
    });
    await call(shopPort, 'POST', '/jobs', JSON.stringify(job));
    await call(gatewayPort, 'POST', '/prices', JSON.stringify({ sku: job.sku, price: job.price })).catch(
      (err) => process.stderr.write(`pricing: the ledger is not there (${err}); the price stays here\n`),
    );
    res.end(`pricing:${job.price}`);
  } catch (err) {
    res.writeHead(502);
    res.end(String(err));
  }
}

async function holder(res) {
  const release = await priceTable.acquire(); // held across the call to /hold
  try {
    process.stdout.write('node-d-holding\n');
    const answer = await call(shopPort, 'GET', '/hold');
    res.end(`pricing:${answer.body}`);
  } catch (err) {
    res.writeHead(502);
    res.end(String(err));
  } finally {
    release();
  }
}

async function waiter(res) {
  const acquiring = priceTable.acquire();
  process.stdout.write('node-c-waiting\n');
  const release = await acquiring;
  try {
    res.end('pricing:c');
  } finally {
    release();
  }
}

const routes = { '/c': waiter, '/d': holder, '/quote': quote };

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://pricing');
  const route = routes[url.pathname];
  if (route) route(res, url);
  else {
    res.writeHead(404);
    res.end();
  }
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
