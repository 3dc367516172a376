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
//! [`scope`] does the same for scoped threads, with one difference: std's scope counts a
//! thread finished as soon as its closure returned, before the thread's thread-local
//! destructors run, so a scoped thread writes its `unit.end` itself when its closure
//! returns (or unwinds). A scoped handle's `join()` records the join as above; the threads
//! nobody joined are joined by the scope's end, which records `join.done` for each on the
//! thread that called `scope`, once std has seen them all finish (no `unit.block` for that
//! wait: it is on several threads at once).
//!
//! ```ignore
//! let h = willowisp::thread::Builder::new().name("alpha".into()).spawn(work)?;
//! h.join().unwrap();
//! willowisp::thread::scope(|s| {
//!     s.spawn(|| work());                  // joined at the scope's end
//!     s.spawn(|| work()).join().unwrap();  // joined here
//! });
//! ```

use std::cell::Cell;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::agent::{agent, lock, Agent, THREAD};
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
        let (parent, unit) = announce(a, Location::caller());
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

    /// `std::thread::Builder::spawn_scoped`: a thread of `scope`, recorded like
    /// [`Builder::spawn`]'s; see [`scope`].
    #[track_caller]
    pub fn spawn_scoped<'scope, 'env, F, T>(
        self,
        scope: &'scope Scope<'scope, 'env>,
        f: F,
    ) -> std::io::Result<ScopedJoinHandle<'scope, T>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        let Some(a) = agent().filter(|a| !a.gated) else {
            let inner = self.inner.spawn_scoped(&scope.inner, f)?;
            return Ok(ScopedJoinHandle {
                inner,
                thread: None,
            });
        };
        let (parent, unit) = announce(a, Location::caller());
        let inner = self.inner.spawn_scoped(&scope.inner, move || {
            let _end = EndsHere::begin(unit, parent);
            f()
        })?;
        let thread = Arc::new(Scoped {
            unit,
            name: self.name.unwrap_or_else(|| format!("thread {unit}")),
            joined: AtomicBool::new(false),
        });
        let key = scope.key();
        let mut scopes = lock(&SCOPES);
        match scopes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, threads)) => threads.push(thread.clone()),
            None => scopes.push((key, vec![thread.clone()])),
        }
        Ok(ScopedJoinHandle {
            inner,
            thread: Some(thread),
        })
    }
}

/// Records a spawn by the unit running here, at `at`: the new thread's unit number, taken
/// now so that `unit.create` comes before the child's start (the child defines its unit —
/// it knows its os tid — when it begins), and its parent's.
fn announce(a: &Agent, at: &'static Location<'static>) -> (u32, u32) {
    let parent = crate::current_unit();
    let unit = a.next_unit.fetch_add(1, Ordering::Relaxed);
    a.emit(
        parent,
        kind::UNIT_CREATE,
        0,
        i64::from(unit),
        a.location(at),
    );
    (parent, unit)
}

