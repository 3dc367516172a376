//! The data-access and message APIs: what the program tells the agent that no hook sees.
//!
//! - [`access`]: one read or write of shared data the program names (`cart:42`): a `data`
//!   resource (store `api`, one per name) and a `data.access` event (0 read, 1 write),
//!   which the race analysis compares across units. Recorded in `full` mode and inside boundaries.
//! - [`message_send`] / [`message_receive`]: one message through a broker the agent does
//!   not hook: a `message` resource (protocol, library `api`, destination, message_id,
//!   trace context) and `msg.send` / `msg.recv`. The send returns the `traceparent` value
//!   to put into the message's headers; the receive takes the one that came with it (if
//!   any). The analyzer links the two by that span id, else by (protocol, destination,
//!   message_id).

use std::collections::HashMap;
use std::panic::Location;
use std::sync::Mutex;

use crate::agent::{agent, lock};
use crate::context;
use crate::wtrace::{kind, Value};

static DATA: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

/// Records one access to the shared data `name` (a write when `write`), here.
#[track_caller]
pub fn access(name: &str, write: bool) {
    let Some(a) = agent() else { return };
    if !a.admits_here() {
        return; // hops mode, outside every boundary
    }
    let name: String = name.chars().take(512).collect();
    let res = {
        let mut g = lock(&DATA);
        let map = g.get_or_insert_with(HashMap::new);
        match map.get(&name) {
            Some(r) => *r,
            None => {
                let r = a.new_resource(vec![
                    ("kind", Value::from("data")),
                    ("name", Value::from(name.as_str())),
                    ("store", Value::from("api")),
                    ("statement", Value::from("")),
                ]);
                map.insert(name, r);
                r
            }
        }
    };
    let loc = a.location(Location::caller());
    a.emit(
        crate::current_unit(),
        kind::DATA_ACCESS,
        res,
        i64::from(write),
        loc,
    );
}

/// Records a message sent to `destination` over `protocol`; returns the `traceparent`
/// to send with it (a new span of the current trace, or a new sampled-at-the-root trace).
#[track_caller]
pub fn message_send(protocol: &str, destination: &str, message_id: &str) -> String {
    let ctx = context::outgoing();
    if let Some(a) = agent() {
        if ctx.sampled() || a.config.mode != "hops" {
            let loc = a.location(Location::caller());
            let res = a.new_resource(vec![
                ("kind", Value::from("message")),
                ("name", Value::from(format!("{protocol} {destination}"))),
                ("protocol", Value::from(protocol)),
                ("library", Value::from("api")),
                ("destination", Value::from(destination)),
                ("message_id", Value::from(message_id)),
                ("trace_id", Value::from(ctx.trace_id.as_str())),
                ("span_id", Value::from(ctx.span_id.as_str())),
                ("sampled", Value::Int(i64::from(ctx.sampled()))),
            ]);
            a.emit(crate::current_unit(), kind::MSG_SEND, res, 0, loc);
        }
    }
    ctx.header()
}

/// Records a message received from `destination`, with the `traceparent` it carried.
#[track_caller]
pub fn message_receive(
    protocol: &str,
    destination: &str,
    message_id: &str,
    traceparent: Option<&str>,
) {
    let Some(a) = agent() else { return };
    let parent = traceparent.and_then(context::parse);
    let sampled = parent.as_ref().map(|p| p.sampled()).unwrap_or(true);
    if !sampled && a.config.mode == "hops" {
        return;
    }
    let loc = a.location(Location::caller());
    let res = a.new_resource(vec![
        ("kind", Value::from("message")),
        ("name", Value::from(format!("{protocol} {destination}"))),
        ("protocol", Value::from(protocol)),
        ("library", Value::from("api")),
        ("destination", Value::from(destination)),
        ("message_id", Value::from(message_id)),
        (
            "trace_id",
            Value::from(
                parent
                    .as_ref()
                    .map(|p| p.trace_id.clone())
                    .unwrap_or_default(),
            ),
        ),
        (
            "parent_span_id",
            Value::from(
                parent
                    .as_ref()
                    .map(|p| p.span_id.clone())
                    .unwrap_or_default(),
            ),
        ),
        ("span_id", Value::from(a.random_hex(8))),
        ("sampled", Value::Int(i64::from(sampled))),
    ]);
    a.emit(crate::current_unit(), kind::MSG_RECV, res, 0, loc);
}
