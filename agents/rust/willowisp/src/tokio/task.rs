//! A `JoinHandle` that records the join: awaiting it is a wait on the task's `join`
//! resource (`unit.block`, reason join, while it is pending) ended by `join.done` naming
//! the task, the happens-before edge from the task's end to what the awaiter does next.
//!
//! tokio reports nothing when a `JoinHandle` yields its output (and an awaiter that comes
//! after the task ended never even registers a waker), so without this the analyzer sees
//! two unordered tasks and predicts lock-order inversions that cannot happen. The edge is
//! sound because tokio drops a finished task's future — and so closes its span, which
//! writes `unit.end` — before it stores the output the handle returns.
//!
//! ```ignore
//! let h = willowisp::tokio::spawn(async { /* ... */ });            // tokio::spawn
//! let h: willowisp::tokio::JoinHandle<_> =                          // any spawn, converted
//!     tokio::task::Builder::new().name("audit").spawn(fut)?.into(); // at once
//! h.await?;
//! ```
//!
//! Which task a handle belongs to is learnt on the spawning thread right after the spawn
//! (tokio creates the task's span there); a handle converted later, elsewhere or while
//! nothing was recorded records nothing and behaves exactly as tokio's.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::agent::agent;
use crate::wtrace::{kind, reason, Value};

/// tokio's `JoinHandle`, recording the join; `Deref`s to it for `abort`, `is_finished`,
/// `id` and the rest.
pub struct JoinHandle<T> {
    inner: ::tokio::task::JoinHandle<T>,
    /// The joined task's unit and name; unit 0: not recorded (or the join already said).
    unit: u32,
    name: String,
    /// Its `join` resource, defined at the first wait (0: none yet).
    res: u32,
}

/// `tokio::spawn`, returning a handle that records the join (the task's spawn place is
/// the caller's, as with tokio's).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    ::tokio::spawn(future).into()
}

impl<T> From<::tokio::task::JoinHandle<T>> for JoinHandle<T> {
    /// Takes a handle right after its spawn on this thread; see the module's text.
    fn from(inner: ::tokio::task::JoinHandle<T>) -> Self {
        let known = agent().and_then(|_| {
            let id = inner.id().to_string().parse::<u64>().ok()?;
            crate::tokio_sub::spawned(id)
        });
        let (unit, name) = known.unwrap_or_default();
        JoinHandle {
            inner,
            unit,
            name,
            res: 0,
        }
    }
}

impl<T> JoinHandle<T> {
    /// tokio's handle (the join is no longer recorded).
    pub fn into_inner(self) -> ::tokio::task::JoinHandle<T> {
        self.inner
    }

    fn join_res(&mut self, a: &crate::Agent) -> u32 {
        if self.res == 0 && a.admits_here() {
            self.res = a.new_resource(vec![
                ("kind", Value::from("join")),
                ("name", Value::from(format!("end of {}", self.name))),
                ("unit", Value::Int(i64::from(self.unit))),
            ]);
        }
        self.res
    }
}

impl<T> std::ops::Deref for JoinHandle<T> {
    type Target = ::tokio::task::JoinHandle<T>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, ::tokio::task::JoinError>;

    #[track_caller]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // every field is Unpin (tokio's JoinHandle is), so the handle is too
        let this = self.get_mut();
        let out = Pin::new(&mut this.inner).poll(cx);
        if this.unit == 0 {
            return out;
        }
        let Some(a) = agent() else { return out };
        let at = a.location(Location::caller());
        let me = crate::current_unit();
        match &out {
            // at every pending poll: a wake that did not finish the task (a `select!`'s
            // other branch) ended the previous wait
            Poll::Pending => {
                let res = this.join_res(a);
                if res != 0 {
                    a.emit(me, kind::UNIT_BLOCK, res, reason::JOIN, at);
                }
            }
            // a task that failed or was cancelled has ended too: the edge holds either way
            Poll::Ready(_) => {
                let res = this.join_res(a);
                a.emit(me, kind::JOIN_DONE, res, i64::from(this.unit), at);
                this.unit = 0; // a handle yields once
            }
        }
        out
    }
}
