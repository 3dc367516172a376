'use strict';
// A service for test/propagation.test.js: GET /hop answers (as JSON) the traceparent its
// own downstream call (to GET /leaf of this same server) carried and its other trace
// headers (B3, X-Ray); GET /fetch the same with fetch(); GET /leaf echoes those it received (as JSON); GET /quit ends the
// program once answered. Prints `PORT n`.
const http = require('node:http');

const server = http.createServer((req, res) => {
  if (req.url === '/leaf') {
    const h = req.headers;
    const names = ['traceparent', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-parentspanid', 'x-b3-flags', 'x-amzn-trace-id'];
    res.end(JSON.stringify(Object.fromEntries(names.filter((n) => h[n] !== undefined).map((n) => [n, h[n]]))));
    return;
  }
  if (req.url === '/quit') {
    res.on('finish', () => process.exit(0));
    res.end('bye');
    return;
  }
  if (req.url.startsWith('/fetch')) {
    // the same downstream call through undici (global fetch)
    fetch(`http://127.0.0.1:${server.address().port}/leaf`)
      .then((r) => r.json())
      .then((got) => {
        const other = { ...got };
        delete other.traceparent;
        res.end(JSON.stringify({ downstream: got.traceparent || '', other }));
      });
    return;
  }
  http.get({ host: '127.0.0.1', port: server.address().port, path: '/leaf', agent: false }, (down) => {
    let body = '';
    down.setEncoding('utf8');
    down.on('data', (d) => (body += d));
    down.on('end', () => {
      const got = JSON.parse(body);
      const other = { ...got };
      delete other.traceparent;
      res.end(JSON.stringify({ downstream: got.traceparent || '', other }));
    });
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`PORT ${server.address().port}\n`));
