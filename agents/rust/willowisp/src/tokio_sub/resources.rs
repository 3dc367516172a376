//! tokio::sync resources (`runtime.resource` spans): Mutex, RwLock, Semaphore, Barrier and
//! oneshot, their holders (state updates) and the waits of their async ops (poll_op).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::fields::{location, Fields};
use super::{current_task, current_unit, innermost, SpanKind, TokioSubscriber};
use crate::agent::{now, Agent, THREAD};
use crate::wtrace::{kind, Value};

/// A recorded resource (or an internal one mapped to its owner).
pub(crate) struct Res {
    pub(crate) res: u32,
    pub(crate) concrete: Concrete,
    pub(crate) internal: bool,
    pub(crate) holder: AtomicU32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Concrete {
    Mutex,
    RwLock,
    Semaphore,
    Barrier,
    Oneshot,
    Other,
}

impl TokioSubscriber {
    pub(crate) fn new_res(&self, a: &Agent, f: &Fields) -> SpanKind {
        if a.gated && !a.admits(current_unit(a)) {
            return SpanKind::Other; // hops mode: created outside every boundary, not seen
        }
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

    pub(crate) fn acquire(&self, a: &Agent, r: &Res, unit: u32, shared: bool) {
        let time = now();
        if !shared {
            let prev = r.holder.swap(unit, Ordering::AcqRel);
            if prev != 0 && prev != unit {
                // tokio reports the release after handing the lock on: write it first
                a.emit_at(time, prev, kind::LOCK_RELEASE, r.res, 0, 0);
            }
        }
        a.emit_at(
            time,
            unit,
            kind::LOCK_ACQUIRED,
            r.res,
            i64::from(shared),
            site(),
        );
        if let Some(t) = current_task() {
            let _ = t
                .open_block
                .compare_exchange(r.res, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    pub(crate) fn release(&self, a: &Agent, r: &Res, unit: u32, shared: bool) {
        if shared {
            a.emit(unit, kind::LOCK_RELEASE, r.res, 1, 0);
            return;
        }
        let holder = r.holder.swap(0, Ordering::AcqRel);
        if holder != 0 {
            a.emit(holder, kind::LOCK_RELEASE, r.res, 0, 0);
        }
    }

    pub(crate) fn state_update(&self, a: &Agent, f: &Fields) {
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
    pub(crate) fn poll_op(&self, a: &Agent, f: &Fields) {
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
                    a.emit(t.unit, kind::UNIT_BLOCK, r.res, why, site());
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

/// The call site being polled on this thread (see `crate::tokio::CallSite`), 0 if none.
fn site() -> u32 {
    THREAD.try_with(|t| t.site.get()).unwrap_or(0)
}
