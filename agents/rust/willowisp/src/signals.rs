//! SIGTERM and SIGINT: store the recording, then die of the signal as the program would
//! have.
//!
//! At start, for each of the two signals whose disposition is still the default (a program
//! that installed its own handler before `init` keeps it, untouched), the agent installs a
//! handler. A signal handler may interrupt a thread inside the agent's own critical
//! sections (a buffer's mutex), so the handler does nothing but write the signal's number
//! into a pipe (`write(2)` is async-signal-safe) and return. A watcher thread,
//! `willowisp-signal`, reads it, puts the default action back (a second signal now ends
//! the process at once), makes the clean stop without a completeness claim (the last
//! chunk, the process record again with `exit_signal`, the control socket removed), and
//! sends the signal again to the process: its exit status says it was killed by it. A
//! watchdog ends the process with the signal after 3 s even if the stop is stuck.
//!
//! A handler installed after `init` replaces this one; one that chains to the previous
//! handler (tokio's `signal` module does, through signal-hook-registry) calls it — the
//! handler then sees that it is no longer the installed one and does nothing, so the
//! program's own handling (a graceful shutdown) goes on undisturbed.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use crate::agent::Agent;

const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

/// The pipe's write end (-1 until installed): the only state the handler touches.
static PIPE_W: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: only async-signal-safe calls (sigaction, write, errno access) on plain data.
    unsafe {
        let saved = *libc::__errno_location();
        let mut cur: libc::sigaction = std::mem::zeroed();
        let ours = libc::sigaction(sig, std::ptr::null(), &mut cur) == 0
            && cur.sa_sigaction == handler_address();
        let fd = PIPE_W.load(Ordering::Relaxed);
        if ours && fd >= 0 {
            let b = sig as u8;
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
        *libc::__errno_location() = saved;
    }
}

fn handler_address() -> libc::sighandler_t {
    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t
}

/// Installs the handlers (for signals still at their default action) and the watcher.
pub(crate) fn install(a: &'static Agent) {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        a.fault("signals", "pipe2 failed: SIGTERM/SIGINT will not flush");
        return;
    }
    let (r, w) = (fds[0], fds[1]);
    let watcher = std::thread::Builder::new()
        .name("willowisp-signal".into())
        .spawn(move || watch(r));
    if let Err(e) = watcher {
        a.fault("signals", &e.to_string());
        // SAFETY: closing the descriptors pipe2 returned.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
        return;
    }
    PIPE_W.store(w, Ordering::Relaxed);
    for sig in SIGNALS {
        // SAFETY: sigaction with a zeroed struct to query, then a filled one to install.
        unsafe {
            let mut cur: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut cur) != 0
                || cur.sa_sigaction != libc::SIG_DFL
            {
                continue; // the program handles (or ignores) it: never ours to take
            }
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = handler_address();
            act.sa_flags = libc::SA_RESTART; // the program's system calls never see EINTR
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(sig, &act, std::ptr::null_mut()) != 0 {
                a.fault("signals", "sigaction failed");
            }
        }
    }
}

fn watch(r: libc::c_int) {
    let mut b = 0u8;
    loop {
        // SAFETY: reads one byte into b.
        let n = unsafe { libc::read(r, (&mut b as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
    let sig = libc::c_int::from(b);
    // SAFETY: restoring the default action of a signal this module installed.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
    let _ = std::thread::Builder::new()
        .name("willowisp-signal-watchdog".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            die(sig);
        });
    let _ = std::panic::catch_unwind(|| {
        if let Some(a) = crate::agent::agent() {
            a.finish_on_signal(sig);
        }
    });
    die(sig);
}

/// Sends `sig` (now at its default action) to the process and waits for the end.
fn die(sig: libc::c_int) -> ! {
    // SAFETY: plain system calls; the default action ends the process.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
    }
    std::thread::sleep(Duration::from_secs(1));
    // every thread blocks it, or the default action is not to end: end as a shell would
    // report it
    // SAFETY: ends the process without running destructors, which may be what hangs.
    unsafe { libc::_exit(128 + sig) }
}
