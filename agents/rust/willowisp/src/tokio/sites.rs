//! Call sites for tokio's own locks. tokio's instrumentation reports a `Mutex::lock`'s
//! wait and acquisition, but `lock()` is not `#[track_caller]`, so tokio cannot say where
//! it was called. Wrapping the future puts the caller's line on what it reports:
//!
//! ```ignore
//! use willowisp::tokio::{CallSite, MutexExt};
//! let g = shelf.lock_here().await;            // same as shelf.lock().await, with the line
//! let g = shelf.lock_owned().at_caller().await; // any future: the line of at_caller()
//! ```
//!
//! While the wrapped future is polled, the thread's *call site* is that line; the tokio
//! subscriber stamps it on the `unit.block` (a wait) and `lock.acquired` it writes during
//! the poll. The release (the guard's drop) stays without a line. Not recording: a plain
//! pass-through (one thread-local read and write per poll when recording).

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::agent::{agent, THREAD};

/// A future whose polls carry the line it was wrapped at.
pub struct AtCaller<F> {
    inner: F,
    at: &'static Location<'static>,
    /// The location number, interned at the first poll (0: not yet, or not recording).
    loc: u32,
}

impl<F: Future> Future for AtCaller<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned (never moved out); the other fields are
        // plain data.
        let this = unsafe { self.get_unchecked_mut() };
        if this.loc == 0 {
            if let Some(a) = agent() {
                this.loc = a.location(this.at);
            }
        }
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        if this.loc == 0 {
            return inner.poll(cx);
        }
        let prev = THREAD.try_with(|t| t.site.replace(this.loc)).unwrap_or(0);
        let out = inner.poll(cx);
        let _ = THREAD.try_with(|t| t.site.set(prev));
        out
    }
}

/// `.at_caller()` on any future: what tokio reports while it is polled carries this line.
pub trait CallSite: Future + Sized {
    #[track_caller]
    fn at_caller(self) -> AtCaller<Self> {
        AtCaller {
            inner: self,
            at: Location::caller(),
            loc: 0,
        }
    }
}

impl<F: Future> CallSite for F {}

/// `lock_here()`: `tokio::sync::Mutex::lock` with the caller's line.
pub trait MutexExt<T: ?Sized> {
    #[track_caller]
    fn lock_here<'a>(
        &'a self,
    ) -> AtCaller<impl Future<Output = ::tokio::sync::MutexGuard<'a, T>> + 'a>
    where
        T: 'a;
}

impl<T: ?Sized> MutexExt<T> for ::tokio::sync::Mutex<T> {
    #[track_caller]
    fn lock_here<'a>(
        &'a self,
    ) -> AtCaller<impl Future<Output = ::tokio::sync::MutexGuard<'a, T>> + 'a>
    where
        T: 'a,
    {
        self.lock().at_caller()
    }
}

/// `read_here()` / `write_here()`: `tokio::sync::RwLock::read` / `write` with the
/// caller's line.
pub trait RwLockExt<T: ?Sized> {
    #[track_caller]
    fn read_here<'a>(
        &'a self,
    ) -> AtCaller<impl Future<Output = ::tokio::sync::RwLockReadGuard<'a, T>> + 'a>
    where
        T: 'a;
    #[track_caller]
    fn write_here<'a>(
        &'a self,
    ) -> AtCaller<impl Future<Output = ::tokio::sync::RwLockWriteGuard<'a, T>> + 'a>
    where
        T: 'a;
}

impl<T: ?Sized> RwLockExt<T> for ::tokio::sync::RwLock<T> {
    #[track_caller]
    fn read_here<'a>(
        &'a self,
    ) -> AtCaller<impl Future<Output = ::tokio::sync::RwLockReadGuard<'a, T>> + 'a>
    where
        T: 'a,
    {
        self.read().at_caller()
    }
    #[track_caller]
    fn write_here<'a>(
        &'a self,
    ) -> AtCaller<impl Future<Output = ::tokio::sync::RwLockWriteGuard<'a, T>> + 'a>
    where
        T: 'a,
    {
        self.write().at_caller()
    }
}

/// `acquire_here()`: `tokio::sync::Semaphore::acquire` with the caller's line.
pub trait SemaphoreExt {
    #[track_caller]
    fn acquire_here(
        &self,
    ) -> AtCaller<
        impl Future<Output = Result<::tokio::sync::SemaphorePermit<'_>, ::tokio::sync::AcquireError>>,
    >;
}

impl SemaphoreExt for ::tokio::sync::Semaphore {
    #[track_caller]
    fn acquire_here(
        &self,
    ) -> AtCaller<
        impl Future<Output = Result<::tokio::sync::SemaphorePermit<'_>, ::tokio::sync::AcquireError>>,
    > {
        self.acquire().at_caller()
    }
}
