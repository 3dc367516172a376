//! The `.wtrace` encoder (docs/format.md): the file header, chunk framing, the chunk-local
//! string table, records and the six event columns.
//!
//! The flusher builds one [`Chunk`] per flush from what the hot path buffered and calls
//! [`encode_chunk`]; nothing here runs on a program thread. The string table lists each
//! string once in order of first use while walking the records (key, then string value),
//! which is the one choice the format leaves open and the conformance vectors pin down.

use std::collections::HashMap;
use std::io::Write;

/// Format version this encoder writes.
pub const MAJOR: u8 = 1;
pub const MINOR: u8 = 2;

/// Chunk codecs.
pub const CODEC_NONE: u8 = 0;
pub const CODEC_DEFLATE: u8 = 1;

/// A chunk's payload may not exceed this (readers refuse larger ones).
pub const MAX_CHUNK_BYTES: usize = 64 * 1024 * 1024;

/// Record types.
pub mod rec {
    pub const PROCESS: u8 = 1;
    pub const UNIT: u8 = 2;
    pub const RESOURCE: u8 = 3;
    pub const LOCATION: u8 = 4;
    pub const FAULT: u8 = 5;
    pub const STATS: u8 = 6;
}

/// Event kinds (docs/format.md's table).
pub mod kind {
    pub const UNIT_CREATE: u8 = 1;
    pub const UNIT_START: u8 = 2;
    pub const UNIT_END: u8 = 3;
    pub const UNIT_BLOCK: u8 = 4;
    pub const UNIT_WAKE: u8 = 5;
    pub const UNIT_RUN: u8 = 6;
    pub const UNIT_YIELD: u8 = 7;
    pub const LOCK_ACQUIRED: u8 = 10;
    pub const LOCK_RELEASE: u8 = 11;
    pub const QUEUE_PUT: u8 = 12;
    pub const QUEUE_GET: u8 = 13;
    pub const SYNC_NOTIFY: u8 = 14;
    pub const SYNC_ARRIVE: u8 = 15;
    pub const JOIN_DONE: u8 = 16;
    pub const DATA_ACCESS: u8 = 17;
    pub const MSG_SEND: u8 = 20;
    pub const MSG_RECV: u8 = 21;
    pub const RPC_REPLY: u8 = 22;
    pub const RPC_RESPONSE: u8 = 23;
    pub const PROC_SPAWN: u8 = 24;
    pub const PROC_START: u8 = 25;
    pub const CLOCK_ANCHOR: u8 = 40;
    pub const AGENT_DROP: u8 = 41;
    pub const AGENT_FAULT: u8 = 42;
    pub const AGENT_FLUSH: u8 = 43;
}

/// `unit.block` reasons.
pub mod reason {
    pub const ACQUIRE: i64 = 1;
    pub const ACQUIRE_SHARED: i64 = 2;
    pub const GET: i64 = 3;
    pub const PUT: i64 = 4;
    pub const WAIT: i64 = 5;
    pub const JOIN: i64 = 6;
    pub const RPC: i64 = 7;
    pub const AWAIT: i64 = 8;
    pub const SLEEP: i64 = 9;
    pub const IO: i64 = 10;
}

/// An attribute value: value type 0 (svarint), 1 (string index) or 2 (bytes).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

/// One record: type, id, attributes in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub typ: u8,
    pub id: u64,
    pub attrs: Vec<(String, Value)>,
}

impl Record {
    pub fn new(typ: u8, id: u64) -> Self {
        Record {
            typ,
            id,
            attrs: Vec::new(),
        }
    }
    /// Builder-style attribute append.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.attrs.push((key.to_owned(), value.into()));
        self
    }
}

/// One event row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: u8,
    pub unit: u32,
    pub time: u64,
    pub res: u32,
    pub arg: i64,
    pub loc: u32,
}

/// A chunk's logical content.
#[derive(Clone, Debug, Default)]
pub struct Chunk {
    pub records: Vec<Record>,
    pub first_seq: u64,
    pub events: Vec<Event>,
}

