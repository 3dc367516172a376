//! A purpose-built `tracing` subscriber that turns tokio's own instrumentation
//! (`--cfg tokio_unstable` + tokio's `tracing` feature) into units, waits and edges.
//!
//! | tokio emits | recorded as |
//! |---|---|
//! | span `runtime.spawn` created | a unit of kind `task` (name, spawn location), `unit.create` by the spawner |
//! | that span entered / exited (one poll) | `unit.start` (first), `unit.run` (arg: carrier thread), `unit.yield` |
//! | span closed right after its last poll | `unit.end` 0 (completed); closed later: dropped while pending, `unit.end` 2 |
//! | `waker.wake` / `wake_by_ref` by another unit | `sync.notify` on the task's `waker` resource, then `unit.wake` on it at the task's next poll (a happens-before edge); a wake from inside the task's own poll is counted (`self_wakes` in stats) |
//! | `waker.clone` / `waker.drop` | counted per task: a task that yields with no waker left anywhere and no wake pending can never run again (a lost waker) |
//! | span `runtime.resource` (Mutex, RwLock, Semaphore, Barrier, oneshot) | a resource (lock, rwlock, semaphore, barrier, channel) at its creation place |
//! | `poll_op` not ready inside an async op | `unit.block` on the resource (reason acquire, acquire-shared, wait or get) |
//! | state updates `locked`, `write_locked`, `current_readers`, `permits` | `lock.acquired` / `lock.release` with the holding task |
//!
//! Span ids are the addresses of boxed span records (tracing's clone/close reference counts
//! keep them alive), so entering a span costs no lookup; `task.id` in waker events is looked
//! up in a sharded table because a waker may outlive its task's span. Other tracing
//! callsites are disabled (`Interest::never`), so the program's own `tracing` macros cost
//! nothing — and go nowhere: this subscriber is the process's global default.
//!
//! Lost wakers are judged only at a clean stop (`Guard` dropped): a task that is parked,
//! holds no waker clone anywhere and has no wake pending gets a `unit.block` on its waker
//! resource that never ends, which the analyzer's all-asleep rule reports as a `leak` once
//! the process record says `complete`. A task idle on a timer, socket or channel still has
//! its waker registered there, so it is never reported (tokio-console's lint warns on
//! tasks whose waker count it saw reach zero during a poll, among other false positives).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Current, Id, Record as SpanRecord};
use tracing_core::subscriber::{Interest, Subscriber};
use tracing_core::{Event as TEvent, Metadata};

use crate::agent::{agent, lock, now, Agent, THREAD};
use crate::wtrace::{kind, reason, Value};

/// A recorded task.
pub(crate) struct Task {
    pub(crate) unit: u32,
    parent: u32,
    name: String,
    started: AtomicBool,
    running: AtomicBool,
    wakers: AtomicI64,
    woken: AtomicBool,
    woken_by_other: AtomicBool,
    chained: AtomicBool,
    last_exit: AtomicU64,
    wake_res: AtomicU32,
    open_block: AtomicU32,
    ended: AtomicBool,
    /// The runtime's own (its worker loops): never judged.
    internal: bool,
    /// The runtime's main future (`Runtime::block_on`).
    block_on: bool,
}

impl Task {
    fn wake_res(&self, a: &Agent) -> u32 {
        let r = self.wake_res.load(Ordering::Acquire);
        if r != 0 {
            return r;
        }
        let n = a.new_resource(vec![
            ("kind", Value::from("condition")),
            ("name", Value::from(format!("waker of {}", self.name))),
            ("unit", Value::Int(self.unit as i64)),
        ]);
        match self
            .wake_res
            .compare_exchange(0, n, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => n,
            Err(other) => other, // another thread defined one first; ours stays unused
        }
    }
}

