//! A recorded `tokio::sync::broadcast` channel: one `queue` resource. A send writes one
//! `queue.put` per receiver subscribed at that moment (the receivers that will see the
//! message), all with the message's token, carried beside it; each receive writes
//! `queue.get` with the token, so each receiver's get pairs with a put of its own (the
//! analyzer pairs the k-th put of a token with its k-th get). A receive that finds
//! nothing writes `unit.block` (get) first. Messages a lagging receiver missed are
//! `Lagged` for the program and never got in the trace.

use std::panic::Location;
use std::sync::atomic::Ordering;

use super::{define, emit, TOKENS};
use crate::wtrace::{kind, reason};

pub use ::tokio::sync::broadcast::error::{RecvError, SendError, TryRecvError};

/// At most this many puts per send (a send to more receivers pairs only this many).
const MAX_PUTS: usize = 64;

/// `tokio::sync::broadcast::channel`, recorded.
#[track_caller]
pub fn channel<T: Clone>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let res = define("queue", "tokio::sync::broadcast", Location::caller());
    let (tx, rx) = ::tokio::sync::broadcast::channel(capacity);
    (Sender { res, inner: tx }, Receiver { res, inner: rx })
}

pub struct Sender<T> {
    res: u32,
    inner: ::tokio::sync::broadcast::Sender<(i64, T)>,
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
    inner: ::tokio::sync::broadcast::Receiver<(i64, T)>,
}

impl<T: Clone> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver {
            res: self.res,
            inner: self.inner.resubscribe(),
        }
    }
}

impl<T: Clone> Sender<T> {
    /// `Sender::send`: returns how many receivers will see the value.
    #[track_caller]
    pub fn send(&self, value: T) -> Result<usize, SendError<T>> {
        let at = Location::caller();
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        let receivers = self.inner.receiver_count();
        for _ in 0..receivers.min(MAX_PUTS) {
            emit(kind::QUEUE_PUT, self.res, token, at);
        }
        self.inner
            .send((token, value))
            .map_err(|SendError((_, v))| SendError(v))
    }

    pub fn subscribe(&self) -> Receiver<T> {
        Receiver {
            res: self.res,
            inner: self.inner.subscribe(),
        }
    }

    pub fn receiver_count(&self) -> usize {
        self.inner.receiver_count()
    }
}

impl<T: Clone> Receiver<T> {
    /// `Receiver::recv`.
    #[track_caller]
    pub fn recv(&mut self) -> impl std::future::Future<Output = Result<T, RecvError>> + '_ {
        let at = Location::caller();
        async move {
            let got = match self.inner.try_recv() {
                Ok(v) => Ok(v),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Empty) => {
                    emit(kind::UNIT_BLOCK, self.res, reason::GET, at);
                    let v = self.inner.recv().await;
                    if matches!(v, Err(RecvError::Closed)) {
                        emit(kind::UNIT_WAKE, self.res, 3, at);
                    }
                    v
                }
            };
            let (token, value) = got?;
            emit(kind::QUEUE_GET, self.res, token, at);
            Ok(value)
        }
    }

    /// `Receiver::try_recv`.
    #[track_caller]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let (token, value) = self.inner.try_recv()?;
        emit(kind::QUEUE_GET, self.res, token, Location::caller());
        Ok(value)
    }
}
