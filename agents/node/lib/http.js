'use strict';
// HTTP: the `http` and `https` clients and servers, and undici (global fetch).
//
// Client: `http.request` / `http.get` (and https's) are wrapped: right after the request
// object is made, before its headers can be on the wire, the hook continues the current
// trace with a new span id and sets `traceparent` (keeping one the program set itself,
// which is then recorded as is), defines a client `rpc` resource carrying that context and
// writes msg.send; from the program's call of end() (where the request is sent) the flow waits (unit.block, reason rpc),
// and the response's arrival writes rpc.response with the status (-1 on error). On Node 20
// diagnostics_channel's client events fire after the headers were sent, too late to add
// one, hence the wrapper. undici (global fetch) has `undici:request:create`, where a
// header can still be added; its `headers` and `error` channels end the wait. Global
// fetch is wrapped too, for the line of the call (wrapFetch).
//
// Server: the `request` event of every http/https server is wrapped: the hook extracts
// `traceparent`, starts an async flow for the request (agent.js) with this server's own
// span id, defines the server `rpc` resource (with the allowlisted request headers) and
// writes msg.recv; the response's first writeHead (explicit or implicit) writes rpc.reply,
// and the response's end ends the flow. Calls the handler makes continue the trace.
//
// Only shapes are kept: method, path with query values elided, peer address, allowlisted
// headers; no bodies.

const dc = require('node:diagnostics_channel');
const K = require('./kinds.js');
const agent = require('./agent.js');
const tc = require('./context.js');
const boundaries = require('./boundaries.js');
const dataAccess = require('./data.js');
const { Shape } = require('./wtrace.js');

const RPC = Symbol('willowisp.rpc');
// sorted: the JSON object is written with its keys in this order
const ALLOWED_HEADERS = ['accept', 'content-length', 'content-type', 'traceparent', 'tracestate', 'user-agent'];

// The path of a request target with query values elided (/a?x=1&y=2 -> /a?x=&y=).
function target(url) {
  const s = typeof url === 'string' ? url : String(url || '/');
  const q = s.indexOf('?');
  if (q < 0) return s.length <= 512 ? s : s.slice(0, 512);
  const keys = s.slice(q + 1).split('&').map((kv) => `${kv.split('=')[0]}=`);
  return `${s.slice(0, q)}?${keys.join('&')}`.slice(0, 512);
}

// The allowlisted request headers as a JSON object with sorted keys (built by hand: this
// runs for every request, and JSON.stringify with a key list costs several times more).
function headersJson(headers) {
  let out = '';
  for (const name of ALLOWED_HEADERS) {
    const v = headers[name];
    if (v === undefined) continue;
    out += `${out === '' ? '{' : ','}"${name}":${JSON.stringify((Array.isArray(v) ? v.join(', ') : String(v)).slice(0, 512))}`;
  }
  return out === '' ? '{}' : `${out}}`;
}

// The request headers the agent reads (trace context formats, host, the allowlist), as
// Node's lower-cased `headers` object would give them, taken from `rawHeaders`: reading
// `req.headers` makes Node 20 build the object of every header, which a handler that never
// looks at them would not pay for. Repeated headers are joined with ', ' (a joined trace
// header does not parse, as a repeated one must not), except those Node keeps the first of.
const WANTED = new Set([
  'traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags',
  'x-amzn-trace-id', 'host', ...ALLOWED_HEADERS,
]);
const FIRST_ONLY = new Set(['host', 'content-length', 'content-type', 'user-agent']);

// A raw header name as the program's clients spell it -> its lower-cased name when the
// agent wants it, else null: most requests repeat a few spellings (`Host`, `Connection`),
// and this saves a toLowerCase (a new string) and a set lookup per header.
const NAMES = new Map();
function wantedName(name) {
  let key = NAMES.get(name);
  if (key === undefined) {
    const lower = name.toLowerCase();
    key = WANTED.has(lower) ? lower : null;
    if (NAMES.size < 1024) NAMES.set(name, key);
  }
  return key;
}

function wanted(raw) {
  const out = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i];
    if (typeof name !== 'string' || name.length > 17) continue; // the longest wanted name
    const key = wantedName(name);
    if (key === null) continue;
    const prev = out[key];
    if (prev === undefined) out[key] = String(raw[i + 1]);
    else if (!FIRST_ONLY.has(key)) out[key] = `${prev}, ${raw[i + 1]}`;
  }
  return out;
}

