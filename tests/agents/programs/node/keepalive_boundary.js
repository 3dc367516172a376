'use strict';
// A keep-alive HTTP service inside a full-fidelity boundary (WILLOWISP_BOUNDARIES is set
// by the test), called a few times over one keep-alive connection by a plain socket
// client in the same process; each handler awaits a short timer of its own. The client
// then keeps the connection open until the server closes it on its keep-alive timeout,
// so that Node's unreferenced housekeeping timers made during the requests have fired:
// the socket's keep-alive timeout (re-armed by each request) and, before it, the Date
// header cache's reset, which fires within a second of the first request (timers fire in
// the order they expire, and the keep-alive timeout is at least a second). Prints
// `done N closed-after MS` with the number of requests.

const http = require('node:http');
const net = require('node:net');

const REQUESTS = 4;
const server = http.createServer(async (req, res) => {
  await new Promise((resolve) => setTimeout(resolve, 1));
  const body = `${req.url}\n`;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 1000;

// One request on the open connection; resolves once its whole response has arrived
// (the bodies are short: the header block and `content-length` bytes).
function get(sock, path) {
  return new Promise((resolve) => {
    let got = '';
    const onData = (d) => {
      got += d;
      const head = got.indexOf('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(got);
      if (head >= 0 && len && got.length >= head + 4 + Number(len[1])) {
        sock.off('data', onData);
        resolve();
      }
    };
    sock.on('data', onData);
    sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`);
  });
}

server.listen(0, '127.0.0.1', () => {
  const sock = net.connect(server.address().port, '127.0.0.1', async () => {
    sock.setEncoding('latin1');
    const closed = new Promise((resolve) => sock.once('close', resolve));
    for (let i = 0; i < REQUESTS; i += 1) await get(sock, '/work');
    const t0 = Date.now();
    await closed; // the server's keep-alive timeout ended the connection
    server.close();
    process.stdout.write(`done ${REQUESTS} closed-after ${Date.now() - t0}\n`);
  });
});
