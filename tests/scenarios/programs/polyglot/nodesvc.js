'use strict';
// The Node service of the polyglot scenario (orchestrator.py starts it with the Python
// back-end's port). Every path takes the one async-mutex Mutex `shelf` and some call the
// back-end (http.get, which the agent wraps):
//
//   /step  acquire shelf, call the back-end's /leaf, answer with what it said (healthy path)
//   /d     acquire shelf, print "node-d-holding", call the back-end's /e (deadlock's holder)
//   /c     start acquiring shelf, print "node-c-waiting", wait for it (deadlock's waiter),
//          then answer
//
// It prints "PORT <n>" once it listens; the other lines on stdout are the orchestrator's
// signals. SIGTERM ends it (the agent flushes its recording first).
// async-mutex is a dev dependency of the Node agent: required from there.

const http = require('node:http');
const path = require('node:path');

const agentDir = path.resolve(__dirname, '..', '..', '..', '..', 'agents', 'node');
const { Mutex } = require(require.resolve('async-mutex', { paths: [agentDir] }));

const backendPort = Number(process.argv[2]);
const shelf = new Mutex();

function callBackend(target) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: backendPort, path: target }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      })
      .on('error', reject);
  });
}

async function relay(res, target) {
  try {
    const answer = await callBackend(target);
    res.writeHead(answer.status, { 'content-type': 'text/plain' });
    res.end(`node:${answer.body}`);
  } catch (err) {
    res.writeHead(502);
    res.end(String(err));
  }
}

async function step(res) {
  const release = await shelf.acquire();
  try {
    await relay(res, '/leaf');
  } finally {
    release();
  }
}

async function holder(res) {
  const release = await shelf.acquire(); // held across the call to /e
  try {
    process.stdout.write('node-d-holding\n');
    await relay(res, '/e');
  } finally {
    release();
  }
}

async function waiter(res) {
  const acquiring = shelf.acquire();
  process.stdout.write('node-c-waiting\n');
  const release = await acquiring;
  try {
    res.end('node:c');
  } finally {
    release();
  }
}

const routes = { '/step': step, '/d': holder, '/c': waiter };

const server = http.createServer((req, res) => {
  const route = routes[req.url];
  if (route) route(res);
  else {
    res.writeHead(404);
    res.end();
  }
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
