//! A `JoinSet` that records its joins: each task that comes out of `join_next` (or
//! `try_join_next`) is `join.done` naming it, on a `join` resource of its own (attribute
//! `unit`), the happens-before edge from the task's end to what the caller does next. The
//! edge is sound for the reason [`super::JoinHandle`]'s is: tokio drops a finished task's
//! future — closing its span, which writes `unit.end` — before it stores the output the set
//! hands back.
//!
//! Waiting is the one thing a set's join does not share with a handle's: `join_next` waits
//! for *any* task, so while it is pending the caller is `unit.block` (reason join) on the
//! set's own `join` resource, which names no `unit`. The analyzer draws no wait-for edge
//! from it (blaming one task, or all of them as a `future`'s `waits_for` would, is not
//! what the program does), but the wait is there: a caller stuck on a set whose tasks are
//! all stuck is still "every unit asleep". The wait ends at the `join.done`, or at a
//! `unit.wake` on the set's resource when what came out was a task the set could not
//! record.
//!
//! ```ignore
//! let mut set = willowisp::tokio::JoinSet::new();
//! set.spawn(async { /* ... */ });
//! while let Some(done) = set.join_next().await { done?; }
//! ```
//!
//! A task's unit is learnt on the spawning thread right after its spawn (as for a
//! converted handle); tasks put in the set another way (tokio's `Extend`, through
//! `DerefMut`) and tasks taken out another way make no edge.

use std::collections::HashMap;
use std::future::Future;
use std::panic::Location;
use std::task::{Context, Poll};

use ::tokio::runtime::Handle;
use ::tokio::task::{AbortHandle, Id, JoinError};

use crate::agent::{agent, Agent};
use crate::wtrace::{kind, reason, Value};

/// tokio's `JoinSet`, recording the joins; `Deref`s (and `DerefMut`s) to it for `len`,
/// `abort_all` and the rest.
pub struct JoinSet<T> {
    inner: ::tokio::task::JoinSet<T>,
    /// The recorded tasks in the set by tokio id: their unit and name. Added right after a
    /// spawn through this wrapper, removed when the task comes out.
    tasks: HashMap<Id, (u32, String)>,
    /// Where the set was made, naming its resource.
    made_at: &'static Location<'static>,
    /// The set's own `join` resource ("any of the set"), defined at the first wait (0: none
    /// yet, or nothing recorded here).
    res: u32,
    /// A `unit.block` on `res` is open: the next result has to end it.
    blocked: bool,
}

impl<T> Default for JoinSet<T> {
    #[track_caller]
    fn default() -> Self {
        JoinSet::new()
    }
}

impl<T> JoinSet<T> {
    /// An empty set (tokio's `JoinSet::new`), named after the caller's line.
    #[track_caller]
    pub fn new() -> Self {
        JoinSet {
            inner: ::tokio::task::JoinSet::new(),
            tasks: HashMap::new(),
            made_at: Location::caller(),
            res: 0,
            blocked: false,
        }
    }

    /// tokio's set (its joins are no longer recorded).
    pub fn into_inner(self) -> ::tokio::task::JoinSet<T> {
        self.inner
    }
}

