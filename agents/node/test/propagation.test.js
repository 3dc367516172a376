'use strict';
// Inbound B3 (single and multi header) and X-Ray contexts, when no traceparent came: the
// parsers against the Python agent's rules (src/willowisp/wire/b3.py, xray.py), and a real
// server process that continues each format's trace and records where it came from.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const tc = require('../lib/context.js');
const { readFile } = require('./reader.js');

const AGENT = path.resolve(__dirname, '..');
const T32 = '463ac35c9f6413ad48485a3953bb6124';
const T16 = 'a3ce929d0e0e4736';
const S = 'e457b5a2e4d86bd1';
const P = '05e3ac9a4f6e3b90';
const X32 = '5759e988bd862e3fe1be46a994272793';

test('B3 single header', () => {
  assert.deepStrictEqual(tc.parseB3Single(`${T32}-${S}-1-${P}`), { traceId: T32, spanId: S, sampled: 1 });
  assert.deepStrictEqual(tc.parseB3Single(` ${T16}-${S} `), { traceId: `0000000000000000${T16}`, spanId: S, sampled: -1 });
  assert.strictEqual(tc.parseB3Single(`${T32}-${S}-d`).sampled, 1, 'debug implies sampled');
  assert.strictEqual(tc.parseB3Single(`${T32}-${S}-0`).sampled, 0);
  for (const bad of ['0', '1', 'd', `${T32.toUpperCase()}-${S}`, `${T32}-${S}-x`, `${T32}-${S}-1-zz`, `${T32}`, `${'0'.repeat(32)}-${S}`,
    `${T32}-${'0'.repeat(16)}`, `${T32}-${S}-1-${P}-more`, `${T32.slice(0, 20)}-${S}`, `${T32}-${S}, ${T32}-${S}`, 'x'.repeat(200)]) {
    assert.strictEqual(tc.parseB3Single(bad), null, bad);
  }
});

test('B3 multi headers', () => {
  const h = { 'x-b3-traceid': T16, 'x-b3-spanid': S, 'x-b3-sampled': 'true' };
  assert.deepStrictEqual(tc.parseB3Multi(h), { traceId: `0000000000000000${T16}`, spanId: S, sampled: 1 });
  assert.strictEqual(tc.parseB3Multi({ ...h, 'x-b3-sampled': '0' }).sampled, 0);
  assert.strictEqual(tc.parseB3Multi({ ...h, 'x-b3-sampled': 'False' }).sampled, 0);
  assert.strictEqual(tc.parseB3Multi({ ...h, 'x-b3-sampled': '0', 'x-b3-flags': '1' }).sampled, 1, 'debug wins');
  assert.strictEqual(tc.parseB3Multi({ 'x-b3-traceid': T32, 'x-b3-spanid': S }).sampled, -1, 'deferred');
  assert.strictEqual(tc.parseB3Multi({ 'x-b3-traceid': T32 }), null, 'a trace id without a span id');
  assert.strictEqual(tc.parseB3Multi({ 'x-b3-traceid': `${T32}, ${T32}`, 'x-b3-spanid': S }), null, 'repeated');
});

test('X-Ray header', () => {
  const root = `1-${T32.slice(0, 8)}-${T32.slice(8)}`;
  assert.deepStrictEqual(tc.parseXRay(`Root=${root};Parent=${S.toUpperCase()};Sampled=1;Lineage=a:1`), { traceId: T32, spanId: S, sampled: 1 });
  assert.strictEqual(tc.parseXRay(`Root=${root};Parent=${S};Sampled=0`).sampled, 0);
  assert.strictEqual(tc.parseXRay(`Root=${root};Parent=${S};Sampled=?`).sampled, -1);
  assert.strictEqual(tc.parseXRay(`Root=${root.toUpperCase()};Parent=${S}`).traceId, T32, 'hex in either case');
  for (const bad of [`Root=${root}`, `Parent=${S}`, `Root=2-${T32.slice(0, 8)}-${T32.slice(8)};Parent=${S}`, `Root=${root};Root=${root};Parent=${S}`,
    `Root=${root};Parent=${S};junk`, `Root=1-00000000-${'0'.repeat(24)};Parent=${S}`, `Root=${root};Parent=${S}, Root=${root};Parent=${S}`]) {
    assert.strictEqual(tc.parseXRay(bad), null, bad);
  }
});

