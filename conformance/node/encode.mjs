#!/usr/bin/env node
// A test-only .wtrace v1 encoder, written from docs/format.md (not from the Python code).
//
// It exists to prove the format is portable: given a conformance vector's JSON it must
// write exactly the bytes of the vector's .wtrace file. It is not the Node agent's
// encoder; it favours obviousness over speed (one Buffer per field, BigInt everywhere a
// value can exceed 2^53).
//
//   node conformance/node/encode.mjs VECTOR.json OUT.wtrace
//
// Vector JSON holds integers up to 64 bits, which JSON.parse would round to doubles, so it
// is read with the small exact parser below (integers become BigInt).

import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import zlib from "node:zlib";

const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const U32_MAX = 2n ** 32n - 1n;
const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

// --- JSON with exact integers ---------------------------------------------------------

const WHITESPACE = /[ \t\r\n]*/y;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

function parseExactJson(text) {
  let pos = 0;

  const fail = (what) => {
    throw new SyntaxError(`JSON: expected ${what} at offset ${pos}`);
  };
  const skipSpace = () => {
    WHITESPACE.lastIndex = pos;
    WHITESPACE.exec(text);
    pos = WHITESPACE.lastIndex;
  };
  const match = (re) => {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (m === null) return null;
    pos = re.lastIndex;
    return m[0];
  };
  const expect = (ch) => {
    skipSpace();
    if (text[pos] !== ch) fail(`'${ch}'`);
    pos += 1;
  };
  // Parses a comma-separated sequence up to `close`, calling `item` for each element.
  const sequence = (close, item) => {
    skipSpace();
    if (text[pos] === close) {
      pos += 1;
      return;
    }
    for (;;) {
      item();
      skipSpace();
      if (text[pos] === close) {
        pos += 1;
        return;
      }
      expect(",");
    }
  };

  const value = () => {
    skipSpace();
    const ch = text[pos];
    if (ch === "{") {
      pos += 1;
      const obj = {};
      sequence("}", () => {
        skipSpace();
        const key = match(STRING) ?? fail("a string key");
        expect(":");
        obj[JSON.parse(key)] = value();
      });
      return obj;
    }
    if (ch === "[") {
      pos += 1;
      const arr = [];
      sequence("]", () => arr.push(value()));
      return arr;
    }
    if (ch === '"') return JSON.parse(match(STRING) ?? fail("a valid string"));
    for (const [word, result] of [["null", null], ["true", true], ["false", false]]) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return result;
      }
    }
    const num = match(NUMBER) ?? fail("a value");
    if (/[.eE]/.test(num)) throw new SyntaxError(`JSON: ${num} is not an integer`);
    return BigInt(num);
  };

  const result = value();
  skipSpace();
  if (pos !== text.length) fail("the end of the document");
  return result;
}

// --- checksums ------------------------------------------------------------------------

// CRC-32 (IEEE, reflected polynomial 0xEDB88320, as zlib's crc32) from a table. Node has
// zlib.crc32 from 20.15 / 22.2 and it is used when present; this one serves older Nodes
// and is checked against it by tests/wtrace/test_conformance.py.
let crcTable = null;

