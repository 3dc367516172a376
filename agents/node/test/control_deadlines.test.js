'use strict';
// The control channel's deadlines in a real process (docs/protocols.md, "Limits"): they are
// absolute, so clients dripping a byte every half second cannot hold the connections a real
// `willowisp ctl` needs. Before the hello the limit is 5 s from connect; after it a frame
// gets 30 s from its first byte, however the bytes trickle in. The real 30 s is used (the
// agent has no knob for it), with every check running at the same time.

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { once } = require('node:events');

const AGENT = path.resolve(__dirname, '..');
const { TOKEN, frame } = require('./ctl_frames.js');
const DRIP_MS = 500;
const GIVE_UP_MS = 40000; // well past the 30 s limit: a connection still open then has none

const HELLO = frame({ op: 'hello', versions: [1], token: TOKEN });
// far more bytes than 30 s of dripping sends: it can only end by the agent's deadline
const SLOW_STATUS = frame({ op: 'status', id: 'slow', pad: 'x'.repeat(400) });

// Reads replies off a socket as they come; `next()` resolves with the next one, or null
// once the agent closed the connection.
function replyReader(sock) {
  let buf = Buffer.alloc(0);
  let closed = false;
  const queue = [];
  const waiting = [];
  const settle = () => {
    while (waiting.length > 0 && (queue.length > 0 || closed)) waiting.shift()(queue.length > 0 ? queue.shift() : null);
  };
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 8 && buf.length >= 8 + buf.readUInt32LE(4)) {
      const n = buf.readUInt32LE(4);
      assert.strictEqual(buf.toString('latin1', 0, 4), 'WCTL');
      queue.push(JSON.parse(buf.toString('utf8', 8, 8 + n)));
      buf = buf.subarray(8 + n);
    }
    settle();
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    closed = true;
    settle();
  });
  return { next: () => new Promise((resolve) => (waiting.push(resolve), settle())), isClosed: () => closed };
}

async function open(connect) {
  const sock = connect();
  const reader = replyReader(sock);
  await once(sock, 'connect');
  return { sock, reader };
}

// Sends `payload` a byte every DRIP_MS from now until the agent closes the connection or
// GIVE_UP_MS passes. -> { reply: the agent's answer or null, ms: from the first byte to the
// close, or null if it never closed }.
async function drip(sock, reader, payload) {
  const start = Date.now();
  let at = 0;
  const ticker = setInterval(() => {
    if (at < payload.length && !reader.isClosed()) sock.write(payload.subarray(at, (at += 1)));
  }, DRIP_MS);
  sock.write(payload.subarray(0, (at = 1)));
  let timer;
  const giveUp = new Promise((resolve) => (timer = setTimeout(resolve, GIVE_UP_MS, 'gave up')));
  try {
    const reply = await Promise.race([reader.next(), giveUp]);
    if (reply === 'gave up') return { reply: null, ms: null };
    while ((await reader.next()) !== null);
    return { reply, ms: Date.now() - start };
  } finally {
    clearInterval(ticker);
    clearTimeout(timer);
    sock.destroy();
  }
}

async function helloed(connect) {
  const { sock, reader } = await open(connect);
  sock.write(HELLO);
  const reply = await reader.next();
  assert.strictEqual(reply && reply.ok, true, JSON.stringify(reply));
  return { sock, reader };
}

async function status(connect, id) {
  const { sock, reader } = await helloed(connect);
  try {
    sock.write(frame({ op: 'status', id }));
    return await reader.next();
  } finally {
    sock.destroy();
  }
}

// status, asked again while the agent answers `busy`: a connection it has just timed out
// frees its slot when the agent's side of it closes, a moment after the client read the
// `timeout` (polled for at most 5 s).
async function statusWhenFree(connect, id) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const { sock, reader } = await open(connect);
    sock.write(HELLO);
    const hello = await reader.next();
    if (hello && hello.ok) {
      try {
        sock.write(frame({ op: 'status', id }));
        return await reader.next();
      } finally {
        sock.destroy();
      }
    }
    sock.destroy();
    const busy = hello && hello.error && hello.error.code === 'busy';
    assert.ok(busy && Date.now() < deadline, JSON.stringify(hello));
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function assertTimedOut(got, limitMs, what) {
  assert.ok(got.ms !== null, `${what}: the agent never closed the dripping connection`);
  assert.strictEqual(got.reply && got.reply.error && got.reply.error.code, 'timeout', `${what}: ${JSON.stringify(got.reply)}`);
  assert.ok(got.ms >= limitMs - 500 && got.ms <= limitMs + 3000, `${what}: closed after ${got.ms} ms, limit ${limitMs} ms`);
}

