'use strict';
// HTTP/2 (`node:http2`): client streams and server streams, recorded like HTTP/1 hops
// (http.js): the client continues the current trace with a new span id in `traceparent`,
// defines a client `rpc` resource (`library` `node:http2`) and writes msg.send, the flow
// waits (unit.block, reason rpc) from the request until the response headers (rpc.response
// with `:status`; -1 when the stream closes or fails first). The server extracts the
// context (W3C, else B3, else X-Ray: context.js `incoming`), starts the stream's async
// flow, defines the server `rpc` resource (`library` `node:http2` too: the module both sides
// come from) and writes msg.recv; the stream's first respond() writes rpc.reply with
// `:status`; its close ends the flow (status 0, or 2 when the stream was reset). The
// compatibility API (`request` handlers with Http2ServerRequest/Response) is carried by
// the same 'stream' event and respond().
//
// Loading `node:http2` costs a Node process tens of milliseconds, so the agent does not
// load it: it patches the module when the program first requires it (Module.prototype.require),
// or at the next flush when something else loaded it (an ESM import): the module's own
// exports are wrapped and module.syncBuiltinESMExports() updates ESM bindings. Servers
// are covered by patching the server classes' prototypes (taken from a server object made
// and dropped at patch time, no socket), so servers made before are seen too; client
// sessions get their `request` patched on their prototype at the first connect() through
// the wrapped export, so a session made by a connect() the program imported before the
// patch (an ESM binding read earlier) is not seen.

const Module = require('node:module');
const K = require('./kinds.js');
const agent = require('./agent.js');
const tc = require('./context.js');
const boundaries = require('./boundaries.js');
const { target, headersJson, stateMember } = require('./http.js');

const SIDE = Symbol('willowisp.http2');
let patched = false;
let clientPatched = false;

// Has node:http2 been loaded (by anything)? Node's list of loaded built-ins only grows: it
// is searched again only when it grew since the last look (this runs at every flush).
let listSeen = 0;
function loaded() {
  if (patched) return true;
  const list = process.moduleLoadList;
  if (!Array.isArray(list) || list.length === listSeen) return false;
  const from = listSeen;
  listSeen = list.length;
  for (let i = from; i < list.length; i += 1) if (list[i] === 'NativeModule http2') return true;
  return false;
}

// --- client --------------------------------------------------------------------------

function patchClientSession(session, rec) {
  const proto = Object.getPrototypeOf(session);
  if (clientPatched || proto === null || typeof proto.request !== 'function') return;
  clientPatched = true;
  const origRequest = proto.request;
  proto.request = function request(headers, options) {
    if (agent.state.rec === null) return origRequest.apply(this, arguments);
    let send = null;
    try {
      send = beforeRequest(this, headers);
    } catch (err) {
      rec.fault('http2.request', err);
    }
    if (send === null) return origRequest.apply(this, arguments);
    const stream = arguments.length > 1 ? origRequest.call(this, send.headers, options) : origRequest.call(this, send.headers);
    try {
      afterRequest(rec, stream, send);
    } catch (err) {
      rec.fault('http2.request', err);
    }
    return stream;
  };
}

