//! Tokio tasks as units: their polls, their wakers (a wake by another unit is a
//! happens-before edge, a self-wake is counted), their end, and the lost-waker judgment
//! of a clean stop.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::fields::{is_tokio_internal, location, Fields};
use super::{current_task, current_unit, TokioSubscriber};
use crate::agent::{lock, now, Agent, THREAD};
use crate::wtrace::{kind, reason, Value};

/// A recorded task.
pub(crate) struct Task {
    pub(crate) unit: u32,
    pub(crate) parent: u32,
    pub(crate) name: String,
    pub(crate) started: AtomicBool,
    pub(crate) running: AtomicBool,
    pub(crate) wakers: AtomicI64,
    /// `wakers` when the last enter began and when the last exit ended. A task dropped by
    /// the runtime's shutdown drops its registered wakers with its future (tracing enters
    /// the span for that drop, or not): what tells a lost waker from a cancelled wait is
    /// the count when the task last parked, not the count at the end.
    pub(crate) wakers_at_enter: AtomicI64,
    pub(crate) wakers_at_exit: AtomicI64,
    /// Whether a wake was pending when the last enter began (the shutdown wakes I/O
    /// waiters, then drops their futures inside an enter).
    pub(crate) woken_at_enter: AtomicBool,
    pub(crate) woken: AtomicBool,
    pub(crate) woken_by_other: AtomicBool,
    pub(crate) chained: AtomicBool,
    pub(crate) last_exit: AtomicU64,
    pub(crate) wake_res: AtomicU32,
    pub(crate) open_block: AtomicU32,
    pub(crate) ended: AtomicBool,
    /// The runtime's own (its worker loops): never judged.
    pub(crate) internal: bool,
    /// Spawned while `tracing` was switching callsites (`hops` mode, a boundary switched):
    /// its waker count may be short, so it is never judged either.
    pub(crate) unjudged: bool,
    /// The runtime's main future (`Runtime::block_on`).
    pub(crate) block_on: bool,
}

