'use strict';
// What `status` says a boundary costs, in a real process with overlapping instances of
// two boundaries: every event the boundaries' hooks record is counted once, for the one
// boundary whose instance made its unit. So no boundary's events, nor their sum, exceed
// the process's events, and at exit the stats record's `by_boundary` events are exactly
// the events of each boundary's async-resource units in the file.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const K = require('../lib/kinds.js');
const { readFile } = require('./reader.js');

const AGENT = path.resolve(__dirname, '..');
const { TOKEN, frame } = require('./ctl_frames.js');
const A = 'entry=http:GET /a;runtimes=nodejs';
const B = 'entry=http:GET /b;runtimes=nodejs';

// hello, then status; resolves with status's result once the agent closed the connection
function status(socketPath) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const got = [];
    sock.on('data', (d) => got.push(d));
    sock.on('error', reject);
    sock.on('close', () => {
      const buf = Buffer.concat(got);
      const replies = [];
      for (let at = 0; at + 8 <= buf.length; ) {
        const n = buf.readUInt32LE(at + 4);
        replies.push(JSON.parse(buf.toString('utf8', at + 8, at + 8 + n)));
        at += 8 + n;
      }
      resolve(replies[1].result);
    });
    sock.on('connect', () => sock.end(Buffer.concat([frame({ op: 'hello', versions: [1], token: TOKEN }), frame({ op: 'status', id: 1 })])));
  });
}

// The flow (a request's unit) each async-resource unit belongs to, through its parents.
function flowOf(units, id) {
  let u = units.get(id);
  while (u !== undefined && u.kind === 'async-resource') {
    id = u.parent;
    u = units.get(id);
  }
  return u;
}

test('overlapping boundary instances count each event once, for one boundary', async () => {
  const runtime = fs.mkdtempSync(path.join('/tmp', 'wn-'));
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-bcost-'));
  const child = spawn(process.execPath, ['--require', path.join(AGENT, 'register.js'), path.join(__dirname, 'programs/overlapping_boundaries.js')], {
    env: { ...process.env, WILLOWISP_OUT: out, WILLOWISP_RUNTIME_DIR: runtime, WILLOWISP_CONTROL_TOKEN: TOKEN, WILLOWISP_BOUNDARIES: `${A}|${B}` },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  try {
    while (!stdout.includes('ready\n')) await once(child.stdout, 'data');
    const [descFile] = fs.readdirSync(runtime).filter((f) => f.endsWith('.json'));
    const desc = JSON.parse(fs.readFileSync(path.join(runtime, descFile), 'utf8'));
    const st = await status(desc.socket);
    const byName = new Map(st.boundaries.map((b) => [b.name, b]));
    assert.deepStrictEqual([...byName.keys()].sort(), ['http:GET /a', 'http:GET /b']);
    assert.strictEqual(byName.get('http:GET /a').entries, 2);
    assert.strictEqual(byName.get('http:GET /b').entries, 1);
    let sum = 0;
    for (const b of st.boundaries) {
      assert.ok(b.events > 0, JSON.stringify(b));
      assert.ok(b.events <= st.events, `${b.name}: ${b.events} events of the process's ${st.events}`);
      assert.strictEqual(b.cost_ns, b.events * st.cost_ns_per_event);
      sum += b.events;
    }
    assert.ok(sum <= st.events, `the boundaries' ${sum} events of the process's ${st.events}`);

    child.stdin.end();
    const [code] = await once(child, 'exit');
    assert.strictEqual(code, 0, stderr);
    assert.strictEqual(stderr, '');
    const [file] = fs.readdirSync(out);
    const chunks = readFile(fs.readFileSync(path.join(out, file))).chunks;
    const records = chunks.flatMap((c) => c.records);
    const units = new Map(records.filter((r) => r.type === 2).map((r) => [r.id, r.attrs]));
    const stats = records.filter((r) => r.type === 6).at(-1).attrs;
    const recorded = JSON.parse(stats.by_boundary);
    // each event of an async-resource unit (or creating one), for the request it serves
    const inFile = new Map();
    for (const e of chunks.flatMap((c) => c.events)) {
      const own = units.get(e.unit);
      let unit = own !== undefined && own.kind === 'async-resource' ? e.unit : 0;
      if (unit === 0 && e.kind === K.UNIT_CREATE && units.get(Number(e.arg))?.kind === 'async-resource') unit = Number(e.arg);
      if (unit === 0) continue;
      const name = `http:${flowOf(units, unit).name}`;
      inFile.set(name, (inFile.get(name) || 0) + 1);
    }
    assert.deepStrictEqual([...inFile.keys()].sort(), ['http:GET /a', 'http:GET /b'], 'no event outside the boundaries (GET /c)');
    for (const [name, n] of inFile) assert.strictEqual(recorded[name].events, n, name);
    assert.ok(Object.values(recorded).reduce((s, b) => s + b.events, 0) <= stats.events);
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(runtime, { recursive: true, force: true });
    fs.rmSync(out, { recursive: true, force: true });
  }
});
