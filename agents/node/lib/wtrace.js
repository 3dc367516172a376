'use strict';
// The .wtrace encoder (docs/format.md): file header, chunk framing, a chunk's string table,
// records and event columns, codecs `none` and `deflate` (Node 20 has no zstd).
//
// How it fits: the recorder (recorder.js) keeps events in typed-array columns and hands a
// finished batch here as those columns; this module only lays bytes out. The columns are
// little-endian typed arrays, which on every platform Node runs Willowisp on (x86_64,
// aarch64) have the file's byte order already, so a chunk's event section is a few
// memcpy-like copies, no per-event arithmetic. Records are few (units, resources,
// locations) and are encoded value by value.

const zlib = require('node:zlib');

const FORMAT_MAJOR = 1;
const FORMAT_MINOR = 2;
const CODEC_NONE = 0;
const CODEC_DEFLATE = 1;
const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

const RECORD = { process: 1, unit: 2, resource: 3, location: 4, fault: 5, stats: 6, embedded: 7 };

let crcTable = null;
function tableCrc32(buf) {
  if (crcTable === null) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n += 1) {
      let c = n;
      for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i += 1) c = crcTable[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// zlib.crc32 exists from Node 20.15; the table version serves older ones.
const crc32 = typeof zlib.crc32 === 'function' ? (buf) => zlib.crc32(buf) >>> 0 : tableCrc32;

// eslint-disable-next-line no-control-regex
const ASCII = /^[\x00-\x7f]*$/;

// A growable byte buffer with the format's primitive writers.
class ByteWriter {
  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
    this.pos = 0;
  }

  room(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v) {
    this.room(1);
    this.buf[this.pos] = v;
    this.pos += 1;
  }

  bytes(src) {
    this.room(src.length);
    this.buf.set(src, this.pos);
    this.pos += src.length;
  }

  // A string as its UTF-8 length (uvarint) and bytes, written in place (no Buffer per
  // string: the string table of a chunk has a few thousand of them).
  str(s) {
    const len = s.length < 128 && ASCII.test(s) ? s.length : Buffer.byteLength(s, 'utf8');
    this.uvarint(len);
    this.room(len);
    if (len === s.length) this.buf.latin1Write(s, this.pos, len);
    else this.buf.utf8Write(s, this.pos, len);
    this.pos += len;
  }

  // Unsigned LEB128 of a non-negative integer (number or bigint, below 2^64).
  uvarint(v) {
    if (typeof v === 'number' && v >= 0 && v <= 0x7fffffff && Number.isInteger(v)) {
      this.room(5);
      while (v >= 0x80) {
        this.buf[this.pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      this.buf[this.pos++] = v;
      return;
    }
    let b = BigInt(v);
    if (b < 0n || b >= 1n << 64n) throw new RangeError(`uvarint ${v} out of range`);
    this.room(10);
    while (b >= 0x80n) {
      this.buf[this.pos++] = Number(b & 0x7fn) | 0x80;
      b >>= 7n;
    }
    this.buf[this.pos++] = Number(b);
  }

  // Zigzag LEB128 of a signed 64-bit integer.
  svarint(v) {
    if (typeof v === 'number' && Number.isInteger(v) && v >= -0x40000000 && v <= 0x3fffffff) {
      this.uvarint(v >= 0 ? v * 2 : -v * 2 - 1);
      return;
    }
    const b = BigInt(v);
    if (b < -(1n << 63n) || b >= 1n << 63n) throw new RangeError(`svarint ${v} out of range`);
    this.uvarint(BigInt.asUintN(64, (b << 1n) ^ (b >> 63n)));
  }

  result() {
    return this.buf.subarray(0, this.pos);
  }
}

function fileHeader() {
  const h = Buffer.alloc(16);
  h.write('WTRACE', 0, 'latin1');
  h[6] = FORMAT_MAJOR;
  h[7] = FORMAT_MINOR;
  return h;
}

// Encodes one chunk's payload.
//   records: [{type, id, attrs: [[key, value], ...] or [key, value, key, value, ...]}]; a
//            value is an integer (number or
//            bigint: svarint), a string (a string-table index) or a Buffer/Uint8Array (bytes).
//   events:  null, or {firstSeq, n, kind: Uint8Array, unit: Uint32Array, time: BigUint64Array,
//            res: Uint32Array, arg: BigInt64Array, loc: Uint32Array} (the first n rows used).
// The string table lists each string once in order of first use, walking records in order
// and within a record key then value: the order the conformance vectors pin.
function encodePayload(records, events) {
  const index = new Map();
  const strings = [];
  const ref = (s) => {
    let i = index.get(s);
    if (i === undefined) {
      i = strings.length;
      index.set(s, i);
      strings.push(s);
    }
    return i;
  };
  const body = new ByteWriter(1024);
  body.uvarint(records.length);
  const attr = (key, value) => {
    body.uvarint(ref(key));
    if (typeof value === 'string') {
      body.u8(1);
      body.uvarint(ref(value));
    } else if (typeof value === 'number' || typeof value === 'bigint') {
      body.u8(0);
      body.svarint(value);
    } else if (value instanceof Uint8Array) {
      body.u8(2);
      body.uvarint(value.length);
      body.bytes(value);
    } else {
      throw new TypeError(`attribute ${key}: unsupported value type ${typeof value}`);
    }
  };
  for (const r of records) {
    body.u8(r.type);
    body.uvarint(r.id);
    const a = r.attrs;
    if (a.length > 0 && typeof a[0] === 'string') {
      // flat: [key, value, key, value, ...] (what the per-request hooks build: no array
      // per attribute)
      body.uvarint(a.length >>> 1);
      for (let i = 0; i + 1 < a.length; i += 2) attr(a[i], a[i + 1]);
    } else {
      body.uvarint(a.length);
      for (const [key, value] of a) attr(key, value);
    }
  }
  const n = events ? events.n : 0;
  body.uvarint(n);
  if (n > 0) {
    body.uvarint(events.firstSeq);
    const col = (arr, width) => body.bytes(new Uint8Array(arr.buffer, arr.byteOffset, n * width));
    col(events.kind, 1);
    col(events.unit, 4);
    col(events.time, 8);
    col(events.res, 4);
    col(events.arg, 8);
    col(events.loc, 4);
  }
  const head = new ByteWriter(64 + strings.length * 16);
  head.uvarint(strings.length);
  for (const s of strings) head.str(s);
  return Buffer.concat([head.result(), body.result()]);
}

// Frames a payload as one chunk. `stored` is the payload as stored (compressed or not).
function frameChunk(codec, raw, stored) {
  if (raw.length > MAX_CHUNK_BYTES || stored.length > MAX_CHUNK_BYTES) {
    throw new RangeError(`chunk payload of ${raw.length} bytes exceeds 64 MiB`);
  }
  const out = Buffer.allocUnsafe(20 + stored.length);
  out.write('WCHK', 0, 'latin1');
  out[4] = codec;
  out[5] = 0;
  out[6] = 0;
  out[7] = 0;
  out.writeUInt32LE(stored.length, 8);
  out.writeUInt32LE(raw.length, 12);
  out.writeUInt32LE(crc32(raw), 16);
  stored.copy(out, 20);
  return out;
}

// A chunk with codec none.
function plainChunk(raw) {
  return frameChunk(CODEC_NONE, raw, raw);
}

// A chunk with codec deflate (zlib-wrapped, RFC 1950), or none when that is not smaller.
function deflateChunk(raw, compressed) {
  const stored = compressed ?? zlib.deflateSync(raw, { level: 1 });
  if (stored.length >= raw.length) return plainChunk(raw);
  return frameChunk(CODEC_DEFLATE, raw, stored);
}

module.exports = {
  FORMAT_MAJOR,
  FORMAT_MINOR,
  CODEC_NONE,
  CODEC_DEFLATE,
  RECORD,
  ByteWriter,
  crc32,
  tableCrc32,
  fileHeader,
  encodePayload,
  frameChunk,
  plainChunk,
  deflateChunk,
};
