'use strict';
// A small .wtrace reader for the tests: checks framing and checksums and decodes records
// and events, so the recorder's files can be inspected without Python.

const zlib = require('node:zlib');
const { crc32 } = require('../lib/wtrace.js');

function readFile(buf) {
  assert(buf.toString('latin1', 0, 6) === 'WTRACE', 'magic');
  const chunks = [];
  let at = 16;
  while (at < buf.length) {
    assert(buf.toString('latin1', at, at + 4) === 'WCHK', `chunk magic at ${at}`);
    const codec = buf[at + 4];
    const stored = buf.readUInt32LE(at + 8);
    const rawLen = buf.readUInt32LE(at + 12);
    const crc = buf.readUInt32LE(at + 16);
    const body = buf.subarray(at + 20, at + 20 + stored);
    const raw = codec === 1 ? zlib.inflateSync(body) : body;
    assert(raw.length === rawLen, 'raw length');
    assert(crc32(raw) === crc, 'checksum');
    chunks.push({ codec, ...decodePayload(raw) });
    at += 20 + stored;
  }
  return { major: buf[6], minor: buf[7], chunks };
}

function assert(ok, what) {
  if (!ok) throw new Error(`bad .wtrace: ${what}`);
}

function decodePayload(p) {
  let at = 0;
  const uv = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = p[at++];
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
      shift += 7n;
    }
  };
  const n = () => Number(uv());
  const strings = [];
  for (let i = n(); i > 0; i -= 1) {
    const len = n();
    strings.push(p.toString('utf8', at, at + len));
    at += len;
  }
  const records = [];
  for (let i = n(); i > 0; i -= 1) {
    const type = p[at++];
    const id = n();
    const attrs = {};
    for (let j = n(); j > 0; j -= 1) {
      const key = strings[n()];
      const vt = p[at++];
      if (vt === 0) {
        const z = uv();
        attrs[key] = Number((z >> 1n) ^ -(z & 1n));
      } else if (vt === 1) attrs[key] = strings[n()];
      else {
        const len = n();
        attrs[key] = p.subarray(at, at + len);
        at += len;
      }
    }
    records.push({ type, id, attrs });
  }
  const count = n();
  const events = [];
  if (count > 0) {
    const first = n();
    const col = (width, read) => {
      const out = [];
      for (let i = 0; i < count; i += 1) out.push(read(at + i * width));
      at += count * width;
      return out;
    };
    const kind = col(1, (o) => p[o]);
    const unit = col(4, (o) => p.readUInt32LE(o));
    const time = col(8, (o) => p.readBigUInt64LE(o));
    const res = col(4, (o) => p.readUInt32LE(o));
    const arg = col(8, (o) => p.readBigInt64LE(o));
    const loc = col(4, (o) => p.readUInt32LE(o));
    for (let i = 0; i < count; i += 1) {
      events.push({ seq: first + i, kind: kind[i], unit: unit[i], time: time[i], res: res[i], arg: arg[i], loc: loc[i] });
    }
  }
  return { records, events };
}

module.exports = { readFile };
