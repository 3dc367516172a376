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
  // string: the string table of a chunk has a few thousand of them). Short ASCII strings
  // (ids, names, keys: nearly all of them) are copied by a loop here, which costs less than
  // a call into the Buffer binding.
  str(s) {
    const n = s.length;
    if (n < 128) {
      this.room(n + 1);
      const buf = this.buf;
      const at = this.pos + 1;
      let i = 0;
      for (; i < n; i += 1) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[at + i] = c;
      }
      if (i === n) {
        buf[this.pos] = n;
        this.pos = at + n;
        return;
      }
    }
    const len = Buffer.byteLength(s, 'utf8');
    this.uvarint(len);
    this.room(len);
    this.buf.utf8Write(s, this.pos, len);
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

// The shape of a record that hot paths define over and over (an inbound request's server
// resource, a client request's, a flow's unit): its keys, fixed, and per chunk the
// string-table indices of those keys and of the last value seen at each position. A record
// {type, id, attrs: [value, ...], shape} carries only its values, in the shape's key order;
// the encoder then looks up in the chunk's string table only the values that changed since
// the previous record of that shape (a trace id, a span id), not every key and every value.
// The bytes are exactly those of the same record written as [key, value, ...].
class Shape {
  constructor(keys) {
    this.keys = keys;
    this.chunk = -1; // the encodePayload call whose indices the caches hold
    this.keyIdx = new Int32Array(keys.length);
    this.lastVal = new Array(keys.length).fill(undefined);
    this.lastIdx = new Int32Array(keys.length);
  }
}

// One chunk's string table while its payload is encoded: each string once, in order of
// first use.
class Strings {
  constructor() {
    this.index = new Map();
    this.list = [];
  }

  ref(s) {
    let i = this.index.get(s);
    if (i === undefined) {
      i = this.list.length;
      this.index.set(s, i);
      this.list.push(s);
    }
    return i;
  }
}

let chunkCounter = 0;

