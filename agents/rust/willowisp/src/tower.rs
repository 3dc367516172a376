//! Server-side propagation for hyper / axum (any tower `Service` over `http::Request`):
//! [`WispLayer`] extracts `traceparent`, records one server `rpc` resource per request the
//! way the Python agent records `http.server` (trace_id, its own span_id, parent_span_id
//! from the wire, sampled, protocol http, library tower, method, target without query
//! values, peer when a `SocketAddr` is in the request's extensions, headers: the
//! allowlisted request headers as JSON, propagation: w3c when a context came in) and writes `msg.recv`; the response writes
//! `rpc.reply` with its status. While the handler runs, the task handling the request
//! continues that context, so a `willowisp::reqwest::send` inside it joins the trace.
//!
//! gRPC: a request with `content-type: application/grpc*` (a tonic server's, through
//! `Server::builder().layer(WispLayer)`) is recorded the way the Python agent records a
//! grpcio server call: protocol `grpc`, library `tonic`, method and target the full
//! method path (`/pkg.Service/Method`), `rpc.reply` with the gRPC status (see
//! `grpc_status`).
//!
//! Boundaries: a request whose method and path match a declared boundary's entry, or
//! whose `tracestate` carries `wisp=b-<id>` of a boundary allowing `rust`, opens an
//! instance for the unit handling it until the reply (docs/agent-rust.md, Boundaries); it is
//! recorded whatever the sampling (`boundary=`, and `caller_sampled=0` when unsampled).
//!
//! ```ignore
//! let app = axum::Router::new().route("/", get(handler)).layer(willowisp::tower::WispLayer);
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::agent::agent;
use crate::boundary;
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

/// What `begin` recorded for one request: the handling unit, its `rpc` resource (0: not
/// recorded) and the boundary instance it opened (0: none).
#[derive(Clone, Copy)]
struct Begun {
    unit: u32,
    res: u32,
    mark: u32,
    grpc: bool,
}

fn begin<B>(req: &http::Request<B>) -> Option<Begun> {
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
    // gRPC (tonic, or any gRPC server on tower): the method is the full method path
    let grpc = is_grpc(req.headers());
    let (protocol, library) = if grpc {
        ("grpc", "tonic")
    } else {
        ("http", "tower")
    };
    let target = context::target(
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    let method = if grpc {
        target.clone()
    } else {
        req.method().as_str().to_owned()
    };
    // a boundary instance opens here unless the unit is inside one already
    let tracestate: Vec<&str> = req
        .headers()
        .get_all("tracestate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let tracestate = tracestate.join(",");
    // tracestate is not read at all without a valid traceparent (W3C)
    let member = if parent.is_some() {
        boundary::member_of(&tracestate)
    } else {
        ""
    };
    let mark = if a.units.get(unit) & crate::gate::MARK == 0 {
        a.boundaries
            .open(protocol, if grpc { "" } else { &method }, &target, member)
    } else {
        0
    };
    if mark != 0 {
        a.units.set_mark(unit, mark);
    }
    if flags & 1 == 0 && a.config.mode == "hops" && mark == 0 {
        return Some(Begun {
            unit,
            res: 0,
            mark,
            grpc,
        });
    }
    let has_parent = parent.is_some();
    let peer = req
        .extensions()
        .get::<SocketAddr>()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let mut attrs = vec![
        ("kind", Value::from("rpc")),
        (
            "name",
            Value::from(if grpc {
                target.clone()
            } else {
                format!("{method} {target}")
            }),
        ),
        ("trace_id", Value::from(trace_id)),
        ("span_id", Value::from(own)),
        (
            "parent_span_id",
            Value::from(parent.map(|p| p.span_id).unwrap_or_default()),
        ),
        ("sampled", Value::Int(i64::from(flags & 1))),
        ("protocol", Value::from(protocol)),
        ("library", Value::from(library)),
        ("method", Value::from(method)),
        ("target", Value::from(target)),
        ("peer", Value::from(peer)),
        ("headers", Value::from(headers_json(req.headers()))),
        (
            "propagation",
            Value::from(if has_parent { "w3c" } else { "" }),
        ),
    ];
    if let Some(b) = a.boundaries.get(mark) {
        attrs.push(("boundary", Value::from(b.entry.as_str())));
        if flags & 1 == 0 {
            attrs.push(("caller_sampled", Value::Int(0)));
        }
    }
    let res = a.new_resource(attrs);
    a.emit(unit, kind::MSG_RECV, res, 0, 0);
    Some(Begun {
        unit,
        res,
        mark,
        grpc,
    })
}

/// A gRPC request or response (`content-type: application/grpc`, `+proto`, ...).
pub(crate) fn is_grpc(h: &http::HeaderMap) -> bool {
    h.get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/grpc"))
}

/// The gRPC status a response carries in its headers: a trailers-only response (an
/// error, or a handler's status) has it there; `None` for a 200 without one (the status
/// comes in the trailers: see [`WispBody`]); -1 for any other HTTP status.
pub(crate) fn grpc_status(r: &http::HeaderMap, http_status: u16) -> Option<i64> {
    match r.get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some(s) => Some(s.trim().parse().unwrap_or(-1)),
        None if http_status == 200 => None,
        None => Some(-1),
    }
}

/// gRPC status CANCELLED: the body was dropped before its trailers came.
const CANCELLED: i64 = 1;

/// An event still to write when a gRPC response body's trailers come.
#[derive(Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) unit: u32,
    pub(crate) res: u32,
    /// `rpc.reply` (server) or `rpc.response` (client).
    pub(crate) kind: u8,
}