/// A recorded resource (or an internal one mapped to its owner).
struct Res {
    res: u32,
    concrete: Concrete,
    internal: bool,
    holder: AtomicU32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Concrete {
    Mutex,
    RwLock,
    Semaphore,
    Barrier,
    Oneshot,
    Other,
}

enum SpanKind {
    Task(Arc<Task>),
    Resource(Arc<Res>),
    AsyncOp { res: Option<Arc<Res>>, reason: i64 },
    Other,
}

struct SpanData {
    refs: AtomicUsize,
    meta: &'static Metadata<'static>,
    kind: SpanKind,
}

const SHARDS: usize = 16;

/// Span ids are box addresses: a multiply spreads them well enough, far cheaper than SipHash.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The subscriber; install it with [`crate::init`].
pub struct TokioSubscriber {
    tasks: Vec<Mutex<IdMap<Arc<Task>>>>,
}

impl Default for TokioSubscriber {
    fn default() -> Self {
        TokioSubscriber {
            tasks: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
        }
    }
}

fn interesting(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        matches!(
            meta.name(),
            "runtime.spawn"
                | "runtime.resource"
                | "runtime.resource.async_op"
                | "runtime.resource.async_op.poll"
        )
    } else {
        matches!(
            meta.target(),
            "tokio::task::waker"
                | "runtime::waker"
                | "runtime::resource::state_update"
                | "runtime::resource::poll_op"
        )
    }
}

/// Field values of one span or event, taken without allocating except for strings that
/// a definition keeps.
#[derive(Default)]
struct Fields {
    name: String,
    spawn_kind: String,
    task_id: u64,
    file: String,
    line: u64,
    concrete: String,
    is_internal: bool,
    source: String,
    op: &'static str,
    locked: Option<bool>,
    write_locked: Option<bool>,
    readers_op: &'static str,
    permits_op: &'static str,
    ready: Option<bool>,
}

fn static_op(s: &str) -> &'static str {
    match s {
        "waker.clone" => "clone",
        "waker.drop" => "drop",
        "waker.wake" => "wake",
        "waker.wake_by_ref" => "wake_by_ref",
        "add" => "add",
        "sub" => "sub",
        "override" => "override",
        _ => "",
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "task.name" => self.name = format!("{value:?}"),
            "kind" => self.spawn_kind = format!("{value:?}"),
            "loc.file" => self.file = format!("{value:?}").trim_matches('"').to_owned(),
            "concrete_type" => self.concrete = format!("{value:?}").trim_matches('"').to_owned(),
            "source" => self.source = format!("{value:?}").trim_matches('"').to_owned(),
            "op" => self.op = static_op(format!("{value:?}").trim_matches('"')),
            _ => {}
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "task.name" => self.name = value.to_owned(),
            "kind" => self.spawn_kind = value.to_owned(),
            "loc.file" => self.file = value.to_owned(),
            "concrete_type" => self.concrete = value.to_owned(),
            "source" => self.source = value.to_owned(),
            "op" => self.op = static_op(value),
            "current_readers.op" => self.readers_op = static_op(value),
            "permits.op" => self.permits_op = static_op(value),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "task.id" => self.task_id = value,
            "loc.line" => self.line = value,
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if value >= 0 {
            self.record_u64(field, value as u64)
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        match field.name() {
            "is_internal" => self.is_internal = value,
            "locked" => self.locked = Some(value),
            "write_locked" => self.write_locked = Some(value),
            "is_ready" => self.ready = Some(value),
            _ => {}
        }
    }
}

fn leak_str(s: String) -> &'static str {
    // Locations are interned by address; a spawn place's file name is kept for the program.
    Box::leak(s.into_boxed_str())
}

/// Interned file names (tracing hands them over as borrowed strings).
static FILES: Mutex<Option<HashMap<String, &'static str>>> = Mutex::new(None);

fn location(a: &Agent, file: &str, line: u64) -> u32 {
    if file.is_empty() {
        return 0;
    }
    let f = {
        let mut g = lock(&FILES);
        let map = g.get_or_insert_with(HashMap::new);
        match map.get(file) {
            Some(f) => *f,
            None => {
                let f = leak_str(file.to_owned());
                map.insert(file.to_owned(), f);
                f
            }
        }
    };
    a.location_of(f, line as u32, "")
}

