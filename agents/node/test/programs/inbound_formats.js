'use strict';
// A service for test/propagation.test.js: GET /hop answers (as JSON) the traceparent its
// own downstream call (to GET /leaf of this same server) carried; GET /leaf echoes the
// traceparent it received; GET /quit ends the program once answered. Prints `PORT n`.
const http = require('node:http');

const server = http.createServer((req, res) => {
  if (req.url === '/leaf') {
    res.end(req.headers.traceparent || '');
    return;
  }
  if (req.url === '/quit') {
    res.on('finish', () => process.exit(0));
    res.end('bye');
    return;
  }
  http.get({ host: '127.0.0.1', port: server.address().port, path: '/leaf', agent: false }, (down) => {
    let body = '';
    down.setEncoding('utf8');
    down.on('data', (d) => (body += d));
    down.on('end', () => res.end(JSON.stringify({ downstream: body })));
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`PORT ${server.address().port}\n`));
