'use strict';
// W3C trace context: parsing and writing `traceparent`, new ids, and the sampling decision,
// which is taken once at the root of a logical operation (an inbound request without a
// context, or a new outgoing one outside any) and then carried in the sampled flag.

const crypto = require('node:crypto');

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

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

// {traceId, spanId, flags} or null for a missing or invalid header.
function parse(header) {
  if (typeof header !== 'string') return null;
  const m = TRACEPARENT.exec(header.trim().toLowerCase());
  if (m === null || m[1] === 'ff') return null;
  if (m[1] === '00' && header.trim().length !== 55) return null;
  if (/^0+$/.test(m[2]) || /^0+$/.test(m[3])) return null;
  return { traceId: m[2], spanId: m[3], flags: parseInt(m[4], 16) };
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

module.exports = { parse, format, newTraceId, newSpanId, rootFlags, configure };