#[inline]
fn span<'a>(id: &Id) -> &'a SpanData {
    // SAFETY: ids are Box<SpanData> addresses handed out by new_span and freed only when
    // tracing's reference count (clone_span / try_close) reaches zero.
    unsafe { &*(id.into_u64() as usize as *const SpanData) }
}

/// The unit running on this thread: the innermost entered task, else the thread.
fn current_unit(a: &Agent) -> u32 {
    let task = THREAD
        .try_with(|t| {
            t.stack.borrow().iter().rev().find_map(|p| {
                // SAFETY: entered spans are alive (see `span`).
                match unsafe { &(*(*p as *const SpanData)).kind } {
                    SpanKind::Task(task) => Some(task.unit),
                    _ => None,
                }
            })
        })
        .ok()
        .flatten();
    task.unwrap_or_else(|| a.thread_unit())
}

fn current_task() -> Option<Arc<Task>> {
    THREAD
        .try_with(|t| {
            t.stack.borrow().iter().rev().find_map(|p| {
                match unsafe { &(*(*p as *const SpanData)).kind } {
                    SpanKind::Task(task) => Some(task.clone()),
                    _ => None,
                }
            })
        })
        .ok()
        .flatten()
}

/// The innermost entered span satisfying `f`.
fn innermost<T>(f: impl Fn(&SpanData) -> Option<T>) -> Option<T> {
    THREAD
        .try_with(|t| {
            t.stack
                .borrow()
                .iter()
                .rev()
                .find_map(|p| f(unsafe { &*(*p as *const SpanData) }))
        })
        .ok()
        .flatten()
}

impl TokioSubscriber {
    fn shard(&self, id: u64) -> &Mutex<IdMap<Arc<Task>>> {
        &self.tasks[((id >> 4) as usize) % SHARDS]
    }

    fn task_by_id(&self, id: u64) -> Option<Arc<Task>> {
        lock(self.shard(id)).get(&id).cloned()
    }

    /// Every live task (for the clean stop).
    pub(crate) fn live_tasks(&self) -> Vec<Arc<Task>> {
        self.tasks
            .iter()
            .flat_map(|s| lock(s).values().cloned().collect::<Vec<_>>())
            .collect()
    }

    fn new_task(&self, a: &Agent, f: &Fields) -> Arc<Task> {
        let parent = current_unit(a);
        let loc = location(a, &f.file, f.line);
        let name = if f.spawn_kind == "block_on" {
            "block_on".to_owned()
        } else if !f.name.is_empty() {
            f.name.clone()
        } else {
            format!("task {}", f.task_id)
        };
        let unit = a.new_unit("task", &name, parent, loc);
        let internal = is_tokio_internal(&f.file);
        if internal {
            a.mark_runtime_unit(unit); // the runtime's own (its worker threads' loops)
        }
        a.emit(parent, kind::UNIT_CREATE, 0, unit as i64, loc);
        Arc::new(Task {
            unit,
            parent,
            name,
            started: AtomicBool::new(false),
            running: AtomicBool::new(false),
            wakers: AtomicI64::new(0),
            woken: AtomicBool::new(false),
            woken_by_other: AtomicBool::new(false),
            chained: AtomicBool::new(false),
            last_exit: AtomicU64::new(0),
            wake_res: AtomicU32::new(0),
            open_block: AtomicU32::new(0),
            ended: AtomicBool::new(false),
            internal,
            block_on: f.spawn_kind == "block_on",
        })
    }

