//! The recording core: configuration from `WILLOWISP_*`, per-thread event buffers, the
//! definitions (units, resources, locations, faults), and the background flusher thread
//! that turns them into `.wtrace` chunks.
//!
//! Hot path: an event is a 40-byte row pushed onto the calling thread's own buffer under a
//! mutex only the flusher ever contends for; a full buffer counts a drop for the unit (written
//! as `agent.drop`). Definitions go to one shared list. The flusher wakes every 50 ms, takes
//! every row stamped before the moment it started (later ones wait for the next flush, so a
//! task that moved between threads keeps its events in order), sorts them by time, adds
//! clock anchors (every second), the stats record and `agent.flush`, and appends one
//! deflate chunk to the segment with a single write. Program threads never do I/O.
//!
//! Nothing here panics into the program: every fallible step returns an error that is
//! counted as a fault record; a poisoned mutex is simply entered again.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::wtrace::{self, kind, rec, Chunk, Event, Record, Value};

/// Rows one thread may buffer between flushes before it counts drops.
const THREAD_CAP: usize = 1 << 18;
/// Definitions buffered between flushes before they are dropped (and counted as faults).
const RECORD_CAP: usize = 1 << 18;
/// A new segment starts past this size.
const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(50);
const ANCHOR_EVERY_NS: u64 = 1_000_000_000;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}
extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

fn clock(id: i32) -> u64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two longs on 64-bit Linux) into ts.
    unsafe { clock_gettime(id, &mut ts) };
    (ts.sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.nsec as u64)
}

/// CLOCK_MONOTONIC in ns: the clock every Willowisp agent stamps events with.
#[inline]
pub fn now() -> u64 {
    clock(1)
}

fn wall() -> u64 {
    clock(0)
}

/// A (monotonic, wall) pair read back to back: the wall reading bracketed by two monotonic
/// ones, the tightest of three tries, so that anchors of processes on one host agree within
/// microseconds (the analyzer merges clocks whose anchors agree within 50 µs).
fn clock_pair() -> (u64, u64) {
    let mut best = (0u64, 0u64, u64::MAX);
    for _ in 0..3 {
        let before = now();
        let w = wall();
        let after = now();
        let width = after.saturating_sub(before);
        if width < best.2 {
            best = (before + width / 2, w, width);
        }
    }
    (best.0, best.1)
}

/// Settings read once from the environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub out: String,
    pub mode: String,
    pub trace_ratio: f64,
    pub service: String,
    pub clock_offset_ns: i64,
    pub traceparent: String,
    pub boundaries: String,
    pub run_pid: u32,
    /// WILLOWISP_COLLECTOR: stream chunks there instead of writing files.
    pub collector: String,
    pub token: String,
    /// Problems with the variables, recorded as fault records once recording starts.
    pub problems: Vec<String>,
}

impl Config {
    /// Reads WILLOWISP_*; None when recording is off (no WILLOWISP_OUT, or DISABLED=1).
    pub fn from_env() -> Option<Config> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if get("WILLOWISP_DISABLED").is_some_and(|v| v.trim() != "0") {
            return None;
        }
        let out = get("WILLOWISP_OUT")?;
        let mut problems = Vec::new();
        let mode = match get("WILLOWISP_MODE").as_deref().map(str::trim) {
            None | Some("full") => "full".to_owned(),
            Some("hops") => "hops".to_owned(),
            Some(other) => {
                problems.push(format!("bad WILLOWISP_MODE {other:?}: using full"));
                "full".to_owned()
            }
        };
        let trace_ratio = match get("WILLOWISP_TRACE_RATIO").map(|v| v.trim().parse::<f64>()) {
            None => 1.0,
            Some(Ok(r)) if (0.0..=1.0).contains(&r) => r,
            Some(_) => {
                problems.push("bad WILLOWISP_TRACE_RATIO: using 1".to_owned());
                1.0
            }
        };
        let clock_offset_ns =
            match get("WILLOWISP_CLOCK_OFFSET_NS").map(|v| v.trim().parse::<i64>()) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    problems.push("bad WILLOWISP_CLOCK_OFFSET_NS: using 0".to_owned());
                    0
                }
            };
        let run_pid = get("WILLOWISP_RUN_PID")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let service = get("WILLOWISP_SERVICE")
            .or_else(|| get("OTEL_SERVICE_NAME"))
            .or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .unwrap_or_else(|| "rust".to_owned());
        Some(Config {
            out,
            mode,
            trace_ratio,
            service,
            clock_offset_ns,
            traceparent: get("TRACEPARENT").unwrap_or_default(),
            boundaries: get("WILLOWISP_BOUNDARIES").unwrap_or_default(),
            run_pid,
            collector: get("WILLOWISP_COLLECTOR")
                .map(|c| c.trim().to_owned())
                .unwrap_or_default(),
            token: std::env::var("WILLOWISP_TOKEN").unwrap_or_default(),
            problems,
        })
    }
}

