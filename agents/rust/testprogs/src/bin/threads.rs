//! Two std threads take two recorded std mutexes (willowisp::sync::Mutex) in opposite
//! orders and deadlock. Prints "ready" once both hold their first lock; hangs until killed.

use std::io::Write;
use std::sync::{Arc, Barrier};

fn main() {
    let _wisp = willowisp::init();
    let stock = Arc::new(willowisp::sync::Mutex::new(0u32));
    let orders = Arc::new(willowisp::sync::Mutex::new(0u32));
    let both = Arc::new(Barrier::new(3));
    let (s, o, b) = (stock.clone(), orders.clone(), both.clone());
    let alpha = std::thread::Builder::new()
        .name("alpha".into())
        .spawn(move || {
            let mut x = s.lock().unwrap();
            b.wait();
            let mut y = o.lock().unwrap();
            *x += 1;
            *y += 1;
        })
        .unwrap();
    let (s, o, b) = (stock.clone(), orders.clone(), both.clone());
    let beta = std::thread::Builder::new()
        .name("beta".into())
        .spawn(move || {
            let mut y = o.lock().unwrap();
            b.wait();
            let mut x = s.lock().unwrap();
            *x += 1;
            *y += 1;
        })
        .unwrap();
    both.wait();
    println!("ready");
    std::io::stdout().flush().unwrap();
    alpha.join().unwrap();
    beta.join().unwrap();
}