function stateMember(tracestate) {
  if (!tracestate || !boundaries.any()) return ''; // nothing to find: skip the parse
  for (const part of String(tracestate).split(',')) {
    const [k, v] = part.trim().split('=');
    if (k === boundaries.STATE_KEY && v) return v;
  }
  return '';
}

// --- client --------------------------------------------------------------------------

// What identifies a repeated client call for its location: the flow, method, path and peer.
function siteKey(method, path, peer) {
  const f = agent.currentFlow();
  const p = String(path || '/');
  const q = p.indexOf('?');
  return `${f === undefined ? '' : f.name}\0${method}\0${q < 0 ? p : p.slice(0, q)}\0${peer}`;
}

function peerOf(args, defaultPort) {
  let url = null;
  let opts = null;
  if (typeof args[0] === 'string') url = new URL(args[0]);
  else if (args[0] instanceof URL) url = args[0];
  else if (args[0] && typeof args[0] === 'object') opts = args[0];
  if (url !== null && args[1] && typeof args[1] === 'object' && typeof args[1] !== 'function') opts = args[1];
  const host = (opts && (opts.hostname || opts.host)) || (url && url.hostname) || 'localhost';
  const port = (opts && opts.port) || (url && url.port) || defaultPort;
  return `${host}:${port}`;
}

const CLIENT_SHAPE = new Shape(['kind', 'name', 'loc', 'trace_id', 'span_id', 'sampled', 'protocol', 'library', 'method', 'target', 'peer']);
const SERVER_SHAPE = new Shape([
  'kind', 'name', 'trace_id', 'span_id', 'parent_span_id', 'sampled', 'protocol', 'library', 'method', 'target', 'peer', 'headers', 'propagation',
]);

// Defines the client resource of one request and writes msg.send; returns it (0 when not
// recorded).
function clientSend(rec, ctx, library, method, path, peer, loc) {
  if (!agent.recorded(ctx)) return 0;
  const t = target(path);
  // the values only, in CLIENT_SHAPE's order: no key per attribute on this per-request path
  const rid = rec.newResource(['rpc', `${method} ${t}`, loc, ctx.traceId, ctx.spanId, ctx.flags & 1, 'http', library, method, t, peer], CLIENT_SHAPE);
  rec.emit(K.MSG_SEND, agent.currentUnit(), rid, 0, loc);
  return rid;
}

function onRequestMade(req, args, library, defaultPort, below) {
  const rec = agent.state.rec;
  if (rec === null || req[RPC] !== undefined) return;
  // Both properties on every request, in this order, recorded or not: one hidden class
  // for all of Node's ClientRequests (a sampled few with two more properties made Node's
  // own http code polymorphic: trace ratio 0.1 cost more than recording every hop)
  req[RPC] = 0;
  req[WAIT] = undefined;
  try {
    let ctx = tc.parse(req.getHeader('traceparent'));
    if (ctx === null) {
      if (req.headersSent || req._header) return; // raw header arrays: already serialized
      ctx = agent.outgoing();
      req.setHeader('traceparent', tc.format(ctx));
      const member = boundaries.outgoingMember();
      if (member && !req.getHeader('tracestate')) req.setHeader('tracestate', `${boundaries.STATE_KEY}=${member}`);
      const other = tc.otherHeaders(ctx); // the flow came in as B3 or X-Ray: that too
      if (other !== null) for (const [name, value] of other) if (req.getHeader(name) === undefined) req.setHeader(name, value);
    }
    if (!agent.recorded(ctx)) return; // unsampled in hops mode: the context went out, nothing is recorded
    const method = req.method || 'GET';
    const peer = peerOf(args, defaultPort);
    // In both modes, recorded requests only: a hop finding (validate's SARIF and JUnit)
    // points at the line that sent it. Learned per call site, so hops mode pays a key and
    // a map lookup per request, not a stack capture (agent.repeatedCallerLoc).
    const loc = agent.repeatedCallerLoc(siteKey(method, req.path, peer), below);
    const rid = clientSend(rec, ctx, library, method, req.path, peer, loc);
    req[RPC] = rid;
    const unit = agent.currentUnit();
    // A flow waits for the reply from where it sends the request: its call of end()
    // (ClientRequest.prototype.end, patched below; http.get calls it at once). The event
    // loop itself never waits (a request made outside every flow records its send and its
    // response only).
    const wait = { unit, rid, loc, state: unit !== agent.LOOP_UNIT ? WAIT_PENDING : WAIT_UNBLOCKED };
    req[WAIT] = wait; // its 'response' or 'error' event ends it (wrapEmit)
  } catch (err) {
    rec.fault(`${library}.request`, err);
  }
}

