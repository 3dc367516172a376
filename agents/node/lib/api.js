'use strict';
// The public API (`require('willowisp-agent')`): what a program can tell the agent that it
// cannot see by itself. Every call is safe without a running agent (it does nothing but
// run the program's function) and never throws into the program, except for a bad
// argument, which is the program's error (a TypeError/RangeError, as Node's own APIs do).
//
//   access(name, mode) / access(store, name, mode)   data.access: a read or write of shared
//                                                     data (willowisp.access in Python)
//   flow(name, fn)                                    runs fn as a new async flow (a unit)
//   sendMessage({protocol, destination, messageId, headers, library})
//       injects traceparent into `headers` (an object, changed in place), defines a
//       `message` resource and writes msg.send; returns headers
//   receiveMessage({protocol, destination, messageId, headers, library}, fn?)
//       extracts the context from `headers`, defines a `message` resource and writes
//       msg.recv; with `fn`, runs it as a new flow continuing that trace

const K = require('./kinds.js');
const agent = require('./agent.js');
const tc = require('./context.js');
const data = require('./data.js');

const MODES = { read: 0, write: 1 };

function access(...args) {
  let store = 'api';
  let name;
  let mode;
  if (args.length >= 3) [store, name, mode] = args;
  else [name, mode = 'write'] = args;
  const code = MODES[mode];
  if (code === undefined) throw new RangeError(`willowisp access mode ${JSON.stringify(mode)}: expected 'read' or 'write'`);
  const rec = agent.state.rec;
  if (rec === null) return;
  try {
    if (!data.enabled()) return;
    const loc = agent.callerLoc(access);
    data.access(rec, agent.currentUnit(), String(name), String(store), code, loc);
  } catch (err) {
    rec.fault('access', err);
  }
}

function flow(name, fn) {
  if (typeof fn !== 'function') throw new TypeError('willowisp flow(name, fn): fn must be a function');
  const rec = agent.state.rec;
  if (rec === null) return fn();
  let f;
  try {
    f = agent.newFlow(name, agent.outgoing(), null, agent.callerLoc(flow));
  } catch (err) {
    rec.fault('flow', err);
    return fn();
  }
  return agent.als.run(f, () => {
    let result;
    try {
      result = fn();
    } catch (err) {
      agent.endFlow(f, 1);
      throw err;
    }
    if (result && typeof result.then === 'function') {
      result.then(() => agent.endFlow(f, 0), () => agent.endFlow(f, 1));
    } else agent.endFlow(f, 0);
    return result;
  });
}

function messageResource(rec, side, o, ctx, parentSpan) {
  return rec.newResource([
    ['kind', 'message'],
    ['name', `${side} ${o.destination}`],
    ['trace_id', ctx ? ctx.traceId : ''],
    ['span_id', ctx ? ctx.spanId : ''],
    ...(side === 'recv' ? [['parent_span_id', parentSpan]] : []),
    ['sampled', ctx ? ctx.flags & 1 : 1],
    ['protocol', String(o.protocol || 'custom')],
    ['library', String(o.library || 'willowisp-agent')],
    ['destination', String(o.destination || '')],
    ['message_id', String(o.messageId ?? '')],
  ]);
}

function sendMessage(o) {
  const headers = o.headers ?? {};
  const rec = agent.state.rec;
  if (rec === null) return headers;
  try {
    let ctx = tc.parse(headers.traceparent);
    if (ctx === null) {
      ctx = agent.outgoing();
      headers.traceparent = tc.format(ctx);
    }
    if (!agent.recorded(ctx)) return headers;
    const loc = agent.callerLoc(sendMessage);
    const rid = messageResource(rec, 'send', o, ctx, '');
    rec.emit(K.MSG_SEND, agent.currentUnit(), rid, 0, loc);
  } catch (err) {
    rec.fault('sendMessage', err);
  }
  return headers;
}

function receiveMessage(o, fn) {
  const rec = agent.state.rec;
  if (rec === null) return fn ? fn() : undefined;
  let f = null;
  try {
    const parent = tc.parse((o.headers ?? {}).traceparent);
    const own = {
      traceId: parent ? parent.traceId : tc.newTraceId(),
      spanId: tc.newSpanId(),
      flags: parent ? parent.flags : tc.rootFlags(),
    };
    const loc = agent.callerLoc(receiveMessage);
    if (fn) f = agent.newFlow(`recv ${o.destination}`, own, null, loc);
    if (agent.recorded(own)) {
      const rid = messageResource(rec, 'recv', o, own, parent ? parent.spanId : '');
      rec.emit(K.MSG_RECV, f ? f.unit : agent.currentUnit(), rid, 0, loc);
    }
  } catch (err) {
    rec.fault('receiveMessage', err);
  }
  if (!fn) return undefined;
  if (f === null) return fn();
  return agent.als.run(f, () => {
    try {
      const result = fn();
      if (result && typeof result.then === 'function') result.then(() => agent.endFlow(f, 0), () => agent.endFlow(f, 1));
      else agent.endFlow(f, 0);
      return result;
    } catch (err) {
      agent.endFlow(f, 1);
      throw err;
    }
  });
}

// Is the agent recording in this process?
function active() {
  return agent.state.rec !== null;
}

module.exports = { access, flow, sendMessage, receiveMessage, active };