test('traceparent wins over B3, B3 over X-Ray, a valid single b3 over the multi headers', () => {
  const xray = `Root=1-${T32.slice(0, 8)}-${T32.slice(8)};Parent=${P};Sampled=1`;
  const w3c = `00-${T32}-${S}-01`;
  assert.strictEqual(tc.incoming({ traceparent: w3c, b3: `${T16}-${P}-1`, 'x-amzn-trace-id': xray }).how, 'w3c');
  const b3 = tc.incoming({ b3: `${T16}-${S}-0`, 'x-b3-traceid': T32, 'x-b3-spanid': P, 'x-amzn-trace-id': xray });
  assert.deepStrictEqual(b3, { ctx: { traceId: `0000000000000000${T16}`, spanId: S, flags: 0 }, how: 'b3', style: 'b3' });
  const multi = tc.incoming({ b3: 'garbage', 'x-b3-traceid': T32, 'x-b3-spanid': P, 'x-b3-sampled': '1' });
  assert.deepStrictEqual(multi, { ctx: { traceId: T32, spanId: P, flags: 1 }, how: 'b3', style: 'b3-multi' });
  assert.deepStrictEqual(tc.incoming({ traceparent: 'bad', 'x-amzn-trace-id': xray }), { ctx: { traceId: T32, spanId: P, flags: 1 }, how: 'xray', style: 'xray' });
  assert.deepStrictEqual(tc.incoming({ b3: '1' }), { ctx: null, how: '', style: '' }, 'a bare decision has nothing to continue');
  assert.strictEqual(tc.incoming({ traceparent: w3c, b3: `${T16}-${P}-1` }).style, '', 'W3C: traceparent alone goes out');
});

function get(port, urlPath, headers) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

