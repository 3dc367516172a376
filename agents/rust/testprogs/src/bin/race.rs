//! Two threads write the same named data (willowisp::access) with nothing ordering them,
//! then two tasks do the same behind a tokio mutex (ordered: no race).

use std::sync::Arc;

fn main() {
    let _wisp = willowisp::init();
    let a = std::thread::Builder::new()
        .name("writer-a".into())
        .spawn(|| willowisp::access("cart:42", true))
        .unwrap();
    let b = std::thread::Builder::new()
        .name("writer-b".into())
        .spawn(|| willowisp::access("cart:42", true))
        .unwrap();
    a.join().unwrap();
    b.join().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = Arc::new(tokio::sync::Mutex::new(()));
        let mut hs = Vec::new();
        for _ in 0..2 {
            let m = m.clone();
            hs.push(tokio::spawn(async move {
                let _g = m.lock().await;
                willowisp::access("stock:7", true);
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
    });
    println!("done");
}
