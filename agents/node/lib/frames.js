'use strict';
// Frames of the live protocols (docs/protocols.md, "Frames"): a 4-byte magic (`WCTL` for the
// control channel, `WSTR` for the native stream), a u32 LE body length, one JSON object.
//
// How it fits: control.js (the agent as a server) and stream.js (the agent as a client of
// `willowisp collect`) both read their peer's bytes through a FrameReader and write with
// packFrame. Everything here works on Buffers handed in by a socket's 'data' events, never
// on the socket itself, so nothing blocks the event loop.
//
// Trade-off: the length is checked against the limit as soon as the 8-byte header is in,
// before any of the body is kept, so a hostile peer cannot make the agent hold more than
// the limit; a body is kept as a list of pieces and joined once complete.

const CONTROL_MAGIC = 'WCTL';
const STREAM_MAGIC = 'WSTR';
const MAX_CONTROL_BODY = 1024 * 1024;
const MAX_MESSAGE_BODY = 64 * 1024;
const MAX_ID_CHARS = 64;

class ProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// Strict UTF-8: a body with an invalid sequence is bad-json, not silently repaired.
const utf8 = new TextDecoder('utf-8', { fatal: true });

function packFrame(magic, obj) {
  const body = Buffer.from(JSON.stringify(obj), 'utf8');
  const head = Buffer.allocUnsafe(8);
  head.write(magic, 0, 'latin1');
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
}

// Incremental frame parser for one connection. push(data, onBody) calls onBody(body) for
// each complete body in it (a Buffer), in order, until onBody returns false; then it throws
// ProtocolError bad-frame (wrong magic) or frame-too-large (before keeping any of the body)
// when the next header is bad, so the frames before a bad one are handled first.
// `inFrame` tells whether the peer stopped in the middle of a frame (truncated input).
class FrameReader {
  constructor(magic, maxBody) {
    this.magic = magic;
    this.maxBody = maxBody;
    this.head = Buffer.alloc(0); // bytes of the current header, < 8
    this.want = -1; // body bytes still expected, -1 while reading a header
    this.pieces = [];
    this.length = 0;
  }

  get inFrame() {
    return this.head.length > 0 || this.want >= 0;
  }

  push(data, onBody) {
    let at = 0;
    while (at < data.length) {
      if (this.want < 0) {
        const take = Math.min(8 - this.head.length, data.length - at);
        this.head = Buffer.concat([this.head, data.subarray(at, at + take)]);
        at += take;
        if (this.head.length < 8) break;
        const seen = this.head.toString('latin1', 0, 4);
        const length = this.head.readUInt32LE(4);
        this.head = Buffer.alloc(0);
        if (seen !== this.magic) throw new ProtocolError('bad-frame', `frame starts with ${JSON.stringify(seen)}, expected ${this.magic}`);
        if (length > this.maxBody) throw new ProtocolError('frame-too-large', `frame of ${length} bytes is over ${this.maxBody}`);
        this.want = length;
        this.pieces = [];
        this.length = length;
        if (length === 0) {
          this.want = -1;
          if (onBody(Buffer.alloc(0)) === false) return;
        }
        continue;
      }
      const take = Math.min(this.want, data.length - at);
      this.pieces.push(data.subarray(at, at + take));
      at += take;
      this.want -= take;
      if (this.want === 0) {
        const body = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces, this.length);
        this.pieces = [];
        this.want = -1;
        if (onBody(body) === false) return;
      }
    }
  }
}

// A frame body as a JSON object. bad-json: not UTF-8, not JSON (NaN and Infinity are not
// JSON); bad-request: JSON but not an object.
function parseObject(body) {
  let obj;
  try {
    obj = JSON.parse(utf8.decode(body));
  } catch (err) {
    throw new ProtocolError('bad-json', `body is not a UTF-8 JSON object: ${String(err && err.message).slice(0, 200)}`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new ProtocolError('bad-request', `body is a JSON ${Array.isArray(obj) ? 'array' : obj === null ? 'null' : typeof obj}, not an object`);
  }
  return obj;
}

// [id to echo (undefined if absent), whether it is valid]. JSON integers beyond 2^53 - 1
// arrive as doubles that are not safe integers, and are refused.
function requestId(req) {
  if (!Object.hasOwn(req, 'id') || req.id === null) return [undefined, true];
  const rid = req.id;
  if (typeof rid === 'string' && rid.length <= MAX_ID_CHARS) return [rid, true];
  if (typeof rid === 'number' && Number.isSafeInteger(rid)) return [rid, true];
  return [undefined, false];
}

function okReply(result, rid) {
  const reply = { ok: true, result };
  if (rid !== undefined) reply.id = rid;
  return reply;
}

function errorReply(code, message, rid, extra) {
  const reply = { ok: false, error: { code, message: String(message).slice(0, 500), ...extra } };
  if (rid !== undefined) reply.id = rid;
  return reply;
}

module.exports = {
  CONTROL_MAGIC,
  STREAM_MAGIC,
  MAX_CONTROL_BODY,
  MAX_MESSAGE_BODY,
  ProtocolError,
  FrameReader,
  packFrame,
  parseObject,
  requestId,
  okReply,
  errorReply,
};