    fn new_res(&self, a: &Agent, f: &Fields) -> SpanKind {
        let concrete = match f.concrete.as_str() {
            "Mutex" => Concrete::Mutex,
            "RwLock" => Concrete::RwLock,
            "Semaphore" => Concrete::Semaphore,
            "Barrier" => Concrete::Barrier,
            "Sender|Receiver" => Concrete::Oneshot,
            _ => Concrete::Other,
        };
        if concrete == Concrete::Other {
            return SpanKind::Other; // timers and I/O: the waits on them end by themselves
        }
        if f.is_internal {
            // the semaphore inside a Mutex/RwLock/Semaphore: stands for its owner
            let owner = innermost(|s| match &s.kind {
                SpanKind::Resource(r) if !r.internal => Some(r.clone()),
                _ => None,
            });
            return match owner {
                Some(o) => SpanKind::Resource(Arc::new(Res {
                    res: o.res,
                    concrete: o.concrete,
                    internal: true,
                    holder: AtomicU32::new(0),
                })),
                None => SpanKind::Other,
            };
        }
        let (k, label) = match concrete {
            Concrete::Mutex => ("lock", "tokio::sync::Mutex"),
            Concrete::RwLock => ("rwlock", "tokio::sync::RwLock"),
            Concrete::Semaphore => ("semaphore", "tokio::sync::Semaphore"),
            Concrete::Barrier => ("barrier", "tokio::sync::Barrier"),
            _ => ("channel", "tokio::sync::oneshot"),
        };
        let loc = location(a, &f.file, f.line);
        let short = f.file.rsplit('/').next().unwrap_or("");
        let name = if short.is_empty() {
            label.to_owned()
        } else {
            format!("{label} {short}:{}", f.line)
        };
        let mut attrs = vec![("kind", Value::from(k)), ("name", Value::from(name))];
        if loc != 0 {
            attrs.push(("loc", Value::Int(loc as i64)));
        }
        let res = a.new_resource(attrs);
        SpanKind::Resource(Arc::new(Res {
            res,
            concrete,
            internal: false,
            holder: AtomicU32::new(0),
        }))
    }

    fn poll_start(&self, a: &Agent, t: &Task, chained: bool) {
        let carrier = THREAD
            .try_with(|ts| {
                let u = ts.unit.get();
                let u = if u == 0 { a.thread_unit() } else { u };
                if !ts.carrier.replace(true) {
                    a.mark_runtime_unit(u);
                }
                u
            })
            .unwrap_or(0);
        // An enter right after the task's own exit on this thread is the drop of its
        // completed future (tokio drops it at once, a microsecond or so later), unless a
        // pause came between: 1 ms normally; 20 us once the runtime's block_on has
        // returned, when the runtime's shutdown may be dropping a pending task on the same
        // worker right after its last poll.
        let time = now();
        let gap = time.saturating_sub(t.last_exit.load(Ordering::Relaxed));
        if t.block_on {
            SHUTTING_DOWN.store(false, Ordering::Release); // a (new) block_on runs
        }
        let shutting = SHUTTING_DOWN.load(Ordering::Acquire);
        let completed = gap < 20_000 || (gap < 1_000_000 && !shutting) || !lost_waker(t);
        t.chained.store(chained && completed, Ordering::Relaxed);
        t.running.store(true, Ordering::Release);
        t.woken.store(false, Ordering::Relaxed);
        if !t.started.swap(true, Ordering::Relaxed) {
            a.emit_at(time, t.unit, kind::UNIT_START, 0, t.parent as i64, 0);
        }
        a.emit_at(time, t.unit, kind::UNIT_RUN, 0, carrier as i64, 0);
        if t.woken_by_other.swap(false, Ordering::AcqRel) {
            a.emit_at(time, t.unit, kind::UNIT_WAKE, t.wake_res(a), 0, 0);
        }
    }

    fn poll_end(&self, a: &Agent, t: &Task) {
        let time = now();
        a.emit_at(time, t.unit, kind::UNIT_YIELD, 0, 0, 0);
        t.last_exit.store(time, Ordering::Relaxed);
        t.running.store(false, Ordering::Release);
    }

    fn task_closed(&self, a: &Agent, id: u64, t: &Task) {
        lock(self.shard(id)).remove(&id);
        if t.block_on {
            // the runtime's block_on has returned: tasks dropped from now on are its shutdown
            SHUTTING_DOWN.store(true, Ordering::Release);
        }
        if t.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        if t.chained.load(Ordering::Relaxed) {
            a.emit(t.unit, kind::UNIT_END, 0, 0, 0);
        } else if lost_waker(t) {
            block_forever(a, t);
        } else {
            a.emit(t.unit, kind::UNIT_END, 0, 2, 0); // dropped while pending: cancelled
        }
    }

