'use strict';
// The observed program of the hops-mode location test (hooks.test.js): a server and a
// client in one process; the client sends N requests from one line (GET /one) and N
// from another (GET /two). It counts the stack captures made in the process
// (Error.captureStackTrace, which the agent uses to find the caller's line) and prints
// `{"lines": {...}, "captures": n, "requests": 2N}` as JSON (`lines`: the line of each
// call, which the program reads from its own stack).

const http = require('node:http');

const N = Number(process.argv[2] || 100);
let captures = 0;
// The counting wrapper is made by `new Function`, so its frame has no file name: it is
// never taken for the program's line when it is on the stack the agent looks at.
Error.captureStackTrace = new Function(
  'capture',
  'count',
  'return function captureStackTrace() { count(); return capture.apply(this, arguments); }',
)(Error.captureStackTrace, () => (captures += 1));

const server = http.createServer((req, res) => res.end('ok'));
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function done(res, resolve) {
  res.resume();
  res.on('end', resolve);
}

const lines = {};
function one(port) {
  lines.one = new Error().stack.split('\n')[1].split(':').at(-2) * 1 + 1;
  return new Promise((resolve) => http.get({ host: '127.0.0.1', port, path: '/one', agent }, (res) => done(res, resolve)));
}
function two(port) {
  lines.two = new Error().stack.split('\n')[1].split(':').at(-2) * 1 + 2;
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/two?id=1', agent }, (res) => done(res, resolve));
    req.end();
  });
}

server.listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  for (let i = 0; i < N; i += 1) await one(port);
  for (let i = 0; i < N; i += 1) await two(port);
  agent.destroy();
  server.close();
  process.stdout.write(JSON.stringify({ lines, captures, requests: 2 * N }));
});