/// One thread's rows, shared with the flusher.
pub(crate) struct ThreadBuf {
    rows: Mutex<Rows>,
}

#[derive(Default)]
struct Rows {
    events: Vec<Event>,
    drops: HashMap<u32, i64>,
}

/// Per-thread state: the buffer and the thread's unit (0 until it records something).
pub(crate) struct ThreadState {
    pub(crate) buf: Arc<ThreadBuf>,
    pub(crate) unit: Cell<u32>,
    pub(crate) carrier: Cell<bool>,
    /// Spans entered on this thread (the tokio subscriber's stack), innermost last.
    pub(crate) stack: RefCell<Vec<usize>>,
    /// The task span that exited last, if nothing happened on this thread since.
    pub(crate) last_exit: Cell<usize>,
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        let unit = self.unit.get();
        if unit != 0 {
            if let Some(a) = agent() {
                a.push(
                    &self.buf,
                    Event {
                        kind: kind::UNIT_END,
                        unit,
                        time: now(),
                        ..Default::default()
                    },
                );
            }
        }
    }
}

thread_local! {
    pub(crate) static THREAD: ThreadState = new_thread_state();
}

fn new_thread_state() -> ThreadState {
    let buf = Arc::new(ThreadBuf {
        rows: Mutex::new(Rows::default()),
    });
    if let Some(a) = agent() {
        lock(&a.threads).push(buf.clone());
    }
    ThreadState {
        buf,
        unit: Cell::new(0),
        carrier: Cell::new(false),
        stack: RefCell::new(Vec::new()),
        last_exit: Cell::new(0),
    }
}

extern "C" {
    fn gettid() -> i32;
}

/// The recorder: one per process, alive from `init()` to the end of the program.
pub struct Agent {
    pub config: Config,
    pub process_id: String,
    pub(crate) recording: AtomicBool,
    threads: Mutex<Vec<Arc<ThreadBuf>>>,
    records: Mutex<Vec<Record>>,
    locations: Mutex<HashMap<(usize, u32), u32>>,
    next_unit: AtomicU32,
    next_resource: AtomicU32,
    next_location: AtomicU32,
    next_fault: AtomicU32,
    pub(crate) events: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) faults: AtomicU64,
    pub(crate) self_wakes: AtomicU64,
    cost_ns: AtomicI64,
    runtime_units: Mutex<Vec<u32>>,
    complete: AtomicBool,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    out: Mutex<Output>,
    rng: AtomicU64,
}

struct Output {
    file: Option<File>,
    stream: Option<crate::stream::Stream>,
    segment: i64,
    written: u64,
    next_seq: u64,
    last_anchor: u64,
    failed: bool,
    /// After a fallback to files: reconnect attempts made, and when the next is due.
    retries: u32,
    retry_at: Option<std::time::Instant>,
}

static AGENT: OnceLock<Agent> = OnceLock::new();

