//! A recorded `tokio::sync::Notify`: one `condition` resource.

use std::panic::Location;

use super::{define, emit};
use crate::wtrace::{kind, reason};

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
