//! The native stream of docs/protocols.md: with `WILLOWISP_COLLECTOR` set, chunks go to
//! `willowisp collect --native` instead of a segment file.
//!
//! One connection per segment: a `WSTR` hello (token from `WILLOWISP_TOKEN`), then every
//! chunk exactly as it would be written to a file. A reader thread takes the collector's
//! cumulative acks (and its bye or error). Chunks stay in memory until acknowledged (at
//! most 32 MiB / 4096 chunks; past that the writer waits up to 5 s for acks). When the
//! collector cannot be reached (connect 1 s, hello 2 s), a send fails or times out (5 s), or
//! the collector ends the connection, the flusher falls back to the segment file it would
//! have written: a chunk with the process record and a `fault` record (where `stream`),
//! then every unacknowledged chunk in order, then everything later. A collector's `bye`
//! (it is shutting down in order) is no fault: nothing is lost, so only the fault record
//! is left out. At the clean stop the
//! agent sends `bye` and waits up to 2 s for the collector's; what is still unacknowledged
//! then goes to the file too. After a fallback (or no collector at the start) the flusher
//! tries again when it next has a chunk to write, 1, 2, 4, 8, 16 s apart and then every
//! 30 s without end, each wait at most `WILLOWISP_STREAM_RETRY_S` (output.rs, `reconnect`).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value as J};

use crate::agent::lock;