    fn waker_op(&self, a: &Agent, f: &Fields) {
        let Some(t) = self.task_by_id(f.task_id) else {
            return;
        };
        match f.op {
            "clone" => {
                t.wakers.fetch_add(1, Ordering::Relaxed);
            }
            "drop" => {
                t.wakers.fetch_sub(1, Ordering::Relaxed);
            }
            "wake" | "wake_by_ref" => {
                if f.op == "wake" {
                    t.wakers.fetch_sub(1, Ordering::Relaxed);
                }
                t.woken.store(true, Ordering::Release);
                let by = current_unit(a);
                if by == t.unit {
                    a.self_wakes.fetch_add(1, Ordering::Relaxed);
                } else {
                    a.emit(by, kind::SYNC_NOTIFY, t.wake_res(a), 1, 0);
                    t.woken_by_other.store(true, Ordering::Release);
                }
            }
            _ => {}
        }
    }

    fn acquire(&self, a: &Agent, r: &Res, unit: u32, shared: bool) {
        let time = now();
        if !shared {
            let prev = r.holder.swap(unit, Ordering::AcqRel);
            if prev != 0 && prev != unit {
                // tokio reports the release after handing the lock on: write it first
                a.emit_at(time, prev, kind::LOCK_RELEASE, r.res, 0, 0);
            }
        }
        a.emit_at(time, unit, kind::LOCK_ACQUIRED, r.res, i64::from(shared), 0);
        if let Some(t) = current_task() {
            let _ = t
                .open_block
                .compare_exchange(r.res, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn release(&self, a: &Agent, r: &Res, unit: u32, shared: bool) {
        if shared {
            a.emit(unit, kind::LOCK_RELEASE, r.res, 1, 0);
            return;
        }
        let holder = r.holder.swap(0, Ordering::AcqRel);
        if holder != 0 {
            a.emit(holder, kind::LOCK_RELEASE, r.res, 0, 0);
        }
    }

    fn state_update(&self, a: &Agent, f: &Fields) {
        let Some(owner) = innermost(|s| match &s.kind {
            SpanKind::Resource(r) => Some(r.clone()),
            _ => None,
        }) else {
            return;
        };
        // internal spans share their owner's number and type; only the owner's own span
        // reports holds (locked, write_locked), so only it tracks the holder
        let r = owner;
        let unit = current_unit(a);
        match r.concrete {
            Concrete::Mutex => match f.locked {
                Some(true) => self.acquire(a, &r, unit, false),
                Some(false) => self.release(a, &r, unit, false),
                None => {}
            },
            Concrete::RwLock => {
                match f.write_locked {
                    Some(true) => self.acquire(a, &r, unit, false),
                    Some(false) => self.release(a, &r, unit, false),
                    None => {}
                }
                match f.readers_op {
                    "add" => self.acquire(a, &r, unit, true),
                    "sub" => self.release(a, &r, unit, true),
                    _ => {}
                }
            }
            Concrete::Semaphore => match f.permits_op {
                "sub" if current_task().is_some() => self.acquire(a, &r, unit, true),
                "add" => self.release(a, &r, unit, true),
                _ => {}
            },
            _ => {}
        }
    }

    #[allow(clippy::collapsible_match)] // the swap is a side effect, not a guard
    fn poll_op(&self, a: &Agent, f: &Fields) {
        let Some((Some(r), why)) = innermost(|s| match &s.kind {
            SpanKind::AsyncOp { res, reason } => Some((res.clone(), *reason)),
            _ => None,
        }) else {
            return;
        };
        let Some(t) = current_task() else { return };
        match f.ready {
            Some(false) => {
                if t.open_block.swap(r.res, Ordering::AcqRel) != r.res {
                    a.emit(t.unit, kind::UNIT_BLOCK, r.res, why, 0);
                }
            }
            Some(true) => {
                let lockish = matches!(
                    r.concrete,
                    Concrete::Mutex | Concrete::RwLock | Concrete::Semaphore
                );
                if !lockish
                    && t.open_block
                        .compare_exchange(r.res, 0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    a.emit(t.unit, kind::UNIT_WAKE, r.res, 0, 0);
                }
            }
            None => {}
        }
    }
}

static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

fn lost_waker(t: &Task) -> bool {
    !t.internal
        && t.started.load(Ordering::Relaxed)
        && !t.running.load(Ordering::Acquire)
        && t.wakers.load(Ordering::Relaxed) <= 0
        && !t.woken.load(Ordering::Acquire)
        && t.open_block.load(Ordering::Acquire) == 0
}

fn block_forever(a: &Agent, t: &Task) {
    let res = t.wake_res(a);
    let at = t.last_exit.load(Ordering::Relaxed) + 1;
    a.emit_at(at, t.unit, kind::UNIT_BLOCK, res, reason::WAIT, 0);
    t.open_block.store(res, Ordering::Release);
}

/// A place inside tokio's own runtime (where it spawns its workers), not the program's.
fn is_tokio_internal(file: &str) -> bool {
    file.contains("/src/runtime/") && (file.contains("/tokio-1.") || file.contains("/tokio/src/"))
}

fn async_reason(source: &str) -> i64 {
    let s = source.to_ascii_lowercase();
    if s.contains("read") {
        reason::ACQUIRE_SHARED
    } else if s.contains("lock") || s.contains("write") || s.contains("acquire") {
        reason::ACQUIRE
    } else if s.contains("recv") || s.contains("receiver") {
        reason::GET
    } else {
        reason::WAIT
    }
}

impl Subscriber for TokioSubscriber {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if interesting(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        interesting(meta)
    }

    fn max_level_hint(&self) -> Option<tracing_core::LevelFilter> {
        Some(tracing_core::LevelFilter::TRACE)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let meta = attrs.metadata();
        let kind = match agent() {
            None => SpanKind::Other,
            Some(a) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut f = Fields::default();
                attrs.record(&mut f);
                THREAD.with(|t| t.last_exit.set(0));
                match meta.name() {
                    "runtime.spawn" => {
                        let t = self.new_task(a, &f);
                        SpanKind::Task(t)
                    }
                    "runtime.resource" => self.new_res(a, &f),
                    "runtime.resource.async_op" => SpanKind::AsyncOp {
                        res: innermost(|s| match &s.kind {
                            SpanKind::Resource(r) => Some(r.clone()),
                            _ => None,
                        }),
                        reason: async_reason(&f.source),
                    },
                    _ => SpanKind::Other,
                }
            }))
            .unwrap_or_else(|_| {
                a.fault("new_span", "panic inside the tokio subscriber");
                SpanKind::Other
            }),
        };
        let task = if let SpanKind::Task(t) = &kind {
            Some(t.clone())
        } else {
            None
        };
        let data = Box::new(SpanData {
            refs: AtomicUsize::new(1),
            meta,
            kind,
        });
        let id = Box::into_raw(data) as usize as u64;
        if let Some(t) = task {
            lock(self.shard(id)).insert(id, t);
        }
        Id::from_u64(id)
    }