// The wait of a client request: pending until end() is called (then the flow blocks),
// done once answered.
const WAIT = Symbol('willowisp.wait');
const WAIT_PENDING = 0;
const WAIT_BLOCKED = 1;
const WAIT_DONE = 2;
const WAIT_UNBLOCKED = 3; // a request of the event loop itself: never blocks, still answered

// The end of a client request's wait, seen where the request emits 'response' or 'error':
// no listener of the agent's own on the request (an 'error' listener would keep an error
// the program does not handle from being thrown, as it is without the agent), and nothing
// allocated per request.
function wrapEmit(ClientRequest) {
  const orig = ClientRequest.prototype.emit;
  ClientRequest.prototype.emit = function emit(event, arg) {
    const wait = this[WAIT];
    if (wait !== undefined && wait.state !== WAIT_DONE && (event === 'response' || event === 'error')) {
      wait.state = WAIT_DONE;
      try {
        const status = event === 'response' ? (arg && arg.statusCode) || 0 : -1;
        agent.state.rec.emit(K.RPC_RESPONSE, wait.unit, wait.rid, status, wait.loc);
      } catch (err) {
        if (agent.state.rec !== null) agent.state.rec.fault('http.request.emit', err);
      }
    }
    return orig.apply(this, arguments);
  };
}

function wrapEnd(ClientRequest) {
  const orig = ClientRequest.prototype.end;
  ClientRequest.prototype.end = function end() {
    const wait = this[WAIT];
    if (wait !== undefined && wait.state === WAIT_PENDING) {
      wait.state = WAIT_BLOCKED;
      try {
        agent.state.rec.emit(K.UNIT_BLOCK, wait.unit, wait.rid, K.REASON_RPC, wait.loc);
      } catch (err) {
        if (agent.state.rec !== null) agent.state.rec.fault('http.request.end', err);
      }
    }
    return orig.apply(this, arguments);
  };
}

function wrapClient(mod, library, defaultPort) {
  const origRequest = mod.request;
  // `arguments` rather than rest parameters: no array is made per call
  function request() {
    const req = origRequest.apply(this, arguments);
    onRequestMade(req, arguments, library, defaultPort, request);
    return req;
  }
  function get() {
    const req = origRequest.apply(this, arguments);
    onRequestMade(req, arguments, library, defaultPort, get);
    req.end();
    return req;
  }
  mod.request = request;
  mod.get = get;
}

// --- server --------------------------------------------------------------------------

function onServerRequest(req, res, library) {
  const rec = agent.state.rec;
  const headers = Array.isArray(req.rawHeaders) ? wanted(req.rawHeaders) : req.headers || {};
  const { ctx: parent, how, style } = tc.incoming(headers);
  const method = req.method || '?';
  const inst = boundaries.enter('http', method, req.url || '/', stateMember(headers.tracestate));
  let flags = parent !== null ? parent.flags : tc.rootFlags();
  const forced = boundaries.forcedAttrs(inst, flags);
  if (inst !== null) flags |= 1; // a declared boundary is recorded whatever the ratio
  const ctx = { traceId: parent !== null ? parent.traceId : tc.newTraceId(), spanId: tc.newSpanId(), flags, style };
  if (!agent.recorded(ctx)) {
    // not sampled in hops mode: carry the decision on, record nothing (the response gets
    // the property all the same: one hidden class, see onRequestMade)
    res[RPC] = undefined;
    return agent.makeFlow(0, ctx, inst, true, '');
  }
  const t = target(req.url);
  const name = `${method} ${t}`;
  const flow = agent.newFlow(name, ctx, inst, 0);
  const values = [
    'rpc', name, ctx.traceId, ctx.spanId, parent !== null ? parent.spanId : '', flags & 1, 'http', library, method, t,
    peerOfSocket(req.socket), headersJson(headers), how,
  ];
  let rid;
  if (forced.length === 0) rid = rec.newResource(values, SERVER_SHAPE);
  else {
    // a boundary forced the recording (rare): the record has more keys than the shape
    const attrs = [];
    for (let i = 0; i < values.length; i += 1) attrs.push(SERVER_SHAPE.keys[i], values[i]);
    for (const [k, v] of forced) attrs.push(k, v);
    rid = rec.newResource(attrs);
  }
  rec.emit(K.MSG_RECV, flow.unit, rid, 0, 0);
  dataAccess.httpRequest(rec, flow.unit, method, headers.host || '?', t);
  res[RPC] = { rid, flow, replied: false }; // the reply and the 'close' (wrapResponse) end it
  return flow;
}

