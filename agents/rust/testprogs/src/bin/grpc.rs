//! gRPC with tonic and tonic-health's prebuilt Health service (no protoc):
//!
//!   grpc server          serves Health behind willowisp::tower::WispLayer (on hyper's
//!                        HTTP/2), prints its
//!                        port, stops at the end of stdin
//!   grpc client PORT     calls Health/Check for "" (SERVING) and for "missing"
//!                        (NOT_FOUND) through willowisp::tonic::WispGrpcClient, prints
//!                        `serving 1` and `missing 5` (the gRPC status code)

use std::io::Read;

use hyper_util::rt::TokioExecutor;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower_layer::Layer;

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
                    let service = willowisp::tower::WispLayer.layer(health.clone());
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
        _ => panic!("usage: grpc server | grpc client PORT"),
    }
}
