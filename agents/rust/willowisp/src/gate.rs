//! The gate: which events are written in `hops` mode, and which boundary each event is
//! counted against.
//!
//! One 32-bit word per unit (units are numbered from 1 and never reused) in a table of
//! lazily allocated pages, read with two relaxed loads per event:
//!
//! - bits 0..16: the mark of the boundary the unit is inside (index + 1, 0: outside). A
//!   server adapter sets it on the handling unit while an instance is open; a task
//!   inherits its spawner's mark at creation and keeps it for its life.
//! - bit 31 (`DEFINED`): in `hops` mode the unit's record has been written. There a unit
//!   is defined only when its first event passes the gate (a hop, or anything inside a
//!   boundary), so that work outside every boundary leaves no records at all.
//!
//! In `hops` mode concurrency events (kinds below 20: units, locks, queues, notifies,
//! data accesses) pass only for units inside a boundary; hop and agent events always do.
//! In `full` mode everything passes and the table only counts events per boundary.
//! Units past the table's capacity (2^22) are treated as outside and defined at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::Mutex;

use crate::agent::lock;
use crate::wtrace::Record;

pub(crate) const MARK: u32 = 0xffff;
pub(crate) const DEFINED: u32 = 1 << 31;
const PAGE: usize = 4096;
const PAGES: usize = 1024;
/// Event kinds below this are concurrency events (gated); from it on, hops and agent events.
pub(crate) const FIRST_HOP_KIND: u8 = 20;

type Page = [AtomicU32; PAGE];

pub(crate) struct UnitTable {
    pages: Box<[AtomicPtr<Page>]>,
    /// hops mode: unit records not written yet (removed when written or when the task ends).
    pending: Mutex<HashMap<u32, Record>>,
}

impl Default for UnitTable {
    fn default() -> Self {
        UnitTable {
            pages: (0..PAGES)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl UnitTable {
    fn slot(&self, unit: u32, create: bool) -> Option<&AtomicU32> {
        let (p, i) = (unit as usize / PAGE, unit as usize % PAGE);
        let cell = self.pages.get(p)?;
        let mut page = cell.load(Ordering::Acquire);
        if page.is_null() {
            if !create {
                return None;
            }
            let fresh: Box<Page> = Box::new(std::array::from_fn(|_| AtomicU32::new(0)));
            let raw = Box::into_raw(fresh);
            page = match cell.compare_exchange(
                std::ptr::null_mut(),
                raw,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => raw,
                Err(other) => {
                    // SAFETY: raw came from Box::into_raw just above and was not published.
                    drop(unsafe { Box::from_raw(raw) });
                    other
                }
            };
        }
        // SAFETY: pages are published once and live as long as the table (the agent's).
        Some(unsafe { &(*page)[i] })
    }

    /// The unit's word (0 for units never marked).
    #[inline]
    pub(crate) fn get(&self, unit: u32) -> u32 {
        self.slot(unit, false)
            .map(|s| s.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Sets the unit's boundary mark, keeping its other bits; returns the previous mark.
    pub(crate) fn set_mark(&self, unit: u32, mark: u32) -> u32 {
        match self.slot(unit, true) {
            Some(s) => {
                let prev = s
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                        Some((v & !MARK) | (mark & MARK))
                    })
                    .unwrap_or(0);
                prev & MARK
            }
            None => 0,
        }
    }

    /// Whether the unit fits in the table (else it is defined at once, never gated).
    pub(crate) fn covers(&self, unit: u32) -> bool {
        (unit as usize) < PAGE * PAGES
    }

    pub(crate) fn defer(&self, unit: u32, r: Record) {
        lock(&self.pending).insert(unit, r);
    }

    /// The unit's record if it was deferred and not written yet (marks it defined).
    pub(crate) fn take_pending(&self, unit: u32) -> Option<Record> {
        if let Some(s) = self.slot(unit, true) {
            if s.fetch_or(DEFINED, Ordering::AcqRel) & DEFINED != 0 {
                return None;
            }
        }
        lock(&self.pending).remove(&unit)
    }

    pub(crate) fn mark_defined(&self, unit: u32) {
        if let Some(s) = self.slot(unit, true) {
            s.fetch_or(DEFINED, Ordering::AcqRel);
        }
    }

    /// A unit that ended without ever passing the gate: its record is never needed.
    pub(crate) fn forget(&self, unit: u32) {
        if self.get(unit) & DEFINED == 0 {
            lock(&self.pending).remove(&unit);
        }
    }
}

impl Drop for UnitTable {
    fn drop(&mut self) {
        for cell in self.pages.iter() {
            let p = cell.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !p.is_null() {
                // SAFETY: p came from Box::into_raw in slot().
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}
