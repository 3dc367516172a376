'use strict';
// Every conformance vector (conformance/vectors/*.json), encoded by the agent's own encoder,
// must give the vector's .wtrace byte for byte (conformance/README.md).

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const w = require('../lib/wtrace.js');
const { parseExact } = require('./exact_json.js');

const VECTORS = path.resolve(__dirname, '../../../conformance/vectors');

// The vector's rows as the recorder's typed columns.
function columns(events) {
  if (events === null || events.rows.length === 0) return null;
  const n = events.rows.length;
  const c = { firstSeq: events.first_seq, n, ...w.newColumns(n) };
  events.rows.forEach(([kind, unit, time, res, arg, loc], i) => {
    c.kind[i] = Number(kind);
    c.unit[i] = Number(unit);
    c.time[i] = time;
    c.res[i] = Number(res);
    c.arg[i] = arg;
    c.loc[i] = Number(loc);
  });
  return c;
}

function encodeVector(vector) {
  const parts = [w.fileHeader()];
  for (const chunk of vector.chunks) {
    const records = chunk.records.map((r) => ({
      type: Number(r.type),
      id: r.id,
      attrs: r.attrs.map(([k, v]) => [k, v !== null && typeof v === 'object' ? Buffer.from(v.hex, 'hex') : v]),
    }));
    parts.push(w.plainChunk(w.encodePayload(records, columns(chunk.events))));
  }
  return Buffer.concat(parts);
}

const names = fs.readdirSync(VECTORS).filter((f) => f.endsWith('.json')).sort();

test('there are conformance vectors to check', () => {
  assert.ok(names.length >= 8, `only ${names.length} vectors in ${VECTORS}`);
});

for (const name of names) {
  test(`vector ${name} encodes byte for byte`, () => {
    const vector = parseExact(fs.readFileSync(path.join(VECTORS, name), 'utf8'));
    const want = fs.readFileSync(path.join(VECTORS, name.replace(/\.json$/, '.wtrace')));
    const got = encodeVector(vector);
    assert.strictEqual(got.length, want.length, 'length');
    assert.ok(got.equals(want), `first difference at byte ${got.findIndex((b, i) => b !== want[i])}`);
  });
}

test('the table CRC-32 agrees with zlib crc32', () => {
  const buf = Buffer.from('The quick brown fox jumps over the lazy dog');
  assert.strictEqual(w.tableCrc32(buf), 0x414fa339);
  assert.strictEqual(w.crc32(buf), 0x414fa339);
});

test('a deflate chunk stores the zlib stream and the CRC of the raw payload', () => {
  const zlib = require('node:zlib');
  const raw = Buffer.alloc(4096, 7);
  const chunk = w.deflateChunk(raw);
  assert.strictEqual(chunk.toString('latin1', 0, 4), 'WCHK');
  assert.strictEqual(chunk[4], w.CODEC_DEFLATE);
  const stored = chunk.readUInt32LE(8);
  assert.strictEqual(chunk.readUInt32LE(12), raw.length);
  assert.strictEqual(chunk.readUInt32LE(16), w.crc32(raw));
  assert.ok(zlib.inflateSync(chunk.subarray(20, 20 + stored)).equals(raw));
  // incompressible bytes are stored as they are
  const noise = require('node:crypto').randomBytes(256);
  assert.strictEqual(w.deflateChunk(noise)[4], w.CODEC_NONE);
});

test('a record given as a Shape and its values encodes exactly as with its keys', () => {
  // several shapes, values that repeat, change, switch type, and are not ASCII, records of
  // the other two forms in between, over several payloads (the shapes' per-chunk caches)
  const shapes = [new w.Shape(['kind', 'name', 'trace_id', 'n']), new w.Shape(['kind', 'peer', 'name']), new w.Shape(['x'])];
  const pick = (i, vs) => vs[i % vs.length];
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let payload = 0; payload < 4; payload += 1) {
    const shaped = [];
    const plain = [];
    for (let r = 0; r < 60; r += 1) {
      const k = Math.floor(rnd() * 5);
      if (k >= shapes.length) {
        const attrs = k === 3 ? [['name', pick(r, ['a', 'é', 'rpc'])], ['n', r]] : ['kind', pick(r, ['rpc', 'unit']), 'bytes', Buffer.from([r, 1])];
        shaped.push({ type: 3, id: r, attrs });
        plain.push({ type: 3, id: r, attrs });
        continue;
      }
      const shape = shapes[k];
      const values = shape.keys.map((key, j) => {
        const x = rnd();
        if (x < 0.4) return pick(j, ['rpc', 'GET /a', 'ünïcode', '']);
        if (x < 0.7) return `${key}-${Math.floor(rnd() * 4)}`;
        if (x < 0.85) return Math.floor(rnd() * 1e6) - 5e5;
        return 2n ** 40n + BigInt(r);
      });
      shaped.push({ type: 3, id: r, attrs: values, shape });
      const flat = [];
      shape.keys.forEach((key, j) => flat.push(key, values[j]));
      plain.push({ type: 3, id: r, attrs: flat });
    }
    const a = w.encodePayload(shaped, null);
    const b = w.encodePayload(plain, null);
    assert.ok(a.equals(b), `payload ${payload}: first difference at byte ${a.findIndex((x, i) => x !== b[i])}`);
  }
  assert.throws(() => w.encodePayload([{ type: 3, id: 1, attrs: ['one'], shape: shapes[0] }], null), RangeError);
});
