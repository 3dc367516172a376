//! Two tokio tasks take two tokio::sync::Mutexes in opposite orders and deadlock. Prints
//! "ready" once both hold their first lock; then hangs until killed.

use std::io::Write;
use std::sync::Arc;

fn main() {
    let _wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let accounts = Arc::new(tokio::sync::Mutex::new(0u64));
        let ledger = Arc::new(tokio::sync::Mutex::new(0u64));
        let both = Arc::new(tokio::sync::Barrier::new(3));
        let (a1, l1, b1) = (accounts.clone(), ledger.clone(), both.clone());
        let t1 = tokio::task::Builder::new()
            .name("transfer")
            .spawn(async move {
                let mut a = a1.lock().await;
                b1.wait().await;
                let mut l = l1.lock().await;
                *a += 1;
                *l += 1;
            })
            .unwrap();
        let (a2, l2, b2) = (accounts.clone(), ledger.clone(), both.clone());
        let t2 = tokio::task::Builder::new()
            .name("audit")
            .spawn(async move {
                let mut l = l2.lock().await;
                b2.wait().await;
                let mut a = a2.lock().await;
                *a += 1;
                *l += 1;
            })
            .unwrap();
        both.wait().await;
        println!("ready");
        std::io::stdout().flush().unwrap();
        let _ = t1.await;
        let _ = t2.await;
    });
}