// One attribute: key index, then the typed value.
function attr(body, strings, key, value) {
  body.uvarint(strings.ref(key));
  if (typeof value === 'string') {
    body.u8(1);
    body.uvarint(strings.ref(value));
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
}

// A record with a Shape: the first of its shape in this chunk interns keys and values in
// order (as attr() would); the next ones reuse the key indices and the index of a value
// equal to the previous one's at that position.
function shapedAttrs(body, strings, shape, values, chunk) {
  const keys = shape.keys;
  const n = keys.length;
  if (values.length !== n) throw new RangeError(`record of shape ${keys[0]}...: ${values.length} values for ${n} keys`);
  body.uvarint(n);
  const { keyIdx, lastVal, lastIdx } = shape;
  if (shape.chunk !== chunk) {
    shape.chunk = chunk;
    for (let j = 0; j < n; j += 1) {
      const k = strings.ref(keys[j]);
      keyIdx[j] = k;
      body.uvarint(k);
      const v = values[j];
      if (typeof v === 'string') {
        const i = strings.ref(v);
        lastVal[j] = v;
        lastIdx[j] = i;
        body.u8(1);
        body.uvarint(i);
      } else {
        lastVal[j] = undefined;
        attrValue(body, keys[j], v);
      }
    }
    return;
  }
  // the common case, written in place: key index, type 1 or 0, string index or a small
  // integer (at most 5 + 1 + 5 bytes an attribute); anything else through attrValue
  body.room(n * 11);
  for (let j = 0; j < n; j += 1) {
    const buf = body.buf;
    let pos = body.pos;
    let k = keyIdx[j];
    while (k >= 0x80) {
      buf[pos++] = (k & 0x7f) | 0x80;
      k >>>= 7;
    }
    buf[pos++] = k;
    const v = values[j];
    if (typeof v === 'string') {
      let i;
      if (v === lastVal[j]) i = lastIdx[j];
      else {
        i = strings.ref(v);
        lastVal[j] = v;
        lastIdx[j] = i;
      }
      buf[pos++] = 1;
      while (i >= 0x80) {
        buf[pos++] = (i & 0x7f) | 0x80;
        i >>>= 7;
      }
      buf[pos++] = i;
      body.pos = pos;
    } else if (typeof v === 'number' && v >= 0 && v <= 0x3fffffff && (v | 0) === v) {
      buf[pos++] = 0;
      let z = v * 2; // zigzag of a non-negative integer
      while (z >= 0x80) {
        buf[pos++] = (z & 0x7f) | 0x80;
        z >>>= 7;
      }
      buf[pos++] = z;
      body.pos = pos;
    } else {
      body.pos = pos;
      attrValue(body, keys[j], v);
      body.room((n - j) * 11);
    }
  }
}

// A value that is not a string (no string-table entry).
function attrValue(body, key, value) {
  if (typeof value === 'number' || typeof value === 'bigint') {
    body.u8(0);
    body.svarint(value);
  } else if (value instanceof Uint8Array) {
    body.u8(2);
    body.uvarint(value.length);
    body.bytes(value);
  } else {
    throw new TypeError(`attribute ${key}: unsupported value type ${typeof value}`);
  }
}

// One chunk's payload, built record by record as records are defined (the recorder keeps
// one open between flushes), then finished with the chunk's events: the string table, the
// record count, the records, the event columns. Encoding a record when it is defined
// costs less than keeping it as objects until the flush (the values are still in the
// processor's caches, and nothing is left for the garbage collector to copy meanwhile).
class ChunkEncoder {
  constructor() {
    chunkCounter += 1;
    this.chunk = chunkCounter; // the Shape caches of this chunk
    this.strings = new Strings();
    this.body = new ByteWriter(4096);
    this.count = 0;
  }

  // One record (its forms: see encodePayload). A value of another type throws, and the
  // chunk is then as if the record had not been given.
  record(type, id, attrs, shape) {
    const at = this.body.pos;
    const known = this.strings.list.length;
    try {
      this.write(type, id, attrs, shape);
    } catch (err) {
      // a bad value: none of the record stays, nor the strings it added, and no Shape
      // trusts its caches of this chunk any more (a fresh number for the chunk)
      this.body.pos = at;
      const { list, index } = this.strings;
      for (let i = known; i < list.length; i += 1) index.delete(list[i]);
      list.length = known;
      chunkCounter += 1;
      this.chunk = chunkCounter;
      throw err;
    }
    this.count += 1;
  }

  write(type, id, attrs, shape) {
    const body = this.body;
    body.u8(type);
    body.uvarint(id);
    if (shape !== undefined) shapedAttrs(body, this.strings, shape, attrs, this.chunk);
    else if (attrs.length > 0 && typeof attrs[0] === 'string') {
      // flat: [key, value, key, value, ...]
      body.uvarint(attrs.length >>> 1);
      for (let i = 0; i + 1 < attrs.length; i += 2) attr(body, this.strings, attrs[i], attrs[i + 1]);
    } else {
      body.uvarint(attrs.length);
      for (const [key, value] of attrs) attr(body, this.strings, key, value);
    }
  }

  // The payload: this chunk's records and `events` (null, or the columns: encodePayload).
  finish(events) {
    const body = this.body;
    const n = events ? events.n : 0;
    const list = this.strings.list;
    let size = 32 + body.pos + n * 29;
    for (let i = 0; i < list.length; i += 1) size += 5 + list[i].length * 3;
    const out = new ByteWriter(size);
    out.uvarint(list.length);
    for (let i = 0; i < list.length; i += 1) out.str(list[i]);
    out.uvarint(this.count);
    out.bytes(body.result());
    this.eventsAt = out.pos; // where the event section starts (the refused-write path)
    out.uvarint(n);
    if (n > 0) {
      out.uvarint(events.firstSeq);
      const col = (arr, width) => out.bytes(new Uint8Array(arr.buffer, arr.byteOffset, n * width));
      col(events.kind, 1);
      col(events.unit, 4);
      col(events.time, 8);
      col(events.res, 4);
      col(events.arg, 8);
      col(events.loc, 4);
    }
    return out.result();
  }
}

// Empty event columns for n events: what encodePayload's `events` holds (less firstSeq and n).
function newColumns(n) {
  return {
    kind: new Uint8Array(n),
    unit: new Uint32Array(n),
    time: new BigUint64Array(n),
    res: new Uint32Array(n),
    arg: new BigInt64Array(n),
    loc: new Uint32Array(n),
  };
}

// Encodes one chunk's payload.
//   records: [{type, id, attrs: [[key, value], ...] or [key, value, key, value, ...]}] or
//            [{type, id, attrs: [value, ...], shape}] (see Shape); a value is an integer
//            (number or bigint: svarint), a string (a string-table index) or a
//            Buffer/Uint8Array (bytes).
//   events:  null, or {firstSeq, n, kind: Uint8Array, unit: Uint32Array, time: BigUint64Array,
//            res: Uint32Array, arg: BigInt64Array, loc: Uint32Array} (the first n rows used).
// The string table lists each string once in order of first use, walking records in order
// and within a record key then value: the order the conformance vectors pin.
function encodePayload(records, events) {
  const enc = new ChunkEncoder();
  for (const r of records) enc.record(r.type, r.id, r.attrs, r.shape);
  return enc.finish(events);
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

// The event section of a payload whose records end at `at` (ChunkEncoder.eventsAt; found
// by decoding the records when not given): {at, n, kind(i), unit(i), arg(i)}.
function payloadEvents(raw, at) {
  if (at === undefined) return decodePayload(raw);
  const p = Buffer.from(raw.buffer, raw.byteOffset, raw.length);
  let pos = at;
  const uv = () => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = p[pos++];
      if (b === undefined) throw new RangeError('payload ends inside a varint');
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
    }
  };
  const n = uv();
  if (n > 0) uv();
  return eventColumns(p, at, n, pos);
}

