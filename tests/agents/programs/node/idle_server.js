'use strict';
// A small HTTP service that runs until it is killed: prints `PORT <n>` once it listens and
// its agent's control descriptor is in place (so a test can talk to the channel at once),
// then serves `GET /work` (awaits a few promises) and `POST /pay`.

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const server = http.createServer(async (req, res) => {
  let n = 0;
  for (let i = 0; i < 3; i += 1) n += await Promise.resolve(i);
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`${req.method} ${req.url} ${n}\n`);
});

// The agent writes its descriptor once its listeners listen (a tick or two after start).
function descriptorReady() {
  const dir = process.env.WILLOWISP_RUNTIME_DIR;
  if (!dir || (process.env.WILLOWISP_CONTROL || '').trim() === 'off') return true;
  try {
    return fs.readdirSync(dir).some((f) => f.startsWith(`${process.pid}-`) && f.endsWith('.json'));
  } catch {
    return false;
  }
}

server.listen(0, '127.0.0.1', function announce() {
  if (!descriptorReady()) {
    setImmediate(announce);
    return;
  }
  process.stdout.write(`PORT ${server.address().port}\n`);
});
void path;
