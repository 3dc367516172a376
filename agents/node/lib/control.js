'use strict';
// The control channel, agent side (docs/protocols.md, "Control channel"): `willowisp ctl`
// asks this process for its status and switches boundaries on and off without a restart.
//
// At start the agent listens on a Unix socket (mode 0600) in the per-user runtime folder
// (WILLOWISP_RUNTIME_DIR, else /tmp/willowisp-<uid>, mode 0700 and ours, checked with
// lstat) and, with WILLOWISP_CONTROL=tcp, on 127.0.0.1 (port chosen by the system) too;
// WILLOWISP_CONTROL=off turns it off. Beside the socket goes the descriptor
// `<pid>-<p8>.json` (mode 0600, written atomically) with the token, which is how `ctl PID`
// and `ctl RUN_FOLDER` find the process. Both files are removed at exit.
//
// The event loop: the listeners and every connection are unref'd, so the channel never
// keeps a program alive that would otherwise end, and everything is done in 'data'
// callbacks on bytes already read (frames.js), so it never blocks the loop. The timers
// are unref'd too. They are absolute deadlines, not waits per read (docs/protocols.md,
// "Limits"): the hello within 5 s of connecting; after it, a frame's first byte within 30 s
// and the rest of that frame within 30 s of that byte; each reply 30 s to leave; 1 s of
// draining before a close after an error. A per-read wait would let a client dripping a
// byte every few seconds hold a connection for ever, and four of them would leave every
// real `willowisp ctl` with `busy`. The channel's own sockets are made before any flow
// exists and its callbacks run outside every flow, so they are recorded as nothing but the
// event loop.
//
// Robustness: malformed input is counted and answered, ends at most its own connection,
// and never reaches the program; anything unexpected is an agent fault (rec.fault).
// Node has no SO_PEERCRED: a Unix peer's uid cannot be checked, so the 0700 folder, the
// 0600 socket and the token are the protection (as the spec allows where the platform
// does not tell).

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const crypto = require('node:crypto');
const F = require('./frames.js');

const VERSIONS = [1];
const OPS = ['ping', 'status', 'enable', 'disable'];
const MAX_CONNECTIONS = 4;
const MAX_ARG_BYTES = 4096;
const HELLO_MS = 5000;
const FRAME_MS = 30000; // for a frame's first byte, then for the rest of that frame
const SEND_MS = 30000; // for one reply to leave
const LINGER_MS = 1000;
const LINGER_BYTES = 1024 * 1024;
const MAX_UNIX_PATH = 107;
// Error code -> the connection is closed after it (before a hello every error closes it).
const CLOSES = new Set(['bad-frame', 'frame-too-large', 'timeout', 'busy', 'unauthorized', 'unsupported-version', 'hello-required']);

function runtimeDir(env = process.env) {
  return env.WILLOWISP_RUNTIME_DIR || `/tmp/willowisp-${process.getuid()}`;
}

