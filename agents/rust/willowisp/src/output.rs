//! Where chunks go: the segment file (a new one past 256 MiB) or the native stream to a
//! collector with its fallback to files; the flusher thread that builds one chunk every
//! 50 ms from every thread's rows (none when nothing happened, but one with a clock anchor
//! every second, as the other agents do: it pairs the clocks and keeps a collector's
//! connection alive); and the clean stop.
//!
//! A full disk (or a quota, a file-size limit): a chunk the file system refuses is cut off
//! again, so the file ends at a whole chunk; its events are counted as dropped per unit
//! and said (`agent.drop`, the stats' `dropped`) in the next chunk that gets written, with
//! its definitions carried to that chunk and one `fault` (`where` `write`) per spell of
//! refusals. The room for saying so is kept from the start: `.willowisp-reserve-<pid>`,
//! 64 KiB allocated in the run folder, deleted at the first refusal to write a small
//! "news" chunk at once. At the end, one stderr line says how many events were lost.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::agent::{lock, Agent};
use crate::buffer::ThreadBuf;
use crate::clock::{clock_pair, now};
use crate::wtrace::{self, kind, rec, Chunk, Event, Record};

/// A new segment starts past this size.
const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(50);
const ANCHOR_EVERY_NS: u64 = 1_000_000_000;
/// The room kept for the news of a full disk.
const RESERVE_BYTES: i64 = 64 * 1024;
/// Definitions of refused chunks kept for the next one, at most.
const MAX_CARRIED: usize = 100_000;

pub(crate) struct Output {
    pub(crate) file: Option<File>,
    pub(crate) stream: Option<crate::stream::Stream>,
    pub(crate) segment: i64,
    pub(crate) written: u64,
    pub(crate) next_seq: u64,
    pub(crate) last_anchor: u64,
    /// After a fallback to files: reconnect attempts made, and when the next is due.
    pub(crate) retries: u32,
    pub(crate) retry_at: Option<std::time::Instant>,
    /// The current segment file's path.
    pub(crate) path: PathBuf,
    /// `.willowisp-reserve-<pid>` while it exists; whether it was tried.
    pub(crate) reserve: Option<PathBuf>,
    pub(crate) reserve_tried: bool,
    /// Program events in chunks the file system refused (for the line at exit).
    pub(crate) lost_on_write: u64,
    /// Inside a spell of refused writes (one fault per spell); the last refusal's reason.
    pub(crate) refusing: bool,
    pub(crate) refusal: String,
    /// Events lost with refused chunks, per unit, not yet said in a written chunk.
    pub(crate) unwritten: BTreeMap<u32, i64>,
    /// Definitions of refused chunks, for the next chunk.
    pub(crate) carry: Vec<Record>,
    /// The file the collector last said it writes to ('' before any connection): kept
    /// across a fallback, so `ctl status` can say where the streamed part went.
    pub(crate) collector_file: String,
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
            retries: 0,
            retry_at: None,
            path: PathBuf::new(),
            reserve: None,
            reserve_tried: false,
            lost_on_write: 0,
            refusing: false,
            refusal: String::new(),
            unwritten: BTreeMap::new(),
            carry: Vec::new(),
            collector_file: String::new(),
        }
    }

    /// Where chunks go now (`sink` in `ctl status`, docs/protocols.md): the segment file;
    /// or, with a collector configured, the collector (`streaming`) or the fallback file
    /// (`file`) while the reconnects go on, with the failed ones since the last good
    /// connection. The same fields as the Python and Node agents.
    pub(crate) fn sink(&self, collector: &str) -> serde_json::Value {
        if collector.is_empty() {
            return json!({"kind": "file", "path": self.path.to_string_lossy()});
        }
        let streaming = self.stream.as_ref();
        let file = match (streaming, &self.file) {
            (None, Some(_)) => self.path.to_string_lossy().into_owned(),
            _ => String::new(),
        };
        json!({
            "kind": "stream",
            "collector": collector,
            "state": if streaming.is_some() { "streaming" } else { "file" },
            "collector_file": streaming.map_or(self.collector_file.as_str(), |s| s.collector_file.as_str()),
            "file": file,
            "unacked": streaming.map_or(0, crate::stream::Stream::unacked),
            "retries": self.retries,
        })
    }
}