    fn record(&self, _span: &Id, _values: &SpanRecord<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &TEvent<'_>) {
        guarded("event", || self.on_event(event));
    }

    fn enter(&self, id: &Id) {
        guarded("enter", || self.on_enter(id));
    }

    fn exit(&self, id: &Id) {
        guarded("exit", || self.on_exit(id));
    }

    fn clone_span(&self, id: &Id) -> Id {
        span(id).refs.fetch_add(1, Ordering::Relaxed);
        id.clone()
    }

    fn try_close(&self, id: Id) -> bool {
        if span(&id).refs.fetch_sub(1, Ordering::AcqRel) != 1 {
            return false;
        }
        let raw = id.into_u64() as usize as *mut SpanData;
        // SAFETY: the last reference is gone; the box came from new_span.
        let data = unsafe { Box::from_raw(raw) };
        guarded("close", || self.on_close(&id, &data));
        true
    }

    fn current_span(&self) -> Current {
        let top = THREAD
            .try_with(|t| t.stack.borrow().last().copied())
            .ok()
            .flatten();
        match top {
            Some(p) => {
                let d = unsafe { &*(p as *const SpanData) };
                Current::new(Id::from_u64(p as u64), d.meta)
            }
            None => Current::none(),
        }
    }
}

/// Runs a callback's body; a panic inside the agent is caught and recorded as a fault,
/// never unwound into tokio or the program.
fn guarded(where_: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        if let Some(a) = agent() {
            a.fault(where_, "panic inside the tokio subscriber");
        }
    }
}

