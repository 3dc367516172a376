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
//!   deadlock, so the inversion is real;
//! - `joinset`: like `pending`, the worker in a `willowisp::tokio::JoinSet` and the
//!   spawner waiting in `join_next`; `joinset-plain`: the same with tokio's own `JoinSet`,
//!   whose join makes no edge (so the inversion is reported); `joinset-two`: the set also
//!   holds an idler spawned first, which finishes only once the spawner took its locks
//!   (a oneshot), so `join_next` returns the worker first and the idler next.
//!
//! The same with std threads (`willowisp::thread`) and `willowisp::sync::Mutex`:
//! `thread-before` (the main thread's reverse order comes before it spawns the worker),
//! `thread-joined` (after it joined it) and `thread-signalled` (after an mpsc message);
//! with scoped threads: `scope` (after `willowisp::thread::scope` returned, the worker
//! never joined explicitly; a thread-local of the worker's holds up its exit until then),
//! `scope-joined` (inside the scope, after joining the worker's
//! handle) and `scope-plain` (after std's own `thread::scope`: no edge, reported).
//!
//! Prints "done" at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Set by the main thread once `scope` returned.
static SCOPE_RETURNED: AtomicBool = AtomicBool::new(false);

/// A thread-local whose destructor takes its time, as one that flushes something at
/// thread exit would: it waits (up to 10 s) for the main thread to be past the scope.
/// std's scope does not wait for thread-local destructors, so the worker's end has to be
/// recorded before them for the scope's join to come after it.
struct SlowExit;

impl Drop for SlowExit {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !SCOPE_RETURNED.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

thread_local! {
    static SLOW_EXIT: SlowExit = const { SlowExit };
}

fn scoped(mode: &str) {
    let locks: SyncLocks = Arc::new((
        willowisp::sync::Mutex::new(0),
        willowisp::sync::Mutex::new(0),
    ));
    match mode {
        "scope" => {
            willowisp::thread::scope(|s| {
                s.spawn(|| {
                    SLOW_EXIT.with(|_| ()); // its destructor runs when the thread exits
                    sync_inventory_then_ledger(&locks);
                }); // joined by the scope's end
            });
            SCOPE_RETURNED.store(true, Ordering::Release);
        }
        "scope-joined" => willowisp::thread::scope(|s| {
            let worker = willowisp::thread::Builder::new()
                .name("worker".into())
                .spawn_scoped(s, || sync_inventory_then_ledger(&locks))
                .unwrap();
            worker.join().unwrap();
            sync_ledger_then_inventory(&locks);
        }),
        "scope-plain" => std::thread::scope(|s| {
            s.spawn(|| sync_inventory_then_ledger(&locks));
        }),
        other => panic!("unknown mode {other:?}"),
    }
    if mode != "scope-joined" {
        sync_ledger_then_inventory(&locks);
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
    if mode.starts_with("scope") {
        scoped(&mode);
        println!("done");
        return;
    }
    let current_thread = ["pending", "joinset", "joinset-plain", "joinset-two"];
    let rt = if current_thread.contains(&mode.as_str()) {
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
            "joinset" => {
                let mut set = willowisp::tokio::JoinSet::new();
                set.spawn(inventory_then_ledger(theirs));
                set.join_next().await.unwrap().unwrap();
                ledger_then_inventory(&locks).await;
            }
            "joinset-two" => {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let mut set = willowisp::tokio::JoinSet::new();
                set.spawn(async move { rx.await.unwrap() });
                set.spawn(inventory_then_ledger(theirs));
                set.join_next().await.unwrap().unwrap(); // only the worker can finish
                ledger_then_inventory(&locks).await;
                tx.send(()).unwrap();
                set.join_next().await.unwrap().unwrap();
            }
            "joinset-plain" => {
                let mut set = tokio::task::JoinSet::new();
                set.spawn(inventory_then_ledger(theirs));
                set.join_next().await.unwrap().unwrap();
                ledger_then_inventory(&locks).await;
            }
            other => panic!("unknown mode {other:?}"),
        }
    });
    println!("done");
}
