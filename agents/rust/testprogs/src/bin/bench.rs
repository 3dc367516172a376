//! The Rust agent's benchmark workload (bench/bench_rust_agent.py runs it with and without
//! WILLOWISP_OUT and compares).
//!
//!   bench polls TASKS POLLS      tasks that only yield (one thread): the cost of one instrumented poll
//!   bench work TASKS POLLS US    tasks doing US microseconds of work per poll
//!
//! Prints one JSON line: wall ns, polls, events recorded, dropped.

use std::hint::black_box;
use std::time::{Duration, Instant};

fn spin(d: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        for i in 0..64u64 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    x
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_else(|| "polls".into());
    let tasks: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let polls: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let work_us: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
    let wisp = willowisp::init();
    // polls: one thread, so wall time is the hot path's CPU time (the flusher has the
    // other core); work: the multi-thread runtime a service would use
    let rt = if mode == "polls" {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let work = Duration::from_micros(work_us);
    let busy = mode == "work";
    let t0 = Instant::now();
    rt.block_on(async move {
        let mut handles = Vec::with_capacity(tasks as usize);
        for _ in 0..tasks {
            handles.push(tokio::spawn(async move {
                let mut acc = 0u64;
                for _ in 0..polls {
                    if busy {
                        acc = acc.wrapping_add(spin(work));
                    }
                    tokio::task::yield_now().await;
                }
                acc
            }));
        }
        for h in handles {
            black_box(h.await.unwrap());
        }
    });
    let wall = t0.elapsed().as_nanos();
    drop(rt);
    willowisp::flush();
    let (events, dropped) = willowisp::counters();
    drop(wisp);
    println!(
        "{{\"wall_ns\": {wall}, \"polls\": {}, \"events\": {events}, \"dropped\": {dropped}}}",
        tasks * (polls + 1)
    );
}
