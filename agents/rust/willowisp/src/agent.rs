//! The recorder: one per process. It hands out unit, resource, location and fault numbers
//! (their definitions go to one shared list), takes every event onto the calling thread's
//! own buffer (see [`crate::buffer`]), and starts the flusher ([`crate::output`]), the
//! control channel and the signal watcher.
//!
//! Hot path: an event is a 40-byte row pushed onto the calling thread's own buffer under a
//! mutex only the flusher ever contends for; a full buffer counts a drop for the unit
//! (written as `agent.drop`).
//!
//! Nothing here panics into the program: every fallible step returns an error that is
//! counted as a fault record; a poisoned mutex is simply entered again.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

pub(crate) use crate::buffer::THREAD;
use crate::buffer::{gettid, Rows, ThreadBuf};
pub use crate::clock::now;
use crate::clock::wall;
pub use crate::config::Config;
use crate::output::Output;
use crate::wtrace::{kind, rec, Event, Record, Value};

/// Rows one thread may buffer between flushes before it counts drops.
const THREAD_CAP: usize = 1 << 18;
/// Definitions buffered between flushes before they are dropped (and counted as faults).
const RECORD_CAP: usize = 1 << 18;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The recorder: one per process, alive from `init()` to the end of the program.
pub struct Agent {
    pub config: Config,
    pub process_id: String,
    pub(crate) recording: AtomicBool,
    pub(crate) threads: Mutex<Vec<Arc<ThreadBuf>>>,
    pub(crate) records: Mutex<Vec<Record>>,
    pub(crate) locations: Mutex<HashMap<(usize, u32), u32>>,
    pub(crate) next_unit: AtomicU32,
    pub(crate) next_resource: AtomicU32,
    pub(crate) next_location: AtomicU32,
    pub(crate) next_fault: AtomicU32,
    pub(crate) events: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) faults: AtomicU64,
    pub(crate) self_wakes: AtomicU64,
    pub(crate) cost_ns: AtomicI64,
    pub(crate) runtime_units: Mutex<Vec<u32>>,
    pub(crate) complete: AtomicBool,
    /// The signal that ended the process (SIGTERM, SIGINT), 0 otherwise; set once by the
    /// signal watcher before the last chunk.
    pub(crate) exit_signal: std::sync::atomic::AtomicI32,
    pub(crate) stop: Mutex<bool>,
    pub(crate) stop_cv: Condvar,
    pub(crate) flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) out: Mutex<Output>,
    pub(crate) rng: AtomicU64,
    /// Declared boundaries and their counters.
    pub(crate) boundaries: crate::boundary::Boundaries,
    /// Per-unit boundary marks and, in hops mode, deferred unit records.
    pub(crate) units: crate::gate::UnitTable,
    /// hops mode: concurrency events pass only inside boundaries; units defined lazily.
    pub(crate) gated: bool,
    /// The flusher's measured encoding cost per event (ns), for `serialize_ns`.
    pub(crate) encode_ns: AtomicI64,
    /// Where chunks go, as `ctl status` shows it: a copy the flusher refreshes after
    /// every chunk (see `Agent::publish_sink`).
    pub(crate) sink: Mutex<serde_json::Value>,
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
    let (boundaries, boundary_problems) =
        crate::boundary::Boundaries::from_config(&config.boundaries);
    let gated = config.mode == "hops";
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
        exit_signal: std::sync::atomic::AtomicI32::new(0),
        stop: Mutex::new(false),
        stop_cv: Condvar::new(),
        flusher: Mutex::new(None),
        out: Mutex::new(Output::new()),
        rng: AtomicU64::new(seed),
        boundaries,
        units: crate::gate::UnitTable::default(),
        gated,
        encode_ns: AtomicI64::new(0),
        sink: Mutex::new(serde_json::Value::Null),
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
    for p in boundary_problems {
        a.fault("boundaries", &p);
    }
    a.calibrate();
    a.flush();
    crate::control::start(a);
    crate::signals::install(a);
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
        if unit != 0
            && (self.gated || self.boundaries.any.load(Ordering::Relaxed))
            && !self.pass(unit, kind)
        {
            return;
        }
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

    /// The gate (see [`crate::gate`]): whether an event of `kind` by `unit` is written; on
    /// the way, a deferred unit record is written and the event is counted against the
    /// unit's boundary.
    #[inline(never)]
    fn pass(&self, unit: u32, kind: u8) -> bool {
        let w = self.units.get(unit);
        let mark = w & crate::gate::MARK;
        if self.gated {
            if mark == 0 && kind < crate::gate::FIRST_HOP_KIND {
                return false;
            }
            if w & crate::gate::DEFINED == 0 {
                if let Some(r) = self.units.take_pending(unit) {
                    self.define(r);
                }
            }
        }
        if mark != 0 {
            self.boundaries.count(mark);
        }
        true
    }

    /// Whether concurrency events of `unit` are recorded (full mode, or inside a boundary):
    /// adapters ask before they define anything for such events.
    #[inline]
    pub(crate) fn admits(&self, unit: u32) -> bool {
        !self.gated || self.units.get(unit) & crate::gate::MARK != 0
    }

    /// [`Agent::admits`] for the unit running here.
    pub(crate) fn admits_here(&self) -> bool {
        !self.gated || self.admits(crate::current_unit())
    }

    /// A unit's record: written now, or in hops mode (outside every boundary) kept until
    /// the unit's first event passes the gate.
    fn define_unit(&self, n: u32, r: Record) {
        if self.gated && self.units.covers(n) {
            if self.units.get(n) & crate::gate::MARK == 0 {
                self.units.defer(n, r);
                return;
            }
            self.units.mark_defined(n);
        }
        self.define(r);
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
        if parent != 0 && self.boundaries.any.load(Ordering::Relaxed) {
            // a task spawned inside a boundary instance belongs to it for its life
            let mark = self.units.get(parent) & crate::gate::MARK;
            if mark != 0 {
                self.units.set_mark(n, mark);
            }
        }
        self.define_unit(n, r);
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
        self.thread_unit_as(0, 0)
    }

    /// The calling thread's unit; defined on first use as number `n` (0: a new one) with
    /// `parent` (0: none), for a thread whose spawner already wrote `unit.create` naming
    /// it (`crate::thread`).
    pub(crate) fn thread_unit_as(&self, n: u32, parent: u32) -> u32 {
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
                let n = if n != 0 {
                    n
                } else {
                    self.next_unit.fetch_add(1, Ordering::Relaxed)
                };
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { gettid() };
                self.define_unit(
                    n,
                    Record::new(rec::UNIT, n as u64)
                        .with("kind", "thread")
                        .with("name", name)
                        .with("parent", i64::from(parent))
                        .with("os_tid", tid as i64),
                );
                t.unit.set(n);
                if self.gated {
                    return n; // its start is a concurrency event: outside every boundary
                }
                self.push(
                    &t.buf,
                    Event {
                        kind: kind::UNIT_START,
                        unit: n,
                        time: now(),
                        arg: i64::from(parent),
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

    pub(crate) fn process_record(&self, segment: i64) -> Record {
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
        let sig = self.exit_signal.load(Ordering::Acquire);
        if sig != 0 {
            r = r.with("exit_signal", i64::from(sig));
        }
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
    /// Measures the cost of one recorded event (the stats' cost_ns_per_event) and of
    /// encoding one (the boundaries' serialize_ns): the better of three rounds, so that a
    /// cold start (page faults, a busy machine) does not stand for the steady state.
    pub(crate) fn calibrate(&self) {
        let n = 2000u64;
        let mut push_ns = u64::MAX;
        let mut encode_ns = u64::MAX;
        for _ in 0..3 {
            let buf = ThreadBuf {
                rows: Mutex::new(Rows::default()),
            };
            let t0 = now();
            for i in 0..n {
                self.push(
                    &buf,
                    Event {
                        kind: kind::UNIT_RUN,
                        unit: 1 + (i % 7) as u32,
                        time: now(),
                        arg: i as i64,
                        ..Default::default()
                    },
                );
            }
            push_ns = push_ns.min((now() - t0) / n);
            let chunk = crate::wtrace::Chunk {
                events: std::mem::take(&mut lock(&buf.rows).events),
                ..Default::default()
            };
            let t1 = now();
            if crate::wtrace::encode_chunk(&chunk, crate::wtrace::CODEC_DEFLATE).is_ok() {
                encode_ns = encode_ns.min((now() - t1) / n);
            }
        }
        self.cost_ns.store(push_ns as i64, Ordering::Relaxed);
        if encode_ns != u64::MAX {
            self.encode_ns.store(encode_ns as i64, Ordering::Relaxed);
        }
    }
}