// Creates the folder (0700) if missing and refuses one that is not a real folder of ours
// that nobody else may enter: someone else's folder could leak tokens or plant sockets.
function checkPrivateDir(dir) {
  try {
    fs.mkdirSync(dir, 0o700);
  } catch (err) {
    if (err.code !== 'EEXIST') throw err;
  }
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a folder (a symlink?)`);
  if (st.uid !== process.getuid()) throw new Error(`${dir} belongs to uid ${st.uid}, not ${process.getuid()}`);
  if ((st.mode & 0o077) !== 0) throw new Error(`${dir} has mode ${(st.mode & 0o777).toString(8)}, not 700`);
}

// Descriptors and sockets of processes that died without cleaning up (SIGKILL): removed
// when their pid no longer exists. Bounded per call.
function sweepStale(dir, limit = 256) {
  let names;
  try {
    names = fs.readdirSync(dir).slice(0, limit * 2);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^(\d+)-.*\.(json|sock)$/.exec(name);
    if (m === null) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if (err.code === 'ESRCH') {
        try {
          fs.unlinkSync(path.join(dir, name));
        } catch {
          // gone already
        }
      }
    }
  }
}

function writePrivateJson(file, obj) {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.unlinkSync(tmp);
  } catch {
    // not there
  }
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(obj, null, 1));
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

function sameToken(given, expected) {
  if (typeof given !== 'string' || !expected) return false;
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

// One agent's server. `backend` is what the commands call: status(), enable(arg),
// disable(arg); enable/disable throw an error with `refused` set for a boundary the agent
// refuses (bad-boundary). Invariant: every socket in `conns` is a served connection (busy
// ones are never added), and is removed on 'close'.
class ControlServer {
  constructor({ token, info, backend, unixPath, tcp, onFault }) {
    this.token = token;
    this.info = info;
    this.backend = backend;
    this.unixPath = unixPath;
    this.wantTcp = tcp;
    this.tcpAddress = '';
    this.onFault = onFault;
    this.counters = { connections: 0, requests: 0, malformed: 0, unauthorized: 0, busy: 0, internal_errors: 0 };
    this.servers = [];
    this.conns = new Set(); // Invariant: size <= MAX_CONNECTIONS
    this.files = []; // what stop() removes
    this.closing = false;
  }

  // Binds (synchronously for the Unix socket; TCP is bound once its address is looked
  // up, a tick later) and calls ready() when every listener listens.
  start(ready) {
    let pending = 0;
    const listening = () => {
      pending -= 1;
      if (pending === 0) ready();
    };
    if (this.unixPath) {
      try {
        fs.unlinkSync(this.unixPath);
      } catch {
        // not there
      }
      const s = this.server();
      pending += 1;
      s.once('listening', listening);
      s.listen(this.unixPath);
      this.files.push(this.unixPath);
      fs.chmodSync(this.unixPath, 0o600); // the folder is 0700 already: no window
    }
    if (this.wantTcp) {
      const s = this.server();
      pending += 1;
      s.once('listening', () => {
        this.tcpAddress = `127.0.0.1:${s.address().port}`;
        listening();
      });
      s.listen({ port: 0, host: '127.0.0.1' });
    }
    if (pending === 0) throw new Error('neither a Unix socket nor TCP was asked for');
  }

  server() {
    const s = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (sock) => this.accept(sock));
    s.on('error', (err) => this.fault('control listen', err));
    s.unref();
    this.servers.push(s);
    return s;
  }

  stop() {
    this.closing = true;
    for (const s of this.servers) {
      try {
        s.close();
      } catch {
        // closed already
      }
    }
    for (const c of this.conns) c.destroy();
    for (const f of this.files) {
      try {
        fs.unlinkSync(f);
      } catch {
        // gone already
      }
    }
    this.files = [];
  }

  fault(where, err) {
    this.counters.internal_errors += 1;
    try {
      if (this.onFault) this.onFault(where, err);
    } catch {
      // never raise into the program
    }
  }

  // --- one connection --------------------------------------------------------------------

  accept(sock) {
    try {
      sock.unref();
      sock.on('error', () => sock.destroy()); // a reset peer: nothing to tell anyone
      this.counters.connections += 1;
      if (this.closing || this.conns.size >= MAX_CONNECTIONS) {
        this.counters.busy += 1;
        this.closeAfterError(sock, null, F.errorReply('busy', 'too many control connections'));
        return;
      }
      this.conns.add(sock);
      sock.once('close', () => this.conns.delete(sock));
      // sending: a reply is still in the socket's buffer (the peer is not reading)
      const conn = { sock, hello: false, done: false, sending: false, timer: null, reader: new F.FrameReader(F.CONTROL_MAGIC, F.MAX_CONTROL_BODY) };
      this.expire(conn, HELLO_MS, 'no hello within 5 s of connecting');
      sock.once('close', () => clearTimeout(conn.timer));
      sock.on('drain', () => this.onDrain(conn));
      sock.on('data', (data) => this.onData(conn, data));
      sock.on('end', () => this.onEnd(conn));
    } catch (err) {
      this.fault('control accept', err);
      sock.destroy();
    }
  }

  // The connection's one deadline from now on: `timeout` (and close) unless something
  // sets another first.
  expire(conn, ms, why) {
    clearTimeout(conn.timer);
    conn.timer = setTimeout(() => {
      if (!conn.done) this.fail(conn, F.errorReply('timeout', why));
    }, ms);
    conn.timer.unref();
  }

  onData(conn, data) {
    if (conn.done) return;
    try {
      const wasInFrame = conn.reader.inFrame;
      let bodies = 0;
      const onBody = (body) => {
        bodies += 1;
        this.counters.requests += 1;
        const [reply, close] = this.handle(conn, body);
        if (close) {
          this.fail(conn, reply);
          return false;
        }
        this.send(conn, reply);
        return true;
      };
      try {
        conn.reader.push(data, onBody);
      } catch (err) {
        if (!(err instanceof F.ProtocolError)) throw err;
        this.counters.malformed += 1;
        this.fail(conn, F.errorReply(err.code, err.message));
      }
      // a frame that began in this chunk began now; one already under way keeps its deadline
      if (!wasInFrame || bodies > 0) this.awaitFrame(conn);
    } catch (err) {
      this.fault('control connection', err);
      conn.done = true;
      conn.sock.destroy();
    }
  }

  onEnd(conn) {
    if (conn.done) return;
    conn.done = true;
    if (conn.reader.inFrame) {
      this.counters.malformed += 1; // truncated: closed without a reply
      conn.sock.destroy();
      return;
    }
    conn.sock.end(); // a clean end: the replies already written go out first
  }

  // After the hello, with no reply waiting to leave: the next frame's first byte is due in
  // 30 s, or, with a frame under way, the rest of it. Before the hello, the hello's deadline
  // from connect stands.
  awaitFrame(conn) {
    if (conn.done || !conn.hello || conn.sending) return;
    if (conn.reader.inFrame) this.expire(conn, FRAME_MS, 'frame not complete within 30 s of its first byte');
    else this.expire(conn, FRAME_MS, 'no request within 30 s');
  }

  send(conn, reply) {
    let frame = F.packFrame(F.CONTROL_MAGIC, reply);
    if (frame.length - 8 > F.MAX_CONTROL_BODY) {
      frame = F.packFrame(F.CONTROL_MAGIC, F.errorReply('internal', `reply of ${frame.length} bytes is over the ${F.MAX_CONTROL_BODY}-byte limit`, reply.id));
    }
    if (conn.sock.write(frame) || conn.sending) return;
    // A peer that does not read its replies: stop reading its requests (so replies cannot
    // pile up in memory) and give the buffered reply 30 s to leave. No `timeout` can reach
    // a peer that does not read, so the connection is just closed.
    conn.sending = true;
    conn.sock.pause();
    clearTimeout(conn.timer);
    conn.timer = setTimeout(() => {
      conn.done = true;
      conn.sock.destroy();
    }, SEND_MS);
    conn.timer.unref();
  }

  onDrain(conn) {
    if (conn.done || !conn.sending) return;
    conn.sending = false;
    clearTimeout(conn.timer);
    conn.sock.resume();
    this.awaitFrame(conn);
  }

  fail(conn, reply) {
    conn.done = true;
    clearTimeout(conn.timer);
    this.closeAfterError(conn.sock, conn, reply);
  }

  // Sends the error reply, half-closes, then reads and discards what the peer still sends
  // (at most 1 s or 1 MiB) before closing: closing with unread input would reset the
  // connection and could destroy the reply before the peer reads it.
  closeAfterError(sock, conn, reply) {
    let drained = 0;
    const finish = () => {
      clearTimeout(timer);
      if (sock.writableFinished) sock.destroy();
      else sock.once('finish', () => sock.destroy());
    };
    const timer = setTimeout(() => sock.destroy(), LINGER_MS);
    timer.unref();
    // the connection's own handlers ignore input from now on (conn.done): drain it here
    if (conn !== null) sock.removeAllListeners('end');
    sock.on('data', (d) => {
      drained += d.length;
      if (drained > LINGER_BYTES) sock.destroy();
    });
    sock.on('end', finish);
    sock.once('close', () => clearTimeout(timer));
    sock.resume(); // paused while a reply waited to leave: the drain must still read
    try {
      sock.end(F.packFrame(F.CONTROL_MAGIC, reply));
    } catch {
      sock.destroy();
    }
  }

  // One request body -> [reply, close the connection after it].
  handle(conn, body) {
    let req;
    try {
      req = F.parseObject(body);
    } catch (err) {
      if (!(err instanceof F.ProtocolError)) throw err;
      this.counters.malformed += 1;
      return [F.errorReply(err.code, err.message), !conn.hello];
    }
    const [rid, idOk] = F.requestId(req);
    const op = req.op;
    if (!idOk || typeof op !== 'string') {
      this.counters.malformed += 1;
      const what = !idOk ? 'id must be a string of at most 64 characters or an integer below 2^53' : 'op must be a string';
      return [F.errorReply('bad-request', what), !conn.hello];
    }
    if (!conn.hello) {
      if (op !== 'hello') {
        this.counters.malformed += 1;
        return [F.errorReply('hello-required', 'the first request must be hello', rid), true];
      }
      return this.hello(conn, req, rid);
    }
    try {
      return [F.okReply(this.command(op, req), rid), false];
    } catch (err) {
      if (err instanceof F.ProtocolError) {
        this.counters.malformed += 1;
        return [F.errorReply(err.code, err.message, rid), CLOSES.has(err.code)];
      }
      if (err && err.refused) return [F.errorReply('bad-boundary', err.message, rid), false];
      this.fault(`control ${op.slice(0, 64)}`, err);
      return [F.errorReply('internal', `${err && err.name}: ${err && err.message}`, rid), false];
    }
  }

  hello(conn, req, rid) {
    if (!sameToken(req.token, this.token)) {
      this.counters.unauthorized += 1;
      return [F.errorReply('unauthorized', 'missing or wrong token', rid), true];
    }
    const v = req.versions;
    if (!Array.isArray(v) || v.length < 1 || v.length > 16 || !v.every((x) => Number.isSafeInteger(x))) {
      this.counters.malformed += 1;
      return [F.errorReply('bad-request', 'versions must be a list of 1 to 16 integers'), true];
    }
    const common = v.filter((x) => VERSIONS.includes(x));
    if (common.length === 0) {
      return [F.errorReply('unsupported-version', `no common version: agent speaks ${JSON.stringify(VERSIONS)}`, rid, { versions: VERSIONS }), true];
    }
    conn.hello = true;
    return [F.okReply({ version: Math.max(...common), agent: { ...this.info }, ops: OPS }, rid), false];
  }

  command(op, req) {
    if (op === 'ping') return {};
    if (op === 'status') {
      const out = this.backend.status();
      out.control = { ...this.counters, socket: this.unixPath, tcp: this.tcpAddress };
      return out;
    }
    if (op === 'enable' || op === 'disable') {
      const arg = req.boundary;
      if (typeof arg !== 'string' || !arg.trim()) throw new F.ProtocolError('bad-request', `${op} needs a non-empty string 'boundary'`);
      if (Buffer.byteLength(arg, 'utf8') > MAX_ARG_BYTES) throw new F.ProtocolError('bad-request', `boundary is over ${MAX_ARG_BYTES} bytes`);
      if (op === 'enable') return { boundary: this.backend.enable(arg), enabled: true };
      return { boundary: this.backend.disable(arg), enabled: false };
    }
    if (op === 'hello') throw new F.ProtocolError('bad-request', 'hello was already done on this connection');
    throw new F.ProtocolError('unknown-command', `unknown op ${JSON.stringify(op.slice(0, 64))}; known: ${OPS.join(', ')}`);
  }
}

// --- the agent's one server -------------------------------------------------------------

let current = null;

// At agent start (WILLOWISP_CONTROL: unix (default), tcp or off). Never throws: a channel
// that cannot be set up is an agent fault and the program runs on.
function startServer(rec, backend, env = process.env) {
  try {
    let mode = (env.WILLOWISP_CONTROL || 'unix').trim().toLowerCase();
    if (['off', '0', 'no', 'none'].includes(mode)) return null;
    if (mode !== 'unix' && mode !== 'tcp') {
      rec.fault('control', new Error(`WILLOWISP_CONTROL=${JSON.stringify(mode.slice(0, 64))}: use unix, tcp or off`));
      mode = 'unix';
    }
    const dir = runtimeDir(env);
    checkPrivateDir(dir);
    sweepStale(dir);
    const stem = `${process.pid}-${rec.processId.slice(0, 8)}`;
    let sockPath = path.join(dir, `${stem}.sock`);
    if (Buffer.byteLength(sockPath) > MAX_UNIX_PATH) {
      if (mode !== 'tcp') throw new Error(`socket path ${sockPath} is over 107 bytes`);
      rec.fault('control', new Error(`socket path ${sockPath} is over 107 bytes: TCP only`));
      sockPath = '';
    }
    let token = (env.WILLOWISP_CONTROL_TOKEN || '').trim();
    if (token && !/^[0-9a-f]{32}$/.test(token)) {
      rec.fault('control', new Error('WILLOWISP_CONTROL_TOKEN is not 32 lowercase hex digits: a random token is used'));
      token = '';
    }
    if (!token) token = crypto.randomBytes(16).toString('hex');
    const info = {
      pid: process.pid,
      process_id: rec.processId,
      service: rec.config.service,
      runtime: 'nodejs',
      agent_version: require('./recorder.js').AGENT_VERSION,
    };
    const server = new ControlServer({ token, info, backend, unixPath: sockPath, tcp: mode === 'tcp', onFault: (w, e) => rec.fault(w, e) });
    current = server;
    server.start(() => {
      try {
        const file = path.join(dir, `${stem}.json`);
        writePrivateJson(file, {
          ...info,
          protocol: 'willowisp-control',
          versions: VERSIONS,
          socket: sockPath,
          tcp: server.tcpAddress,
          token,
          run: realpath(rec.config.out),
        });
        if (server.closing) fs.unlinkSync(file);
        else server.files.push(file);
      } catch (err) {
        rec.fault('control descriptor', err);
        server.stop();
      }
    });
    return server;
  } catch (err) {
    rec.fault('control', err);
    if (current !== null) current.stop();
    current = null;
    return null;
  }
}

function realpath(p) {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

// At exit (and before the default action of a signal): close and remove the files.
function stopServer() {
  const s = current;
  current = null;
  if (s !== null) {
    try {
      s.stop();
    } catch {
      // at exit: nothing more to do
    }
  }
}

module.exports = { ControlServer, startServer, stopServer, runtimeDir, checkPrivateDir, sameToken, VERSIONS, OPS };
