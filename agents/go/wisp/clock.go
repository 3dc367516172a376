package wisp

// The process's monotonic clock, as docs/format.md wants it: CLOCK_MONOTONIC in
// nanoseconds, the clock the Python agent (time.monotonic_ns) and every other agent on the
// host read. Go's time.Now carries a monotonic reading relative to the process start, which
// no other process shares, so the agent reads the runtime's own clock (vDSO
// clock_gettime(CLOCK_MONOTONIC), ~20 ns). The execution tracer stamps its events with the
// same clock on Linux (in 64 ns ticks), which is what lets the tracer's events and the
// agent's own share one time line.

import (
	"time"
	_ "unsafe" // go:linkname
)

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// Monotonic is CLOCK_MONOTONIC in nanoseconds.
func Monotonic() int64 { return nanotime() }

// anchor reads the two clocks as close together as it can: the wall reading is taken
// between two monotonic ones and paired with their midpoint.
func anchor(offset int64) (mono, wall int64) {
	a := nanotime()
	w := time.Now().UnixNano()
	b := nanotime()
	return a + (b-a)/2, w + offset
}
