//! Killed by a signal. `ticks`: records `tick` accesses one after another, printing
//! `tick N` after the N-th is recorded, until SIGTERM/SIGINT ends it (the agent's handler
//! stores the recording, then the signal's default action ends the process). `own`: the
//! program handles SIGTERM itself (tokio's signal module, installed after `init`): it
//! prints `graceful` and ends normally.

use std::io::Write;

fn main() {
    let _wisp = willowisp::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match std::env::args().nth(1).as_deref() {
        Some("own") => rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            println!("ready");
            term.recv().await;
            println!("graceful");
        }),
        _ => rt.block_on(async {
            let mut out = std::io::stdout();
            for n in 1u64.. {
                willowisp::access("tick", true);
                writeln!(out, "tick {n}").unwrap();
                out.flush().unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }),
    }
}
