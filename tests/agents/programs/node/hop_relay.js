'use strict';
// The middle service of the Python -> Node -> Python hop: GET /relay calls the Python leaf
// (http.get) and answers with what it said; after one request the server closes and the
// process ends. Prints `PORT <n>` once it listens.

const http = require('node:http');

const leafPort = Number(process.argv[2]);

const server = http.createServer((req, res) => {
  http.get({ host: '127.0.0.1', port: leafPort, path: '/leaf' }, (leaf) => {
    let body = '';
    leaf.setEncoding('utf8');
    leaf.on('data', (d) => (body += d));
    leaf.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`relay:${body}`);
      server.close();
    });
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
