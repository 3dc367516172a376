'use strict';
// Prints, from inside a request handler, whether any async hook with an `init` callback,
// and any async hook at all, is enabled in this process (Node's internal view; run with
// --expose-internals), and whether AsyncLocalStorage is an AsyncContextFrame here.

const ah = require('internal/async_hooks');
const { AsyncLocalStorage } = require('node:async_hooks');
const http = require('node:http');

const frame = typeof new AsyncLocalStorage().kResourceStore !== 'symbol';
const server = http.createServer((req, res) => res.end(JSON.stringify({ init: ah.initHooksExist(), any: ah.enabledHooksExist(), frame })));
server.listen(0, '127.0.0.1', () => {
  http.get({ host: '127.0.0.1', port: server.address().port }, (res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => {
      console.log(body);
      server.close();
    });
  });
});
