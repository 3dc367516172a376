//! The control channel of docs/protocols.md, version 1: `willowisp ctl` asks a running Rust
//! process for its status and switches boundaries on and off.
//!
//! A Unix socket (mode 0600) in the per-user runtime folder (`$WILLOWISP_RUNTIME_DIR`, else
//! `/tmp/willowisp-<uid>`, which must be a 0700 directory of ours and not a symlink), plus
//! 127.0.0.1 TCP when `WILLOWISP_CONTROL=tcp`; `off` disables it. The descriptor
//! `<pid>-<p8>.json` (0600, written atomically) names the socket and the session token
//! (16 random bytes). One thread accepts; each connection (at most 4 at once, else `busy`)
//! is served on its own thread with the protocol's timeouts and limits, so malformed input
//! ends at most its own connection. `WILLOWISP_CONTROL_TOKEN` (32 hex digits) fixes the
//! token, for conformance tests that replay recorded bytes.
//!
//! Boundaries: `enable` / `disable` switch the agent's boundaries ([`crate::boundary`]):
//! a boundary switched off opens no new instances; `status` reports each with its
//! counters and cost.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as J};

use crate::agent::{lock, Agent};

const MAX_BODY: usize = 1 << 20;
const MAX_CONNECTIONS: usize = 4;
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const VERSIONS: [i64; 1] = [1];
const OPS: [&str; 5] = ["hello", "ping", "status", "enable", "disable"];

extern "C" {
    fn getuid() -> u32;
    fn getsockopt(fd: i32, level: i32, name: i32, value: *mut u8, len: *mut u32) -> i32;
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    malformed: AtomicU64,
    unauthorized: AtomicU64,
    busy: AtomicU64,
    internal_errors: AtomicU64,
}

/// The running channel.
pub(crate) struct Control {
    token: String,
    socket: String,
    tcp: String,
    descriptor: PathBuf,
    counters: Counters,
    active: AtomicUsize,
}

static CONTROL: Mutex<Option<Arc<Control>>> = Mutex::new(None);

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { getuid() }
}

fn runtime_dir() -> Result<PathBuf, String> {
    let dir = match std::env::var("WILLOWISP_RUNTIME_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(format!("/tmp/willowisp-{}", uid())),
    };
    if std::fs::symlink_metadata(&dir).is_err() {
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    }
    let m = std::fs::symlink_metadata(&dir)
        .map_err(|e| format!("runtime folder {}: {e}", dir.display()))?;
    if !m.is_dir() || m.uid() != uid() || m.mode() & 0o077 != 0 {
        return Err(format!(
            "runtime folder {} is not a private directory of this user",
            dir.display()
        ));
    }
    Ok(dir)
}

fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten().take(256) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let Some(pid) = stem.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(dir.join(&name));
            let _ = std::fs::remove_file(dir.join(format!("{stem}.sock")));
        }
    }
}

/// Starts the channel (unless `WILLOWISP_CONTROL=off`); problems become faults.
pub(crate) fn start(a: &'static Agent) {
    let mode = std::env::var("WILLOWISP_CONTROL").unwrap_or_default();
    if mode.trim() == "off" {
        return;
    }
    if let Err(e) = try_start(a, mode.trim() == "tcp") {
        a.fault("control", &e);
    }
}

