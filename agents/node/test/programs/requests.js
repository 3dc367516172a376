'use strict';
// N (argv[2], default 1500) sequential requests to its own server over one keep-alive
// connection; prints the sum of the answers. A few hundred KB of trace in `full` mode.

const http = require('node:http');

const n = Number(process.argv[2] || 1500);
const server = http.createServer((req, res) => res.end(String(req.url.length)));
server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let total = 0;
  for (let i = 0; i < n; i += 1) {
    total += await new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: `/item/${i}`, agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve(Number(body)));
        })
        .on('error', reject);
    });
  }
  agent.destroy();
  server.close();
  console.log(`total ${total}`);
});