// The caller's address of a server socket, kept on the socket: a keep-alive connection
// carries many requests.
const PEER = Symbol('willowisp.peer');
function peerOfSocket(sock) {
  if (sock === null || typeof sock !== 'object') return '?:0';
  let peer = sock[PEER];
  if (peer === undefined) {
    peer = `${sock.remoteAddress || '?'}:${sock.remotePort || 0}`;
    if (sock.remoteAddress) sock[PEER] = peer; // known once connected
  }
  return peer;
}

// `library` names the core module the server comes from (`node:http`, `node:https`): the
// `node:` prefix keeps Node's hops apart from Python's `http.server` in analyze's output.
function wrapServer(Server, library) {
  const proto = Server.prototype;
  const origEmit = proto.emit;
  // `arguments` and no closure: this runs for every event of every server
  const emitRequest = (server, req, res) => origEmit.call(server, 'request', req, res);
  proto.emit = function emit(event, req, res) {
    if (event !== 'request' || agent.state.rec === null || arguments.length !== 3) return origEmit.apply(this, arguments);
    let flow;
    try {
      flow = onServerRequest(req, res, library);
    } catch (err) {
      agent.state.rec.fault('http.server.request', err);
      return origEmit.apply(this, arguments);
    }
    return agent.als.run(flow, emitRequest, this, req, res);
  };
}

// The server response: its first writeHead writes rpc.reply, its 'close' event ends the
// request's flow (seen in emit: no listener per request).
function wrapResponse(ServerResponse) {
  const origWriteHead = ServerResponse.prototype.writeHead;
  ServerResponse.prototype.writeHead = function writeHead(statusCode) {
    const side = this[RPC];
    if (side !== undefined && !side.replied) {
      side.replied = true;
      try {
        agent.state.rec.emit(K.RPC_REPLY, side.flow.unit, side.rid, Number(statusCode) || 0, 0);
      } catch (err) {
        agent.state.rec.fault('http.server.writeHead', err);
      }
    }
    return origWriteHead.apply(this, arguments);
  };
  const origEmit = ServerResponse.prototype.emit;
  ServerResponse.prototype.emit = function emit(event) {
    if (event === 'close') {
      const side = this[RPC];
      if (side !== undefined) {
        this[RPC] = undefined;
        try {
          agent.endFlow(side.flow, this.writableFinished ? 0 : 2);
        } catch (err) {
          if (agent.state.rec !== null) agent.state.rec.fault('http.server.close', err);
        }
      }
    }
    return origEmit.apply(this, arguments);
  };
}

// --- undici / fetch ------------------------------------------------------------------
//
// undici makes a fetch's request (`undici:request:create`) inside the program's fetch()
// call, but 20-27 frames below it (Node 20 and 24), deeper than the frames callerLoc
// reads: the program's line was never found. So global fetch is wrapped: while one of its
// calls runs, the create hook captures the stack from below the wrapper, where the
// program's frame is the first, and learns the line per call site like the http client
// (repeatedCallerLoc). Being synchronous it holds however many fetches are in flight: each
// request is created within its own call. A request undici makes later (a redirect's next
// one, made when the 3xx arrives) gets no line, nor does undici used directly when its
// caller is deeper than callerLoc reads. An
// AsyncLocalStorage around each call would cover those too, but on Node 20 every
// AsyncLocalStorage in use costs each async resource the process creates a property copy
// (about 30 ns a promise), for as long as the program runs.