fn try_start(a: &'static Agent, want_tcp: bool) -> Result<(), String> {
    let dir = runtime_dir()?;
    remove_stale(&dir);
    let stem = format!("{}-{}", std::process::id(), &a.process_id[..8]);
    let sock_path = dir.join(format!("{stem}.sock"));
    let mut unix = None;
    if sock_path.as_os_str().len() <= 107 {
        let _ = std::fs::remove_file(&sock_path);
        let l = UnixListener::bind(&sock_path).map_err(|e| format!("control socket: {e}"))?;
        let _ = std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600));
        unix = Some(l);
    } else {
        a.fault(
            "control",
            "the runtime folder's path is too long for a Unix socket",
        );
    }
    let tcp = if want_tcp {
        Some(TcpListener::bind("127.0.0.1:0").map_err(|e| format!("control tcp: {e}"))?)
    } else {
        None
    };
    if unix.is_none() && tcp.is_none() {
        return Ok(());
    }
    let token = match std::env::var("WILLOWISP_CONTROL_TOKEN") {
        Ok(t) if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
            t.to_ascii_lowercase()
        }
        _ => a.random_token(),
    };
    let tcp_addr = tcp
        .as_ref()
        .and_then(|t| t.local_addr().ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let socket = if unix.is_some() {
        sock_path.to_string_lossy().into_owned()
    } else {
        String::new()
    };
    let run = std::fs::canonicalize(&a.config.out)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let descriptor = dir.join(format!("{stem}.json"));
    let body = json!({
        "protocol": "willowisp-control", "versions": VERSIONS, "pid": std::process::id(),
        "process_id": a.process_id, "service": a.config.service, "runtime": "rust",
        "agent_version": env!("CARGO_PKG_VERSION"), "socket": socket, "tcp": tcp_addr,
        "token": token, "run": run,
    });
    let tmp = dir.join(format!(".{stem}.json.tmp"));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("descriptor: {e}"))?;
        f.write_all(body.to_string().as_bytes())
            .map_err(|e| format!("descriptor: {e}"))?;
    }
    std::fs::rename(&tmp, &descriptor).map_err(|e| format!("descriptor: {e}"))?;
    let c = Arc::new(Control {
        token,
        socket,
        tcp: tcp_addr,
        descriptor,
        counters: Counters::default(),
        active: AtomicUsize::new(0),
    });
    *lock(&CONTROL) = Some(c.clone());
    if let Some(l) = unix {
        let c = c.clone();
        let _ = std::thread::Builder::new()
            .name("willowisp-ctl".into())
            .spawn(move || {
                for s in l.incoming().flatten() {
                    let peer_ok = peer_uid(&s).is_none_or(|u| u == uid() || u == 0);
                    serve(a, &c, Conn::Unix(s), peer_ok);
                }
            });
    }
    if let Some(l) = tcp {
        let c = c.clone();
        let _ = std::thread::Builder::new()
            .name("willowisp-ctl-tcp".into())
            .spawn(move || {
                for s in l.incoming().flatten() {
                    serve(a, &c, Conn::Tcp(s), true);
                }
            });
    }
    Ok(())
}

/// Removes the socket and descriptor (at the clean stop).
pub(crate) fn stop() {
    if let Some(c) = lock(&CONTROL).take() {
        let _ = std::fs::remove_file(&c.descriptor);
        if !c.socket.is_empty() {
            let _ = std::fs::remove_file(&c.socket);
        }
    }
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = [0u8; 12]; // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
    let mut len = 12u32;
    // SAFETY: SOL_SOCKET (1) / SO_PEERCRED (17) on Linux fill a 12-byte ucred.
    let rc = unsafe { getsockopt(s.as_raw_fd(), 1, 17, cred.as_mut_ptr(), &mut len) };
    (rc == 0 && len == 12).then(|| u32::from_ne_bytes([cred[4], cred[5], cred[6], cred[7]]))
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn set_timeout(&self, d: Duration) {
        let _ = match self {
            Conn::Unix(s) => s
                .set_read_timeout(Some(d))
                .and(s.set_write_timeout(Some(d))),
            Conn::Tcp(s) => s
                .set_read_timeout(Some(d))
                .and(s.set_write_timeout(Some(d))),
        };
    }
    fn shutdown_write(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn serve(a: &'static Agent, c: &Arc<Control>, mut conn: Conn, peer_ok: bool) {
    c.counters.connections.fetch_add(1, Ordering::Relaxed);
    if c.active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        c.active.fetch_sub(1, Ordering::AcqRel);
        c.counters.busy.fetch_add(1, Ordering::Relaxed);
        conn.set_timeout(Duration::from_secs(1));
        let _ = conn.write_all(&frame(&error("busy", "too many control connections", None)));
        close_after_error(&mut conn);
        return;
    }
    let c2 = c.clone();
    let spawned = std::thread::Builder::new()
        .name("willowisp-ctl-conn".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                converse(a, &c2, &mut conn, peer_ok)
            }));
            if r.is_err() {
                c2.counters.internal_errors.fetch_add(1, Ordering::Relaxed);
                a.fault("control", "panic while serving a control connection");
            }
            c2.active.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        c.active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn frame(body: &J) -> Vec<u8> {
    let text = body.to_string();
    let mut out = Vec::with_capacity(8 + text.len());
    out.extend_from_slice(b"WCTL");
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

fn error(code: &str, message: &str, id: Option<&J>) -> J {
    let mut e = json!({"ok": false, "error": {"code": code, "message": message.chars().take(500).collect::<String>()}});
    if let Some(id) = id {
        e["id"] = id.clone();
    }
    e
}

fn close_after_error(conn: &mut Conn) {
    conn.shutdown_write();
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut left = MAX_BODY;
    let mut buf = [0u8; 8192];
    conn.set_timeout(Duration::from_millis(200));
    while left > 0 && Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => left = left.saturating_sub(n),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => break,
        }
    }
}