/// The running agent, if recording.
#[inline]
pub fn agent() -> Option<&'static Agent> {
    AGENT.get().filter(|a| a.recording.load(Ordering::Relaxed))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let ok =
        File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut out));
    if ok.is_err() {
        let mut x = wall() ^ (std::process::id() as u64) << 32 ^ now();
        for b in out.iter_mut() {
            x = splitmix(x);
            *b = x as u8;
        }
    }
    out
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Starts the agent (once); returns whether it is recording.
pub(crate) fn start() -> bool {
    if let Some(a) = AGENT.get() {
        return a.recording.load(Ordering::Relaxed);
    }
    let Some(config) = Config::from_env() else {
        return false;
    };
    let seed = u64::from_le_bytes(random_bytes(8).try_into().unwrap_or([7; 8]));
    let new_agent = Agent {
        process_id: hex(&random_bytes(16)),
        config,
        recording: AtomicBool::new(false),
        threads: Mutex::new(Vec::new()),
        records: Mutex::new(Vec::new()),
        locations: Mutex::new(HashMap::new()),
        next_unit: AtomicU32::new(1),
        next_resource: AtomicU32::new(1),
        next_location: AtomicU32::new(1),
        next_fault: AtomicU32::new(1),
        events: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        faults: AtomicU64::new(0),
        self_wakes: AtomicU64::new(0),
        cost_ns: AtomicI64::new(0),
        runtime_units: Mutex::new(Vec::new()),
        complete: AtomicBool::new(false),
        stop: Mutex::new(false),
        stop_cv: Condvar::new(),
        flusher: Mutex::new(None),
        out: Mutex::new(Output {
            file: None,
            stream: None,
            segment: 0,
            written: 0,
            next_seq: 1,
            last_anchor: 0,
            failed: false,
            retries: 0,
            retry_at: None,
        }),
        rng: AtomicU64::new(seed),
    };
    if AGENT.set(new_agent).is_err() {
        return agent().is_some();
    }
    let a = AGENT.get().expect("just set");
    let mut stream_problem = None;
    if !a.config.collector.is_empty() {
        match a.open_stream(1) {
            Ok(st) => {
                let mut out = lock(&a.out);
                out.segment = 1;
                out.stream = Some(st);
            }
            Err(e) => stream_problem = Some(e),
        }
    }
    if lock(&a.out).stream.is_none() {
        if let Err(e) = a.open_segment(&mut lock(&a.out)) {
            eprintln!(
                "willowisp: cannot write traces to {}: {e}; recording is off",
                a.config.out
            );
            return false;
        }
    }
    a.recording.store(true, Ordering::Release);
    if let Some(p) = stream_problem {
        a.fault("stream", &p);
    }
    for p in a.config.problems.clone() {
        a.fault("config", &p);
    }
    a.calibrate();
    a.flush();
    crate::control::start(a);
    match std::thread::Builder::new()
        .name("willowisp-flush".into())
        .spawn(|| {
            if let Some(a) = AGENT.get() {
                a.run_flusher()
            }
        }) {
        Ok(h) => *lock(&a.flusher) = Some(h),
        Err(e) => a.fault("flusher", &e.to_string()),
    }
    true
}