function eventColumns(p, at, n, base) {
  if (base + n * 29 > p.length) throw new RangeError('payload shorter than its events');
  return {
    at,
    n,
    kind: (i) => p[base + i],
    unit: (i) => p.readUInt32LE(base + n + 4 * i),
    arg: (i) => p.readBigInt64LE(base + n * 17 + 8 * i),
  };
}

// Decodes a chunk payload again: only the agent's refused-write path needs this (a chunk
// the file system refused: its events are counted as lost per unit, the records of the
// units that lost events go into the news). Returns {records: [{type, id, attrs: [[key,
// value], ...]}], at, n, kind(i), unit(i), arg(i)}; an integer value is a number when it
// is exact as one, else a bigint; bytes come back as a Buffer of their own.
function decodePayload(raw) {
  const p = Buffer.from(raw.buffer, raw.byteOffset, raw.length);
  let at = 0;
  const uv = () => {
    const start = at;
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = p[at++];
      if (b === undefined) throw new RangeError('payload ends inside a varint');
      v += (b & 0x7f) * mul;
      if (b < 0x80) break;
      mul *= 128;
      if (mul > 2 ** 63) throw new RangeError('varint too long');
    }
    if (v <= Number.MAX_SAFE_INTEGER) return v;
    // a large one (an arg, a wall time): again, exactly
    let big = 0n;
    for (let i = at - 1; i >= start; i -= 1) big = (big << 7n) | BigInt(p[i] & 0x7f);
    return big;
  };
  const unzig = (z) => {
    if (typeof z === 'number') return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    const v = (z >> 1n) ^ -(z & 1n);
    return v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const strings = [];
  for (let i = uv(); i > 0; i -= 1) {
    const len = uv();
    strings.push(p.toString('utf8', at, at + len));
    at += len;
  }
  const records = [];
  for (let i = uv(); i > 0; i -= 1) {
    const type = p[at++];
    const id = uv();
    const attrs = [];
    for (let j = uv(); j > 0; j -= 1) {
      const key = strings[uv()];
      const vt = p[at++];
      if (vt === 0) attrs.push([key, unzig(uv())]);
      else if (vt === 1) attrs.push([key, strings[uv()]]);
      else {
        const len = uv();
        attrs.push([key, Buffer.from(p.subarray(at, at + len))]);
        at += len;
      }
    }
    records.push({ type, id, attrs });
  }
  const eventsAt = at;
  const n = uv();
  if (n > 0) uv(); // first_seq
  return { records, ...eventColumns(p, eventsAt, n, at) };
}

// The payload of a framed chunk (the refused-write path, for chunks it holds only framed).
function chunkPayload(chunk) {
  const codec = chunk[4];
  const stored = chunk.subarray(20, 20 + chunk.readUInt32LE(8));
  return codec === CODEC_DEFLATE ? zlib.inflateSync(stored) : stored;
}

module.exports = {
  FORMAT_MAJOR,
  FORMAT_MINOR,
  CODEC_NONE,
  CODEC_DEFLATE,
  RECORD,
  ByteWriter,
  Shape,
  ChunkEncoder,
  crc32,
  tableCrc32,
  fileHeader,
  encodePayload,
  newColumns,
  frameChunk,
  plainChunk,
  deflateChunk,
  decodePayload,
  payloadEvents,
  chunkPayload,
};