impl Agent {
    pub(crate) fn open_segment(&self, out: &mut Output) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.config.out)?;
        let segment = out.segment + 1;
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
            segment
        );
        let path = Path::new(&self.config.out).join(name);
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        if let Err(e) = f.write_all(&wtrace::file_header()) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        if !out.reserve_tried {
            // with the first segment (after it, so that no segment leaves no reserve)
            out.reserve_tried = true;
            out.reserve = make_reserve(Path::new(&self.config.out));
        }
        if !self.config.collector.is_empty() && out.stream.is_none() && out.retry_at.is_none() {
            // the collector was not there at the start: a fallback too, retried like one
            out.retries = 0;
            out.retry_at = Some(std::time::Instant::now() + self.retry_delay(0));
        }
        out.file = Some(f); // the previous segment (if any) is closed here
        out.segment = segment;
        out.path = path;
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
    /// a fault saying why (unless the collector said `bye`: an orderly shutdown loses
    /// nothing, so a planned restart is no fault), and every chunk it did not acknowledge.
    fn fall_back(&self, out: &mut Output, reason: &str, orderly: bool) {
        let chunks = out
            .stream
            .as_mut()
            .map(|s| s.take_unacked())
            .unwrap_or_default();
        if let Some(st) = out.stream.take() {
            out.collector_file = st.collector_file;
        }
        out.segment -= 1; // the same segment number, as a file
        out.retries = 0;
        out.retry_at = Some(std::time::Instant::now() + self.retry_delay(0));
        if let Err(e) = self.open_segment(out) {
            out.segment += 1;
            self.dropped
                .fetch_add(chunks.len() as u64, Ordering::Relaxed);
            drop_fault(self, "write", &e.to_string());
            return;
        }
        let mut head = Chunk {
            records: vec![self.process_record(out.segment)],
            ..Default::default()
        };
        if !orderly {
            self.faults.fetch_add(1, Ordering::Relaxed);
            let n = self.next_fault.fetch_add(1, Ordering::Relaxed);
            head.records.push(
                Record::new(rec::FAULT, n as u64)
                    .with("message", reason)
                    .with("where", "stream"),
            );
        }
        let mut pieces = Vec::with_capacity(chunks.len() + 1);
        if let Ok(b) = wtrace::encode_chunk(&head, wtrace::CODEC_DEFLATE) {
            pieces.push(b);
        }
        pieces.extend(chunks);
        for p in pieces {
            let Some(f) = out.file.as_mut() else { break };
            match append(f, &mut out.written, &p) {
                Ok(()) => out.refusing = false,
                // whole chunks only; the events of these (already encoded) are not counted
                Err(e) => self.refusal_spell(out, &e),
            }
        }
    }

    /// The wait before the next reconnect attempt after `failed` failed ones in a row:
    /// 1, 2, 4, 8, 16 s, then 30 s without end, each at most `WILLOWISP_STREAM_RETRY_S`.
    fn retry_delay(&self, failed: u32) -> Duration {
        let schedule = if failed < 5 {
            f64::from(1u32 << failed)
        } else {
            crate::config::STREAM_RETRY_MAX_S
        };
        Duration::from_secs_f64(schedule.min(self.config.stream_retry_s))
    }

    /// One attempt to stream again after a fallback (see `retry_delay`; attempts never
    /// stop): a new connection is a new segment and starts with the process record.
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
                out.retries = out.retries.saturating_add(1);
                out.retry_at = Some(std::time::Instant::now() + self.retry_delay(out.retries));
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
            self.flush_chunk(false);
            stopped = lock(&self.stop);
        }
    }

    /// Writes everything buffered so far as one chunk.
    pub fn flush(&self) {
        self.flush_chunk(true);
    }

    /// One chunk with what was recorded since the last; unless `always`, none when that is
    /// nothing and no clock anchor is due (an idle process writes one chunk a second).
    fn flush_chunk(&self, always: bool) {
        let mut out = lock(&self.out);
        if out.file.is_none() && out.stream.is_none() {
            return;
        }
        let cut = now();
        // what refused chunks left to say: their definitions and their lost events
        let carried = std::mem::take(&mut out.carry);
        let unwritten = std::mem::take(&mut out.unwritten);
        let records = std::mem::take(&mut *lock(&self.records));
        let bufs: Vec<Arc<ThreadBuf>> = {
            let mut threads = lock(&self.threads);
            threads.retain(|b| Arc::strong_count(b) > 1 || !lock(&b.rows).events.is_empty());
            threads.clone()
        };
        let mut events = Vec::new();
        let mut drops: Vec<(u32, i64)> = unwritten.into_iter().collect();
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
        let anchor_due =
            out.last_anchor == 0 || cut.saturating_sub(out.last_anchor) >= ANCHOR_EVERY_NS;
        if !always && !anchor_due && events.is_empty() && records.is_empty() && carried.is_empty() {
            return;
        }
        let mut chunk = Chunk::default();
        if out.last_anchor == 0 {
            chunk.records.push(self.process_record(out.segment));
        }
        if anchor_due {
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
        chunk.records.extend(carried);
        chunk.records.extend(records);
        let n_program = events.len() as u64;
        self.events.fetch_add(n_program, Ordering::Relaxed);
        events.push(Event {
            kind: kind::AGENT_FLUSH,
            time: cut,
            arg: n_program as i64,
            ..Default::default()
        });
        chunk.records.push(self.stats_record());
        chunk.first_seq = out.next_seq;
        out.next_seq += events.len() as u64;
        chunk.events = events;
        self.write_chunk(&mut out, &chunk);
        self.publish_sink(&out);
    }

    /// Refreshes the copy of [`Output::sink`] that `ctl status` reads: the control channel
    /// never takes the output's lock, which a reconnect attempt or a send waiting for acks
    /// holds for seconds.
    pub(crate) fn publish_sink(&self, out: &Output) {
        *lock(&self.sink) = out.sink(&self.config.collector);
    }

    fn stats_record(&self) -> Record {
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
        stats
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
                let orderly = st.said_bye();
                self.fall_back(out, &reason, orderly);
            }
            return;
        }
        let Some(f) = out.file.as_mut() else { return };
        match append(f, &mut out.written, &bytes) {
            Ok(()) => out.refusing = false,
            Err(e) => {
                self.refused(out, chunk, &e);
                return;
            }
        }
        if out.written > SEGMENT_BYTES {
            // a new segment; when it cannot be made (a full disk), the current one goes on
            let _ = self.open_segment(out);
        }
    }

    /// A chunk the file system refused (cut off again by `append`): its events are dropped
    /// and counted per unit, to be said in the next chunk written; its definitions are kept
    /// for that chunk, so the events after it still name their units and resources.
    fn refused(&self, out: &mut Output, chunk: &Chunk, e: &std::io::Error) {
        let mut lost = 0u64;
        for ev in &chunk.events {
            match ev.kind {
                kind::CLOCK_ANCHOR | kind::AGENT_FLUSH => {}
                // drops said in the refused chunk: already counted, said again later
                kind::AGENT_DROP => *out.unwritten.entry(ev.unit).or_insert(0) += ev.arg,
                _ => {
                    *out.unwritten.entry(ev.unit).or_insert(0) += 1;
                    lost += 1;
                }
            }
        }
        self.dropped.fetch_add(lost, Ordering::Relaxed);
        out.lost_on_write += lost;
        let mut kept: Vec<Record> = chunk
            .records
            .iter()
            .filter(|r| {
                matches!(
                    r.typ,
                    rec::UNIT | rec::RESOURCE | rec::LOCATION | rec::FAULT
                )
            })
            .cloned()
            .collect();
        kept.append(&mut out.carry);
        if kept.len() > MAX_CARRIED {
            kept.drain(..kept.len() - MAX_CARRIED);
        }
        out.carry = kept;
        out.last_anchor = 0; // the next chunk carries the process record and an anchor
        self.refusal_spell(out, e);
    }

    /// The first refusal of a spell records the fault; the first refusal of all deletes
    /// the reserve and uses its room to say the loss at once.
    fn refusal_spell(&self, out: &mut Output, e: &std::io::Error) {
        let mut fault = None;
        if !out.refusing {
            out.refusing = true;
            out.refusal = reason(e);
            self.faults.fetch_add(1, Ordering::Relaxed);
            let n = self.next_fault.fetch_add(1, Ordering::Relaxed);
            fault = Some(
                Record::new(rec::FAULT, n as u64)
                    .with("message", e.to_string())
                    .with("where", "write"),
            );
        }
        if drop_reserve(out) {
            self.write_news(out, fault);
        } else if let Some(f) = fault {
            out.carry.push(f);
        }
    }

    /// A small chunk with only the news of the loss: the process record, a clock anchor,
    /// the fault, one `agent.drop` per unit and the stats; no program events (they may not
    /// fit: they wait for the next flush). The refused chunks' definitions (the units the
    /// drops name) go with it when they fit too; else they wait for the next chunk.
    fn write_news(&self, out: &mut Output, fault: Option<Record>) {
        let (mono, w) = clock_pair();
        let mut events = vec![Event {
            kind: kind::CLOCK_ANCHOR,
            time: mono,
            arg: w as i64 + self.config.clock_offset_ns,
            ..Default::default()
        }];
        for (&unit, &n) in &out.unwritten {
            events.push(Event {
                kind: kind::AGENT_DROP,
                unit,
                time: mono,
                arg: n,
                ..Default::default()
            });
        }
        let mut records = vec![self.process_record(out.segment)];
        records.extend(fault.iter().cloned());
        records.push(self.stats_record());
        let mut chunk = Chunk {
            records,
            first_seq: out.next_seq,
            events,
        };
        let mut written = false;
        if !out.carry.is_empty() {
            let carried = std::mem::take(&mut out.carry);
            let plain = std::mem::replace(&mut chunk.records, carried);
            chunk.records.extend(plain.iter().cloned());
            written = self.append_chunk(out, &chunk);
            let with_carry = std::mem::replace(&mut chunk.records, plain);
            if !written {
                let n = with_carry.len() - chunk.records.len();
                out.carry = with_carry;
                out.carry.truncate(n);
            }
        }
        if !written {
            written = self.append_chunk(out, &chunk);
        }
        if written {
            out.next_seq += chunk.events.len() as u64;
            out.unwritten.clear();
            out.last_anchor = mono.max(1);
        } else if let Some(f) = fault {
            out.carry.push(f); // not even that fits: the line at exit says it
        }
    }

    /// Encodes and appends one chunk to the segment file, whole or not at all.
    fn append_chunk(&self, out: &mut Output, chunk: &Chunk) -> bool {
        match (
            wtrace::encode_chunk(chunk, wtrace::CODEC_DEFLATE),
            out.file.as_mut(),
        ) {
            (Ok(bytes), Some(f)) => append(f, &mut out.written, &bytes).is_ok(),
            _ => false,
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
        // The reserve goes first: its room is the last chunk's, and its unlink (which can
        // take a while on a busy disk) stays out of the time between the last chunk's cut
        // and the end of the process on the signal path.
        drop_reserve(&mut lock(&self.out));
        self.flush();
        let mut out = lock(&self.out);
        if let Some(reason) = out.stream.as_mut().and_then(|s| s.close()) {
            // chunks left unacknowledged at the end, even after a bye, are a fault
            self.fall_back(&mut out, &reason, false);
        }
        out.stream = None;
        drop_reserve(&mut out); // one a fallback just made
        if out.lost_on_write > 0 {
            // the one line a full disk costs the program's stderr
            let path = if out.path.as_os_str().is_empty() {
                PathBuf::from(&self.config.out)
            } else {
                out.path.clone()
            };
            let _ = writeln!(
                std::io::stderr(),
                "willowisp: {} events of {} (pid {}) could not be written to {}: {}",
                out.lost_on_write,
                self.config.service,
                std::process::id(),
                path.display(),
                out.refusal
            );
        }
        drop(out);
        self.recording.store(false, Ordering::Release);
    }
}

/// Appends all of `bytes` or nothing: a write that fails part-way is cut off again, so the
/// file still ends at a chunk boundary and a later chunk follows the last whole one.
fn append(f: &mut File, written: &mut u64, bytes: &[u8]) -> std::io::Result<()> {
    match f.write_all(bytes) {
        Ok(()) => {
            *written += bytes.len() as u64;
            Ok(())
        }
        Err(e) => {
            let _ = f.set_len(*written);
            Err(e)
        }
    }
}

/// An error's reason without Rust's " (os error N)" suffix: "No space left on device".
fn reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// `.willowisp-reserve-<pid>` in the run folder, 64 KiB allocated for real; none if it
/// cannot be made (`willowisp run` removes a killed process's leftover).
fn make_reserve(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let path = dir.join(format!(".willowisp-reserve-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    // SAFETY: a valid open descriptor, owned by `f` for the duration of the call.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, RESERVE_BYTES) };
    if rc != 0 {
        let _ = std::fs::remove_file(&path);
        return None;
    }
    Some(path)
}

/// Deletes the reserve; whether there was one to delete.
fn drop_reserve(out: &mut Output) -> bool {
    match out.reserve.take() {
        Some(p) => std::fs::remove_file(p).is_ok(),
        None => false,
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