impl Task {
    pub(crate) fn wake_res(&self, a: &Agent) -> u32 {
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

impl TokioSubscriber {
    pub(crate) fn new_task(&self, a: &Agent, f: &Fields) -> Arc<Task> {
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
        let task = Arc::new(Task {
            unit,
            parent,
            name,
            started: AtomicBool::new(false),
            running: AtomicBool::new(false),
            wakers: AtomicI64::new(0),
            wakers_at_enter: AtomicI64::new(0),
            wakers_at_exit: AtomicI64::new(0),
            woken_at_enter: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            woken_by_other: AtomicBool::new(false),
            chained: AtomicBool::new(false),
            last_exit: AtomicU64::new(0),
            wake_res: AtomicU32::new(0),
            open_block: AtomicU32::new(0),
            ended: AtomicBool::new(false),
            internal,
            unjudged: crate::boundary::SWITCHING.load(Ordering::Acquire),
            block_on: f.spawn_kind == "block_on",
        });
        let _ = SPAWNED.try_with(|s| s.replace(Some((f.task_id, task.clone()))));
        task
    }

    pub(crate) fn poll_start(&self, a: &Agent, t: &Task, chained: bool) {
        let carrier = THREAD
            .try_with(|ts| {
                let u = ts.unit.get();
                let u = if u == 0 { a.thread_unit() } else { u };
                // A thread first seen polling a block_on future is the program's own (main,
                // or whoever called block_on), never the runtime's: stuck detection and the
                // viewer must still judge it.
                if !ts.carrier.replace(true) && !t.block_on {
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
        t.wakers_at_enter
            .store(t.wakers.load(Ordering::Relaxed), Ordering::Relaxed);
        t.running.store(true, Ordering::Release);
        let was_woken = t.woken.swap(false, Ordering::Relaxed);
        t.woken_at_enter.store(was_woken, Ordering::Relaxed);
        if !t.started.swap(true, Ordering::Relaxed) {
            a.emit_at(time, t.unit, kind::UNIT_START, 0, t.parent as i64, 0);
        }
        a.emit_at(time, t.unit, kind::UNIT_RUN, 0, carrier as i64, 0);
        if t.woken_by_other.swap(false, Ordering::AcqRel) && a.admits(t.unit) {
            a.emit_at(time, t.unit, kind::UNIT_WAKE, t.wake_res(a), 0, 0);
        }
    }

    pub(crate) fn poll_end(&self, a: &Agent, t: &Task) {
        let time = now();
        a.emit_at(time, t.unit, kind::UNIT_YIELD, 0, 0, 0);
        t.wakers_at_exit
            .store(t.wakers.load(Ordering::Relaxed), Ordering::Relaxed);
        t.last_exit.store(time, Ordering::Relaxed);
        t.running.store(false, Ordering::Release);
    }

    pub(crate) fn task_closed(&self, a: &Agent, id: u64, t: &Task) {
        lock(self.shard(id)).remove(&id);
        if a.gated {
            a.units.forget(t.unit); // a record never needed is never kept
        }
        if t.block_on {
            // the runtime's block_on has returned: tasks dropped from now on are its shutdown
            SHUTTING_DOWN.store(true, Ordering::Release);
        }
        if t.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        if t.chained.load(Ordering::Relaxed) {
            a.emit(t.unit, kind::UNIT_END, 0, 0, 0);
        } else if lost_waker(t)
            && parked_wakers(t) <= 0
            && !t.woken_at_enter.load(Ordering::Relaxed)
        {
            block_forever(a, t);
        } else {
            a.emit(t.unit, kind::UNIT_END, 0, 2, 0); // dropped while pending: cancelled
        }
    }

    pub(crate) fn waker_op(&self, a: &Agent, f: &Fields) {
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
                    if a.admits(by) {
                        a.emit(by, kind::SYNC_NOTIFY, t.wake_res(a), 1, 0);
                    }
                    t.woken_by_other.store(true, Ordering::Release);
                }
            }
            _ => {}
        }
    }
}

thread_local! {
    /// The task this thread spawned last, with tokio's id for it. tokio creates a task's
    /// span inside `spawn`, on the spawning thread, so right after a spawn returns this is
    /// the task its `JoinHandle` belongs to (`spawned`).
    static SPAWNED: RefCell<Option<(u64, Arc<Task>)>> = const { RefCell::new(None) };
}

/// The unit and name of the task with tokio id `id`, if it is the one this thread spawned
/// last; None when it was not recorded (recording off, `hops` mode outside a boundary) or
/// another spawn came between: then no join is recorded rather than a wrong one.
#[cfg(feature = "tokio")]
pub(crate) fn spawned(id: u64) -> Option<(u32, String)> {
    SPAWNED
        .try_with(|s| match &*s.borrow() {
            Some((task, t)) if *task == id => Some((t.unit, t.name.clone())),
            _ => None,
        })
        .ok()
        .flatten()
}

pub(crate) static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// The waker count when the task last parked, as far as the close can tell: tokio's
/// shutdown drops a pending task's future inside one more enter of its span, and the
/// wakers that future had registered are dropped there — so a count that fell during the
/// last enter is taken from its start. (A poll that really drops its last waker and parks
/// is then judged at the clean stop instead, from the current count.)
fn parked_wakers(t: &Task) -> i64 {
    t.wakers_at_enter
        .load(Ordering::Relaxed)
        .max(t.wakers_at_exit.load(Ordering::Relaxed))
}

pub(crate) fn lost_waker(t: &Task) -> bool {
    !t.internal
        && !t.unjudged
        && t.started.load(Ordering::Relaxed)
        && !t.running.load(Ordering::Acquire)
        && t.wakers.load(Ordering::Relaxed) <= 0
        && !t.woken.load(Ordering::Acquire)
        && t.open_block.load(Ordering::Acquire) == 0
}

pub(crate) fn block_forever(a: &Agent, t: &Task) {
    if !a.admits(t.unit) {
        return;
    }
    let res = t.wake_res(a);
    let at = t.last_exit.load(Ordering::Relaxed) + 1;
    a.emit_at(at, t.unit, kind::UNIT_BLOCK, res, reason::WAIT, 0);
    t.open_block.store(res, Ordering::Release);
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

/// Ends the current task unit (the one dropping the guard at a clean stop).
pub(crate) fn end_current(a: &Agent) {
    if let Some(t) = current_task() {
        if !t.ended.swap(true, Ordering::AcqRel) {
            a.emit(t.unit, kind::UNIT_END, 0, 0, 0);
        }
    }
}
