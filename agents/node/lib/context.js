'use strict';
// W3C trace context: parsing and writing `traceparent`, new ids, and the sampling decision,
// which is taken once at the root of a logical operation (an inbound request without a
// context, or a new outgoing one outside any) and then carried in the sampled flag.

const crypto = require('node:crypto');

// What a valid header looks like (parse() checks it by hand; the tests compare the two).
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;
const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

// A pool of random bytes, so a new id is a slice rather than a system call.
let pool = Buffer.alloc(0);
let poolAt = 0;
function randomHex(bytes) {
  if (poolAt + bytes > pool.length) {
    pool = crypto.randomBytes(65536);
    poolAt = 0;
  }
  const s = pool.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return s;
}

function newTraceId() {
  let id = randomHex(16);
  while (id === '00000000000000000000000000000000') id = randomHex(16);
  return id;
}

function newSpanId() {
  let id = randomHex(8);
  while (id === '0000000000000000') id = randomHex(8);
  return id;
}

// {traceId, spanId, flags} or null for a missing or invalid header: the header (trimmed,
// lower-cased) must match TRACEPARENT, with a version other than ff, exactly 55
// characters for version 00, and trace and span ids not all zeros. Checked character by
// character rather than with the regular expression (which costs ~0.3 us on every
// request); test/propagation.test.js holds the two to the same answers.
function parse(header) {
  if (typeof header !== 'string') return null;
  const trimmed = header.trim();
  const h = trimmed.toLowerCase();
  if (h.length < 55) return null;
  if (h.charCodeAt(2) !== 45 || h.charCodeAt(35) !== 45 || h.charCodeAt(52) !== 45) return null;
  if (!hexRun(h, 0, 2) || !hexRun(h, 3, 35) || !hexRun(h, 36, 52) || !hexRun(h, 53, 55)) return null;
  if (h.length > 55) {
    // a later version may append fields: `-` and anything on the same line
    if (h.charCodeAt(55) !== 45) return null;
    for (let i = 56; i < h.length; i += 1) {
      const c = h.charCodeAt(i);
      if (c === 10 || c === 13 || c === 0x2028 || c === 0x2029) return null;
    }
  }
  const version = h.slice(0, 2);
  if (version === 'ff' || (version === '00' && trimmed.length !== 55)) return null;
  const traceId = h.slice(3, 35);
  const spanId = h.slice(36, 52);
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return null;
  return { traceId, spanId, flags: parseInt(h.slice(53, 55), 16) };
}

// Are h[from..to) all lower-case hex digits?
function hexRun(h, from, to) {
  for (let i = from; i < to; i += 1) {
    const c = h.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

// --- B3 and X-Ray, read on inbound requests that carry no traceparent ------------------
//
// As the Python agent (src/willowisp/wire/b3.py, xray.py; docs/wire.md): W3C first, else B3
// (a valid single `b3` header wins over the multi `X-B3-*` ones), else X-Ray
// (`X-Amzn-Trace-Id`). A 16-hex B3 trace id is left-padded to 32; an X-Ray Root
// `1-{8 hex}-{24 hex}` is the 32-hex trace id joined. Only the sampled bit crosses: B3
// `1`/`d`/`X-B3-Flags: 1`/`X-B3-Sampled: 1|true` and X-Ray `Sampled=1` set it, `0`/`false`
// clear it, and when the sender deferred the decision it is taken here, at the root. A
// header Node joined from repeated ones (`a, b`) does not parse, like a repeated header.

const ID64 = /^[0-9a-f]{16}$/;
const B3_TRACE = /^(?:[0-9a-f]{16}){1,2}$/;
const B3_SINGLE_SAMPLING = { 1: 1, 0: 0, d: 1 };

function b3Ids(trace, span) {
  if (typeof trace !== 'string' || typeof span !== 'string' || !B3_TRACE.test(trace) || !ID64.test(span)) return null;
  const traceId = trace.padStart(32, '0');
  if (traceId === ZERO_TRACE || span === ZERO_SPAN) return null;
  return { traceId, spanId: span };
}

// {traceId, spanId, sampled} (sampled: 1, 0, or -1 when deferred), or null; a bare
// decision (`b3: 0`) has no ids and is null here: there is nothing to continue.
function parseB3Single(value) {
  if (typeof value !== 'string') return null;
  const v = value.trim();
  if (v.length > 128) return null;
  const parts = v.split('-');
  if (parts.length < 2 || parts.length > 4) return null;
  let sampled = -1;
  if (parts.length >= 3) {
    sampled = B3_SINGLE_SAMPLING[parts[2]];
    if (sampled === undefined) return null;
  }
  if (parts.length === 4 && (!ID64.test(parts[3]) || parts[3] === ZERO_SPAN)) return null;
  const ids = b3Ids(parts[0], parts[1]);
  if (ids === null) return null;
  ids.sampled = sampled;
  return ids;
}

function parseB3Multi(headers) {
  const one = (name) => (typeof headers[name] === 'string' ? headers[name].trim() : undefined);
  let sampled = -1;
  if (one('x-b3-flags') === '1') sampled = 1;
  else {
    const s = one('x-b3-sampled');
    if (s !== undefined) {
      const d = { 1: 1, 0: 0, true: 1, false: 0 }[s.toLowerCase()];
      if (d !== undefined) sampled = d;
    }
  }
  const ids = b3Ids(one('x-b3-traceid'), one('x-b3-spanid'));
  if (ids === null) return null;
  ids.sampled = sampled;
  return ids;
}

const XRAY_ROOT = /^1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})$/;
const XRAY_PARENT = /^[0-9a-fA-F]{16}$/;

