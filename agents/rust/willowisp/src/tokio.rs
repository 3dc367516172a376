//! Thin wrappers for the tokio primitives tokio does not instrument: `mpsc` channels and
//! `Notify`.
//!
//! A channel is one `queue` resource (where it was created); each message carries a token,
//! so `queue.put` by the sender pairs with `queue.get` by the receiver (a happens-before
//! edge). A receiver that finds the channel empty writes `unit.block` (reason get) before
//! it awaits. `Notify` is one `condition` resource: `notify_one` / `notify_waiters` write
//! `sync.notify` (arg 1 / -1); `notified().await` writes `unit.block` (reason wait) and
//! `unit.wake` once notified.

use std::panic::Location;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::agent::agent;
use crate::wtrace::{kind, reason, Value};

static TOKENS: AtomicI64 = AtomicI64::new(1);

fn define(k: &str, label: &str, at: &'static Location<'static>) -> u32 {
    let Some(a) = agent().filter(|a| a.config.mode == "full") else {
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

fn emit(k: u8, res: u32, arg: i64, at: &'static Location<'static>) {
    if res == 0 {
        return;
    }
    if let Some(a) = agent() {
        let loc = a.location(at);
        a.emit(crate::current_unit(), k, res, arg, loc);
    }
}

/// Recorded `tokio::sync::mpsc` channels.
pub mod mpsc {
    use super::*;
    pub use ::tokio::sync::mpsc::error::{SendError, TryRecvError};

    pub struct Sender<T> {
        res: u32,
        inner: ::tokio::sync::mpsc::Sender<(i64, T)>,
    }
    impl<T> Clone for Sender<T> {
        fn clone(&self) -> Self {
            Sender {
                res: self.res,
                inner: self.inner.clone(),
            }
        }
    }
    pub struct Receiver<T> {
        res: u32,
        inner: ::tokio::sync::mpsc::Receiver<(i64, T)>,
    }

    /// `tokio::sync::mpsc::channel`, recorded.
    #[track_caller]
    pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
        let res = define("queue", "tokio::sync::mpsc", Location::caller());
        let (tx, rx) = ::tokio::sync::mpsc::channel(capacity);
        (Sender { res, inner: tx }, Receiver { res, inner: rx })
    }

    impl<T> Sender<T> {
        #[track_caller]
        pub fn send(
            &self,
            value: T,
        ) -> impl std::future::Future<Output = Result<(), SendError<T>>> + '_ {
            let at = Location::caller();
            async move {
                let token = TOKENS.fetch_add(1, Ordering::Relaxed);
                let permit = match self.inner.try_reserve() {
                    Ok(p) => p,
                    Err(::tokio::sync::mpsc::error::TrySendError::Closed(())) => {
                        return Err(SendError(value))
                    }
                    Err(::tokio::sync::mpsc::error::TrySendError::Full(())) => {
                        emit(kind::UNIT_BLOCK, self.res, reason::PUT, at);
                        match self.inner.reserve().await {
                            Ok(p) => {
                                emit(kind::UNIT_WAKE, self.res, 0, at);
                                p
                            }
                            Err(_) => {
                                emit(kind::UNIT_WAKE, self.res, 3, at);
                                return Err(SendError(value));
                            }
                        }
                    }
                };
                emit(kind::QUEUE_PUT, self.res, token, at);
                permit.send((token, value));
                Ok(())
            }
        }
    }

    impl<T> Receiver<T> {
        #[track_caller]
        pub fn recv(&mut self) -> impl std::future::Future<Output = Option<T>> + '_ {
            let at = Location::caller();
            async move {
                let got = match self.inner.try_recv() {
                    Ok(v) => Some(v),
                    Err(TryRecvError::Disconnected) => None,
                    Err(TryRecvError::Empty) => {
                        emit(kind::UNIT_BLOCK, self.res, reason::GET, at);
                        let v = self.inner.recv().await;
                        if v.is_none() {
                            emit(kind::UNIT_WAKE, self.res, 3, at);
                        }
                        v
                    }
                };
                let (token, value) = got?;
                emit(kind::QUEUE_GET, self.res, token, at);
                Some(value)
            }
        }
    }
}

/// A recorded `tokio::sync::Notify`.
pub struct Notify {
    res: u32,
    inner: ::tokio::sync::Notify,
}

impl Default for Notify {
    #[track_caller]
    fn default() -> Self {
        Notify::new()
    }
}

impl Notify {
    #[track_caller]
    pub fn new() -> Self {
        Notify {
            res: define("condition", "tokio::sync::Notify", Location::caller()),
            inner: ::tokio::sync::Notify::new(),
        }
    }

    #[track_caller]
    pub fn notify_one(&self) {
        emit(kind::SYNC_NOTIFY, self.res, 1, Location::caller());
        self.inner.notify_one();
    }

    #[track_caller]
    pub fn notify_waiters(&self) {
        emit(kind::SYNC_NOTIFY, self.res, -1, Location::caller());
        self.inner.notify_waiters();
    }

    #[track_caller]
    pub fn notified(&self) -> impl std::future::Future<Output = ()> + '_ {
        let at = Location::caller();
        async move {
            emit(kind::UNIT_BLOCK, self.res, reason::WAIT, at);
            self.inner.notified().await;
            emit(kind::UNIT_WAKE, self.res, 0, at);
        }
    }
}