impl TokioSubscriber {
    fn on_event(&self, event: &TEvent<'_>) {
        let Some(a) = agent() else { return };
        let _ = THREAD.try_with(|t| t.last_exit.set(0));
        let mut f = Fields::default();
        event.record(&mut f);
        match event.metadata().target() {
            "tokio::task::waker" | "runtime::waker" => self.waker_op(a, &f),
            "runtime::resource::state_update" => self.state_update(a, &f),
            "runtime::resource::poll_op" => self.poll_op(a, &f),
            _ => {}
        }
    }

    fn on_enter(&self, id: &Id) {
        let p = id.into_u64() as usize;
        let chained = THREAD
            .try_with(|t| {
                t.stack.borrow_mut().push(p);
                t.last_exit.replace(0) == p
            })
            .unwrap_or(false);
        if let SpanKind::Task(t) = &span(id).kind {
            if let Some(a) = agent() {
                self.poll_start(a, t, chained);
            }
        }
    }

    fn on_exit(&self, id: &Id) {
        let p = id.into_u64() as usize;
        let is_task = matches!(span(id).kind, SpanKind::Task(_));
        let _ = THREAD.try_with(|t| {
            let mut st = t.stack.borrow_mut();
            if let Some(i) = st.iter().rposition(|x| *x == p) {
                st.remove(i);
            }
            t.last_exit.set(if is_task { p } else { 0 });
        });
        if let SpanKind::Task(t) = &span(id).kind {
            if let Some(a) = agent() {
                self.poll_end(a, t);
            }
        }
    }

    fn on_close(&self, id: &Id, data: &SpanData) {
        let raw = id.into_u64() as usize;
        if let SpanKind::Task(t) = &data.kind {
            match agent() {
                Some(a) => self.task_closed(a, id.into_u64(), t),
                None => {
                    lock(self.shard(id.into_u64())).remove(&id.into_u64());
                }
            }
        }
        let _ = THREAD.try_with(|t| {
            if t.last_exit.get() == raw {
                t.last_exit.set(0)
            }
        });
    }
}

/// At a clean stop: tasks parked with no waker anywhere get their never-ending wait.
pub(crate) fn judge_lost_wakers(sub: &TokioSubscriber, a: &Agent, current: u32) {
    let tasks = sub.live_tasks();
    // a task still inside a poll on another thread finishes it first (bounded)
    let deadline = now() + 100_000_000;
    while tasks
        .iter()
        .any(|t| t.unit != current && t.running.load(Ordering::Acquire))
        && now() < deadline
    {
        std::thread::yield_now();
    }
    for t in tasks {
        if t.unit == current || t.ended.load(Ordering::Acquire) {
            continue;
        }
        if lost_waker(&t) {
            block_forever(a, &t);
        }
    }
}

/// The unit that is running on this thread now (task or thread).
pub(crate) fn unit_here(a: &Agent) -> u32 {
    current_unit(a)
}

/// Ends the current task unit (the one dropping the guard at a clean stop).
pub(crate) fn end_current(a: &Agent) {
    if let Some(t) = current_task() {
        if !t.ended.swap(true, Ordering::AcqRel) {
            a.emit(t.unit, kind::UNIT_END, 0, 0, 0);
        }
    }
}