impl<T> JoinHandle<T> {
    /// `std::thread::JoinHandle::join`, recorded at the caller's line: a wait on the
    /// thread's `join` resource if it is still running, and `join.done` naming it once
    /// it has ended (panicked or not).
    #[track_caller]
    pub fn join(self) -> std::thread::Result<T> {
        let running = !self.inner.is_finished();
        let inner = self.inner;
        recorded_join(self.unit, &self.name, running, Location::caller(), || {
            inner.join()
        })
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

/// Runs `join` (a thread's, returning once the thread's `unit.end` is written) as a join
/// of `unit` by the unit running here at `at`: a wait on its `join` resource if it was
/// still `running`, then `join.done` naming it. Unit 0: not recorded, `join` alone.
fn recorded_join<R>(
    unit: u32,
    name: &str,
    running: bool,
    at: &'static Location<'static>,
    join: impl FnOnce() -> R,
) -> R {
    let recorded = agent().filter(|_| unit != 0).map(|a| {
        let res = join_res(a, unit, name);
        let me = crate::current_unit();
        let loc = a.location(at);
        if running {
            a.emit(me, kind::UNIT_BLOCK, res, reason::JOIN, loc);
        }
        (a, res, me, loc)
    });
    let out = join();
    if let Some((a, res, me, loc)) = recorded {
        a.emit(me, kind::JOIN_DONE, res, i64::from(unit), loc);
    }
    out
}

fn join_res(a: &Agent, unit: u32, name: &str) -> u32 {
    a.new_resource(vec![
        ("kind", Value::from("join")),
        ("name", Value::from(format!("end of {name}"))),
        ("unit", Value::Int(i64::from(unit))),
    ])
}

/// `std::thread::scope`, recording its threads' spawns and joins (see the module's text):
/// `f` gets a [`Scope`] whose `spawn` records like [`spawn`]; when `f` returns, std joins
/// the threads nobody joined, and each of those joins is recorded at the caller's line.
/// Panics as std's does.
#[track_caller]
pub fn scope<'env, F, T>(f: F) -> T
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> T,
{
    let end = ScopeEnd {
        key: Cell::new(0),
        at: Location::caller(),
    };
    std::thread::scope(|s| {
        let s = Scope::wrap(s);
        end.key.set(s.key());
        f(s)
    })
    // `end` drops here, also while unwinding: after std saw every thread finish
}

/// std's `Scope`, spawning recorded threads; `Deref`s to it.
#[repr(transparent)]
pub struct Scope<'scope, 'env: 'scope> {
    inner: std::thread::Scope<'scope, 'env>,
}

impl<'scope, 'env> Scope<'scope, 'env> {
    fn wrap(s: &'scope std::thread::Scope<'scope, 'env>) -> &'scope Self {
        // SAFETY: `Scope` is `repr(transparent)` over std's, so both references have the
        // same layout, lifetime and validity. (A wrapper holding std's scope by reference
        // could not be handed out for `'scope`: std makes `'scope` inside its call.)
        unsafe { &*(s as *const std::thread::Scope<'scope, 'env>).cast::<Self>() }
    }

    /// The scope's key in [`SCOPES`]: std's scope's address, fixed while it runs.
    fn key(&self) -> usize {
        &self.inner as *const std::thread::Scope<'scope, 'env> as usize
    }

    /// `std::thread::Scope::spawn`, recorded at the caller's line (panics like it if the
    /// thread cannot be made).
    #[track_caller]
    pub fn spawn<F, T>(&'scope self, f: F) -> ScopedJoinHandle<'scope, T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        Builder::new()
            .spawn_scoped(self, f)
            .expect("failed to spawn thread")
    }
}

impl<'scope, 'env> std::ops::Deref for Scope<'scope, 'env> {
    type Target = std::thread::Scope<'scope, 'env>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

/// A recorded scoped thread's handle: `join` records the join; `Deref`s to std's.
pub struct ScopedJoinHandle<'scope, T> {
    inner: std::thread::ScopedJoinHandle<'scope, T>,
    /// The thread, shared with its scope's entry in [`SCOPES`]; `None`: not recorded.
    thread: Option<Arc<Scoped>>,
}

impl<T> ScopedJoinHandle<'_, T> {
    /// `std::thread::ScopedJoinHandle::join`, recorded at the caller's line like
    /// [`JoinHandle::join`]; the scope's end then leaves this thread alone.
    #[track_caller]
    pub fn join(self) -> std::thread::Result<T> {
        let Some(t) = self.thread else {
            return self.inner.join();
        };
        t.joined.store(true, Ordering::Release);
        let running = !self.inner.is_finished();
        let inner = self.inner;
        recorded_join(t.unit, &t.name, running, Location::caller(), || {
            inner.join()
        })
    }
}

impl<'scope, T> std::ops::Deref for ScopedJoinHandle<'scope, T> {
    type Target = std::thread::ScopedJoinHandle<'scope, T>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

/// A recorded thread of a scope.
struct Scoped {
    unit: u32,
    name: String,
    /// Set by its handle's `join` (before the scope ends): the scope's end records nothing.
    joined: AtomicBool,
}

/// The recorded threads of every running scope, by [`Scope::key`]. Invariant: an entry
/// is removed by its scope's end, before std's scope (and so the key) can be reused.
/// Touched once per scoped spawn and once per scope: a plain list.
static SCOPES: Mutex<Vec<(usize, Vec<Arc<Scoped>>)>> = Mutex::new(Vec::new());

/// The end of a [`scope`] call, recording the joins std made there.
struct ScopeEnd {
    /// [`Scope::key`] of the scope (0 until it began).
    key: Cell<usize>,
    at: &'static Location<'static>,
}

impl Drop for ScopeEnd {
    fn drop(&mut self) {
        let Some(a) = agent() else { return }; // nothing was recorded
        let key = self.key.get();
        let threads = {
            let mut scopes = lock(&SCOPES);
            let Some(i) = scopes.iter().position(|(k, _)| *k == key) else {
                return; // nothing recorded in this scope
            };
            scopes.swap_remove(i).1
        };
        let me = crate::current_unit();
        let loc = a.location(self.at);
        for t in threads.iter().filter(|t| !t.joined.load(Ordering::Acquire)) {
            let res = join_res(a, t.unit, &t.name);
            a.emit(me, kind::JOIN_DONE, res, i64::from(t.unit), loc);
        }
    }
}

/// Held by a scoped thread while its closure runs: defines its unit, and dropping it (at
/// the closure's return or unwinding) writes the unit's `unit.end` — which std's scope,
/// unlike a join, does not wait for if it came from thread-local destructors.
struct EndsHere {
    unit: u32,
}

impl EndsHere {
    fn begin(unit: u32, parent: u32) -> EndsHere {
        if let Some(a) = agent() {
            a.thread_unit_as(unit, parent);
        }
        EndsHere { unit }
    }
}

impl Drop for EndsHere {
    fn drop(&mut self) {
        let Some(a) = agent() else { return };
        // what the thread's destructors record after this is a new unit's, not the ended one's
        let mine = THREAD.try_with(|t| {
            let mine = t.unit.get() == self.unit;
            if mine {
                t.unit.set(0);
            }
            mine
        });
        if mine == Ok(true) {
            a.emit(self.unit, kind::UNIT_END, 0, 0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Without the agent, a scope is std's: threads spawned from scoped threads, borrows
    /// of the environment, results through the handles and the scope.
    #[test]
    fn a_scope_without_the_agent_behaves_as_std() {
        let base = 1;
        let mut after = 0;
        let out = super::scope(|s| {
            let outer = s.spawn(|| s.spawn(|| base + 1).join().unwrap() + 1);
            after += 1;
            outer.join().unwrap()
        });
        assert_eq!((out, after), (3, 1));
    }
}
