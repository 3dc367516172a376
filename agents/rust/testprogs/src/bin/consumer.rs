//! A message consumer for the boundary tests: one task takes "messages" (lines on stdin:
//! `DESTINATION TRACEPARENT TRACESTATE`, `-` for none), records each with
//! `willowisp::message_receive_with_state`, then handles it: a named worker task
//! (`worker-DESTINATION`) takes a tokio mutex and sends on a recorded channel (both made
//! in the handler), and the handler sends a message on with `willowisp::message_send`.
//! It answers each line with `DESTINATION TRACESTATE` (the tracestate its outgoing message
//! carries, `-` for none). The end of stdin ends it (the guard is dropped).

use std::io::{BufRead, Write};
use std::sync::Arc;

async fn handle(dest: &str) -> u64 {
    let m = Arc::new(tokio::sync::Mutex::new(0u64));
    let (tx, mut rx) = willowisp::tokio::mpsc::channel::<u64>(1);
    let m2 = m.clone();
    tokio::task::Builder::new()
        .name(&format!("worker-{dest}"))
        .spawn(async move {
            *m2.lock().await += 1;
            tx.send(7).await.unwrap();
        })
        .unwrap();
    let got = rx.recv().await.unwrap_or(0);
    let held = *m.lock().await;
    got + held
}

fn main() {
    let wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // a plain std thread reads stdin (the broker's connection) and hands lines over
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rt.block_on(async move {
        let consumer = tokio::task::Builder::new()
            .name("consumer")
            .spawn(async move {
                while let Some(line) = rx.recv().await {
                    let parts: Vec<&str> = line.split_whitespace().collect();
                    let field = |i: usize| parts.get(i).copied().filter(|s| *s != "-");
                    let dest = field(0).unwrap_or("none").to_owned();
                    willowisp::message_receive_with_state("amqp", &dest, "m-1", field(1), field(2));
                    let n = handle(&dest).await;
                    let _ = willowisp::message_send("amqp", "next", "m-2");
                    let state = willowisp::message_tracestate("vendor=1");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{dest} {n} {}", state.as_deref().unwrap_or("-"));
                    let _ = out.flush();
                }
            })
            .unwrap();
        let _ = consumer.await;
    });
    drop(rt);
    drop(wisp);
}