// fetch() calls running now (nested: a getter of the program's that fetch reads can fetch)
let fetchCalls = 0;
let wrappedFetch; // the wrapper: where the create hook's stack capture starts

// Replaces globalThis.fetch with a function of the same name and length that counts its
// calls and calls the original with the same `this` and arguments, returning (or
// throwing) what it does; nothing in it can fail on the agent's side.
function wrapFetch() {
  const desc = Object.getOwnPropertyDescriptor(globalThis, 'fetch');
  if (desc === undefined || typeof desc.value !== 'function' || !desc.writable || !desc.configurable) return;
  const orig = desc.value;
  // `arguments` and Reflect.apply: no array or closure per call
  function fetch() {
    fetchCalls += 1;
    try {
      return Reflect.apply(orig, this, arguments);
    } finally {
      fetchCalls -= 1;
    }
  }
  Object.defineProperty(fetch, 'name', { value: orig.name });
  Object.defineProperty(fetch, 'length', { value: orig.length });
  Object.defineProperty(globalThis, 'fetch', { ...desc, value: fetch });
  wrappedFetch = fetch;
}

function installUndici(rec) {
  const reqs = new WeakMap(); // undici request -> {rid, unit}
  dc.subscribe('undici:request:create', ({ request }) => {
    try {
      const existing = findHeader(request.headers, 'traceparent');
      let ctx = tc.parse(existing);
      if (ctx === null) {
        ctx = agent.outgoing();
        request.addHeader('traceparent', tc.format(ctx));
        const member = boundaries.outgoingMember();
        if (member) request.addHeader('tracestate', `${boundaries.STATE_KEY}=${member}`);
        const other = tc.otherHeaders(ctx);
        if (other !== null) for (const [name, value] of other) if (findHeader(request.headers, name.toLowerCase()) === null) request.addHeader(name, value);
      }
      const method = request.method || 'GET';
      const peer = String(request.origin || '').replace(/^\w+:\/\//, '');
      if (!agent.recorded(ctx)) return; // unsampled in hops mode: nothing to locate or record
      // inside a fetch() call: the program's frame is the first below the wrapper
      const loc = agent.repeatedCallerLoc(siteKey(method, request.path, peer), fetchCalls > 0 ? wrappedFetch : undefined);
      const rid = clientSend(rec, ctx, 'undici', method, request.path, peer, loc);
      if (rid === 0) return;
      const unit = agent.currentUnit();
      reqs.set(request, { rid, unit, loc });
      if (unit !== agent.LOOP_UNIT) rec.emit(K.UNIT_BLOCK, unit, rid, K.REASON_RPC, loc);
    } catch (err) {
      rec.fault('undici:request:create', err);
    }
  });
  dc.subscribe('undici:request:headers', ({ request, response }) => {
    const r = reqs.get(request);
    if (r === undefined) return;
    reqs.delete(request);
    rec.emit(K.RPC_RESPONSE, r.unit, r.rid, response.statusCode || 0, r.loc);
  });
  dc.subscribe('undici:request:error', ({ request }) => {
    const r = reqs.get(request);
    if (r === undefined) return;
    reqs.delete(request);
    rec.emit(K.RPC_RESPONSE, r.unit, r.rid, -1, r.loc);
  });
  try {
    wrapFetch(); // after the hooks: without it fetch is still recorded, with no line
  } catch (err) {
    rec.fault('install fetch', err);
  }
}

function findHeader(headers, name) {
  // undici keeps headers as a flat [name, value, ...] array or as a "k: v\r\n" string
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === name) return String(headers[i + 1]);
    }
    return null;
  }
  if (typeof headers === 'string') {
    const m = new RegExp(`(?:^|\\r\\n)${name}:\\s*([^\\r\\n]*)`, 'i').exec(headers);
    return m ? m[1] : null;
  }
  return null;
}

function install(rec) {
  const http = require('node:http');
  const https = require('node:https');
  wrapClient(http, 'node:http', 80);
  wrapClient(https, 'node:https', 443);
  wrapEnd(http.ClientRequest);
  wrapEmit(http.ClientRequest);
  wrapServer(http.Server, 'node:http');
  wrapServer(https.Server, 'node:https');
  wrapResponse(http.ServerResponse);
  installUndici(rec);
}

module.exports = { install, target, headersJson, stateMember };