enum Read8 {
    Frame(Vec<u8>),
    End,
    Err(&'static str, &'static str),
}

fn read_exact_or_end(conn: &mut Conn, buf: &mut [u8]) -> Result<bool, bool> {
    // Ok(true) read all; Ok(false) clean end before any byte; Err(timeout?) otherwise
    let mut got = 0;
    while got < buf.len() {
        match conn.read(&mut buf[got..]) {
            Ok(0) => return if got == 0 { Ok(false) } else { Err(false) },
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(true)
            }
            Err(_) => return Err(false),
        }
    }
    Ok(true)
}

fn read_frame(conn: &mut Conn) -> Read8 {
    let mut head = [0u8; 8];
    match read_exact_or_end(conn, &mut head) {
        Ok(true) => {}
        Ok(false) => return Read8::End,
        Err(true) => return Read8::Err("timeout", "no complete frame in time"),
        Err(false) => return Read8::End, // truncated: close without a reply
    }
    if &head[..4] != b"WCTL" {
        return Read8::Err("bad-frame", "the frame does not start with WCTL");
    }
    let n = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if n > MAX_BODY {
        return Read8::Err("frame-too-large", "the frame's body is over 1 MiB");
    }
    let mut body = vec![0u8; n];
    match read_exact_or_end(conn, &mut body) {
        Ok(_) => Read8::Frame(body),
        Err(true) => Read8::Err("timeout", "no complete frame in time"),
        Err(false) => Read8::End,
    }
}

fn valid_id(req: &Map<String, J>) -> Result<Option<J>, ()> {
    match req.get("id") {
        None => Ok(None),
        Some(J::String(s)) if s.chars().count() <= 64 => Ok(Some(J::String(s.clone()))),
        Some(J::Number(n)) => match n.as_i64() {
            Some(i)
                if i.unsigned_abs() < (1u64 << 53) && !n.to_string().contains(['.', 'e', 'E']) =>
            {
                Ok(Some(J::Number(n.clone())))
            }
            _ => Err(()),
        },
        Some(_) => Err(()),
    }
}

fn converse(a: &'static Agent, c: &Control, conn: &mut Conn, peer_ok: bool) {
    let started = Instant::now();
    conn.set_timeout(HELLO_TIMEOUT);
    let mut hello_done = false;
    loop {
        if !hello_done {
            let left = HELLO_TIMEOUT.saturating_sub(started.elapsed());
            conn.set_timeout(left.max(Duration::from_millis(1)));
        }
        let body = match read_frame(conn) {
            Read8::End => return,
            Read8::Err(code, msg) => {
                if code != "timeout" {
                    c.counters.malformed.fetch_add(1, Ordering::Relaxed);
                }
                let _ = conn.write_all(&frame(&error(code, msg, None)));
                close_after_error(conn);
                return;
            }
            Read8::Frame(b) => b,
        };
        c.counters.requests.fetch_add(1, Ordering::Relaxed);
        let (reply, close) = handle(a, c, &body, &mut hello_done, peer_ok);
        let mut bytes = frame(&reply);
        if bytes.len() > MAX_BODY + 8 {
            c.counters.internal_errors.fetch_add(1, Ordering::Relaxed);
            bytes = frame(&error(
                "internal",
                "the reply is over 1 MiB",
                reply.get("id"),
            ));
        }
        if conn.write_all(&bytes).is_err() {
            return;
        }
        if close {
            close_after_error(conn);
            return;
        }
        if hello_done {
            conn.set_timeout(IDLE_TIMEOUT);
        }
    }
}