test('a real server continues B3 and X-Ray traces, writes them on its calls and records the format', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-formats-'));
  const child = spawn(process.execPath, ['--require', path.join(AGENT, 'register.js'), path.join(__dirname, 'programs/inbound_formats.js')], {
    env: { ...process.env, WILLOWISP_OUT: out, WILLOWISP_SERVICE: 'formats', WILLOWISP_MODE: 'hops', WILLOWISP_TRACE_RATIO: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    const [line] = await once(child.stdout, 'data');
    const port = Number(/PORT (\d+)/.exec(String(line))[1]);
    const cases = [
      { name: 'b3 single', headers: { b3: `${T16}-${S}-1` }, trace: `0000000000000000${T16}`, parent: S, how: 'b3', flag: '01' },
      { name: 'b3 multi', headers: { 'X-B3-TraceId': T32, 'X-B3-SpanId': P, 'X-B3-Sampled': '0' }, trace: T32, parent: P, how: 'b3', flag: '00' },
      { name: 'x-ray', headers: { 'X-Amzn-Trace-Id': `Root=1-${X32.slice(0, 8)}-${X32.slice(8)};Parent=${S};Sampled=1` }, trace: X32, parent: S, how: 'xray', flag: '01' },
      { name: 'none', headers: {}, trace: null, parent: '', how: '', flag: '01' },
    ];
    for (const c of cases) Object.assign(c, JSON.parse(await get(port, `/hop?case=${c.name.replace(' ', '-')}`, c.headers)));
    // through fetch (undici) too: the caller's format goes out with the same ids
    for (const c of cases.filter((x) => x.name !== 'none')) {
      const viaFetch = JSON.parse(await get(port, `/fetch?case=${c.name.replace(' ', '-')}`, c.headers));
      const [, trace, span, flag] = viaFetch.downstream.split('-');
      const sampled = flag === '01' ? '1' : '0';
      const values = Object.values(viaFetch.other).join(' ');
      assert.strictEqual(Object.keys(viaFetch.other).length, c.name === 'b3 multi' ? 3 : 1, `${c.name} via fetch: ${JSON.stringify(viaFetch.other)}`);
      assert.ok(values.includes(trace.slice(8)) && values.includes(span) && values.includes(sampled), `${c.name} via fetch: ${values}`);
    }
    const [exited] = await Promise.all([once(child, 'exit'), get(port, '/quit', {})]);
    assert.strictEqual(exited[0], 0, stderr);
    assert.strictEqual(stderr, '');
    const files = fs.readdirSync(out);
    const records = files.flatMap((f) => readFile(fs.readFileSync(path.join(out, f))).chunks.flatMap((ch) => ch.records));
    const servers = records.filter((r) => r.type === 3 && r.attrs.kind === 'rpc' && r.attrs.library === 'node:http' && 'propagation' in r.attrs && r.attrs.target.startsWith('/hop'));
    for (const c of cases) {
      const [, trace, span, flag] = c.downstream.split('-');
      assert.strictEqual(flag, c.flag, `${c.name}: the sampled decision travels on`);
      // the downstream call also speaks the caller's format, with the same ids and decision
      const sampled = flag === '01' ? '1' : '0';
      const other = {
        'b3 single': { b3: `${trace}-${span}-${sampled}` },
        'b3 multi': { 'x-b3-traceid': trace, 'x-b3-spanid': span, 'x-b3-sampled': sampled },
        'x-ray': { 'x-amzn-trace-id': `Root=1-${trace.slice(0, 8)}-${trace.slice(8)};Parent=${span};Sampled=${sampled}` },
        none: {},
      }[c.name];
      assert.deepStrictEqual(c.other, other, `${c.name}: the other headers of the downstream call`);
      if (c.trace !== null) assert.strictEqual(trace, c.trace, `${c.name}: the downstream call continues the trace`);
      const server = servers.find((r) => r.attrs.trace_id === trace);
      if (c.flag === '00') {
        assert.strictEqual(server, undefined, `${c.name}: unsampled in hops mode, not recorded`);
        continue;
      }
      assert.ok(server, `${c.name}: a server resource of that trace`);
      assert.strictEqual(server.attrs.propagation, c.how, c.name);
      assert.strictEqual(server.attrs.parent_span_id, c.parent, c.name);
      const client = records.find((r) => r.type === 3 && r.attrs.kind === 'rpc' && r.attrs.library === 'node:http' && !('propagation' in r.attrs) && r.attrs.span_id === span);
      assert.ok(client, `${c.name}: the downstream call is recorded with the span id it sent`);
      assert.strictEqual(client.attrs.trace_id, trace);
    }
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(out, { recursive: true, force: true });
  }
});

// The regular-expression parse that tc.parse replaced (a character-by-character check):
// the rules of the W3C header, kept here as the reference.
function parseByRegex(header) {
  if (typeof header !== 'string') return null;
  const m = tc.TRACEPARENT.exec(header.trim().toLowerCase());
  if (m === null || m[1] === 'ff') return null;
  if (m[1] === '00' && header.trim().length !== 55) return null;
  if (/^0+$/.test(m[2]) || /^0+$/.test(m[3])) return null;
  return { traceId: m[2], spanId: m[3], flags: parseInt(m[4], 16) };
}

test('traceparent: the hand parse agrees with the regular expression', () => {
  const good = `00-${T32}-${S}-01`;
  const cases = [good, ` ${good}\t`, good.toUpperCase(), `01-${T32}-${S}-00-extra-fields`, `00-${T32}-${S}-01-x`, `ff-${T32}-${S}-01`,
    `00-${'0'.repeat(32)}-${S}-01`, `00-${T32}-${'0'.repeat(16)}-01`, `00-${T32}-${S}-0g`, `00-${T32}-${S}`, `0-${T32}-${S}-01`,
    `02-${T32}-${S}-01-a\nb`, `02-${T32}-${S}-01-a\u2028`, `02-${T32}-${S}-01x`, `00_${T32}-${S}-01`, '', 'x'.repeat(55), undefined, 7,
    `00-${T32}-${S}-01, 00-${T32}-${S}-01`, `cc-${T32}-${S}-ff`, `00-${T32.slice(1)}-${S}-01`, `00-${T32}-${S}-01\u0130`, `0a-${T32}-${S}-01-\u0130`];
  // and mutations of a valid header: every position replaced by characters around the hex range
  for (let i = 0; i < 60; i += 1) {
    for (const c of ['-', '0', '9', 'a', 'f', 'g', 'F', ' ', '/', ':', '`', 'G', '\n']) cases.push(good.slice(0, i) + c + good.slice(i + 1));
  }
  for (const c of cases) assert.deepStrictEqual(tc.parse(c), parseByRegex(c), JSON.stringify(c));
});
