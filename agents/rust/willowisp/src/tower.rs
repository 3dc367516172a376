//! Server-side propagation for hyper / axum (any tower `Service` over `http::Request`):
//! [`WispLayer`] extracts `traceparent`, records one server `rpc` resource per request the
//! way the Python agent records `http.server` (trace_id, its own span_id, parent_span_id
//! from the wire, sampled, protocol http, library tower, method, target without query
//! values, peer when a `SocketAddr` is in the request's extensions, headers: the
//! allowlisted request headers as JSON, propagation: w3c when a context came in) and writes `msg.recv`; the response writes
//! `rpc.reply` with its status. While the handler runs, the task handling the request
//! continues that context, so a `willowisp::reqwest::send` inside it joins the trace.
//!
//! ```ignore
//! let app = axum::Router::new().route("/", get(handler)).layer(willowisp::tower::WispLayer);
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::agent::agent;
use crate::context::{self, TraceContext};
use crate::wtrace::{kind, Value};

/// The layer; add it to a router or service stack.
#[derive(Clone, Copy, Debug, Default)]
pub struct WispLayer;

impl<S> tower_layer::Layer<S> for WispLayer {
    type Service = WispService<S>;
    fn layer(&self, inner: S) -> WispService<S> {
        WispService { inner }
    }
}

/// The service [`WispLayer`] wraps around the inner one.
#[derive(Clone, Debug)]
pub struct WispService<S> {
    inner: S,
}

const ALLOWED: [&str; 7] = [
    "accept",
    "content-length",
    "content-type",
    "traceparent",
    "tracestate",
    "user-agent",
    "baggage",
];

fn headers_json(h: &http::HeaderMap) -> String {
    let mut kept: Vec<(String, String)> = Vec::new();
    for name in ALLOWED {
        let values: Vec<&str> = h
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !values.is_empty() {
            kept.push((
                name.to_owned(),
                values.join(", ").chars().take(512).collect(),
            ));
        }
    }
    kept.sort();
    let body: Vec<String> = kept
        .iter()
        .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
        .collect();
    format!("{{{}}}", body.join(","))
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn begin<B>(req: &http::Request<B>) -> Option<(u32, u32)> {
    let a = agent()?;
    let parent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(context::parse);
    let own = a.random_hex(8);
    let trace_id = parent
        .as_ref()
        .map(|p| p.trace_id.clone())
        .unwrap_or_else(|| a.random_hex(16));
    let flags = parent
        .as_ref()
        .map(|p| p.flags)
        .unwrap_or_else(|| u8::from(a.random_unit() < a.config.trace_ratio));
    let unit = crate::current_unit();
    context::set_for_unit(
        unit,
        Some(TraceContext {
            trace_id: trace_id.clone(),
            span_id: own.clone(),
            flags,
        }),
    );
    if flags & 1 == 0 && a.config.mode == "hops" {
        return Some((unit, 0));
    }
    let has_parent = parent.is_some();
    let method = req.method().as_str().to_owned();
    let target = context::target(
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    let peer = req
        .extensions()
        .get::<SocketAddr>()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let res = a.new_resource(vec![
        ("kind", Value::from("rpc")),
        ("name", Value::from(format!("{method} {target}"))),
        ("trace_id", Value::from(trace_id)),
        ("span_id", Value::from(own)),
        (
            "parent_span_id",
            Value::from(parent.map(|p| p.span_id).unwrap_or_default()),
        ),
        ("sampled", Value::Int(i64::from(flags & 1))),
        ("protocol", Value::from("http")),
        ("library", Value::from("tower")),
        ("method", Value::from(method)),
        ("target", Value::from(target)),
        ("peer", Value::from(peer)),
        ("headers", Value::from(headers_json(req.headers()))),
        (
            "propagation",
            Value::from(if has_parent { "w3c" } else { "" }),
        ),
    ]);
    a.emit(unit, kind::MSG_RECV, res, 0, 0);
    Some((unit, res))
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for WispService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let recorded = begin(&req);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            if let (Some((unit, res)), Some(a)) = (recorded, agent()) {
                if res != 0 {
                    let status = match &out {
                        Ok(r) => r.status().as_u16() as i64,
                        Err(_) => 500,
                    };
                    a.emit(crate::current_unit(), kind::RPC_REPLY, res, status, 0);
                }
                context::set_for_unit(unit, None);
            }
            out
        })
    }
}
