//! The Rust service of the JVM polyglot scenario (tests/scenarios/programs/polyglot_jvm):
//! a hyper server behind willowisp::tower::WispLayer whose paths share one
//! tokio::sync::Mutex `shelf` and call the Python orchestrator (argv[1] is its port) with
//! reqwest through willowisp::reqwest::send:
//!
//!   /step  lock shelf, call Python /leaf, answer `rust:<answer>` (healthy path)
//!   /d     lock shelf, print "rust-d-holding", call Python /e (deadlock's holder)
//!   /c     print "rust-c-waiting", wait for shelf (deadlock's waiter), answer
//!
//! Prints `PORT <n>` once it listens; the other stdout lines are the orchestrator's
//! signals. The end is the end of stdin: the agent's guard is dropped (the recording is
//! stored, the process record completed) and the process exits at once, whatever its
//! tasks are waiting for.

use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use tower_layer::Layer;

type Reply = http::Response<Full<Bytes>>;

#[derive(Clone)]
struct Shelf {
    shelf: Arc<tokio::sync::Mutex<()>>,
    client: reqwest::Client,
    python: u16,
}

impl Shelf {
    async fn call_python(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{}", self.python, path);
        match willowisp::reqwest::send(self.client.get(url)).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap_or_default())
            }
            Err(err) => (502, err.to_string()),
        }
    }

    async fn answer(self, path: String) -> Reply {
        let (status, body) = match path.as_str() {
            "/step" => {
                let _held = self.shelf.lock().await;
                let (status, body) = self.call_python("/leaf").await;
                (status, format!("rust:{body}"))
            }
            "/d" => {
                let _held = self.shelf.lock().await; // held across the call to /e
                println!("rust-d-holding");
                let (status, body) = self.call_python("/e").await;
                (status, format!("rust:{body}"))
            }
            "/c" => {
                println!("rust-c-waiting");
                let _held = self.shelf.lock().await;
                (200, "rust:c".to_string())
            }
            _ => (404, String::new()),
        };
        let mut reply = http::Response::new(Full::new(Bytes::from(body)));
        *reply.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        reply
    }
}

impl tower_service::Service<http::Request<Incoming>> for Shelf {
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
    let python: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: scenario_svc PYTHON_PORT");
    let wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    println!("PORT {}", listener.local_addr().unwrap().port());
    let shelf = Shelf {
        shelf: Arc::new(tokio::sync::Mutex::new(())),
        client: reqwest::Client::new(),
        python,
    };
    tokio::task::Builder::new()
        .name("accept")
        .spawn_on(
            async move {
                while let Ok((stream, peer)) = listener.accept().await {
                    let service = WithPeer {
                        peer,
                        inner: willowisp::tower::WispLayer.layer(shelf.clone()),
                    };
                    let conn = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(stream),
                            hyper_util::service::TowerToHyperService::new(service),
                        );
                    let _ = tokio::task::Builder::new()
                        .name("connection")
                        .spawn(async move {
                            let _ = conn.await;
                        });
                }
            },
            rt.handle(),
        )
        .unwrap();
    // the orchestrator closes stdin to end this service
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(wisp);
    std::process::exit(0);
}
