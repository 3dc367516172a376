//! Where chunks go: the segment file (a new one past 256 MiB) or the native stream to a
//! collector with its fallback to files; the flusher thread that builds one chunk every
//! 50 ms from every thread's rows; and the clean stop.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::{lock, Agent};
use crate::buffer::ThreadBuf;
use crate::clock::{clock_pair, now};
use crate::wtrace::{self, kind, rec, Chunk, Event, Record};

/// A new segment starts past this size.
const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(50);
const ANCHOR_EVERY_NS: u64 = 1_000_000_000;

pub(crate) struct Output {
    pub(crate) file: Option<File>,
    pub(crate) stream: Option<crate::stream::Stream>,
    pub(crate) segment: i64,
    pub(crate) written: u64,
    pub(crate) next_seq: u64,
    pub(crate) last_anchor: u64,
    pub(crate) failed: bool,
    /// After a fallback to files: reconnect attempts made, and when the next is due.
    pub(crate) retries: u32,
    pub(crate) retry_at: Option<std::time::Instant>,
}

impl Output {
    pub(crate) fn new() -> Output {
        Output {
            file: None,
            stream: None,
            segment: 0,
            written: 0,
            next_seq: 1,
            last_anchor: 0,
            failed: false,
            retries: 0,
            retry_at: None,
        }
    }
}

impl Agent {
    pub(crate) fn open_segment(&self, out: &mut Output) -> std::io::Result<()> {
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

    pub(crate) fn open_stream(&self, segment: i64) -> Result<crate::stream::Stream, String> {
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

    pub(crate) fn run_flusher(&self) {
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
        let mut stats = Record::new(rec::STATS, 0)
            .with("events", self.events.load(Ordering::Relaxed) as i64)
            .with("dropped", self.dropped.load(Ordering::Relaxed) as i64)
            .with("faults", self.faults.load(Ordering::Relaxed) as i64)
            .with("cost_ns_per_event", self.cost_ns.load(Ordering::Relaxed))
            .with("self_wakes", self.self_wakes.load(Ordering::Relaxed) as i64);
        if let Some(by) = self.boundaries.by_boundary_json(
            self.cost_ns.load(Ordering::Relaxed),
            self.encode_ns.load(Ordering::Relaxed),
        ) {
            stats = stats.with("by_boundary", by);
        }
        chunk.records.push(stats);
        chunk.first_seq = out.next_seq;
        out.next_seq += events.len() as u64;
        chunk.events = events;
        self.write_chunk(&mut out, &chunk);
    }

    fn write_chunk(&self, out: &mut Output, chunk: &Chunk) {
        let t0 = now();
        let bytes = match wtrace::encode_chunk(chunk, wtrace::CODEC_DEFLATE) {
            Ok(b) => {
                // the encoder's cost per event, from chunks big enough to measure it
                let n = chunk.events.len() as u64;
                if n >= 1000 {
                    let per = ((now() - t0) / n) as i64;
                    let old = self.encode_ns.load(Ordering::Relaxed);
                    let avg = if old == 0 { per } else { (3 * old + per) / 4 };
                    self.encode_ns.store(avg, Ordering::Relaxed);
                }
                b
            }
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

    /// The process got SIGTERM or SIGINT: everything recorded so far is stored, with the
    /// process record again saying which signal ended it (no completeness claim: the
    /// program did not finish its work).
    pub(crate) fn finish_on_signal(&self, sig: i32) {
        self.exit_signal.store(sig, Ordering::Release);
        let seg = lock(&self.out).segment;
        self.define(self.process_record(seg));
        self.finish(false);
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
