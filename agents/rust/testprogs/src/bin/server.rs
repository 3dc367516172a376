//! An HTTP server on hyper with willowisp::tower::WispLayer: prints its port, answers
//! one request (GET anything -> 200 "hello from rust"), then exits.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use tower_layer::Layer;

#[derive(Clone)]
struct Hello;

impl tower_service::Service<http::Request<Incoming>> for Hello {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _req: http::Request<Incoming>) -> Self::Future {
        Box::pin(async {
            Ok(http::Response::new(Full::new(Bytes::from_static(
                b"hello from rust",
            ))))
        })
    }
}

/// Puts the peer's address into the request's extensions, where the layer looks for it.
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
    let _wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        let (stream, peer) = listener.accept().await.unwrap();
        let service = WithPeer {
            peer,
            inner: willowisp::tower::WispLayer.layer(Hello),
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(
                hyper_util::rt::TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            );
        let handle = tokio::task::Builder::new()
            .name("connection")
            .spawn(conn)
            .unwrap();
        handle.await.unwrap().unwrap();
    });
}
