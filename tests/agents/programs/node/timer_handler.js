'use strict';
// A service whose handlers wait on a timer before they answer: GET /await awaits a promise
// that a 30 ms setTimeout resolves, GET /callback answers from a 30 ms setTimeout callback.
// Prints `PORT <n>` once it listens; ends after two requests.

const http = require('node:http');

const WAIT_MS = 30;
let served = 0;

function done() {
  served += 1;
  if (served === 2) server.close();
}

const server = http.createServer(async (req, res) => {
  if (req.url === '/await') {
    await new Promise((resolve) => setTimeout(resolve, WAIT_MS));
    res.end('awaited\n', done);
    return;
  }
  setTimeout(() => res.end('called back\n', done), WAIT_MS);
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
