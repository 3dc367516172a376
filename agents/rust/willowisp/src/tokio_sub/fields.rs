//! Reading tokio's span and event fields without allocating (except the strings a
//! definition keeps), and what they mean: which callsites matter, the op names, the reason
//! a resource's async op waits, and where a place is.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use tracing_core::field::{Field, Visit};
use tracing_core::Metadata;

use crate::agent::{lock, Agent};
use crate::wtrace::reason;

pub(crate) fn interesting(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        matches!(
            meta.name(),
            "runtime.spawn"
                | "runtime.resource"
                | "runtime.resource.async_op"
                | "runtime.resource.async_op.poll"
        )
    } else {
        matches!(
            meta.target(),
            "tokio::task::waker"
                | "runtime::waker"
                | "runtime::resource::state_update"
                | "runtime::resource::poll_op"
        )
    }
}

/// Field values of one span or event, taken without allocating except for strings that
/// a definition keeps.
#[derive(Default)]
pub(crate) struct Fields {
    pub(crate) name: String,
    pub(crate) spawn_kind: String,
    pub(crate) task_id: u64,
    pub(crate) file: String,
    pub(crate) line: u64,
    pub(crate) concrete: String,
    pub(crate) is_internal: bool,
    pub(crate) source: String,
    pub(crate) op: &'static str,
    pub(crate) locked: Option<bool>,
    pub(crate) write_locked: Option<bool>,
    pub(crate) readers_op: &'static str,
    pub(crate) permits_op: &'static str,
    pub(crate) ready: Option<bool>,
}

pub(crate) fn static_op(s: &str) -> &'static str {
    match s {
        "waker.clone" => "clone",
        "waker.drop" => "drop",
        "waker.wake" => "wake",
        "waker.wake_by_ref" => "wake_by_ref",
        "add" => "add",
        "sub" => "sub",
        "override" => "override",
        _ => "",
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "task.name" => self.name = format!("{value:?}"),
            "kind" => self.spawn_kind = format!("{value:?}"),
            "loc.file" => self.file = format!("{value:?}").trim_matches('"').to_owned(),
            "concrete_type" => self.concrete = format!("{value:?}").trim_matches('"').to_owned(),
            "source" => self.source = format!("{value:?}").trim_matches('"').to_owned(),
            "op" => self.op = static_op(format!("{value:?}").trim_matches('"')),
            _ => {}
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "task.name" => self.name = value.to_owned(),
            "kind" => self.spawn_kind = value.to_owned(),
            "loc.file" => self.file = value.to_owned(),
            "concrete_type" => self.concrete = value.to_owned(),
            "source" => self.source = value.to_owned(),
            "op" => self.op = static_op(value),
            "current_readers.op" => self.readers_op = static_op(value),
            "permits.op" => self.permits_op = static_op(value),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "task.id" => self.task_id = value,
            "loc.line" => self.line = value,
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if value >= 0 {
            self.record_u64(field, value as u64)
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        match field.name() {
            "is_internal" => self.is_internal = value,
            "locked" => self.locked = Some(value),
            "write_locked" => self.write_locked = Some(value),
            "is_ready" => self.ready = Some(value),
            _ => {}
        }
    }
}

pub(crate) fn leak_str(s: String) -> &'static str {
    // Locations are interned by address; a spawn place's file name is kept for the program.
    Box::leak(s.into_boxed_str())
}

/// Interned file names (tracing hands them over as borrowed strings).
pub(crate) static FILES: Mutex<Option<HashMap<String, &'static str>>> = Mutex::new(None);

pub(crate) fn location(a: &Agent, file: &str, line: u64) -> u32 {
    if file.is_empty() {
        return 0;
    }
    let f = {
        let mut g = lock(&FILES);
        let map = g.get_or_insert_with(HashMap::new);
        match map.get(file) {
            Some(f) => *f,
            None => {
                let f = leak_str(file.to_owned());
                map.insert(file.to_owned(), f);
                f
            }
        }
    };
    a.location_of(f, line as u32, "")
}

/// A place inside tokio's own runtime (where it spawns its workers), not the program's.
pub(crate) fn is_tokio_internal(file: &str) -> bool {
    file.contains("/src/runtime/") && (file.contains("/tokio-1.") || file.contains("/tokio/src/"))
}

pub(crate) fn async_reason(source: &str) -> i64 {
    let s = source.to_ascii_lowercase();
    if s.contains("read") {
        reason::ACQUIRE_SHARED
    } else if s.contains("lock") || s.contains("write") || s.contains("acquire") {
        reason::ACQUIRE
    } else if s.contains("recv") || s.contains("receiver") {
        reason::GET
    } else {
        reason::WAIT
    }
}
