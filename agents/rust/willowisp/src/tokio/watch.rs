//! A recorded `tokio::sync::watch` channel: one `condition` resource. A send is a
//! `sync.notify` to every receiver (-1); `changed()` and `wait_for()` write `unit.block`
//! (wait) when they have to wait and `unit.wake` when they return, so each is linked to
//! the latest send before it, and so does `borrow_and_update` when it reads a value not
//! seen yet. `borrow` records nothing.

use std::panic::Location;

use super::{define, emit};
use crate::wtrace::{kind, reason};

pub use ::tokio::sync::watch::error::{RecvError, SendError};
pub use ::tokio::sync::watch::Ref;

/// `tokio::sync::watch::channel`, recorded.
#[track_caller]
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let res = define("condition", "tokio::sync::watch", Location::caller());
    let (tx, rx) = ::tokio::sync::watch::channel(init);
    (Sender { res, inner: tx }, Receiver { res, inner: rx })
}

pub struct Sender<T> {
    res: u32,
    inner: ::tokio::sync::watch::Sender<T>,
}

pub struct Receiver<T> {
    res: u32,
    inner: ::tokio::sync::watch::Receiver<T>,
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver {
            res: self.res,
            inner: self.inner.clone(),
        }
    }
}

impl<T> Sender<T> {
    /// `Sender::send`: fails (and records nothing) when every receiver is gone.
    #[track_caller]
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        let at = Location::caller();
        if self.inner.is_closed() {
            return self.inner.send(value);
        }
        emit(kind::SYNC_NOTIFY, self.res, -1, at);
        self.inner.send(value)
    }

    /// `Sender::send_replace`: stores the value even without receivers; returns the old one.
    #[track_caller]
    pub fn send_replace(&self, value: T) -> T {
        emit(kind::SYNC_NOTIFY, self.res, -1, Location::caller());
        self.inner.send_replace(value)
    }

    /// `Sender::send_modify`.
    #[track_caller]
    pub fn send_modify<F: FnOnce(&mut T)>(&self, modify: F) {
        emit(kind::SYNC_NOTIFY, self.res, -1, Location::caller());
        self.inner.send_modify(modify)
    }

    pub fn borrow(&self) -> Ref<'_, T> {
        self.inner.borrow()
    }

    /// A new receiver (the same resource).
    pub fn subscribe(&self) -> Receiver<T> {
        Receiver {
            res: self.res,
            inner: self.inner.subscribe(),
        }
    }

    pub fn receiver_count(&self) -> usize {
        self.inner.receiver_count()
    }

    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

impl<T> Receiver<T> {
    pub fn borrow(&self) -> Ref<'_, T> {
        self.inner.borrow()
    }

    /// `Receiver::borrow_and_update`: a value not seen yet is what a send made, so reading
    /// it writes `unit.wake` (an edge from the latest send before it, as `changed()` does);
    /// a receiver that only ever reads after the sends were all done still follows them.
    /// Written after the read: every send whose value it can read notified before it.
    #[track_caller]
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let at = Location::caller();
        let value = self.inner.borrow_and_update();
        if value.has_changed() {
            emit(kind::UNIT_WAKE, self.res, 0, at);
        }
        value
    }

    pub fn has_changed(&self) -> Result<bool, RecvError> {
        self.inner.has_changed()
    }

    /// `Receiver::changed`: waits for a value not seen yet.
    #[track_caller]
    pub fn changed(&mut self) -> impl std::future::Future<Output = Result<(), RecvError>> + '_ {
        let at = Location::caller();
        async move {
            if !self.inner.has_changed().unwrap_or(false) {
                emit(kind::UNIT_BLOCK, self.res, reason::WAIT, at);
            }
            let out = self.inner.changed().await;
            emit(
                kind::UNIT_WAKE,
                self.res,
                if out.is_ok() { 0 } else { 3 },
                at,
            );
            out
        }
    }

    /// `Receiver::wait_for`: waits until the value satisfies `f`.
    #[track_caller]
    pub fn wait_for<'a, F: FnMut(&T) -> bool + 'a>(
        &'a mut self,
        f: F,
    ) -> impl std::future::Future<Output = Result<Ref<'a, T>, RecvError>> + 'a {
        let at = Location::caller();
        async move {
            let mut f = f;
            if !f(&self.inner.borrow()) {
                emit(kind::UNIT_BLOCK, self.res, reason::WAIT, at);
            }
            let out = self.inner.wait_for(f).await;
            emit(
                kind::UNIT_WAKE,
                self.res,
                if out.is_ok() { 0 } else { 3 },
                at,
            );
            out
        }
    }
}