impl Pending {
    fn write(self, status: i64) {
        let _ = std::panic::catch_unwind(|| {
            if let Some(a) = agent() {
                a.emit(self.unit, self.kind, self.res, status, 0);
            }
        });
    }
}

/// The response body of [`WispService`] and of `WispGrpcClient`: the inner body, frame for
/// frame. For a gRPC response whose status was not in its headers it writes the
/// `rpc.reply` / `rpc.response` when the trailers go by, with their `grpc-status` (-1
/// when the body ends or fails without one; 1, CANCELLED, when it is dropped before its
/// end). Otherwise a plain pass-through.
pub struct WispBody<B> {
    inner: B,
    pending: Option<Pending>,
    ended: bool,
}

impl<B> WispBody<B> {
    pub(crate) fn new(inner: B, pending: Option<Pending>) -> Self {
        WispBody {
            inner,
            pending,
            ended: false,
        }
    }
}

impl<B: http_body::Body> http_body::Body for WispBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        // SAFETY: `inner` is structurally pinned: it is never moved out (Drop does not move
        // it either); the other fields are plain data, never pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        let out = inner.poll_frame(cx);
        if this.pending.is_some() {
            match &out {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(t) = frame.trailers_ref() {
                        let status = t
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .map_or(-1, |v| v.trim().parse().unwrap_or(-1));
                        if let Some(p) = this.pending.take() {
                            p.write(status);
                        }
                    }
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                    this.ended = true;
                    if let Some(p) = this.pending.take() {
                        p.write(-1);
                    }
                }
                Poll::Pending => {}
            }
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for WispBody<B> {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            // ended without trailers, or dropped before its end (the call was cancelled)
            p.write(if self.ended { -1 } else { CANCELLED });
        }
    }
}

impl<B> std::fmt::Debug for WispBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WispBody").finish_non_exhaustive()
    }
}

/// The reply's headers are out: `rpc.reply` (for a gRPC response whose status is in the
/// trailers, later: returned as the body's pending event), and the boundary instance (if
/// any) closes.
fn end<T, E>(a: &crate::Agent, b: Begun, out: &Result<http::Response<T>, E>) -> Option<Pending> {
    let mut later = None;
    if b.res != 0 {
        let status = match out {
            Ok(r) if b.grpc => grpc_status(r.headers(), r.status().as_u16()),
            Ok(r) => Some(r.status().as_u16() as i64),
            Err(_) if b.grpc => Some(-1),
            Err(_) => Some(500),
        };
        let unit = crate::current_unit();
        match status {
            Some(s) => a.emit(unit, kind::RPC_REPLY, b.res, s, 0),
            None => {
                later = Some(Pending {
                    unit,
                    res: b.res,
                    kind: kind::RPC_REPLY,
                })
            }
        }
    }
    if b.mark != 0 {
        a.units.set_mark(b.unit, 0);
        a.boundaries.close(b.mark);
    }
    context::set_for_unit(b.unit, None);
    later
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for WispService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: http_body::Body,
{
    type Response = http::Response<WispBody<RB>>;
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
            let mut later = None;
            if let (Some(b), Some(a)) = (recorded, agent()) {
                later = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| end(a, b, &out)))
                    .unwrap_or(None);
            }
            out.map(|r| r.map(|body| WispBody::new(body, later)))
        })
    }
}
