'use strict';
// The control channel in a real process: garbage from many connections at once (random
// bytes, wrong magics, huge lengths, truncated frames, bad tokens, resets, more
// connections than the agent serves) never throws into the program, which keeps running,
// is still answered afterwards, counts what it refused, and ends by itself while a control
// connection is still open (the channel never keeps the event loop alive).
// The protocol corpus itself is fed by tests/agents/test_node_agent.py.

const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { once } = require('node:events');

const AGENT = path.resolve(__dirname, '..');
const { TOKEN, frame } = require('./ctl_frames.js');

function hello(token = TOKEN) {
  return frame({ op: 'hello', versions: [1], token });
}

// Sends `data`, half-closes, resolves with everything received until the agent closed.
function exchange(connect, data, { reset = false } = {}) {
  return new Promise((resolve) => {
    const sock = connect();
    const got = [];
    sock.on('data', (d) => got.push(d));
    sock.on('error', () => {});
    sock.on('close', () => resolve(Buffer.concat(got)));
    sock.on('connect', () => {
      if (reset) {
        sock.write(data.subarray(0, Math.max(1, data.length >> 1)));
        if (typeof sock.remotePort === 'number') sock.resetAndDestroy();
        else sock.destroy();
        return;
      }
      sock.end(data);
    });
  });
}

function replies(buf) {
  const out = [];
  for (let at = 0; at + 8 <= buf.length; ) {
    assert.strictEqual(buf.toString('latin1', at, at + 4), 'WCTL');
    const n = buf.readUInt32LE(at + 4);
    out.push(JSON.parse(buf.toString('utf8', at + 8, at + 8 + n)));
    at += 8 + n;
  }
  return out;
}

const GARBAGE = [
  () => crypto.randomBytes(1 + crypto.randomInt(4096)),
  () => Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'),
  () => Buffer.concat([hello(), Buffer.from('WCTL\xff\xff\xff\xff', 'latin1')]),
  () => Buffer.concat([hello(), frame('{"op":'), frame('[1,2'), frame('null'), frame('{"op":"enable","boundary":"entry="}')]),
  () => hello('f'.repeat(32)),
  () => frame({ op: 'status' }),
  () => Buffer.concat([hello(), frame('x'.repeat(100)).subarray(0, 50)]),
  () => Buffer.concat([hello(), frame({ op: 'enable', boundary: 'b'.repeat(5000) }), frame({ op: 'disable', boundary: 'nope:x' })]),
  () => Buffer.concat([hello(), crypto.randomBytes(64)]),
];

test('garbage on the control channel never reaches the program, which ends by itself', async () => {
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
  try {
    while (!stdout.includes('ready\n')) await once(child.stdout, 'data');
    const [descFile] = fs.readdirSync(runtime).filter((f) => f.endsWith('.json'));
    const desc = JSON.parse(fs.readFileSync(path.join(runtime, descFile), 'utf8'));
    assert.strictEqual(desc.runtime, 'nodejs');
    assert.strictEqual(fs.statSync(path.join(runtime, descFile)).mode & 0o777, 0o600);
    assert.strictEqual(fs.statSync(desc.socket).mode & 0o777, 0o600);
    const [host, port] = desc.tcp.split(':');
    const connectors = [() => net.connect(desc.socket), () => net.connect(Number(port), host)];

    // 240 garbage connections, 24 at a time: more than the 4 the agent serves at once
    for (let round = 0; round < 10; round += 1) {
      await Promise.all(
        Array.from({ length: 24 }, (_, i) => exchange(connectors[i % 2], GARBAGE[(round + i) % GARBAGE.length](), { reset: i % 7 === 3 })),
      );
    }
    // still answered, and what was refused is counted. The agent serves 4 connections at
    // once and answers a fifth `busy`: the storm's last ones may still be closing on its
    // side, so a `busy` answer is asked again (it is the protocol's signal to)
    for (const connect of connectors) {
      let got = [];
      for (let tries = 0; tries < 100; tries += 1) {
        got = replies(await exchange(connect, Buffer.concat([hello(), frame({ op: 'status', id: 9 })])));
        if (!(got.length === 1 && got[0].error && got[0].error.code === 'busy')) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.strictEqual(got.length, 2, JSON.stringify(got));
      assert.strictEqual(got[1].ok, true);
      assert.strictEqual(got[1].id, 9);
      const c = got[1].result.control;
      assert.ok(c.malformed > 0 && c.unauthorized > 0, JSON.stringify(c));
      assert.strictEqual(c.internal_errors, 0);
      assert.strictEqual(got[1].result.faults, 0);
    }
    // an open control connection must not keep the program alive once its work is done
    const idle = connectors[0]();
    idle.on('error', () => {});
    await once(idle, 'connect');
    idle.write(hello());
    await once(idle, 'data');
    child.stdin.end();
    const [code] = await once(child, 'exit');
    idle.destroy();
    assert.strictEqual(code, 0, stderr);
    assert.match(stdout, /done uncaught=0 ticks=true/);
    assert.strictEqual(stderr, '');
    assert.deepStrictEqual(fs.readdirSync(runtime), [], 'socket and descriptor removed at exit');
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(runtime, { recursive: true, force: true });
    fs.rmSync(out, { recursive: true, force: true });
  }
});
