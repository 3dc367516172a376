//! A small program that must behave the same whatever WILLOWISP_* say: tasks, a tokio
//! mutex, a recorded std mutex, a channel, a Notify. Prints "sum N".
//!
//!   garbage [ROUNDS [PAUSE_MS]]   the same work ROUNDS times (default 1), PAUSE_MS apart
//!                                 (default 0): "sum 28*ROUNDS"; 500 rounds 1 ms apart make
//!                                 a trace of a few hundred KB in many chunks (the full-disk
//!                                 test)

use std::sync::Arc;

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let pause: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let _wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let total = Arc::new(willowisp::sync::Mutex::new(0u64));
    let t = total.clone();
    rt.block_on(async move {
        for _ in 0..rounds {
            round(&t).await;
            if pause > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
        }
    });
    drop(rt);
    println!("sum {}", *total.lock().unwrap());
}

async fn round(t: &willowisp::sync::Mutex<u64>) {
    {
        let m = Arc::new(tokio::sync::Mutex::new(0u64));
        let (tx, mut rx) = willowisp::tokio::mpsc::channel::<u64>(8);
        let mut handles = Vec::new();
        for i in 0..8u64 {
            let (m, tx) = (m.clone(), tx.clone());
            handles.push(tokio::spawn(async move {
                *m.lock().await += i;
                tx.send(i).await.unwrap();
            }));
        }
        drop(tx);
        while let Some(v) = rx.recv().await {
            *t.lock().unwrap() += v;
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*m.lock().await, 28);
        let bell = Arc::new(willowisp::tokio::Notify::new());
        let b = bell.clone();
        let waiter = tokio::spawn(async move { b.notified().await });
        bell.notify_one();
        waiter.await.unwrap();
    }
}
