//! Recorded `tokio::sync::mpsc` channels: one `queue` resource per channel; each message
//! carries a token beside it, so `queue.put` pairs with its `queue.get` (an edge).

use std::panic::Location;
use std::sync::atomic::Ordering;

use super::{define, emit, TOKENS};
use crate::wtrace::{kind, reason};
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
