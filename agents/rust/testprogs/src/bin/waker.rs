//! Lost and kept wakers at a clean stop.
//!
//!   waker lost        a task awaits a future that returns Pending and drops its waker;
//!                     the guard is dropped inside the runtime (the #[tokio::main] order)
//!   waker lost-late   the same, the guard dropped after the runtime (tasks are dropped first)
//!   waker idle        tasks idle on a timer, a socket and a channel at the stop: no leak
//!   waker many        tasks that end between two block_on calls: no leak

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Returns Pending forever and keeps no waker: nothing can ever wake its task.
struct LostWaker {
    polled: Option<std::sync::mpsc::Sender<()>>,
}

impl Future for LostWaker {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if let Some(tx) = self.polled.take() {
            let _ = tx.send(());
        }
        Poll::Pending
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut early = Some(wisp);
    rt.block_on(async {
        if mode == "idle" {
            let t = tx.clone();
            tokio::task::Builder::new()
                .name("sleeper")
                .spawn(async move {
                    let _ = t.send(());
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                })
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let t = tx.clone();
            tokio::task::Builder::new()
                .name("acceptor")
                .spawn(async move {
                    let _ = t.send(());
                    let _ = listener.accept().await;
                })
                .unwrap();
            let (_keep, mut q) = willowisp::tokio::mpsc::channel::<u32>(4);
            let t = tx.clone();
            tokio::task::Builder::new()
                .name("consumer")
                .spawn(async move {
                    let _ = t.send(());
                    let _ = q.recv().await;
                })
                .unwrap();
            let all = tokio::task::spawn_blocking(move || (0..3).all(|_| rx.recv().is_ok()))
                .await
                .unwrap();
            assert!(all);
            drop(early.take());
            std::mem::forget(_keep);
        } else if mode != "many" {
            let t = tx.clone();
            tokio::task::Builder::new()
                .name("lost-waker")
                .spawn(async move {
                    LostWaker { polled: Some(t) }.await;
                })
                .unwrap();
            let done = tokio::task::spawn_blocking(move || rx.recv().is_ok())
                .await
                .unwrap();
            assert!(done);
            if mode == "lost" {
                drop(early.take());
            }
        }
    });
    if mode == "many" {
        // tasks that finish while no block_on runs, between two block_on calls
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for i in 0..16u64 {
            let d = done_tx.clone();
            rt.spawn(async move {
                tokio::task::yield_now().await;
                let _ = d.send(i);
            });
        }
        let all: u64 = (0..16).map(|_| done_rx.recv().unwrap()).sum();
        assert_eq!(all, 120);
        rt.block_on(async { tokio::task::yield_now().await });
    }
    drop(rt);
    drop(early);
    println!("done");
}
