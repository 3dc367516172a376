//! tokio's watch and broadcast through the agent's wrappers, and a tokio mutex locked
//! with `lock_here()` (the call site on tokio's own lock events). Prints "ok".
//! `channels late-watcher`: a watch receiver that starts reading only after every send.

use std::sync::Arc;

use willowisp::tokio::{broadcast, watch, MutexExt, RwLockExt};

fn main() {
    let _wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::args().nth(1).as_deref() == Some("late-watcher") {
        rt.block_on(late_watcher());
        drop(rt);
        println!("ok");
        return;
    }
    rt.block_on(async {
        // watch: a consumer follows a producer's values up to 3
        let (tx, mut rx) = watch::channel(0u32);
        let consumer = tokio::task::Builder::new()
            .name("watcher")
            .spawn(async move {
                while *rx.borrow_and_update() < 3 {
                    rx.changed().await.unwrap();
                }
            })
            .unwrap();
        let producer = tokio::task::Builder::new()
            .name("producer")
            .spawn(async move {
                for v in 1..=3 {
                    tx.send(v).unwrap();
                    tokio::task::yield_now().await;
                }
                tx
            })
            .unwrap();
        consumer.await.unwrap();
        drop(producer.await.unwrap());

        // broadcast: two receivers each get all four messages
        let (btx, brx) = broadcast::channel::<u32>(8);
        let brx2 = btx.subscribe();
        let mut listeners = Vec::new();
        for (name, mut rx) in [("listener-a", brx), ("listener-b", brx2)] {
            listeners.push(
                tokio::task::Builder::new()
                    .name(name)
                    .spawn(async move {
                        let mut sum = 0;
                        for _ in 0..4 {
                            sum += rx.recv().await.unwrap();
                        }
                        sum
                    })
                    .unwrap(),
            );
        }
        for v in 1..=4 {
            btx.send(v).unwrap();
        }
        for l in listeners {
            assert_eq!(l.await.unwrap(), 10);
        }

        // call sites on tokio's own locks
        let shelf = Arc::new(tokio::sync::Mutex::new(0u32));
        let held = shelf.lock_here().await;
        let s2 = shelf.clone();
        let waiter = tokio::task::Builder::new()
            .name("waiter")
            .spawn(async move {
                *s2.lock_here().await += 1;
            })
            .unwrap();
        tokio::task::yield_now().await;
        drop(held);
        waiter.await.unwrap();
        let table = tokio::sync::RwLock::new(1u32);
        *table.write_here().await += *shelf.lock_here().await;
        assert_eq!(*table.read_here().await, 2);
    });
    drop(rt);
    println!("ok");
}

/// Every send is done (and its task ended) before the watcher starts: it never waits in
/// `changed()`, and follows the producer only through what `borrow_and_update` reads.
async fn late_watcher() {
    let (tx, mut rx) = watch::channel(0u32);
    let producer = tokio::task::Builder::new()
        .name("producer")
        .spawn(async move {
            for v in 1..=3 {
                tx.send(v).unwrap();
            }
            tx
        })
        .unwrap();
    let tx = producer.await.unwrap();
    let watcher = tokio::task::Builder::new()
        .name("watcher")
        .spawn(async move { *rx.borrow_and_update() })
        .unwrap();
    assert_eq!(watcher.await.unwrap(), 3);
    drop(tx);
}
