//! Client-side propagation for `reqwest`: [`send`] injects `traceparent` (unless the
//! request already carries one, which is then used as is) and records the hop the way the
//! Python agent records `http.client`: one `rpc` resource per request (trace_id, the
//! span_id put on the wire, sampled, protocol http, library reqwest, method, target
//! without query values, peer host:port), `msg.send`, `unit.block` (reason rpc) and
//! `rpc.response` (the status, -1 on error). Inside a boundary instance the request
//! carries the boundary in `tracestate` (`wisp=b-<id>`, first member) and is recorded
//! whatever the sampling.
//!
//! ```ignore
//! # async fn f(client: reqwest::Client) -> reqwest::Result<()> {
//! let resp = willowisp::reqwest::send(client.get("http://127.0.0.1:8080/x")).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::panic::Location;

use crate::agent::agent;
use crate::context;
use crate::wtrace::{kind, reason, Value};

/// Sends the request built by `builder`, with the trace context on the wire.
#[track_caller]
pub fn send(
    builder: reqwest::RequestBuilder,
) -> impl Future<Output = reqwest::Result<reqwest::Response>> {
    let at = Location::caller();
    async move {
        let (client, req) = builder.build_split();
        let mut req = req?;
        let recorded = agent().and_then(|a| begin(a, &mut req, at));
        let result = client.execute(req).await;
        if let (Some((unit, res, loc)), Some(a)) = (recorded, agent()) {
            let status = match &result {
                Ok(r) => r.status().as_u16() as i64,
                Err(_) => -1,
            };
            a.emit(unit, kind::RPC_RESPONSE, res, status, loc);
        }
        result
    }
}

fn begin(
    a: &crate::Agent,
    req: &mut reqwest::Request,
    at: &'static Location<'static>,
) -> Option<(u32, u32, u32)> {
    let (ctx, unit) = context::inject(a, req.headers_mut())?;
    let url = req.url();
    let method = req.method().as_str().to_owned();
    let path = match url.query() {
        Some(q) => format!("{}?{}", url.path(), q),
        None => url.path().to_owned(),
    };
    let target = context::target(&path);
    let peer = format!(
        "{}:{}",
        url.host_str().unwrap_or("?"),
        url.port_or_known_default().unwrap_or(0)
    );
    let loc = a.location(at);
    let res = a.new_resource(vec![
        ("kind", Value::from("rpc")),
        ("name", Value::from(format!("{method} {target}"))),
        ("loc", Value::Int(loc as i64)),
        ("trace_id", Value::from(ctx.trace_id.as_str())),
        ("span_id", Value::from(ctx.span_id.as_str())),
        ("sampled", Value::Int(i64::from(ctx.sampled()))),
        ("protocol", Value::from("http")),
        ("library", Value::from("reqwest")),
        ("method", Value::from(method)),
        ("target", Value::from(target)),
        ("peer", Value::from(peer)),
    ]);
    a.emit(unit, kind::MSG_SEND, res, 0, loc);
    a.emit(unit, kind::UNIT_BLOCK, res, reason::RPC, loc);
    Some((unit, res, loc))
}
