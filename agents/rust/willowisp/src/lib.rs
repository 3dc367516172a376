//! Willowisp's agent for Rust programs: records tokio tasks, wakers and resources, std
//! locks and HTTP hops into `.wtrace` segments that `willowisp analyze` reads.
//!
//! ```ignore
//! fn main() {
//!     let _wisp = willowisp::init(); // before the runtime is built; its drop flushes
//!     let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
//!     rt.block_on(async { /* the program */ });
//! }
//! ```
//!
//! Recording is on only when `WILLOWISP_OUT` is set (as `willowisp run` does) and
//! `WILLOWISP_DISABLED` is not; otherwise every hook returns at once. Tokio's own
//! instrumentation needs `--cfg tokio_unstable` and tokio's `tracing` feature (see
//! docs/agent-rust.md). Modules: [`wtrace`] (the encoder), [`sync`] (std lock wrappers),
//! [`thread`] (std threads with their spawn and join recorded), [`tokio`] (mpsc, Notify,
//! watch and broadcast wrappers, a `JoinHandle` recording joins; call sites for tokio's
//! locks), [`context`] (W3C trace context), [`reqwest`] and [`tower`] (HTTP and gRPC
//! propagation) and [`tonic`] (the gRPC client), behind features of the same names.
//! SIGTERM and SIGINT store the recording before the program dies of them; declared
//! boundaries are recorded at full fidelity in `hops` mode.

mod agent;
mod api;
mod boundary;
mod buffer;
mod clock;
mod config;
pub mod context;
mod control;
mod gate;
mod output;
mod sha256;
mod signals;
mod stream;
pub mod sync;
pub mod thread;
mod tokio_sub;
pub mod wtrace;

#[cfg(feature = "reqwest")]
pub mod reqwest;
#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(feature = "tonic")]
pub mod tonic;
#[cfg(feature = "tower")]
pub mod tower;

use std::sync::{Arc, OnceLock};

pub use agent::{agent, now, Agent, Config};
pub use api::{
    access, message_receive, message_receive_with_state, message_send, message_tracestate,
};
pub use tokio_sub::TokioSubscriber;

static SUBSCRIBER: OnceLock<Arc<TokioSubscriber>> = OnceLock::new();

/// Starts recording if the environment asks for it and installs the tokio subscriber as
/// the global `tracing` default (unless another one is installed: then tokio's events go
/// there and only the wrappers record). Returns a guard whose drop is the program's clean
/// stop: it judges lost wakers, marks the process record complete and writes the last
/// chunk. Never panics; with recording off the guard does nothing.
/// A process started with `TRACEPARENT` (by a recorded parent) says so: `proc.start` on a
/// `spawn` resource carrying the inherited context, which links it to the parent's spawn.
fn record_process_start() {
    let Some(a) = agent() else { return };
    let Some(parent) = context::parse(&a.config.traceparent) else {
        return;
    };
    let res = a.new_resource(vec![
        ("kind", wtrace::Value::from("spawn")),
        ("name", wtrace::Value::from("TRACEPARENT")),
        ("trace_id", wtrace::Value::from(parent.trace_id.clone())),
        ("span_id", wtrace::Value::from(a.random_hex(8))),
        (
            "parent_span_id",
            wtrace::Value::from(parent.span_id.clone()),
        ),
        ("sampled", wtrace::Value::Int(i64::from(parent.sampled()))),
    ]);
    let ppid = std::os::unix::process::parent_id();
    a.emit(
        current_unit(),
        wtrace::kind::PROC_START,
        res,
        i64::from(ppid),
        0,
    );
}

pub fn init() -> Guard {
    let recording = std::panic::catch_unwind(|| {
        let on = agent::start();
        if on {
            record_process_start();
        }
        // installed in every mode, before the runtime is built, so that a boundary switched
        // on later (by `ctl`) sees the tasks spawned from then on; in `hops` mode it takes
        // tokio's callsites only while some boundary is on
        if on {
            let hops = agent().is_some_and(|a| a.gated);
            let sub = SUBSCRIBER
                .get_or_init(|| Arc::new(TokioSubscriber::new(hops)))
                .clone();
            if tracing_core::dispatcher::set_global_default(tracing_core::Dispatch::new(sub))
                .is_err()
            {
                if let Some(a) = agent() {
                    a.fault(
                        "init",
                        "another tracing subscriber is already the global default",
                    );
                }
            }
        }
        on
    })
    .unwrap_or(false);
    Guard { recording }
}

/// Writes everything recorded so far now (the flusher does it every 50 ms anyway).
pub fn flush() {
    if let Some(a) = agent() {
        let _ = std::panic::catch_unwind(|| a.flush());
    }
}

/// Events recorded and dropped so far (as of the last flush).
pub fn counters() -> (u64, u64) {
    use std::sync::atomic::Ordering;
    agent()
        .map(|a| {
            (
                a.events.load(Ordering::Relaxed),
                a.dropped.load(Ordering::Relaxed),
            )
        })
        .unwrap_or((0, 0))
}

/// The running unit's number (a tokio task or a thread), 0 when not recording.
pub fn current_unit() -> u32 {
    agent().map(tokio_sub::unit_here).unwrap_or(0)
}

/// Returned by [`init`]; dropping it stops recording cleanly.
#[must_use = "dropping the guard stops recording"]
pub struct Guard {
    recording: bool,
}

impl Guard {
    /// Whether this process is recording.
    pub fn recording(&self) -> bool {
        self.recording
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.recording {
            return;
        }
        let _ = std::panic::catch_unwind(|| {
            let Some(a) = agent() else { return };
            let here = tokio_sub::unit_here(a);
            if let Some(sub) = SUBSCRIBER.get() {
                tokio_sub::judge_lost_wakers(sub, a, here);
            }
            tokio_sub::end_current(a);
            let thread = agent::THREAD.try_with(|t| t.unit.get()).unwrap_or(0);
            if thread != 0 {
                // the thread that ends the program: its unit ends here, not at thread exit
                a.emit(thread, wtrace::kind::UNIT_END, 0, 0, 0);
                let _ = agent::THREAD.try_with(|t| t.unit.set(0));
            }
            a.finish(true);
        });
    }
}
