//! risk: the demo shop's Rust risk engine (willowisp.demo.shop starts it, on a simulated
//! host whose wall clock is off). A hyper server behind `willowisp::tower::WispLayer`:
//!
//!   /score?order=N  scores the order and writes the result on the record `account:42`,
//!                   declared to the agent with `willowisp::access` (seeded bug: the Java
//!                   ledger writes the same record, and nothing orders the two)
//!
//! Prints `PORT <n>` once it listens. The end is the end of stdin: the agent's guard is
//! dropped (the recording is stored) and the process exits.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use tower_layer::Layer;

type Reply = http::Response<Full<Bytes>>;

/// The account records the risk engine annotates. A std Mutex keeps the map itself sound;
/// what races is the record's meaning, shared with the ledger in another process.
#[derive(Clone, Default)]
struct Risk {
    flags: Arc<Mutex<HashMap<String, u32>>>,
}

impl Risk {
    fn answer(&self, path: &str, query: &str) -> Reply {
        let (status, body) = match path {
            "/score" => {
                let score = query.len() as u32 % 10;
                if let Ok(mut flags) = self.flags.lock() {
                    flags.insert("account:42".to_string(), score);
                }
                willowisp::access("account:42", true);
                (200, format!("risk:{score}"))
            }
            _ => (404, String::new()),
        };
        let mut reply = http::Response::new(Full::new(Bytes::from(body)));
        *reply.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        reply
    }
}

impl tower_service::Service<http::Request<Incoming>> for Risk {
    type Response = Reply;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        let reply = self.answer(req.uri().path(), req.uri().query().unwrap_or(""));
        Box::pin(async move { Ok(reply) })
    }
}

/// Puts the peer's address into the request's extensions, where the agent's layer reads it.
#[derive(Clone)]
struct WithPeer<S> {
    peer: SocketAddr,
    inner: S,
}

impl<S: tower_service::Service<http::Request<Incoming>>>
    tower_service::Service<http::Request<Incoming>> for WithPeer<S>
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, mut req: http::Request<Incoming>) -> S::Future {
        req.extensions_mut().insert(self.peer);
        self.inner.call(req)
    }
}

fn main() {
    let wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    println!(
        "PORT {}",
        listener.local_addr().expect("its address").port()
    );
    let risk = Risk::default();
    rt.spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let service = WithPeer {
                peer,
                inner: willowisp::tower::WispLayer.layer(risk.clone()),
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(service),
                );
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    // the orchestrator closes stdin to end this service
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(wisp);
    std::process::exit(0);
}
