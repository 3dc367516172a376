'use strict';
// HTTP/2 hops for test/http2.test.js: a client session calls GET /front on a server using
// the stream API, whose handler calls GET /leaf?id=7 on a second server using the
// compatibility API (answers 201 with the traceparent it received). Prints JSON: what the
// leaf saw, and the statuses. Everything is closed at the end; the program ends by itself.
const http2 = require('node:http2');

function call(session, path) {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'GET', ':path': path });
    let status = 0;
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (h) => (status = h[':status']));
    req.on('data', (d) => (body += d));
    req.on('end', () => resolve({ status, body }));
    req.on('error', reject);
    req.end();
  });
}

const leaf = http2.createServer((req, res) => {
  res.writeHead(201, { 'content-type': 'text/plain' });
  res.end(String(req.headers.traceparent || ''));
});

const front = http2.createServer();
let leafSession = null;
front.on('stream', async (stream, headers) => {
  const down = await call(leafSession, '/leaf?id=7');
  stream.respond({ ':status': 200 });
  stream.end(JSON.stringify({ seen: headers.traceparent, down }));
});

leaf.listen(0, '127.0.0.1', () => {
  front.listen(0, '127.0.0.1', async () => {
    leafSession = http2.connect(`http://127.0.0.1:${leaf.address().port}`);
    const client = http2.connect(`http://127.0.0.1:${front.address().port}`);
    const got = await call(client, '/front');
    client.close();
    leafSession.close();
    front.close();
    leaf.close();
    process.stdout.write(JSON.stringify({ status: got.status, ...JSON.parse(got.body) }));
  });
});