impl<T: 'static> JoinSet<T> {
    /// Removes every task without aborting it (tokio's `detach_all`).
    pub fn detach_all(&mut self) {
        self.tasks.clear();
        self.inner.detach_all();
    }

    /// Aborts every task and waits for them to stop (tokio's `shutdown`): no edges, the
    /// caller learns no task's result.
    pub async fn shutdown(&mut self) {
        self.tasks.clear();
        self.inner.shutdown().await;
    }

    /// The task that `handle` belongs to, learnt right after its spawn on this thread.
    fn learn(&mut self, handle: &AbortHandle) {
        let known = agent().and_then(|_| {
            let id = handle.id().to_string().parse::<u64>().ok()?;
            crate::tokio_sub::spawned(id)
        });
        if let Some(task) = known.filter(|(unit, _)| *unit != 0) {
            self.tasks.insert(handle.id(), task);
        }
    }

    /// One poll of the set, recorded at the caller's line `at`.
    fn poll_at(
        &mut self,
        cx: &mut Context<'_>,
        at: &'static Location<'static>,
    ) -> Poll<Option<Result<(Id, T), JoinError>>> {
        let out = self.inner.poll_join_next_with_id(cx);
        match &out {
            Poll::Pending => self.waiting(at),
            Poll::Ready(done) => self.came_out(done, at),
        }
        out
    }

    /// Called at every pending poll: a wake that brought nothing (a `select!`'s other
    /// branch) ended the previous wait, so each pending poll opens one.
    fn waiting(&mut self, at: &'static Location<'static>) {
        if self.tasks.is_empty() {
            return; // nothing recorded in the set: tokio's behaviour, nothing more
        }
        let Some(a) = agent() else { return };
        if self.res == 0 {
            self.res = super::define("join", "any task of JoinSet", self.made_at);
        }
        if self.res != 0 {
            let loc = a.location(at);
            a.emit(
                crate::current_unit(),
                kind::UNIT_BLOCK,
                self.res,
                reason::JOIN,
                loc,
            );
            self.blocked = true;
        }
    }

    /// Called with what the set returned (a task's result, or `None`: it is empty).
    fn came_out<V>(
        &mut self,
        done: &Option<Result<(Id, V), JoinError>>,
        at: &'static Location<'static>,
    ) {
        let id = done.as_ref().map(|r| match r {
            Ok((id, _)) => *id,
            // a task that failed or was cancelled has ended too: the edge holds either way
            Err(e) => e.id(),
        });
        let task = id.and_then(|id| self.tasks.remove(&id));
        let blocked = std::mem::take(&mut self.blocked);
        if task.is_none() && !blocked {
            return;
        }
        let Some(a) = agent() else { return };
        let me = crate::current_unit();
        let loc = a.location(at);
        match task {
            Some((unit, name)) if a.admits_here() => {
                let res = join_res(a, unit, &name);
                a.emit(me, kind::JOIN_DONE, res, i64::from(unit), loc);
            }
            // a task the set could not record came out: the wait is over all the same
            _ if blocked => a.emit(me, kind::UNIT_WAKE, self.res, 0, loc),
            _ => {}
        }
    }

    /// tokio's `poll_join_next_with_id`, recorded at the caller's line.
    #[track_caller]
    pub fn poll_join_next_with_id(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(Id, T), JoinError>>> {
        self.poll_at(cx, Location::caller())
    }

    /// tokio's `poll_join_next`, recorded at the caller's line.
    #[track_caller]
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        let out = self.poll_at(cx, Location::caller());
        out.map(|done| done.map(|r| r.map(|(_, v)| v)))
    }

    /// tokio's `join_next_with_id`: the next task to finish and its id (`None`: the set is
    /// empty), recorded at the caller's line.
    #[track_caller]
    pub fn join_next_with_id(
        &mut self,
    ) -> impl Future<Output = Option<Result<(Id, T), JoinError>>> + '_ {
        let at = Location::caller();
        std::future::poll_fn(move |cx| self.poll_at(cx, at))
    }

    /// tokio's `join_next`: the next task to finish (`None`: the set is empty), recorded at
    /// the caller's line.
    #[track_caller]
    pub fn join_next(&mut self) -> impl Future<Output = Option<Result<T, JoinError>>> + '_ {
        let next = self.join_next_with_id();
        async move { next.await.map(|r| r.map(|(_, v)| v)) }
    }

    /// tokio's `try_join_next_with_id`: a finished task if there is one, never waiting.
    #[track_caller]
    pub fn try_join_next_with_id(&mut self) -> Option<Result<(Id, T), JoinError>> {
        let out = self.inner.try_join_next_with_id();
        self.came_out(&out, Location::caller());
        out
    }

    /// tokio's `try_join_next`.
    #[track_caller]
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.try_join_next_with_id().map(|r| r.map(|(_, v)| v))
    }

    /// tokio's `JoinSet::spawn`; the task's spawn place is the caller's.
    #[track_caller]
    pub fn spawn<F>(&mut self, task: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send,
    {
        let handle = self.inner.spawn(task);
        self.learn(&handle);
        handle
    }

    /// tokio's `JoinSet::spawn_on`.
    #[track_caller]
    pub fn spawn_on<F>(&mut self, task: F, runtime: &Handle) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send,
    {
        let handle = self.inner.spawn_on(task, runtime);
        self.learn(&handle);
        handle
    }

    /// tokio's `join_all`: every task's output in the order they finish, each join
    /// recorded at the caller's line; panics like tokio's if a task failed.
    #[track_caller]
    pub fn join_all(mut self) -> impl Future<Output = Vec<T>> {
        let at = Location::caller();
        async move {
            let mut output = Vec::with_capacity(self.len());
            while let Some(done) = std::future::poll_fn(|cx| self.poll_at(cx, at)).await {
                match done {
                    Ok((_, v)) => output.push(v),
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => panic!("{e}"),
                }
            }
            output
        }
    }
}

impl<T> std::ops::Deref for JoinSet<T> {
    type Target = ::tokio::task::JoinSet<T>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<T> std::ops::DerefMut for JoinSet<T> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

/// The `join` resource of one task that came out of a set.
fn join_res(a: &Agent, unit: u32, name: &str) -> u32 {
    a.new_resource(vec![
        ("kind", Value::from("join")),
        ("name", Value::from(format!("end of {name}"))),
        ("unit", Value::Int(i64::from(unit))),
    ])
}