/// One request -> (reply, close the connection after it).
fn handle(
    a: &'static Agent,
    c: &Control,
    body: &[u8],
    hello_done: &mut bool,
    peer_ok: bool,
) -> (J, bool) {
    let malformed = |code: &str, msg: &str, id: Option<&J>| {
        c.counters.malformed.fetch_add(1, Ordering::Relaxed);
        error(code, msg, id)
    };
    let parsed: Result<J, _> = serde_json::from_slice(body);
    let Ok(value) = parsed else {
        return (
            malformed("bad-json", "the body is not UTF-8 JSON", None),
            !*hello_done,
        );
    };
    let J::Object(req) = value else {
        return (
            malformed("bad-request", "a request is a JSON object", None),
            !*hello_done,
        );
    };
    let Some(J::String(op)) = req.get("op") else {
        return (
            malformed("bad-request", "op must be a string", None),
            !*hello_done,
        );
    };
    let Ok(id) = valid_id(&req) else {
        return (
            malformed(
                "bad-request",
                "id must be a string of at most 64 characters or an integer",
                None,
            ),
            !*hello_done,
        );
    };
    let id = id.as_ref();
    if !*hello_done {
        if op != "hello" {
            return (
                malformed("hello-required", "the first request must be a hello", id),
                true,
            );
        }
        let token_ok = match req.get("token") {
            Some(J::String(t)) => peer_ok && constant_time_eq(t.as_bytes(), c.token.as_bytes()),
            _ => false,
        };
        if !token_ok {
            c.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            return (error("unauthorized", "missing or wrong token", id), true);
        }
        let versions: Option<Vec<i64>> = match req.get("versions") {
            Some(J::Array(v)) if (1..=16).contains(&v.len()) => {
                v.iter().map(|x| x.as_i64()).collect()
            }
            _ => None,
        };
        let Some(versions) = versions else {
            return (
                malformed(
                    "bad-request",
                    "versions must be a list of 1 to 16 integers",
                    id,
                ),
                true,
            );
        };
        let Some(v) = versions
            .iter()
            .filter(|v| VERSIONS.contains(v))
            .max()
            .copied()
        else {
            let mut e = error("unsupported-version", "no common protocol version", id);
            e["error"]["versions"] = json!(VERSIONS);
            return (e, true);
        };
        *hello_done = true;
        let agent = json!({"pid": std::process::id(), "process_id": a.process_id, "service": a.config.service,
            "runtime": "rust", "agent_version": env!("CARGO_PKG_VERSION")});
        return (
            ok(json!({"version": v, "agent": agent, "ops": OPS}), id),
            false,
        );
    }
    match op.as_str() {
        "hello" => (malformed("bad-request", "a second hello", id), false),
        "ping" => (ok(json!({}), id), false),
        "status" => (ok(status(a, c), id), false),
        "enable" | "disable" => {
            let boundary = match req.get("boundary") {
                Some(J::String(b)) if !b.trim().is_empty() && b.len() <= 4096 => b.clone(),
                _ => {
                    return (
                        malformed(
                            "bad-request",
                            "boundary must be a non-empty string of at most 4096 bytes",
                            id,
                        ),
                        false,
                    )
                }
            };
            switch(a, &boundary, op == "enable", id)
        }
        _ => (error("unknown-command", "unknown op", id), false),
    }
}

fn ok(result: J, id: Option<&J>) -> J {
    let mut r = json!({"ok": true, "result": result});
    if let Some(id) = id {
        r["id"] = id.clone();
    }
    r
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn switch(a: &Agent, name: &str, enable: bool, id: Option<&J>) -> (J, bool) {
    use crate::boundary::Switched;
    if !enable {
        return match a.boundaries.disable(name) {
            Some(entry) => (ok(json!({"boundary": entry, "enabled": false}), id), false),
            None => (
                error("bad-boundary", "this process knows no such boundary", id),
                false,
            ),
        };
    }
    match a.boundaries.enable(name) {
        Ok(Switched::Known(entry) | Switched::Added(entry)) => {
            (ok(json!({"boundary": entry, "enabled": true}), id), false)
        }
        Err(msg) => (error("bad-boundary", &msg, id), false),
    }
}

fn status(a: &Agent, c: &Control) -> J {
    let hook_ns = a.cost_ns();
    let encode_ns = a.encode_ns.load(Ordering::Relaxed);
    let bs: Vec<J> = a
        .boundaries
        .costs(hook_ns, encode_ns)
        .into_iter()
        .map(|(name, mut v)| {
            v["name"] = json!(name);
            v
        })
        .collect();
    let k = &c.counters;
    json!({
        "pid": std::process::id(), "process_id": a.process_id, "service": a.config.service, "runtime": "rust",
        "mode": a.config.mode, "gate": a.gated, "events": a.events.load(Ordering::Relaxed), "dropped": a.dropped.load(Ordering::Relaxed),
        "faults": a.faults.load(Ordering::Relaxed), "cost_ns_per_event": a.cost_ns(),
        "self_wakes": a.self_wakes.load(Ordering::Relaxed),
        "sink": lock(&a.sink).clone(),
        "boundaries": bs,
        "control": {
            "connections": k.connections.load(Ordering::Relaxed), "requests": k.requests.load(Ordering::Relaxed),
            "malformed": k.malformed.load(Ordering::Relaxed), "unauthorized": k.unauthorized.load(Ordering::Relaxed),
            "busy": k.busy.load(Ordering::Relaxed), "internal_errors": k.internal_errors.load(Ordering::Relaxed),
            "socket": c.socket, "tcp": c.tcp,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abcd", b"abcd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abce", b"abcd"));
    }
}
