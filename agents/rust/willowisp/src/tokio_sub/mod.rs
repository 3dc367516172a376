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

mod fields;
mod resources;
mod tasks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tracing_core::span::{Attributes, Current, Id, Record as SpanRecord};
use tracing_core::subscriber::{Interest, Subscriber};
use tracing_core::{Event as TEvent, Metadata};

use crate::agent::{agent, lock, Agent, THREAD};
use fields::{async_reason, interesting, Fields};
use resources::Res;
#[cfg(feature = "tokio")]
pub(crate) use tasks::spawned;
pub(crate) use tasks::{end_current, judge_lost_wakers, Task};

pub(crate) enum SpanKind {
    Task(Arc<Task>),
    Resource(Arc<Res>),
    AsyncOp { res: Option<Arc<Res>>, reason: i64 },
    Other,
}

pub(crate) struct SpanData {
    refs: AtomicUsize,
    meta: &'static Metadata<'static>,
    kind: SpanKind,
}

const SHARDS: usize = 16;

/// Span ids are box addresses: a multiply spreads them well enough, far cheaper than SipHash.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

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
    /// `hops` mode: tokio's spans and events are taken only while some boundary is on.
    hops: bool,
    /// `hops` mode: spans taken and not closed yet; while there are some, tokio's events
    /// are taken even with every boundary off (their tasks' waker counts and their locks'
    /// holders must stay right); the last one closing turns them off again.
    open_spans: AtomicUsize,
}

impl Default for TokioSubscriber {
    fn default() -> Self {
        TokioSubscriber::new(false)
    }
}

#[inline]
pub(crate) fn span<'a>(id: &Id) -> &'a SpanData {
    // SAFETY: ids are Box<SpanData> addresses handed out by new_span and freed only when
    // tracing's reference count (clone_span / try_close) reaches zero.
    unsafe { &*(id.into_u64() as usize as *const SpanData) }
}

/// The unit running on this thread: the innermost entered task, else the thread.
pub(crate) fn current_unit(a: &Agent) -> u32 {
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

pub(crate) fn current_task() -> Option<Arc<Task>> {
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
pub(crate) fn innermost<T>(f: impl Fn(&SpanData) -> Option<T>) -> Option<T> {
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
    /// The subscriber for `full` mode (`hops` false) or `hops` mode (`hops` true: while no
    /// boundary is switched on, tokio's callsites are registered as `never`, so they cost
    /// what they cost without a subscriber).
    pub(crate) fn new(hops: bool) -> Self {
        TokioSubscriber {
            tasks: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
            hops,
            open_spans: AtomicUsize::new(0),
        }
    }

    /// `hops` mode: whether tokio's callsite `meta` is taken now: while some boundary is
    /// on; events also while spans taken then are alive.
    fn takes(&self, meta: &Metadata<'_>) -> bool {
        agent().is_some_and(|a| a.boundaries.live.load(Ordering::Acquire))
            || (!meta.is_span() && self.open_spans.load(Ordering::Acquire) != 0)
    }

    pub(crate) fn shard(&self, id: u64) -> &Mutex<IdMap<Arc<Task>>> {
        &self.tasks[((id >> 4) as usize) % SHARDS]
    }

    pub(crate) fn task_by_id(&self, id: u64) -> Option<Arc<Task>> {
        lock(self.shard(id)).get(&id).cloned()
    }

    /// Every live task (for the clean stop).
    pub(crate) fn live_tasks(&self) -> Vec<Arc<Task>> {
        self.tasks
            .iter()
            .flat_map(|s| lock(s).values().cloned().collect::<Vec<_>>())
            .collect()
    }
}

impl Subscriber for TokioSubscriber {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if interesting(meta) && (!self.hops || self.takes(meta)) {
            Interest::always()
        } else {
            // in `hops` mode, asked again (`rebuild_interest_cache`) whenever a boundary is
            // switched on or off, so a boundary switched on by `ctl` sees the tasks spawned
            // from then on, and no boundary on costs tokio's callsites nothing
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        interesting(meta) && (!self.hops || self.takes(meta))
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
        if self.hops {
            self.open_spans.fetch_add(1, Ordering::AcqRel);
        }
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
        if self.hops
            && self.open_spans.fetch_sub(1, Ordering::AcqRel) == 1
            && !agent().is_some_and(|a| a.boundaries.live.load(Ordering::Acquire))
        {
            // the last span taken while a boundary was on: tokio's events go quiet again
            crate::boundary::SWITCHING.store(true, Ordering::Release);
            tracing_core::callsite::rebuild_interest_cache();
            crate::boundary::SWITCHING.store(false, Ordering::Release);
        }
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

/// The unit that is running on this thread now (task or thread).
pub(crate) fn unit_here(a: &Agent) -> u32 {
    current_unit(a)
}