export function tableCrc32(buf) {
  crcTable ??= new Uint32Array(256).map((_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  let c = 0xffffffff;
  for (const byte of buf) c = crcTable[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const crc32 = typeof zlib.crc32 === "function" ? (buf) => zlib.crc32(buf) >>> 0 : tableCrc32;

// --- payload --------------------------------------------------------------------------

function checkRange(what, v, lo, hi) {
  if (typeof v !== "bigint" || v < lo || v > hi) {
    throw new RangeError(`${what} ${v} is not an integer in [${lo}, ${hi}]`);
  }
  return v;
}

// Appends little pieces and joins them once at the end.
class ByteWriter {
  constructor() {
    this.parts = [];
  }

  bytes(buf) {
    this.parts.push(buf);
  }

  u8(v) {
    this.parts.push(Buffer.of(Number(checkRange("u8", v, 0n, 255n))));
  }

  uvarint(v) {
    checkRange("uvarint", v, 0n, 2n ** 64n - 1n);
    const out = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.parts.push(Buffer.from(out));
  }

  svarint(v) {
    checkRange("svarint", v, INT64_MIN, INT64_MAX);
    this.uvarint(BigInt.asUintN(64, (v << 1n) ^ (v >> 63n))); // zigzag
  }

  toBuffer() {
    return Buffer.concat(this.parts);
  }
}

// A fixed-width little-endian column: one Buffer of n * width bytes.
function column(values, width, write) {
  const buf = Buffer.alloc(values.length * width);
  values.forEach((v, i) => write(buf, v, i * width));
  return buf;
}

const u32Column = (what, values) =>
  column(values, 4, (buf, v, at) => buf.writeUInt32LE(Number(checkRange(what, v, 0n, U32_MAX)), at));

function encodeRecords(records) {
  // The string table lists each string once, in order of first use: for every record, for
  // every attribute, the key and then (if it is a string) the value.
  const strings = new Map();
  const stringRef = (s) => {
    if (!strings.has(s)) strings.set(s, BigInt(strings.size));
    return strings.get(s);
  };

  const body = new ByteWriter();
  body.uvarint(BigInt(records.length));
  for (const record of records) {
    body.u8(record.type);
    body.uvarint(record.id);
    body.uvarint(BigInt(record.attrs.length));
    for (const [key, value] of record.attrs) {
      body.uvarint(stringRef(key));
      if (typeof value === "bigint") {
        body.u8(0n);
        body.svarint(value);
      } else if (typeof value === "string") {
        body.u8(1n);
        body.uvarint(stringRef(value));
      } else if (value !== null && typeof value === "object" && typeof value.hex === "string") {
        const raw = Buffer.from(value.hex, "hex");
        if (raw.length * 2 !== value.hex.length) throw new SyntaxError(`bad hex for ${key}`);
        body.u8(2n);
        body.uvarint(BigInt(raw.length));
        body.bytes(raw);
      } else {
        throw new TypeError(`attribute ${key}: unsupported value ${JSON.stringify(value)}`);
      }
    }
  }

  const head = new ByteWriter();
  head.uvarint(BigInt(strings.size));
  for (const s of strings.keys()) {
    const utf8 = Buffer.from(s, "utf8");
    head.uvarint(BigInt(utf8.length));
    head.bytes(utf8);
  }
  return [head.toBuffer(), body.toBuffer()];
}

function encodeEvents(events, out) {
  const rows = events?.rows ?? [];
  out.uvarint(BigInt(rows.length));
  if (rows.length === 0) return;

  const field = (i) => rows.map((row) => row[i]);
  out.uvarint(events.first_seq);
  out.bytes(column(field(0), 1, (buf, v, at) => buf.writeUInt8(Number(checkRange("kind", v, 0n, 255n)), at)));
  out.bytes(u32Column("unit", field(1)));
  // Times are absolute monotonic nanoseconds, below 2^63.
  out.bytes(column(field(2), 8, (buf, v, at) => buf.writeBigUInt64LE(checkRange("time", v, 0n, INT64_MAX), at)));
  out.bytes(u32Column("res", field(3)));
  out.bytes(column(field(4), 8, (buf, v, at) => buf.writeBigInt64LE(checkRange("arg", v, INT64_MIN, INT64_MAX), at)));
  out.bytes(u32Column("loc", field(5)));
}

function encodePayload(chunk) {
  const [strings, records] = encodeRecords(chunk.records);
  const events = new ByteWriter();
  encodeEvents(chunk.events, events);
  return Buffer.concat([strings, records, events.toBuffer()]);
}

// --- framing --------------------------------------------------------------------------

function fileHeader() {
  const header = Buffer.alloc(16); // reserved bytes 8-15 stay zero
  header.write("WTRACE", 0, "ascii");
  header.writeUInt8(1, 6); // major
  header.writeUInt8(2, 7); // minor (format 1.2)
  return header;
}

function frameChunk(payload) {
  if (payload.length > MAX_CHUNK_BYTES) throw new RangeError(`payload of ${payload.length} bytes`);
  const header = Buffer.alloc(20);
  header.write("WCHK", 0, "ascii");
  header.writeUInt8(0, 4); // codec none; bytes 5-7 reserved, zero
  header.writeUInt32LE(payload.length, 8); // stored length
  header.writeUInt32LE(payload.length, 12); // raw length
  header.writeUInt32LE(crc32(payload), 16);
  return Buffer.concat([header, payload]);
}

export function encodeVector(vector) {
  return Buffer.concat([fileHeader(), ...vector.chunks.map((c) => frameChunk(encodePayload(c)))]);
}

export { parseExactJson };

function main(args) {
  if (args.length !== 2) {
    process.stderr.write("usage: node encode.mjs VECTOR.json OUT.wtrace\n");
    return 2;
  }
  const [input, output] = args;
  try {
    writeFileSync(output, encodeVector(parseExactJson(readFileSync(input, "utf8"))));
  } catch (err) {
    process.stderr.write(`encode.mjs: ${input}: ${err.message}\n`);
    return 1;
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
