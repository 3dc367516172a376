//! Thin wrappers for the tokio primitives tokio does not instrument — `mpsc`, `Notify`,
//! `watch`, `broadcast`, awaiting a `JoinHandle` and a `JoinSet`'s joins — and call sites
//! for the ones it does (`Mutex::lock` & co.).
//!
//! | wrapper | resource | events |
//! |---|---|---|
//! | [`mpsc::channel`] | `queue` | `queue.put` / `queue.get` with a token carried beside each message (an edge); an empty receive writes `unit.block` (get) first, a full bounded send `unit.block` (put) |
//! | [`Notify`] | `condition` | `notify_one` / `notify_waiters`: `sync.notify` (1 / -1); `notified().await`: `unit.block` (wait), `unit.wake` |
//! | [`watch::channel`] | `condition` | every send: `sync.notify` (-1: all receivers); `changed()` / `wait_for()`: `unit.block` (wait) when it has to wait, `unit.wake` when it returns (an edge from the latest send) |
//! | [`broadcast::channel`] | `queue` | a send: one `queue.put` per receiver subscribed (same token); each receive: `queue.get` with it (so every receiver's get has its own put to pair with) |
//! | [`spawn`], [`JoinHandle`] (`From` tokio's, right after any spawn) | the task's `join` | awaiting the handle: `unit.block` (join) while pending, `join.done` naming the task once it yields (an edge from the task's `unit.end`) |
//! | [`JoinSet`] (`spawn`, `spawn_on`) | a `join` per task that comes out; the set's own `join` (no `unit`) | `join_next` & co.: `unit.block` (join) on the set's resource while pending (it waits for any task: no wait-for edge), `join.done` naming the task that came out, on its own resource (an edge from its `unit.end`) |
//! | [`CallSite::at_caller`], [`MutexExt`], [`RwLockExt`], [`SemaphoreExt`] | tokio's own | the `unit.block` and `lock.acquired` tokio's instrumentation reports while that future is polled carry the caller's line |
//!
//! Every event is at the caller's line (`#[track_caller]`); a wrapper created outside every
//! boundary in `hops` mode records nothing (its resource is 0).

use std::panic::Location;
use std::sync::atomic::AtomicI64;

use crate::agent::agent;
use crate::wtrace::Value;

pub(crate) static TOKENS: AtomicI64 = AtomicI64::new(1);

pub(crate) fn define(k: &str, label: &str, at: &'static Location<'static>) -> u32 {
    let Some(a) = agent().filter(|a| a.admits_here()) else {
        return 0;
    };
    let loc = a.location(at);
    let short = at.file().rsplit('/').next().unwrap_or("");
    a.new_resource(vec![
        ("kind", Value::from(k)),
        (
            "name",
            Value::from(format!("{label} {short}:{}", at.line())),
        ),
        ("loc", Value::Int(loc as i64)),
    ])
}

pub(crate) fn emit(k: u8, res: u32, arg: i64, at: &'static Location<'static>) {
    if res == 0 {
        return;
    }
    if let Some(a) = agent() {
        let loc = a.location(at);
        a.emit(crate::current_unit(), k, res, arg, loc);
    }
}

pub mod broadcast;
mod join_set;
pub mod mpsc;
mod notify;
mod sites;
mod task;
pub mod watch;

pub use join_set::JoinSet;
pub use notify::Notify;
pub use sites::{AtCaller, CallSite, MutexExt, RwLockExt, SemaphoreExt};
pub use task::{spawn, JoinHandle};
