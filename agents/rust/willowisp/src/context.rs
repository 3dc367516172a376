//! W3C trace context (`traceparent`): parsing, formatting, and the context each unit
//! continues when it makes a request.
//!
//! A server layer ([`crate::tower`]) sets the extracted context for the task handling the
//! request; a client wrapper ([`crate::reqwest`]) continues the current unit's context,
//! else the process's (`TRACEPARENT` from the parent process), else starts a trace whose
//! sampling is decided here, at its root, by `WILLOWISP_TRACE_RATIO`.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::agent::{agent, lock};

/// One trace context: 32-hex trace id, 16-hex span id, flags (bit 0: sampled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    pub span_id: String,
    pub flags: u8,
}

impl TraceContext {
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
    /// The `traceparent` header value.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a `traceparent` value; None when malformed or all-zero.
pub fn parse(value: &str) -> Option<TraceContext> {
    let mut parts = value.trim().split('-');
    let (v, t, s, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if !is_hex(v, 2) || v == "ff" || (v == "00" && parts.next().is_some()) {
        return None;
    }
    if !is_hex(t, 32) || !is_hex(s, 16) || !is_hex(f, 2) {
        return None;
    }
    if t.bytes().all(|b| b == b'0') || s.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(TraceContext {
        trace_id: t.to_owned(),
        span_id: s.to_owned(),
        flags: u8::from_str_radix(f, 16).ok()?,
    })
}

static CURRENT: Mutex<Option<HashMap<u32, TraceContext>>> = Mutex::new(None);

/// Sets (Some) or clears (None) the context unit `unit` continues.
pub fn set_for_unit(unit: u32, ctx: Option<TraceContext>) {
    let mut g = lock(&CURRENT);
    let map = g.get_or_insert_with(HashMap::new);
    match ctx {
        Some(c) => {
            map.insert(unit, c);
        }
        None => {
            map.remove(&unit);
        }
    }
}

/// The context the running unit continues, if any.
pub fn current() -> Option<TraceContext> {
    let unit = crate::current_unit();
    let inherited = lock(&CURRENT).as_ref().and_then(|m| m.get(&unit).cloned());
    inherited.or_else(|| agent().and_then(|a| parse(&a.config.traceparent)))
}

/// The context for a new outgoing request: the current trace with a new span id, or a
/// new trace sampled by the trace ratio.
pub fn outgoing() -> TraceContext {
    let Some(a) = agent() else {
        return TraceContext {
            trace_id: "0".repeat(31) + "1",
            span_id: "0".repeat(15) + "1",
            flags: 0,
        };
    };
    match current() {
        Some(c) => TraceContext {
            trace_id: c.trace_id,
            span_id: a.random_hex(8),
            flags: c.flags,
        },
        None => TraceContext {
            trace_id: a.random_hex(16),
            span_id: a.random_hex(8),
            flags: u8::from(a.random_unit() < a.config.trace_ratio),
        },
    }
}

/// A request target without query values (`/a?x=1&y=2` -> `/a?x=&y=`), at most 512 bytes.
pub fn target(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut out = if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        let keys: Vec<String> = q
            .split('&')
            .map(|kv| format!("{}=", kv.split('=').next().unwrap_or("")))
            .collect();
        out.push('?');
        out.push_str(&keys.join("&"));
    }
    out.chars().take(512).collect()
}

/// The client side of a hop on an `http` request's headers: the `traceparent` it already
/// carries (used as is) or a new one put on it; inside a boundary instance the boundary
/// goes into `tracestate` (`wisp=b-<id>`). Returns the context and the calling unit, or
/// None when the hop is not to be recorded (not sampled in `hops` mode, outside every
/// instance): the decision still travels in the header.
#[cfg(any(feature = "reqwest", feature = "tonic"))]
pub(crate) fn inject(
    a: &crate::Agent,
    headers: &mut http::HeaderMap,
) -> Option<(TraceContext, u32)> {
    let existing = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse);
    let ctx = match existing {
        Some(c) => c,
        None => {
            let c = outgoing();
            if let Ok(v) = http::HeaderValue::from_str(&c.header()) {
                headers.insert("traceparent", v);
            }
            c
        }
    };
    let unit = crate::current_unit();
    let inside = a.boundaries.get(a.units.get(unit) & crate::gate::MARK);
    if let Some(b) = &inside {
        let state = headers
            .get("tracestate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Ok(v) = http::HeaderValue::from_str(&crate::boundary::with_member(state, &b.id)) {
            headers.insert("tracestate", v);
        }
    }
    if !ctx.sampled() && a.config.mode == "hops" && inside.is_none() {
        return None;
    }
    Some((ctx, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_traceparent() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = parse(v).expect("valid");
        assert!(c.sampled());
        assert_eq!(c.header(), v);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-zz-yy-01",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn targets_drop_query_values() {
        assert_eq!(target("/a?x=1&y=2"), "/a?x=&y=");
        assert_eq!(target(""), "/");
        assert_eq!(target("/items/7"), "/items/7");
    }
}