// The headers to send (a copy with `traceparent`, so a headers object the program reuses
// never carries a stale one) and what to record, or null to leave the request alone.
function beforeRequest(session, headers) {
  if (Array.isArray(headers)) return null; // raw header pairs (newer Node): left alone
  const given = headers !== null && typeof headers === 'object' ? headers : {};
  let ctx = tc.parse(headerOf(given, 'traceparent'));
  let out = given;
  if (ctx === null) {
    ctx = agent.outgoing();
    out = Object.assign({}, given);
    for (const k of Object.keys(out)) {
      if (k.toLowerCase() === 'traceparent') delete out[k];
    }
    out.traceparent = tc.format(ctx);
    const member = boundaries.outgoingMember();
    if (member && headerOf(given, 'tracestate') === undefined) out.tracestate = `${boundaries.STATE_KEY}=${member}`;
    const other = tc.otherHeaders(ctx); // HTTP/2 header names are lower case
    if (other !== null) for (const [name, value] of other) if (headerOf(given, name.toLowerCase()) === undefined) out[name.toLowerCase()] = value;
  }
  if (!agent.recorded(ctx)) return { headers: out, ctx, rid: 0 };
  const method = String(headerOf(given, ':method') || 'GET');
  const path = String(headerOf(given, ':path') || '/');
  const t = target(path);
  const peer = session[SIDE] || '?';
  // located in hops mode too, learned per call site (as http.js's clients)
  const loc = agent.repeatedCallerLoc(`h2\0${method}\0${path.split('?')[0]}\0${peer}`, session.request);
  const rec = agent.state.rec;
  const rid = rec.newResource([
    ['kind', 'rpc'],
    ['name', `${method} ${t}`],
    ['loc', loc],
    ['trace_id', ctx.traceId],
    ['span_id', ctx.spanId],
    ['sampled', ctx.flags & 1],
    ['protocol', 'http'],
    ['library', 'node:http2'],
    ['method', method],
    ['target', t],
    ['peer', peer],
  ]);
  const unit = agent.currentUnit();
  rec.emit(K.MSG_SEND, unit, rid, 0, loc);
  return { headers: out, ctx, rid, unit, loc };
}

function afterRequest(rec, stream, send) {
  if (send.rid === 0 || stream === null || typeof stream !== 'object') return;
  const { unit, rid, loc } = send;
  if (unit !== agent.LOOP_UNIT) rec.emit(K.UNIT_BLOCK, unit, rid, K.REASON_RPC, loc);
  let done = false;
  stream.once('response', (headers) => {
    if (done) return;
    done = true;
    rec.emit(K.RPC_RESPONSE, unit, rid, Number(headers && headers[':status']) || 0, loc);
  });
  stream.once('close', () => {
    if (done) return;
    done = true;
    rec.emit(K.RPC_RESPONSE, unit, rid, -1, loc);
  });
}

function headerOf(headers, name) {
  if (headers[name] !== undefined) return headers[name];
  for (const k of Object.keys(headers)) {
    if (k.toLowerCase() === name) return headers[k];
  }
  return undefined;
}

function authorityOf(authority) {
  try {
    const u = typeof authority === 'string' ? new URL(authority) : authority;
    if (u && typeof u === 'object') {
      const host = u.hostname || u.host || 'localhost';
      const port = u.port || (u.protocol === 'http:' ? 80 : 443);
      return `${host}:${port}`;
    }
  } catch {
    // an authority Node will refuse itself
  }
  return '?';
}

function wrapConnect(h2, rec) {
  const origConnect = h2.connect;
  h2.connect = function connect(authority) {
    const session = origConnect.apply(this, arguments);
    try {
      if (session && typeof session === 'object') {
        session[SIDE] = authorityOf(authority);
        patchClientSession(session, rec);
      }
    } catch (err) {
      rec.fault('http2.connect', err);
    }
    return session;
  };
}

// --- server --------------------------------------------------------------------------

