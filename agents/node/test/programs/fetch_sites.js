'use strict';
// The observed program of the fetch location test (hooks.test.js): two async functions,
// each fetching from its own line, run side by side ROUNDS times; the server answers a
// round's two requests only once both have arrived, so the two fetches of a round are in
// flight together. Both fetch the same path (only the query differs), so nothing but the
// call itself tells their sends apart. Prints, as JSON, the line of each call, the
// traceparent each request carried (keyed by its span id: left or right), what `fetch`
// looks like to the program, and how a fetch of a bad URL failed.

const http = require('node:http');

const ROUNDS = Number(process.argv[2] || 20);
let held = [];
const server = http.createServer((req, res) => {
  held.push([req, res]);
  if (held.length < 2) return;
  for (const [q, r] of held) r.end(q.headers.traceparent || 'none');
  held = [];
});

// the line number of the caller of here()
function here() {
  return Number(new Error().stack.split('\n')[2].split(':').at(-2));
}

const lines = {};
const spans = {};
async function left(base) {
  lines.left = here(); const res = await fetch(`${base}/same?from=left`);
  spans[(await res.text()).split('-')[2]] = 'left';
}
async function right(base) {
  lines.right = here(); const res = await fetch.call({ not: 'a window' }, new URL(`${base}/same?from=right`));
  spans[(await res.text()).split('-')[2]] = 'right';
}

server.listen(0, '127.0.0.1', async () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  for (let i = 0; i < ROUNDS; i += 1) await Promise.all([left(base), right(base)]);
  server.close();
  const bad = await fetch('no scheme').then(() => 'resolved', (err) => `${err.name}: ${err.message}`);
  process.stdout.write(JSON.stringify({ lines, spans, name: fetch.name, length: fetch.length, bad }));
});
