//! gRPC with tonic and tonic-health's prebuilt Health service (no protoc):
//!
//!   grpc server          serves Health behind willowisp::tower::WispLayer (on hyper's
//!                        HTTP/2), prints its
//!                        port, stops at the end of stdin
//!   grpc client PORT     calls Health/Check for "" (SERVING) and for "missing"
//!                        (NOT_FOUND) through willowisp::tonic::WispGrpcClient, prints
//!                        `serving 1` and `missing 5` (the gRPC status code)
//!   grpc trailers PORT   statuses that travel in trailers: Health/Watch (which this server
//!                        answers itself with one message, then trailers with status 13),
//!                        Health/Check with metadata `x-late` (answered with no message
//!                        and status 9 in the trailers) and Health/Check for "" (tonic's
//!                        answer: status 0 in the trailers), and tonic-health's own Watch
//!                        (metadata `x-real`; it never ends), dropped after its first
//!                        message; prints `watch 1 13`, `late 9`, `live 1`, `serving 1`

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Bytes, Frame, Incoming};

use hyper_util::rt::TokioExecutor;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower_layer::Layer;

/// A response body of fixed frames (data, then trailers).
struct Frames(VecDeque<Frame<Bytes>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(Ok))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// A gRPC response whose status travels in the trailers, after `messages`.
fn in_trailers(messages: &[&[u8]], status: u32) -> http::Response<tonic::body::Body> {
    let mut frames = VecDeque::new();
    for m in messages {
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(m.len() as u32).to_be_bytes());
        framed.extend_from_slice(m);
        frames.push_back(Frame::data(Bytes::from(framed)));
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", status.into());
    trailers.insert(
        "grpc-message",
        http::HeaderValue::from_static("failed-late"),
    );
    frames.push_back(Frame::trailers(trailers));
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(tonic::body::Body::new(Frames(frames)))
        .unwrap()
}

/// The Health service, except for Watch and for Check with `x-late`, answered here.
#[derive(Clone)]
struct Router<H> {
    health: H,
}

impl<H> tower_service::Service<http::Request<Incoming>> for Router<H>
where
    H: tower_service::Service<
            http::Request<Incoming>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    H::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.health.poll_ready(cx)
    }
    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        if req.uri().path() == "/grpc.health.v1.Health/Watch"
            && !req.headers().contains_key("x-real")
        {
            // HealthCheckResponse { status: SERVING }, then INTERNAL
            return Box::pin(async { Ok(in_trailers(&[&[0x08, 0x01]], 13)) });
        }
        if req.headers().contains_key("x-late") {
            return Box::pin(async { Ok(in_trailers(&[], 9)) });
        }
        Box::pin(self.health.call(req))
    }
}

fn main() {
    let wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("server") => {
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            println!("{}", listener.local_addr().unwrap().port());
            let (_reporter, health) =
                rt.block_on(async { tonic_health::server::health_reporter() });
            // tonic's generated server is a tower service: served here by hyper's HTTP/2
            // directly (tonic's own Server would bring its router and axum into the build)
            rt.spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let service = willowisp::tower::WispLayer.layer(Router {
                        health: health.clone(),
                    });
                    tokio::spawn(
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(
                                hyper_util::rt::TokioIo::new(stream),
                                hyper_util::service::TowerToHyperService::new(service),
                            ),
                    );
                }
            });
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
            drop(wisp);
            std::process::exit(0);
        }
        Some("client") => {
            let port: u16 = args[2].parse().unwrap();
            rt.block_on(async move {
                let channel =
                    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                        .unwrap()
                        .connect()
                        .await
                        .unwrap();
                let mut client = HealthClient::new(willowisp::tonic::WispGrpcClient::new(channel));
                let ok = client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .unwrap();
                println!("serving {}", ok.into_inner().status);
                let missing = client
                    .check(HealthCheckRequest {
                        service: "missing".into(),
                    })
                    .await
                    .unwrap_err();
                println!("missing {}", missing.code() as i32);
            });
            drop(rt);
            drop(wisp);
        }
        Some("trailers") => {
            let port: u16 = args[2].parse().unwrap();
            rt.block_on(async move {
                let channel =
                    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                        .unwrap()
                        .connect()
                        .await
                        .unwrap();
                let mut client = HealthClient::new(willowisp::tonic::WispGrpcClient::new(channel));
                let mut stream = client
                    .watch(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let first = stream.message().await.unwrap().unwrap();
                let failed = stream.message().await.unwrap_err();
                println!("watch {} {}", first.status, failed.code() as i32);
                drop(stream);
                let mut late = tonic::Request::new(HealthCheckRequest {
                    service: String::new(),
                });
                late.metadata_mut()
                    .insert("x-late", tonic::metadata::MetadataValue::from_static("1"));
                let late = client.check(late).await.unwrap_err();
                println!("late {}", late.code() as i32);
                let mut live = tonic::Request::new(HealthCheckRequest {
                    service: String::new(),
                });
                live.metadata_mut()
                    .insert("x-real", tonic::metadata::MetadataValue::from_static("1"));
                let mut stream = client.watch(live).await.unwrap().into_inner();
                let first = stream.message().await.unwrap().unwrap();
                drop(stream); // cancels the call
                println!("live {}", first.status);
                let ok = client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .unwrap();
                println!("serving {}", ok.into_inner().status);
            });
            drop(rt);
            drop(wisp);
        }
        _ => panic!("usage: grpc server | grpc client PORT | grpc trailers PORT"),
    }
}
