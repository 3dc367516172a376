//! Per-thread event buffers: each thread pushes 40-byte rows onto its own buffer under a
//! mutex only the flusher contends for, and keeps the tokio subscriber's span stack.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::agent::{agent, lock};
use crate::clock::now;
use crate::wtrace::{kind, Event};

/// One thread's rows, shared with the flusher.
pub(crate) struct ThreadBuf {
    pub(crate) rows: Mutex<Rows>,
}

#[derive(Default)]
pub(crate) struct Rows {
    pub(crate) events: Vec<Event>,
    pub(crate) drops: HashMap<u32, i64>,
}

/// Per-thread state: the buffer and the thread's unit (0 until it records something).
pub(crate) struct ThreadState {
    pub(crate) buf: Arc<ThreadBuf>,
    pub(crate) unit: Cell<u32>,
    pub(crate) carrier: Cell<bool>,
    /// Spans entered on this thread (the tokio subscriber's stack), innermost last.
    pub(crate) stack: RefCell<Vec<usize>>,
    /// The task span that exited last, if nothing happened on this thread since.
    pub(crate) last_exit: Cell<usize>,
    /// The location of the call being polled here (`tokio::CallSite`), 0 if none: stamped
    /// on what tokio's instrumentation reports meanwhile.
    pub(crate) site: Cell<u32>,
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        let unit = self.unit.get();
        if unit != 0 {
            if let Some(a) = agent() {
                if a.gated && a.units.get(unit) & crate::gate::DEFINED == 0 {
                    a.units.forget(unit); // never recorded: nothing to end
                    return;
                }
                a.push(
                    &self.buf,
                    Event {
                        kind: kind::UNIT_END,
                        unit,
                        time: now(),
                        ..Default::default()
                    },
                );
            }
        }
    }
}

thread_local! {
    pub(crate) static THREAD: ThreadState = new_thread_state();
}

fn new_thread_state() -> ThreadState {
    let buf = Arc::new(ThreadBuf {
        rows: Mutex::new(Rows::default()),
    });
    if let Some(a) = agent() {
        lock(&a.threads).push(buf.clone());
    }
    ThreadState {
        buf,
        unit: Cell::new(0),
        carrier: Cell::new(false),
        stack: RefCell::new(Vec::new()),
        last_exit: Cell::new(0),
        site: Cell::new(0),
    }
}

extern "C" {
    pub(crate) fn gettid() -> i32;
}
