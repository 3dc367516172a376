//! `std::sync::Mutex` / `RwLock` with identity and holder, for blocking code (threads as
//! units of kind thread; inside a tokio task the task is the unit).
//!
//! Each lock is one `lock` / `rwlock` resource defined where it was created
//! (`#[track_caller]`). An uncontended acquisition is one `lock.acquired`; a contended one is
//! `unit.block` (reason acquire / acquire-shared) then `lock.acquired` once it is held. The
//! guard writes `lock.release` before it unlocks, so the release precedes the next
//! holder's acquire. With recording off the wrappers are the std types plus one branch.

use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::{LockResult, PoisonError, TryLockError};

use crate::agent::agent;
use crate::wtrace::{kind, reason, Value};

fn define(k: &str, label: &str, at: &'static Location<'static>) -> u32 {
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

fn unit_and_loc(at: &'static Location<'static>) -> Option<(u32, u32)> {
    let a = agent()?;
    Some((crate::current_unit(), a.location(at)))
}

fn emit(unit: u32, k: u8, res: u32, arg: i64, loc: u32) {
    if let Some(a) = agent() {
        a.emit(unit, k, res, arg, loc);
    }
}

fn map_guard<G, H>(r: LockResult<G>, f: impl FnOnce(G) -> H) -> LockResult<H> {
    match r {
        Ok(g) => Ok(f(g)),
        Err(p) => Err(PoisonError::new(f(p.into_inner()))),
    }
}

/// A recorded `std::sync::Mutex`.
pub struct Mutex<T: ?Sized> {
    res: u32,
    inner: std::sync::Mutex<T>,
}

/// Its guard: releases (and records the release) on drop.
pub struct MutexGuard<'a, T: ?Sized> {
    res: u32,
    unit: u32,
    guard: Option<std::sync::MutexGuard<'a, T>>,
}

impl<T> Mutex<T> {
    #[track_caller]
    pub fn new(value: T) -> Self {
        Mutex {
            res: define("lock", "std::sync::Mutex", Location::caller()),
            inner: std::sync::Mutex::new(value),
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    /// The resource number (0 when not recording).
    pub fn resource(&self) -> u32 {
        self.res
    }

    #[track_caller]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        let who = if self.res != 0 {
            unit_and_loc(Location::caller())
        } else {
            None
        };
        let Some((unit, loc)) = who else {
            return map_guard(self.inner.lock(), |g| MutexGuard {
                res: 0,
                unit: 0,
                guard: Some(g),
            });
        };
        let r = match self.inner.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Err(p),
            Err(TryLockError::WouldBlock) => {
                emit(unit, kind::UNIT_BLOCK, self.res, reason::ACQUIRE, loc);
                self.inner.lock()
            }
        };
        emit(unit, kind::LOCK_ACQUIRED, self.res, 0, loc);
        map_guard(r, |g| MutexGuard {
            res: self.res,
            unit,
            guard: Some(g),
        })
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_deref().expect("guard present until drop")
    }
}
impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_deref_mut().expect("guard present until drop")
    }
}
impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if self.res != 0 {
            emit(self.unit, kind::LOCK_RELEASE, self.res, 0, 0);
        }
        self.guard.take();
    }
}

/// A recorded `std::sync::RwLock`: writes are exclusive holds, reads shared ones.
pub struct RwLock<T: ?Sized> {
    res: u32,
    inner: std::sync::RwLock<T>,
}

pub struct RwLockReadGuard<'a, T: ?Sized> {
    res: u32,
    unit: u32,
    guard: Option<std::sync::RwLockReadGuard<'a, T>>,
}

pub struct RwLockWriteGuard<'a, T: ?Sized> {
    res: u32,
    unit: u32,
    guard: Option<std::sync::RwLockWriteGuard<'a, T>>,
}

impl<T> RwLock<T> {
    #[track_caller]
    pub fn new(value: T) -> Self {
        RwLock {
            res: define("rwlock", "std::sync::RwLock", Location::caller()),
            inner: std::sync::RwLock::new(value),
        }
    }
}

impl<T: ?Sized> RwLock<T> {
    pub fn resource(&self) -> u32 {
        self.res
    }

    #[track_caller]
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        let who = if self.res != 0 {
            unit_and_loc(Location::caller())
        } else {
            None
        };
        let Some((unit, loc)) = who else {
            return map_guard(self.inner.read(), |g| RwLockReadGuard {
                res: 0,
                unit: 0,
                guard: Some(g),
            });
        };
        let r = match self.inner.try_read() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Err(p),
            Err(TryLockError::WouldBlock) => {
                emit(
                    unit,
                    kind::UNIT_BLOCK,
                    self.res,
                    reason::ACQUIRE_SHARED,
                    loc,
                );
                self.inner.read()
            }
        };
        emit(unit, kind::LOCK_ACQUIRED, self.res, 1, loc);
        map_guard(r, |g| RwLockReadGuard {
            res: self.res,
            unit,
            guard: Some(g),
        })
    }

    #[track_caller]
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        let who = if self.res != 0 {
            unit_and_loc(Location::caller())
        } else {
            None
        };
        let Some((unit, loc)) = who else {
            return map_guard(self.inner.write(), |g| RwLockWriteGuard {
                res: 0,
                unit: 0,
                guard: Some(g),
            });
        };
        let r = match self.inner.try_write() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Err(p),
            Err(TryLockError::WouldBlock) => {
                emit(unit, kind::UNIT_BLOCK, self.res, reason::ACQUIRE, loc);
                self.inner.write()
            }
        };
        emit(unit, kind::LOCK_ACQUIRED, self.res, 0, loc);
        map_guard(r, |g| RwLockWriteGuard {
            res: self.res,
            unit,
            guard: Some(g),
        })
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_deref().expect("guard present until drop")
    }
}
impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        if self.res != 0 {
            emit(self.unit, kind::LOCK_RELEASE, self.res, 1, 0);
        }
        self.guard.take();
    }
}
impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_deref().expect("guard present until drop")
    }
}
impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_deref_mut().expect("guard present until drop")
    }
}
impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        if self.res != 0 {
            emit(self.unit, kind::LOCK_RELEASE, self.res, 0, 0);
        }
        self.guard.take();
    }
}