impl Agent {
    fn open_segment(&self, out: &mut Output) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.config.out)?;
        out.segment += 1;
        let safe: String = self
            .config
            .service
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!(
            "{}-{}-{}-{}.wtrace",
            if safe.is_empty() { "rust" } else { &safe },
            std::process::id(),
            &self.process_id[..8],
            out.segment
        );
        let path = std::path::Path::new(&self.config.out).join(name);
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)?;
        f.write_all(&wtrace::file_header())?;
        out.file = Some(f);
        out.written = 16;
        out.last_anchor = 0;
        Ok(())
    }

    fn open_stream(&self, segment: i64) -> Result<crate::stream::Stream, String> {
        let hello = serde_json::json!({
            "op": "hello", "versions": [1], "token": self.config.token,
            "format": [wtrace::MAJOR, wtrace::MINOR], "process_id": self.process_id,
            "service": self.config.service.chars().take(256).collect::<String>(),
            "pid": std::process::id(), "runtime": "rust", "segment": segment,
        });
        crate::stream::Stream::open(&self.config.collector, hello)
    }

    /// The collector is gone: the segment file it would have been, with the process record,
    /// a fault saying why, and every chunk the collector did not acknowledge.
    fn fall_back(&self, out: &mut Output, reason: &str) {
        let chunks = out
            .stream
            .as_mut()
            .map(|s| s.take_unacked())
            .unwrap_or_default();
        out.stream = None;
        out.segment -= 1; // the same segment number, as a file
        out.retries = 0;
        out.retry_at = Some(std::time::Instant::now() + Duration::from_secs(1));
        if let Err(e) = self.open_segment(out) {
            self.dropped
                .fetch_add(chunks.len() as u64, Ordering::Relaxed);
            drop_fault(self, "write", &e.to_string());
            return;
        }
        self.faults.fetch_add(1, Ordering::Relaxed);
        let n = self.next_fault.fetch_add(1, Ordering::Relaxed);
        let head = Chunk {
            records: vec![
                self.process_record(out.segment),
                Record::new(rec::FAULT, n as u64)
                    .with("message", reason)
                    .with("where", "stream"),
            ],
            ..Default::default()
        };
        let mut pieces = Vec::with_capacity(chunks.len() + 1);
        if let Ok(b) = wtrace::encode_chunk(&head, wtrace::CODEC_DEFLATE) {
            pieces.push(b);
        }
        pieces.extend(chunks);
        if let Some(f) = out.file.as_mut() {
            for p in pieces {
                if f.write_all(&p).is_ok() {
                    out.written += p.len() as u64;
                }
            }
        }
    }

    /// One bounded attempt to stream again after a fallback (1, 2, 4, 8, 16 s apart, at
    /// most 5 in a row): a new connection is a new segment and starts with the process
    /// record.
    fn reconnect(&self, out: &mut Output) {
        let seg = out.segment + 1;
        let head = Chunk {
            records: vec![self.process_record(seg)],
            ..Default::default()
        };
        let attempt = self.open_stream(seg).and_then(|mut st| {
            let bytes = wtrace::encode_chunk(&head, wtrace::CODEC_DEFLATE)?;
            st.send(bytes).map(|()| st)
        });
        match attempt {
            Ok(st) => {
                out.stream = Some(st);
                out.file = None;
                out.segment = seg;
                out.retries = 0;
                out.retry_at = None;
            }
            Err(_) => {
                out.retries += 1;
                out.retry_at = (out.retries < 5)
                    .then(|| std::time::Instant::now() + Duration::from_secs(1 << out.retries));
            }
        }
    }

    /// A fresh random id of `n` bytes as hex (span and trace ids).
    pub fn random_hex(&self, n: usize) -> String {
        let mut bytes = Vec::with_capacity(n);
        while bytes.len() < n {
            let x = splitmix(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes.truncate(n);
        if bytes.iter().all(|b| *b == 0) {
            bytes[0] = 1;
        }
        hex(&bytes)
    }

    /// 16 bytes from the OS's secure random source, as 32 hex digits (the control token).
    pub(crate) fn random_token(&self) -> String {
        hex(&random_bytes(16))
    }

    pub(crate) fn cost_ns(&self) -> i64 {
        self.cost_ns.load(Ordering::Relaxed)
    }

    /// A number in [0, 1) for sampling decisions.
    pub fn random_unit(&self) -> f64 {
        (splitmix(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)) >> 11) as f64
            / (1u64 << 53) as f64
    }

    #[inline]
    pub(crate) fn push(&self, buf: &ThreadBuf, e: Event) {
        let mut rows = lock(&buf.rows);
        let n = rows.events.len();
        if n < THREAD_CAP {
            rows.events.push(e);
            if n == THREAD_CAP / 4 {
                drop(rows);
                self.stop_cv.notify_one(); // flush early rather than drop later
            }
        } else {
            *rows.drops.entry(e.unit).or_insert(0) += 1;
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records an event on the calling thread's buffer, stamped now.
    #[inline]
    pub fn emit(&self, unit: u32, kind: u8, res: u32, arg: i64, loc: u32) {
        self.emit_at(now(), unit, kind, res, arg, loc)
    }

    #[inline]
    pub fn emit_at(&self, time: u64, unit: u32, kind: u8, res: u32, arg: i64, loc: u32) {
        let e = Event {
            kind,
            unit,
            time,
            res,
            arg,
            loc,
        };
        if THREAD.try_with(|t| self.push(&t.buf, e)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed); // thread tearing down
        }
    }

    pub(crate) fn define(&self, r: Record) {
        let mut recs = lock(&self.records);
        if recs.len() < RECORD_CAP {
            recs.push(r);
        } else {
            drop(recs);
            self.faults.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn new_unit(&self, kind_: &str, name: &str, parent: u32, loc: u32) -> u32 {
        let n = self.next_unit.fetch_add(1, Ordering::Relaxed);
        let mut r = Record::new(rec::UNIT, n as u64)
            .with("kind", kind_)
            .with("name", name)
            .with("parent", parent as i64);
        if loc != 0 {
            r = r.with("loc", loc as i64);
        }
        self.define(r);
        n
    }

    /// A resource with the given attributes (kind and name first).
    pub fn new_resource(&self, attrs: Vec<(&str, Value)>) -> u32 {
        let n = self.next_resource.fetch_add(1, Ordering::Relaxed);
        let mut r = Record::new(rec::RESOURCE, n as u64);
        for (k, v) in attrs {
            r.attrs.push((k.to_owned(), v));
        }
        self.define(r);
        n
    }

    /// The location number of a `&'static Location` (interned by address).
    pub fn location(&self, loc: &'static std::panic::Location<'static>) -> u32 {
        self.location_of(loc.file(), loc.line(), "")
    }

    /// The location number of (file, line, func); `file` must live for the program
    /// (interned by its address), which every `Location` and tracing field satisfies.
    pub fn location_of(&self, file: &'static str, line: u32, func: &str) -> u32 {
        let key = (file.as_ptr() as usize ^ file.len() << 48, line);
        let mut map = lock(&self.locations);
        if let Some(n) = map.get(&key) {
            return *n;
        }
        let n = self.next_location.fetch_add(1, Ordering::Relaxed);
        map.insert(key, n);
        drop(map);
        let mut r = Record::new(rec::LOCATION, n as u64)
            .with("file", file)
            .with("line", line as i64);
        if !func.is_empty() {
            r = r.with("func", func);
        }
        self.define(r);
        n
    }

    /// Counts an error inside the agent and records it (fault record + agent.fault).
    pub fn fault(&self, where_: &str, message: &str) {
        self.faults.fetch_add(1, Ordering::Relaxed);
        let n = self.next_fault.fetch_add(1, Ordering::Relaxed);
        let msg: String = message
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(500)
            .collect();
        self.define(
            Record::new(rec::FAULT, n as u64)
                .with("message", msg)
                .with("where", where_),
        );
        self.emit(0, kind::AGENT_FAULT, 0, n as i64, 0);
    }

    /// The calling thread's unit, defined on first use (kind thread).
    pub fn thread_unit(&self) -> u32 {
        THREAD
            .try_with(|t| {
                let u = t.unit.get();
                if u != 0 {
                    return u;
                }
                let cur = std::thread::current();
                let name = cur
                    .name()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{:?}", cur.id()));
                let n = self.next_unit.fetch_add(1, Ordering::Relaxed);
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { gettid() };
                self.define(
                    Record::new(rec::UNIT, n as u64)
                        .with("kind", "thread")
                        .with("name", name)
                        .with("parent", 0)
                        .with("os_tid", tid as i64),
                );
                t.unit.set(n);
                self.push(
                    &t.buf,
                    Event {
                        kind: kind::UNIT_START,
                        unit: n,
                        time: now(),
                        ..Default::default()
                    },
                );
                n
            })
            .unwrap_or(0)
    }

    pub(crate) fn mark_runtime_unit(&self, unit: u32) {
        lock(&self.runtime_units).push(unit);
    }

    fn process_record(&self, segment: i64) -> Record {
        let c = &self.config;
        let argv: Vec<String> = std::env::args().collect();
        let ppid = std::os::unix::process::parent_id();
        let time_ns = std::fs::read_link("/proc/self/ns/time")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let preload = std::env::var("LD_PRELOAD").unwrap_or_default();
        let fake = preload
            .split([':', ' '])
            .filter_map(|p| p.rsplit('/').next())
            .find(|b| b.contains("faketime"))
            .unwrap_or("")
            .to_owned();
        let mut r = Record::new(rec::PROCESS, 0)
            .with("process_id", self.process_id.as_str())
            .with("pid", std::process::id() as i64)
            .with("ppid", ppid as i64)
            .with("host", read_trim("/proc/sys/kernel/hostname"))
            .with("service", c.service.as_str())
            .with("runtime", "rust")
            .with(
                "runtime_version",
                option_env!("WILLOWISP_RUSTC").unwrap_or(""),
            )
            .with("agent_version", env!("CARGO_PKG_VERSION"))
            .with("boot_id", read_trim("/proc/sys/kernel/random/boot_id"))
            .with("time_ns", time_ns)
            .with("fake_time", fake)
            .with("simulated_offset_ns", c.clock_offset_ns)
            .with(
                "argv",
                argv.join(" ").chars().take(4096).collect::<String>(),
            )
            .with("traceparent", c.traceparent.as_str())
            .with(
                "parent_process_id",
                std::env::var("WILLOWISP_PARENT_PROCESS").unwrap_or_default(),
            )
            .with("mode", c.mode.as_str())
            .with("boundaries", c.boundaries.as_str())
            .with("segment", segment)
            .with("run_root", i64::from(c.run_pid != 0 && c.run_pid == ppid));
        if self.complete.load(Ordering::Acquire) {
            let units: Vec<String> = lock(&self.runtime_units)
                .iter()
                .map(u32::to_string)
                .collect();
            r = r.with("complete", 1).with("runtime_units", units.join(","));
        }
        r
    }

    /// Measures the cost of one recorded event (the stats' cost_ns_per_event).
    fn calibrate(&self) {
        let n = 2000u64;
        let buf = ThreadBuf {
            rows: Mutex::new(Rows::default()),
        };
        let t0 = now();
        for i in 0..n {
            self.push(
                &buf,
                Event {
                    kind: 0,
                    unit: 0,
                    time: now(),
                    arg: i as i64,
                    ..Default::default()
                },
            );
        }
        self.cost_ns
            .store(((now() - t0) / n) as i64, Ordering::Relaxed);
    }

    fn run_flusher(&self) {
        let mut stopped = lock(&self.stop);
        while !*stopped {
            let (g, _) = self
                .stop_cv
                .wait_timeout(stopped, FLUSH_EVERY)
                .unwrap_or_else(|p| p.into_inner());
            stopped = g;
            if *stopped {
                break;
            }
            drop(stopped);
            self.flush();
            stopped = lock(&self.stop);
        }
    }

    /// Writes everything buffered so far as one chunk.
    pub fn flush(&self) {
        let mut out = lock(&self.out);
        if out.file.is_none() && out.stream.is_none() {
            return;
        }
        let cut = now();
        let records = std::mem::take(&mut *lock(&self.records));
        let bufs: Vec<Arc<ThreadBuf>> = {
            let mut threads = lock(&self.threads);
            threads.retain(|b| Arc::strong_count(b) > 1 || !lock(&b.rows).events.is_empty());
            threads.clone()
        };
        let mut events = Vec::new();
        let mut drops: Vec<(u32, i64)> = Vec::new();
        for b in &bufs {
            let mut rows = lock(&b.rows);
            if rows.events.iter().all(|e| e.time <= cut) {
                events.append(&mut rows.events);
            } else {
                let keep: Vec<Event> = rows
                    .events
                    .iter()
                    .filter(|e| e.time > cut)
                    .copied()
                    .collect();
                events.extend(rows.events.iter().filter(|e| e.time <= cut));
                rows.events = keep;
            }
            drops.extend(rows.drops.drain());
        }
        events.sort_by_key(|e| e.time);
        for (unit, n) in drops {
            events.push(Event {
                kind: kind::AGENT_DROP,
                unit,
                time: cut,
                arg: n,
                ..Default::default()
            });
        }
        let mut chunk = Chunk::default();
        if out.last_anchor == 0 {
            chunk.records.push(self.process_record(out.segment));
        }
        if out.last_anchor == 0 || cut.saturating_sub(out.last_anchor) >= ANCHOR_EVERY_NS {
            let (mono, w) = clock_pair();
            let w = w as i64 + self.config.clock_offset_ns;
            events.insert(
                0,
                Event {
                    kind: kind::CLOCK_ANCHOR,
                    time: mono,
                    arg: w,
                    ..Default::default()
                },
            );
            out.last_anchor = cut.max(1);
        }
        chunk.records.extend(records);
        let n_program = events.len() as u64;
        self.events.fetch_add(n_program, Ordering::Relaxed);
        events.push(Event {
            kind: kind::AGENT_FLUSH,
            time: cut,
            arg: n_program as i64,
            ..Default::default()
        });
        chunk.records.push(
            Record::new(rec::STATS, 0)
                .with("events", self.events.load(Ordering::Relaxed) as i64)
                .with("dropped", self.dropped.load(Ordering::Relaxed) as i64)
                .with("faults", self.faults.load(Ordering::Relaxed) as i64)
                .with("cost_ns_per_event", self.cost_ns.load(Ordering::Relaxed))
                .with("self_wakes", self.self_wakes.load(Ordering::Relaxed) as i64),
        );
        chunk.first_seq = out.next_seq;
        out.next_seq += events.len() as u64;
        chunk.events = events;
        self.write_chunk(&mut out, &chunk);
    }

    fn write_chunk(&self, out: &mut Output, chunk: &Chunk) {
        let bytes = match wtrace::encode_chunk(chunk, wtrace::CODEC_DEFLATE) {
            Ok(b) => b,
            Err(e) => {
                self.dropped
                    .fetch_add(chunk.events.len() as u64, Ordering::Relaxed);
                drop_fault(self, "encode", &e);
                return;
            }
        };
        if out
            .retry_at
            .is_some_and(|at| std::time::Instant::now() >= at)
            && !*lock(&self.stop)
        {
            self.reconnect(out);
        }
        if let Some(st) = out.stream.as_mut() {
            if let Err(reason) = st.send(bytes) {
                self.fall_back(out, &reason);
            }
            return;
        }
        let Some(f) = out.file.as_mut() else { return };
        match f.write_all(&bytes) {
            Ok(()) => out.written += bytes.len() as u64,
            Err(e) => {
                self.dropped
                    .fetch_add(chunk.events.len() as u64, Ordering::Relaxed);
                if !out.failed {
                    out.failed = true;
                    eprintln!("willowisp: writing the trace failed: {e}");
                }
                drop_fault(self, "write", &e.to_string());
            }
        }
        if out.written > SEGMENT_BYTES {
            out.file = None;
            if let Err(e) = self.open_segment(out) {
                drop_fault(self, "segment", &e.to_string());
            }
        }
    }

    /// A clean stop: marks the process complete, writes the last chunk, stops the flusher.
    pub(crate) fn finish(&self, complete: bool) {
        if !self.recording.load(Ordering::Acquire) {
            return;
        }
        crate::control::stop();
        if complete {
            self.complete.store(true, Ordering::Release);
            // the process record again, now claiming completeness
            let seg = lock(&self.out).segment;
            self.define(self.process_record(seg));
        }
        *lock(&self.stop) = true;
        self.stop_cv.notify_all();
        if let Some(h) = lock(&self.flusher).take() {
            let _ = h.join();
        }
        self.flush();
        let mut out = lock(&self.out);
        if let Some(reason) = out.stream.as_mut().and_then(|s| s.close()) {
            self.fall_back(&mut out, &reason);
        }
        out.stream = None;
        drop(out);
        self.recording.store(false, Ordering::Release);
    }
}

fn drop_fault(a: &Agent, where_: &str, message: &str) {
    a.faults.fetch_add(1, Ordering::Relaxed);
    let n = a.next_fault.fetch_add(1, Ordering::Relaxed);
    a.define(
        Record::new(rec::FAULT, n as u64)
            .with("message", message)
            .with("where", where_),
    );
}