function parseXRay(value) {
  if (typeof value !== 'string' || value.length > 1024) return null;
  let traceId = null;
  let spanId = null;
  let sampled = -1;
  for (const part of value.split(';')) {
    const p = part.trim();
    const eq = p.indexOf('=');
    if (eq < 0) {
      if (p !== '') return null;
      continue;
    }
    const key = p.slice(0, eq);
    const v = p.slice(eq + 1);
    if (key === 'Root') {
      const m = XRAY_ROOT.exec(v);
      if (m === null || traceId !== null) return null;
      traceId = (m[1] + m[2]).toLowerCase();
    } else if (key === 'Parent') {
      if (!XRAY_PARENT.test(v) || spanId !== null) return null;
      spanId = v.toLowerCase();
    } else if (key === 'Sampled') sampled = v === '1' ? 1 : v === '0' ? 0 : -1;
  }
  if (traceId === null || spanId === null || traceId === ZERO_TRACE || spanId === ZERO_SPAN) return null;
  return { traceId, spanId, sampled };
}

// The context an inbound request's headers (Node's lower-cased object) carry and the
// format it came in: {ctx, how, style} with how 'w3c', 'b3', 'xray', or {ctx: null, how:
// '', style: ''}; style is what the flow's outgoing requests write besides traceparent
// (otherHeaders): 'b3' (the single header came), 'b3-multi', 'xray', or '' (W3C, none).
function incoming(headers) {
  const w3c = parse(headers.traceparent);
  if (w3c !== null) return { ctx: w3c, how: 'w3c', style: '' };
  let other = null;
  let how = '';
  let style = '';
  if (headers.b3 !== undefined) {
    other = parseB3Single(headers.b3);
    style = 'b3';
  }
  if (other === null && (headers['x-b3-traceid'] !== undefined || headers['x-b3-spanid'] !== undefined)) {
    other = parseB3Multi(headers);
    style = 'b3-multi';
  }
  if (other !== null) how = 'b3';
  else if (headers['x-amzn-trace-id'] !== undefined) {
    other = parseXRay(headers['x-amzn-trace-id']);
    if (other !== null) how = style = 'xray';
  }
  if (other === null) return NO_CONTEXT;
  const flags = other.sampled === -1 ? rootFlags() : other.sampled; // deferred: decided here
  return { ctx: { traceId: other.traceId, spanId: other.spanId, flags }, how, style };
}
const NO_CONTEXT = Object.freeze({ ctx: null, how: '', style: '' });

// The headers an outgoing request of a flow carries besides traceparent, in the format its
// inbound request came in (ctx.style, see incoming), so a caller that speaks only B3 or
// X-Ray sees its trace continue downstream: [[name, value], ...] or null. Only the sampled
// bit crosses, as on the way in; B3 multi never writes X-B3-ParentSpanId (as the Python
// agent's codec); the X-Ray Root is the trace id split 8 + 24.
function otherHeaders(ctx) {
  const style = ctx.style;
  if (style === undefined || style === '') return null;
  const sampled = (ctx.flags & 1) === 1 ? '1' : '0';
  if (style === 'b3') return [['b3', `${ctx.traceId}-${ctx.spanId}-${sampled}`]];
  if (style === 'b3-multi') return [['X-B3-TraceId', ctx.traceId], ['X-B3-SpanId', ctx.spanId], ['X-B3-Sampled', sampled]];
  if (style === 'xray') return [['X-Amzn-Trace-Id', `Root=1-${ctx.traceId.slice(0, 8)}-${ctx.traceId.slice(8)};Parent=${ctx.spanId};Sampled=${sampled}`]];
  return null;
}

const FLAGS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function format(ctx) {
  return `00-${ctx.traceId}-${ctx.spanId}-${FLAGS[ctx.flags & 0xff]}`;
}

let ratio = 1;
function configure(traceRatio) {
  ratio = traceRatio;
}

function rootFlags() {
  return ratio >= 1 || Math.random() < ratio ? 1 : 0;
}

module.exports = { TRACEPARENT, parse, format, otherHeaders, newTraceId, newSpanId, rootFlags, configure, incoming, parseB3Single, parseB3Multi, parseXRay };