// The observed program with its agent's control channel on TCP and the Unix socket.
// -> { connectors, finish(): ends the program and checks it never noticed, cleanup() }.
async function startTarget() {
  const runtime = fs.mkdtempSync(path.join('/tmp', 'wn-'));
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-ctl-'));
  const child = spawn(process.execPath, ['--require', path.join(AGENT, 'register.js'), path.join(__dirname, 'programs/control_target.js')], {
    env: { ...process.env, WILLOWISP_OUT: out, WILLOWISP_RUNTIME_DIR: runtime, WILLOWISP_CONTROL: 'tcp', WILLOWISP_CONTROL_TOKEN: TOKEN },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const cleanup = () => {
    child.kill('SIGKILL');
    fs.rmSync(runtime, { recursive: true, force: true });
    fs.rmSync(out, { recursive: true, force: true });
  };
  try {
    while (!stdout.includes('ready\n')) await once(child.stdout, 'data');
    const [descFile] = fs.readdirSync(runtime).filter((f) => f.endsWith('.json'));
    const desc = JSON.parse(fs.readFileSync(path.join(runtime, descFile), 'utf8'));
    const [host, port] = desc.tcp.split(':');
    const finish = async () => {
      child.stdin.end();
      const [code] = await once(child, 'exit');
      assert.strictEqual(code, 0, stderr);
      assert.match(stdout, /done uncaught=0 ticks=true/);
      assert.strictEqual(stderr, '');
    };
    return { connectors: [() => net.connect(desc.socket), () => net.connect(Number(port), host)], finish, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}

test('dripping clients get `timeout` at the absolute deadline while others are served', { timeout: 90000 }, async () => {
  const target = await startTarget();
  try {
    const { connectors } = target;
    // three clients drip a request after a valid hello, one drips its hello: the agent's
    // four connections are all taken
    const slow = await Promise.all([0, 1, 0].map((i) => helloed(connectors[i])));
    const early = await open(connectors[1]);
    const slowDrips = slow.map(({ sock, reader }) => drip(sock, reader, SLOW_STATUS));
    const earlyGot = await drip(early.sock, early.reader, HELLO);
    assertTimedOut(earlyGot, 5000, 'hello dripped from connect');

    // the dripped hello's slot is free again: a real request is answered meanwhile
    const mid = await statusWhenFree(connectors[0], 'mid');
    assert.strictEqual(mid.ok, true, JSON.stringify(mid));
    assert.strictEqual(mid.id, 'mid');

    const slowGot = await Promise.all(slowDrips);
    slowGot.forEach((got, i) => assertTimedOut(got, 30000, `request ${i} dripped after the hello`));
    for (const connect of connectors) {
      const after = await statusWhenFree(connect, 'after');
      assert.strictEqual(after.ok, true, JSON.stringify(after));
      assert.strictEqual(after.result.control.internal_errors, 0);
      assert.strictEqual(after.result.faults, 0);
    }
    await target.finish(); // the program never noticed
  } finally {
    target.cleanup();
  }
});

// The agent stops reading a client that does not read its replies fast enough, and must carry on
// where it left off once the client reads: every reply arrives, in order.
test('a client that pipelines requests faster than it reads gets every reply, in order', { timeout: 60000 }, async () => {
  const target = await startTarget();
  try {
    const N = 3000; // several MiB of status replies: far more than the socket buffers hold
    for (const connect of target.connectors) {
      const { sock, reader } = await open(connect);
      const requests = [HELLO];
      for (let i = 0; i < N; i += 1) requests.push(frame({ op: 'status', id: i, pad: 'p'.repeat(512) }));
      // one write, read as it comes: the agent's replies outrun this reader, so it pauses
      // and resumes many times
      const flushed = new Promise((resolve) => sock.write(Buffer.concat(requests), resolve));
      assert.strictEqual((await reader.next()).ok, true);
      for (let i = 0; i < N; i += 1) {
        const reply = await reader.next();
        assert.ok(reply && reply.ok && reply.id === i, `reply ${i}: ${JSON.stringify(reply)}`);
      }
      await flushed;
      sock.destroy();
    }
    await target.finish();
  } finally {
    target.cleanup();
  }
});
