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
//! - Boundaries: a received message whose destination matches an enabled boundary's entry
//!   (`amqp:orders.*`), or whose `tracestate` carries `wisp=b-<id>` of one that allows
//!   `rust` ([`message_receive_with_state`]), opens an instance on the receiving unit,
//!   as an HTTP request does; it lasts until that unit receives its next message (the
//!   Python agent's rule). [`message_tracestate`] gives the `tracestate` to send with a
//!   message sent inside an instance.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::Mutex;

use crate::agent::{agent, lock};
use crate::context;
use crate::wtrace::{kind, Value};

static DATA: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);
/// Units inside a boundary instance that a received message opened: unit -> mark.
static BY_MESSAGE: Mutex<Option<HashMap<u32, u32>>> = Mutex::new(None);

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
        let inside = a.units.get(crate::current_unit()) & crate::gate::MARK != 0;
        if ctx.sampled() || a.config.mode != "hops" || inside {
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

/// The `tracestate` value to send with a message sent now: `existing` (the program's own
/// members, `""` if none) with `wisp=b-<id>` first when the running unit is inside a
/// boundary instance; `None` outside every instance (send `existing` as it is).
pub fn message_tracestate(existing: &str) -> Option<String> {
    let a = agent()?;
    std::panic::catch_unwind(|| {
        let mark = a.units.get(crate::current_unit()) & crate::gate::MARK;
        a.boundaries
            .get(mark)
            .map(|b| crate::boundary::with_member(existing, &b.id))
    })
    .ok()
    .flatten()
}

/// Records a message received from `destination`, with the `traceparent` it carried.
#[track_caller]
pub fn message_receive(
    protocol: &str,
    destination: &str,
    message_id: &str,
    traceparent: Option<&str>,
) {
    receive(
        protocol,
        destination,
        message_id,
        traceparent,
        None,
        Location::caller(),
    );
}

/// [`message_receive`] with the message's `tracestate` too: its `wisp=b-<id>` member (read
/// only with a valid `traceparent`, as W3C says) opens an instance of that boundary here.
#[track_caller]
pub fn message_receive_with_state(
    protocol: &str,
    destination: &str,
    message_id: &str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) {
    receive(
        protocol,
        destination,
        message_id,
        traceparent,
        tracestate,
        Location::caller(),
    );
}

/// Closes the instance the unit's previous message opened, and opens one if this message
/// starts (or carries) a boundary; returns its mark (0: none).
fn enter_message(
    a: &crate::Agent,
    unit: u32,
    protocol: &str,
    destination: &str,
    member: &str,
) -> u32 {
    if !a.boundaries.any.load(std::sync::atomic::Ordering::Relaxed) {
        return 0;
    }
    let mut g = lock(&BY_MESSAGE);
    let map = g.get_or_insert_with(HashMap::new);
    if let Some(prev) = map.remove(&unit) {
        a.units.set_mark(unit, 0);
        a.boundaries.close(prev);
    }
    if a.units.get(unit) & crate::gate::MARK != 0 {
        return 0; // inside an instance already (an HTTP request's, say)
    }
    let mark = a.boundaries.open(protocol, "", destination, member);
    if mark != 0 {
        a.units.set_mark(unit, mark);
        map.insert(unit, mark);
    }
    mark
}

fn receive(
    protocol: &str,
    destination: &str,
    message_id: &str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
    caller: &'static Location<'static>,
) {
    let Some(a) = agent() else { return };
    let _ = std::panic::catch_unwind(|| {
        receive_in(
            a,
            protocol,
            destination,
            message_id,
            traceparent,
            tracestate,
            caller,
        )
    });
}

fn receive_in(
    a: &crate::Agent,
    protocol: &str,
    destination: &str,
    message_id: &str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
    caller: &'static Location<'static>,
) {
    let parent = traceparent.and_then(context::parse);
    let member = match (&parent, tracestate) {
        (Some(_), Some(state)) => crate::boundary::member_of(state),
        _ => "",
    };
    let unit = crate::current_unit();
    let mark = enter_message(a, unit, protocol, destination, member);
    let caller_sampled = parent.as_ref().map(|p| p.sampled()).unwrap_or(true);
    // a declared boundary is recorded whatever the trace ratio
    let sampled = caller_sampled || mark != 0;
    if !sampled && a.config.mode == "hops" {
        return;
    }
    let loc = a.location(caller);
    let mut attrs = vec![
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
    ];
    if let Some(b) = a.boundaries.get(mark) {
        attrs.push(("boundary", Value::from(b.entry.as_str())));
        if !caller_sampled {
            attrs.push(("caller_sampled", Value::Int(0)));
        }
    }
    let res = a.new_resource(attrs);
    a.emit(unit, kind::MSG_RECV, res, 0, loc);
}
