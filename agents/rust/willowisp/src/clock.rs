//! The clocks every event is stamped with: CLOCK_MONOTONIC for events, CLOCK_REALTIME
//! for the anchors that map it to wall time (read in tight monotonic brackets so that
//! processes on one host agree within microseconds).

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}
extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

fn clock(id: i32) -> u64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two longs on 64-bit Linux) into ts.
    unsafe { clock_gettime(id, &mut ts) };
    (ts.sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.nsec as u64)
}

/// CLOCK_MONOTONIC in ns: the clock every Willowisp agent stamps events with.
#[inline]
pub fn now() -> u64 {
    clock(1)
}

pub(crate) fn wall() -> u64 {
    clock(0)
}

/// A (monotonic, wall) pair read back to back: the wall reading bracketed by two monotonic
/// ones, the tightest of three tries, so that anchors of processes on one host agree within
/// microseconds (the analyzer merges clocks whose anchors agree within 50 µs).
pub(crate) fn clock_pair() -> (u64, u64) {
    let mut best = (0u64, 0u64, u64::MAX);
    for _ in 0..3 {
        let before = now();
        let w = wall();
        let after = now();
        let width = after.saturating_sub(before);
        if width < best.2 {
            best = (before + width / 2, w, width);
        }
    }
    (best.0, best.1)
}
