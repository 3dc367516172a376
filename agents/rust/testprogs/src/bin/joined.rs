//! A task spawns a worker that takes `inventory` then `ledger` (tokio mutexes); the
//! spawner then takes them the other way round. Whether that inversion can deadlock
//! depends on what orders the two:
//!
//! - `pending`: the spawner awaits the worker's `willowisp::tokio::JoinHandle` first (a
//!   current-thread runtime, so the worker has not run yet and the await waits): the
//!   worker ended before the spawner's locks, no deadlock is possible;
//! - `finished`: the same with a named task (`tokio::task::Builder`, its handle converted
//!   with `.into()`), on a multi-thread runtime, awaited only once it has finished (the
//!   handle is ready at its first poll);
//! - `signalled`: the worker sends on a oneshot once it let go of both locks and the
//!   spawner waits for that instead: another schedule (the send before the locks) can
//!   deadlock, so the inversion is real.
//!
//! The same with std threads (`willowisp::thread`) and `willowisp::sync::Mutex`:
//! `thread-before` (the main thread's reverse order comes before it spawns the worker),
//! `thread-joined` (after it joined it) and `thread-signalled` (after an mpsc message).
//!
//! Prints "done" at the end.

use std::sync::Arc;

use tokio::sync::Mutex;

type Locks = (Arc<Mutex<u32>>, Arc<Mutex<u32>>);

async fn inventory_then_ledger((inventory, ledger): Locks) {
    let mut i = inventory.lock().await;
    let mut l = ledger.lock().await;
    *i += 1;
    *l += 1;
}

async fn ledger_then_inventory((inventory, ledger): &Locks) {
    let mut l = ledger.lock().await;
    let mut i = inventory.lock().await;
    *i += 1;
    *l += 1;
}

type SyncLocks = Arc<(willowisp::sync::Mutex<u32>, willowisp::sync::Mutex<u32>)>;

fn sync_inventory_then_ledger(locks: &SyncLocks) {
    let mut i = locks.0.lock().unwrap();
    let mut l = locks.1.lock().unwrap();
    *i += 1;
    *l += 1;
}

fn sync_ledger_then_inventory(locks: &SyncLocks) {
    let mut l = locks.1.lock().unwrap();
    let mut i = locks.0.lock().unwrap();
    *i += 1;
    *l += 1;
}

fn threads(mode: &str) {
    let locks: SyncLocks = Arc::new((
        willowisp::sync::Mutex::new(0),
        willowisp::sync::Mutex::new(0),
    ));
    let theirs = locks.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    if mode == "thread-before" {
        sync_ledger_then_inventory(&locks);
    }
    let worker = willowisp::thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            sync_inventory_then_ledger(&theirs);
            tx.send(()).unwrap();
        })
        .unwrap();
    match mode {
        "thread-before" => worker.join().unwrap(),
        "thread-joined" => {
            worker.join().unwrap();
            sync_ledger_then_inventory(&locks);
        }
        "thread-signalled" => {
            rx.recv().unwrap();
            sync_ledger_then_inventory(&locks);
            worker.join().unwrap();
        }
        other => panic!("unknown mode {other:?}"),
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let _wisp = willowisp::init();
    if mode.starts_with("thread-") {
        threads(&mode);
        println!("done");
        return;
    }
    let rt = if mode == "pending" {
        tokio::runtime::Builder::new_current_thread().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
    }
    .unwrap();
    rt.block_on(async {
        let inventory = Arc::new(Mutex::new(0u32));
        let ledger = Arc::new(Mutex::new(0u32));
        let locks: Locks = (inventory, ledger);
        let theirs = (locks.0.clone(), locks.1.clone());
        match mode.as_str() {
            "pending" => {
                let worker = willowisp::tokio::spawn(inventory_then_ledger(theirs));
                worker.await.unwrap();
                ledger_then_inventory(&locks).await;
            }
            "finished" => {
                let worker: willowisp::tokio::JoinHandle<()> = tokio::task::Builder::new()
                    .name("worker")
                    .spawn(inventory_then_ledger(theirs))
                    .unwrap()
                    .into();
                while !worker.is_finished() {
                    tokio::task::yield_now().await; // polling a condition, not hoping
                }
                worker.await.unwrap();
                ledger_then_inventory(&locks).await;
            }
            "signalled" => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let worker = willowisp::tokio::spawn(async move {
                    inventory_then_ledger(theirs).await;
                    tx.send(()).unwrap();
                });
                rx.await.unwrap();
                ledger_then_inventory(&locks).await;
                worker.await.unwrap();
            }
            other => panic!("unknown mode {other:?}: pending, finished or signalled"),
        }
    });
    println!("done");
}