/// The 16-byte file header.
pub fn file_header() -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..6].copy_from_slice(b"WTRACE");
    h[6] = MAJOR;
    h[7] = MINOR;
    h
}

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_svarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// The payload of one chunk: string table, records, event columns.
pub fn encode_payload(chunk: &Chunk) -> Vec<u8> {
    let mut index: HashMap<&str, u64> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut body = Vec::with_capacity(64 + chunk.records.len() * 32);
    put_uvarint(&mut body, chunk.records.len() as u64);
    for r in &chunk.records {
        body.push(r.typ);
        put_uvarint(&mut body, r.id);
        put_uvarint(&mut body, r.attrs.len() as u64);
        for (key, value) in &r.attrs {
            let k = string_ref(key, &mut index, &mut order);
            put_uvarint(&mut body, k);
            match value {
                Value::Int(v) => {
                    body.push(0);
                    put_svarint(&mut body, *v);
                }
                Value::Str(s) => {
                    body.push(1);
                    let i = string_ref(s, &mut index, &mut order);
                    put_uvarint(&mut body, i);
                }
                Value::Bytes(b) => {
                    body.push(2);
                    put_uvarint(&mut body, b.len() as u64);
                    body.extend_from_slice(b);
                }
            }
        }
    }
    let n = chunk.events.len();
    let mut out = Vec::with_capacity(body.len() + order.len() * 16 + 16 + n * 33);
    put_uvarint(&mut out, order.len() as u64);
    for s in &order {
        put_uvarint(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&body);
    put_uvarint(&mut out, n as u64);
    if n > 0 {
        put_uvarint(&mut out, chunk.first_seq);
        out.extend(chunk.events.iter().map(|e| e.kind));
        for e in &chunk.events {
            out.extend_from_slice(&e.unit.to_le_bytes());
        }
        for e in &chunk.events {
            out.extend_from_slice(&e.time.to_le_bytes());
        }
        for e in &chunk.events {
            out.extend_from_slice(&e.res.to_le_bytes());
        }
        for e in &chunk.events {
            out.extend_from_slice(&e.arg.to_le_bytes());
        }
        for e in &chunk.events {
            out.extend_from_slice(&e.loc.to_le_bytes());
        }
    }
    out
}

fn string_ref<'a>(s: &'a str, index: &mut HashMap<&'a str, u64>, order: &mut Vec<&'a str>) -> u64 {
    if let Some(i) = index.get(s) {
        return *i;
    }
    let i = order.len() as u64;
    index.insert(s, i);
    order.push(s);
    i
}

/// CRC-32 (IEEE, as zlib's crc32).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

/// Frames a payload as one chunk. With `CODEC_DEFLATE` the payload is zlib-compressed,
/// unless that does not make it smaller (then it is stored with codec `none`).
pub fn frame_chunk(payload: &[u8], codec: u8) -> Result<Vec<u8>, String> {
    if payload.len() > MAX_CHUNK_BYTES {
        return Err(format!(
            "chunk payload of {} bytes exceeds 64 MiB",
            payload.len()
        ));
    }
    let mut stored_codec = CODEC_NONE;
    let mut compressed = None;
    if codec == CODEC_DEFLATE {
        let mut z = flate2::write::ZlibEncoder::new(
            Vec::with_capacity(payload.len() / 3 + 64),
            flate2::Compression::fast(),
        );
        z.write_all(payload).map_err(|e| e.to_string())?;
        let bytes = z.finish().map_err(|e| e.to_string())?;
        if bytes.len() < payload.len() {
            stored_codec = CODEC_DEFLATE;
            compressed = Some(bytes);
        }
    }
    let stored: &[u8] = compressed.as_deref().unwrap_or(payload);
    let mut out = Vec::with_capacity(20 + stored.len());
    out.extend_from_slice(b"WCHK");
    out.push(stored_codec);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(stored);
    Ok(out)
}

/// One chunk, encoded and framed.
pub fn encode_chunk(chunk: &Chunk, codec: u8) -> Result<Vec<u8>, String> {
    frame_chunk(&encode_payload(chunk), codec)
}

/// A whole file: header and chunks (used by the conformance test).
pub fn encode_file(chunks: &[Chunk], codec: u8) -> Result<Vec<u8>, String> {
    let mut out = file_header().to_vec();
    for c in chunks {
        out.extend_from_slice(&encode_chunk(c, codec)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut out = Vec::new();
        put_uvarint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        put_svarint(&mut out, -1);
        assert_eq!(out, [1]);
        out.clear();
        put_svarint(&mut out, i64::MIN);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn incompressible_payloads_are_stored_plain() {
        let noise: Vec<u8> = (0..64u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let framed = frame_chunk(&noise, CODEC_DEFLATE).unwrap();
        assert_eq!(framed[4], CODEC_NONE);
        assert_eq!(&framed[20..], &noise[..]);
    }
}
