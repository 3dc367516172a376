'use strict';
// Exercises the hooks one after the other (run with register.js by hooks.test.js):
// fetch and http.get to a local server, a worker thread, the access and message API,
// a flow, a clean exit.

const http = require('node:http');
const { Worker } = require('node:worker_threads');
const wisp = require('../../index.js');

const server = http.createServer((req, res) => {
  res.writeHead(201);
  res.end(req.headers.traceparent || 'none');
});

server.listen(0, '127.0.0.1', async () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const viaFetch = await (await fetch(`${base}/fetched?token=secret`)).text();
  const viaGet = await new Promise((resolve) => {
    http.get(`${base}/got`, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    });
  });
  await new Promise((resolve) => new Worker('1 + 1', { eval: true }).once('exit', resolve));
  await wisp.flow('checkout', async () => {
    wisp.access('cart:42', 'read');
    wisp.access('api', 'cart:42', 'write');
    const headers = wisp.sendMessage({ protocol: 'amqp', destination: 'orders/new', messageId: 'm-1', headers: {} });
    wisp.receiveMessage({ protocol: 'amqp', destination: 'orders/new', messageId: 'm-1', headers }, () => {
      wisp.access('cart:42', 'read');
    });
  });
  let refused = false;
  try {
    wisp.access('cart:42', 'delete');
  } catch (err) {
    refused = err instanceof RangeError;
  }
  console.log(JSON.stringify({ viaFetch, viaGet, refused }));
  server.close();
});
