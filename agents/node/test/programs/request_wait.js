'use strict';
// A flow sends a POST whose body it writes a step later, then ends the request: its wait
// for the reply starts where it calls end() (marked by an access just before), in that
// same step.
const http = require('node:http');
const wisp = require('../../index.js');

const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end('ok'));
});

server.listen(0, '127.0.0.1', async () => {
  await wisp.flow('sender', async () => {
    const req = http.request({ host: '127.0.0.1', port: server.address().port, method: 'POST', path: '/orders' });
    await new Promise((resolve) => {
      req.on('response', (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.write('part one;');
      setImmediate(() => {
        wisp.access('about-to-end', 'write');
        req.end('part two');
      });
    });
  });
  server.close();
  console.log(JSON.stringify({ done: true }));
});
