//! gRPC propagation for tonic (feature `tonic`): the client side here, the server side in
//! [`crate::tower::WispLayer`], which recognises gRPC requests.
//!
//! ```ignore
//! // client: wrap the channel; generated clients take any such service
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect().await?;
//! let mut client = HealthClient::new(willowisp::tonic::WispGrpcClient::new(channel));
//! // server
//! tonic::transport::Server::builder().layer(willowisp::tower::WispLayer).add_service(svc)
//! ```
//!
//! gRPC metadata are HTTP/2 headers, so both sides work on `http::Request`s as tower
//! services, below tonic: the crate needs no tonic dependency (any tonic on `http` 1 fits)
//! and no protoc. A `tonic::service::Interceptor` would not do: it sees a request's
//! metadata, but neither the response nor its status.
//!
//! Client: the call continues the current unit's trace with a new span id and injects
//! `traceparent` (a context the program put in the metadata is used as is; inside a
//! boundary, `tracestate` carries `wisp=b-<id>`), and records one `rpc` resource as the
//! Python agent does for grpcio (protocol `grpc`, library `tonic`, method and target the
//! full method path, peer the channel's `host:port`), `msg.send`, `unit.block` (rpc) and
//! `rpc.response` with the gRPC status: from the response's headers when they carry it (a
//! trailers-only response), else from the trailers when the response body (wrapped in
//! [`crate::tower::WispBody`]) passes them — for a streaming call, when the stream ends;
//! -1 when the call failed without one, 1 (CANCELLED) when the program dropped the
//! response body before its end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::agent::agent;
use crate::context;
use crate::tower::{grpc_status, Pending, WispBody};
use crate::wtrace::{kind, reason, Value};

/// The layer form of [`WispGrpcClient`] (for `tower::ServiceBuilder`).
#[derive(Clone, Copy, Debug, Default)]
pub struct WispGrpcClientLayer;

impl<S> tower_layer::Layer<S> for WispGrpcClientLayer {
    type Service = WispGrpcClient<S>;
    fn layer(&self, inner: S) -> WispGrpcClient<S> {
        WispGrpcClient { inner }
    }
}

/// A gRPC channel (any tower service over `http::Request`) whose calls carry the trace.
#[derive(Clone, Debug)]
pub struct WispGrpcClient<S> {
    inner: S,
}

impl<S> WispGrpcClient<S> {
    pub fn new(inner: S) -> Self {
        WispGrpcClient { inner }
    }
}

/// Injects the context and records the call's start; (unit, resource) when recorded.
fn begin<B>(req: &mut http::Request<B>) -> Option<(u32, u32)> {
    let a = agent()?;
    let (ctx, unit) = context::inject(a, req.headers_mut())?;
    let path = req.uri().path().to_owned();
    let peer = req
        .uri()
        .authority()
        .map(|x| x.as_str().to_owned())
        .unwrap_or_default();
    let res = a.new_resource(vec![
        ("kind", Value::from("rpc")),
        ("name", Value::from(path.as_str())),
        ("trace_id", Value::from(ctx.trace_id.as_str())),
        ("span_id", Value::from(ctx.span_id.as_str())),
        ("sampled", Value::Int(i64::from(ctx.sampled()))),
        ("protocol", Value::from("grpc")),
        ("library", Value::from("tonic")),
        ("method", Value::from(path.as_str())),
        ("target", Value::from(path.as_str())),
        ("peer", Value::from(peer)),
    ]);
    a.emit(unit, kind::MSG_SEND, res, 0, 0);
    a.emit(unit, kind::UNIT_BLOCK, res, reason::RPC, 0);
    Some((unit, res))
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for WispGrpcClient<S>
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

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let recorded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| begin(&mut req)))
            .unwrap_or(None);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            let mut later = None;
            if let (Some((unit, res)), Some(a)) = (recorded, agent()) {
                let status = match &out {
                    Ok(r) => grpc_status(r.headers(), r.status().as_u16()),
                    Err(_) => Some(-1),
                };
                match status {
                    Some(s) => a.emit(unit, kind::RPC_RESPONSE, res, s, 0),
                    // the status comes in the trailers: written when the body passes them
                    None => {
                        later = Some(Pending {
                            unit,
                            res,
                            kind: kind::RPC_RESPONSE,
                        })
                    }
                }
            }
            out.map(|r| r.map(|body| WispBody::new(body, later)))
        })
    }
}
