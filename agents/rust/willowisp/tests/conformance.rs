//! Encodes every conformance vector (conformance/vectors/*.json) and compares the result
//! with the vector's .wtrace byte for byte. Integers are parsed exactly (serde_json's
//! arbitrary_precision keeps their text).

use std::path::PathBuf;

use serde_json::Value as J;
use willowisp::wtrace::{encode_file, Chunk, Event, Record, Value, CODEC_NONE};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../conformance/vectors")
}

fn int<T: std::str::FromStr>(v: &J) -> T {
    match v {
        J::Number(n) => n
            .to_string()
            .parse()
            .unwrap_or_else(|_| panic!("integer out of range: {n}")),
        other => panic!("not an integer: {other}"),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn chunk(c: &J) -> Chunk {
    let records = c["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Record {
            typ: int(&r["type"]),
            id: int(&r["id"]),
            attrs: r["attrs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| {
                    let key = kv[0].as_str().unwrap().to_owned();
                    let value = match &kv[1] {
                        J::String(s) => Value::Str(s.clone()),
                        J::Object(o) => Value::Bytes(hex(o["hex"].as_str().unwrap())),
                        n => Value::Int(int(n)),
                    };
                    (key, value)
                })
                .collect(),
        })
        .collect();
    let (first_seq, events) = match &c["events"] {
        J::Null => (0, Vec::new()),
        ev => (
            int(&ev["first_seq"]),
            ev["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| Event {
                    kind: int(&row[0]),
                    unit: int(&row[1]),
                    time: int(&row[2]),
                    res: int(&row[3]),
                    arg: int(&row[4]),
                    loc: int(&row[5]),
                })
                .collect(),
        ),
    };
    Chunk {
        records,
        first_seq,
        events,
    }
}

#[test]
fn every_vector_encodes_byte_for_byte() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(vectors_dir())
        .expect("conformance/vectors")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 8,
        "expected the conformance vectors, found {}",
        names.len()
    );
    for path in names {
        let text = std::fs::read_to_string(&path).unwrap();
        let v: J = serde_json::from_str(&text).unwrap();
        let chunks: Vec<Chunk> = v["chunks"].as_array().unwrap().iter().map(chunk).collect();
        let got = encode_file(&chunks, CODEC_NONE).unwrap();
        let want = std::fs::read(path.with_extension("wtrace")).unwrap();
        if got != want {
            let at = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            panic!(
                "{}: differs at byte {at} (got {} bytes, want {})",
                path.display(),
                got.len(),
                want.len()
            );
        }
    }
}

#[test]
fn deflate_chunks_decompress_to_the_same_payload() {
    use std::io::Read;
    let c = Chunk {
        records: vec![Record::new(2, 1)
            .with("kind", "task")
            .with("name", "x".repeat(300))],
        first_seq: 1,
        events: vec![
            Event {
                kind: 6,
                unit: 1,
                time: 5,
                ..Default::default()
            };
            500
        ],
    };
    let payload = willowisp::wtrace::encode_payload(&c);
    let framed = willowisp::wtrace::encode_chunk(&c, willowisp::wtrace::CODEC_DEFLATE).unwrap();
    assert_eq!(framed[4], 1, "a compressible chunk is stored deflated");
    let stored = u32::from_le_bytes(framed[8..12].try_into().unwrap()) as usize;
    let raw = u32::from_le_bytes(framed[12..16].try_into().unwrap()) as usize;
    assert_eq!(raw, payload.len());
    assert_eq!(stored, framed.len() - 20);
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(&framed[20..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, payload);
    assert_eq!(
        u32::from_le_bytes(framed[16..20].try_into().unwrap()),
        willowisp::wtrace::crc32(&payload)
    );
}