function onStream(rec, stream, headers) {
  const h = headers !== null && typeof headers === 'object' ? headers : {};
  const { ctx: parent, how, style } = tc.incoming(h);
  const method = String(h[':method'] || '?');
  const path = String(h[':path'] || '/');
  const inst = boundaries.enter('http', method, path, stateMember(h.tracestate));
  let flags = parent !== null ? parent.flags : tc.rootFlags();
  const forced = boundaries.forcedAttrs(inst, flags);
  if (inst !== null) flags |= 1;
  const ctx = { traceId: parent !== null ? parent.traceId : tc.newTraceId(), spanId: tc.newSpanId(), flags, style };
  if (!agent.recorded(ctx)) return agent.makeFlow(0, ctx, inst, true, '');
  const t = target(path);
  const flow = agent.newFlow(`${method} ${t}`, ctx, inst, 0);
  const sock = (stream.session && stream.session.socket) || {};
  const rid = rec.newResource([
    ['kind', 'rpc'],
    ['name', `${method} ${t}`],
    ['trace_id', ctx.traceId],
    ['span_id', ctx.spanId],
    ['parent_span_id', parent !== null ? parent.spanId : ''],
    ['sampled', flags & 1],
    ['protocol', 'http'],
    ['library', 'node:http2'],
    ['method', method],
    ['target', t],
    ['peer', `${sock.remoteAddress || '?'}:${sock.remotePort || 0}`],
    ['headers', headersJson(h)],
    ['propagation', how],
    ...forced,
  ]);
  rec.emit(K.MSG_RECV, flow.unit, rid, 0, 0);
  require('./data.js').httpRequest(rec, flow.unit, method, String(h[':authority'] || h.host || '?'), t);
  stream[SIDE] = { rid, flow };
  patchRespond(stream, rec);
  stream.once('close', () => agent.endFlow(flow, stream.rstCode === 0 ? 0 : 2));
  return flow;
}

let respondPatched = false;

function patchRespond(stream, rec) {
  const proto = Object.getPrototypeOf(stream);
  if (respondPatched || proto === null || typeof proto.respond !== 'function') return;
  respondPatched = true;
  const orig = proto.respond;
  proto.respond = function respond(headers) {
    const side = this[SIDE];
    if (side !== undefined) {
      this[SIDE] = undefined;
      try {
        const status = headers && typeof headers === 'object' && headers[':status'] !== undefined ? Number(headers[':status']) : 200;
        agent.state.rec.emit(K.RPC_REPLY, side.flow.unit, side.rid, status || 0, 0);
      } catch (err) {
        if (agent.state.rec !== null) agent.state.rec.fault('http2.respond', err);
      }
    }
    return orig.apply(this, arguments);
  };
}

function wrapServerProto(proto, rec) {
  if (proto === null || Object.prototype.hasOwnProperty.call(proto, SIDE)) return;
  proto[SIDE] = true;
  const origEmit = proto.emit;
  const emitStream = (server, args) => origEmit.apply(server, args);
  proto.emit = function emit(event, stream, headers) {
    if (event !== 'stream' || agent.state.rec === null) return origEmit.apply(this, arguments);
    let flow;
    try {
      flow = onStream(rec, stream, headers);
    } catch (err) {
      rec.fault('http2.server.stream', err);
      return origEmit.apply(this, arguments);
    }
    return agent.als.run(flow, emitStream, this, arguments);
  };
}

// --- installing ----------------------------------------------------------------------

function patch(h2, rec) {
  wrapConnect(h2, rec);
  // the server classes are not exported: their prototypes come from servers made and
  // dropped here (no socket is opened until listen)
  wrapServerProto(Object.getPrototypeOf(h2.createServer()), rec);
  wrapServerProto(Object.getPrototypeOf(h2.createSecureServer({})), rec);
  Module.syncBuiltinESMExports();
}

// `exports`: the module as the program's require returned it, else required here.
function tryPatch(rec, exports) {
  if (patched || (exports === undefined && !loaded())) return;
  patched = true; // first: the require below comes back through the require hook
  try {
    patch(exports !== undefined ? exports : require('node:http2'), rec);
  } catch (err) {
    rec.fault('install http2', err);
  }
}

function install(rec) {
  tryPatch(rec);
  if (patched) return;
  const origRequire = Module.prototype.require;
  Module.prototype.require = function require(id) {
    const exports = origRequire.apply(this, arguments);
    if (!patched && (id === 'http2' || id === 'node:http2')) tryPatch(rec, exports);
    return exports;
  };
}

// Called at each flush: a module loaded without require (an ESM import) is patched then.
function poll(rec) {
  if (!patched) tryPatch(rec);
}

module.exports = { install, poll };
