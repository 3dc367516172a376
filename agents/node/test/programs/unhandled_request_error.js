'use strict';
// A request to a closed port with no 'error' listener: Node throws the error (the program
// dies with ECONNREFUSED), with or without the agent. For test/client_errors.test.js.
const http = require('node:http');
const net = require('node:net');

const probe = net.createServer();
probe.listen(0, '127.0.0.1', () => {
  const { port } = probe.address();
  probe.close(() => {
    http.get({ host: '127.0.0.1', port, path: '/gone?x=1' }, (res) => res.resume());
  });
});
