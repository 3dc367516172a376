//! `std::thread::spawn` / `Builder` and a `JoinHandle` that record the two edges threads
//! have: the spawn (`unit.create` by the spawner, the new thread's `unit.start` naming
//! it) and the join (`unit.block` on the thread's `join` resource while it still runs,
//! then `join.done` naming it once `join` returns). Without them a thread is a unit that
//! starts from nowhere, and a lock order it shares with its spawner or joiner looks
//! unordered: the analyzer predicts inversions that cannot happen.
//!
//! The join edge is sound because the thread's `unit.end` is written by its thread-local
//! destructor, which runs before the thread terminates, and `join` returns only after
//! that (pthread_join). A thread that recorded nothing has no unit and its join records
//! nothing. In `hops` mode these are plain std threads (a thread is in no boundary).
//!
//! ```ignore
//! let h = willowisp::thread::Builder::new().name("alpha".into()).spawn(work)?;
//! h.join().unwrap();
//! ```

use std::panic::Location;
use std::sync::atomic::Ordering;

use crate::agent::{agent, Agent};
use crate::wtrace::{kind, reason, Value};

/// `std::thread::Builder`, spawning recorded threads.
#[derive(Debug)]
pub struct Builder {
    inner: std::thread::Builder,
    name: Option<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

/// A recorded thread's handle: `join` records the join; `Deref`s to std's for `thread()`
/// and `is_finished()`.
pub struct JoinHandle<T> {
    inner: std::thread::JoinHandle<T>,
    /// The thread's unit (0: not recorded) and name for its `join` resource.
    unit: u32,
    name: String,
}

/// `std::thread::spawn`, recorded (panics like it if the thread cannot be made).
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn(f).expect("failed to spawn thread")
}

impl Builder {
    pub fn new() -> Builder {
        Builder {
            inner: std::thread::Builder::new(),
            name: None,
        }
    }

    pub fn name(self, name: String) -> Builder {
        Builder {
            inner: self.inner.name(name.clone()),
            name: Some(name),
        }
    }

    pub fn stack_size(self, size: usize) -> Builder {
        Builder {
            inner: self.inner.stack_size(size),
            name: self.name,
        }
    }

    /// `std::thread::Builder::spawn`; the spawn is recorded at the caller's line.
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> std::io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let Some(a) = agent().filter(|a| !a.gated) else {
            return self.inner.spawn(f).map(|inner| JoinHandle {
                inner,
                unit: 0,
                name: String::new(),
            });
        };
        // The number is taken now so that `unit.create` comes before the child's start;
        // the child defines its unit (it knows its os tid) when it begins.
        let parent = crate::current_unit();
        let unit = a.next_unit.fetch_add(1, Ordering::Relaxed);
        let loc = a.location(Location::caller());
        a.emit(parent, kind::UNIT_CREATE, 0, i64::from(unit), loc);
        let inner = self.inner.spawn(move || {
            if let Some(a) = agent() {
                a.thread_unit_as(unit, parent);
            }
            f()
        })?;
        Ok(JoinHandle {
            inner,
            unit,
            name: self.name.unwrap_or_else(|| format!("thread {unit}")),
        })
    }
}

impl<T> JoinHandle<T> {
    /// `std::thread::JoinHandle::join`, recorded at the caller's line: a wait on the
    /// thread's `join` resource if it is still running, and `join.done` naming it once
    /// it has ended (panicked or not).
    #[track_caller]
    pub fn join(self) -> std::thread::Result<T> {
        let at = Location::caller();
        let recorded = agent().filter(|_| self.unit != 0).map(|a| {
            let res = join_res(a, self.unit, &self.name);
            let me = crate::current_unit();
            let loc = a.location(at);
            if !self.inner.is_finished() {
                a.emit(me, kind::UNIT_BLOCK, res, reason::JOIN, loc);
            }
            (a, res, me, loc)
        });
        let out = self.inner.join();
        if let Some((a, res, me, loc)) = recorded {
            a.emit(me, kind::JOIN_DONE, res, i64::from(self.unit), loc);
        }
        out
    }

    /// std's handle (its join is no longer recorded).
    pub fn into_inner(self) -> std::thread::JoinHandle<T> {
        self.inner
    }
}

impl<T> std::ops::Deref for JoinHandle<T> {
    type Target = std::thread::JoinHandle<T>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

fn join_res(a: &Agent, unit: u32, name: &str) -> u32 {
    a.new_resource(vec![
        ("kind", Value::from("join")),
        ("name", Value::from(format!("end of {name}"))),
        ("unit", Value::Int(i64::from(unit))),
    ])
}
