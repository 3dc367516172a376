//! A small program that must behave the same whatever WILLOWISP_* say: tasks, a tokio
//! mutex, a recorded std mutex, a channel, a Notify. Prints "sum N".

use std::sync::Arc;

fn main() {
    let _wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let total = Arc::new(willowisp::sync::Mutex::new(0u64));
    let t = total.clone();
    rt.block_on(async move {
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
    });
    drop(rt);
    println!("sum {}", *total.lock().unwrap());
}