const MAX_UNACKED_BYTES: usize = 32 << 20;
const MAX_UNACKED_CHUNKS: usize = 4096;

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn try_clone(&self) -> std::io::Result<Conn> {
        Ok(match self {
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
        })
    }
    fn timeouts(&self, read: Option<Duration>, write: Duration) {
        let _ = match self {
            Conn::Tcp(s) => s
                .set_read_timeout(read)
                .and(s.set_write_timeout(Some(write))),
            Conn::Unix(s) => s
                .set_read_timeout(read)
                .and(s.set_write_timeout(Some(write))),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct Shared {
    acked: AtomicU64,
    ended: AtomicBool,
    bye: AtomicBool,
    reason: Mutex<String>,
}

/// A live stream connection.
pub(crate) struct Stream {
    conn: Conn,
    address: String,
    shared: Arc<Shared>,
    sent: u64,
    unacked: VecDeque<Vec<u8>>,
    unacked_bytes: usize,
    /// The file the collector said (in its hello reply) it writes this segment to.
    pub(crate) collector_file: String,
}

fn connect(address: &str) -> Result<Conn, String> {
    if let Some(path) = address.strip_prefix("unix:") {
        return UnixStream::connect(path)
            .map(Conn::Unix)
            .map_err(|e| e.to_string());
    }
    let hostport = address.strip_prefix("tcp://").unwrap_or(address);
    let addrs: Vec<_> = hostport
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .collect();
    let mut last = String::from("no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(1)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(Conn::Tcp(s));
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

fn frame(body: &J) -> Vec<u8> {
    let text = body.to_string();
    let mut out = b"WSTR".to_vec();
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

fn read_message(conn: &mut Conn) -> Result<J, String> {
    let mut head = [0u8; 8];
    conn.read_exact(&mut head).map_err(|e| e.to_string())?;
    if &head[..4] != b"WSTR" {
        return Err("the collector sent something that is not a WSTR frame".into());
    }
    let n = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if n > 65536 {
        return Err("the collector sent a message over 64 KiB".into());
    }
    let mut body = vec![0u8; n];
    conn.read_exact(&mut body).map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

impl Stream {
    /// Connects and says hello; Err says why not (the caller falls back to files).
    pub(crate) fn open(address: &str, hello: J) -> Result<Stream, String> {
        let mut conn =
            connect(address).map_err(|e| format!("cannot reach collector {address}: {e}"))?;
        conn.timeouts(Some(Duration::from_secs(2)), Duration::from_secs(5));
        conn.write_all(&frame(&hello))
            .map_err(|e| format!("collector {address}: {e}"))?;
        let reply = read_message(&mut conn)
            .map_err(|e| format!("collector {address} did not answer the hello: {e}"))?;
        if reply.get("ok") != Some(&J::Bool(true)) {
            let code = reply
                .pointer("/error/code")
                .and_then(J::as_str)
                .unwrap_or("?");
            return Err(format!("collector {address} refused the hello: {code}"));
        }
        let collector_file = reply
            .get("file")
            .and_then(J::as_str)
            .unwrap_or("")
            .to_owned();
        let shared = Arc::new(Shared::default());
        let mut reader = conn.try_clone().map_err(|e| e.to_string())?;
        reader.timeouts(None, Duration::from_secs(5));
        let s2 = shared.clone();
        std::thread::Builder::new()
            .name("willowisp-stream".into())
            .spawn(move || read_acks(&mut reader, &s2))
            .map_err(|e| e.to_string())?;
        Ok(Stream {
            conn,
            address: address.to_owned(),
            shared,
            sent: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            collector_file,
        })
    }

    fn prune(&mut self) {
        let acked = self.shared.acked.load(Ordering::Acquire);
        while !self.unacked.is_empty() && self.sent - (self.unacked.len() as u64) < acked {
            if let Some(c) = self.unacked.pop_front() {
                self.unacked_bytes -= c.len();
            }
        }
    }

    fn ended_reason(&self) -> Option<String> {
        if !self.shared.ended.load(Ordering::Acquire) {
            return None;
        }
        let r = lock(&self.shared.reason).clone();
        Some(format!(
            "collector {} went away: {}",
            self.address,
            if r.is_empty() {
                "connection closed"
            } else {
                &r
            }
        ))
    }

    /// Sends one framed chunk. Err(reason): the stream is over; the caller writes
    /// `take_unacked()` to the file.
    pub(crate) fn send(&mut self, chunk: Vec<u8>) -> Result<(), String> {
        self.prune();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.unacked.len() >= MAX_UNACKED_CHUNKS
            || self.unacked_bytes + chunk.len() > MAX_UNACKED_BYTES
        {
            if let Some(r) = self.ended_reason() {
                self.push(chunk);
                return Err(r);
            }
            if Instant::now() > deadline {
                self.push(chunk);
                return Err(format!(
                    "collector {} acknowledged nothing for 5 s",
                    self.address
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
            self.prune();
        }
        if let Some(r) = self.ended_reason() {
            self.push(chunk);
            return Err(r);
        }
        let result = self.conn.write_all(&chunk);
        self.push(chunk);
        result.map_err(|e| format!("collector {}: {e}", self.address))
    }

    fn push(&mut self, chunk: Vec<u8>) {
        self.unacked_bytes += chunk.len();
        self.unacked.push_back(chunk);
        self.sent += 1;
    }

    /// Whether the collector ended the connection in order, with its `bye`.
    pub(crate) fn said_bye(&self) -> bool {
        self.shared.bye.load(Ordering::Acquire)
    }

    /// Chunks sent and not acknowledged yet (as of the last send), for `ctl status`.
    pub(crate) fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Every chunk not acknowledged yet, in order.
    pub(crate) fn take_unacked(&mut self) -> Vec<Vec<u8>> {
        self.prune();
        self.unacked_bytes = 0;
        self.unacked.drain(..).collect()
    }

    /// The clean end: bye, then up to 2 s for the collector's bye. Returns why chunks are
    /// left unacknowledged, if they are.
    pub(crate) fn close(&mut self) -> Option<String> {
        let _ = self.conn.write_all(&frame(&json!({"op": "bye"})));
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.shared.ended.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.prune();
        if self.unacked.is_empty() {
            None
        } else {
            Some(format!(
                "collector {} did not acknowledge {} chunks before the end",
                self.address,
                self.unacked.len()
            ))
        }
    }
}

fn read_acks(conn: &mut Conn, shared: &Shared) {
    loop {
        match read_message(conn) {
            Ok(m) => {
                if let Some(n) = m.get("chunks").and_then(J::as_u64) {
                    shared.acked.fetch_max(n, Ordering::AcqRel);
                }
                match m.get("op").and_then(J::as_str) {
                    Some("ack") => {}
                    Some("bye") => {
                        *lock(&shared.reason) = "collector is shutting down".into();
                        shared.bye.store(true, Ordering::Release);
                        shared.ended.store(true, Ordering::Release);
                        return;
                    }
                    _ => {
                        let code = m
                            .pointer("/error/code")
                            .and_then(J::as_str)
                            .unwrap_or("unexpected message");
                        *lock(&shared.reason) = code.chars().take(64).collect();
                        shared.ended.store(true, Ordering::Release);
                        return;
                    }
                }
            }
            Err(e) => {
                *lock(&shared.reason) = e;
                shared.ended.store(true, Ordering::Release);
                return;
            }
        }
    }
}
