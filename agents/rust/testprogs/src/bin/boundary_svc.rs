//! A hyper server behind willowisp::tower::WispLayer for the boundary tests. Each path
//! spawns a named worker task that takes a tokio mutex and sends on a recorded channel
//! (both created inside the handler), and waits for it:
//!
//!   /checkout  worker `checkout-worker`, then calls this server's /inner with reqwest
//!   /inner     worker `inner-worker`
//!   /other     worker `other-worker`
//!
//! Prints its port once it listens; the end of stdin ends it (the agent's guard is
//! dropped: the recording is stored).

use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use tower_layer::Layer;

type Reply = http::Response<Full<Bytes>>;

#[derive(Clone)]
struct Svc {
    port: u16,
    client: reqwest::Client,
}

async fn work(name: &str) -> u64 {
    let m = Arc::new(tokio::sync::Mutex::new(0u64));
    let (tx, mut rx) = willowisp::tokio::mpsc::channel::<u64>(1);
    let m2 = m.clone();
    tokio::task::Builder::new()
        .name(name)
        .spawn(async move {
            *m2.lock().await += 1;
            tx.send(7).await.unwrap();
        })
        .unwrap();
    let got = rx.recv().await.unwrap_or(0);
    let held = *m.lock().await;
    got + held
}

impl Svc {
    async fn answer(self, path: String) -> Reply {
        let body = match path.as_str() {
            "/checkout" => {
                let n = work("checkout-worker").await;
                let url = format!("http://127.0.0.1:{}/inner", self.port);
                let inner = match willowisp::reqwest::send(self.client.get(url)).await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                format!("checkout {n} {inner}")
            }
            "/inner" => format!("inner {}", work("inner-worker").await),
            "/other" => format!("other {}", work("other-worker").await),
            _ => String::new(),
        };
        http::Response::new(Full::new(Bytes::from(body)))
    }
}

impl tower_service::Service<http::Request<Incoming>> for Svc {
    type Response = Reply;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        let this = self.clone();
        let path = req.uri().path().to_string();
        Box::pin(async move { Ok(this.answer(path).await) })
    }
}

fn main() {
    let wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    println!("{port}");
    let svc = Svc {
        port,
        client: reqwest::Client::new(),
    };
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = willowisp::tower::WispLayer.layer(svc.clone());
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(service),
                );
            tokio::task::Builder::new()
                .name("connection")
                .spawn(async move {
                    let _ = conn.await;
                })
                .unwrap();
        }
    });
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(wisp);
    std::process::exit(0);
}
