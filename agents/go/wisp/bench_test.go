package wisp

// Benchmarks for bench/bench_go_agent.py (which runs them and prints the ratios):
//   - a lock operation (Lock+Unlock, uncontended) with sync.Mutex, with wisp.Mutex and no
//     recording, and with wisp.Mutex while recording (the execution tracer on);
//   - a goroutine-heavy service-like workload (per request: a goroutine, a channel
//     hand-off, a little work under a lock, a reply channel) with the agent off and on.

import (
	"io"
	"runtime/trace"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time: on a shared machine it moves much less
// with other work than wall time does, and it includes what the agent's own goroutines
// (the tracer's reader, the flusher's compression) take.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measureCPU reports cpu-ns/op for the loop that follows (call the result after it).
func measureCPU(b *testing.B) func() {
	t0 := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-t0)/float64(b.N), "cpu-ns/op") }
}

// benchStart starts the agent as `auto` would: deflated chunks, the tracer's bytes stored.
func benchStart(b *testing.B) { benchStartWith(b, false) }

// benchStartWith: compressTrace deflates the tracer's bytes too (WILLOWISP_GO_TRACE_CODEC).
func benchStartWith(b *testing.B, compressTrace bool) {
	b.Helper()
	cfg := Config{Out: b.TempDir(), Service: "bench", NoSignals: true, Codec: CodecDeflate,
		Control: "off", CompressTrace: compressTrace}
	if err := Start(cfg); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(Stop)
}

func BenchmarkLockSync(b *testing.B) {
	var m sync.Mutex
	done := measureCPU(b)
	for b.Loop() {
		m.Lock()
		m.Unlock() //nolint:staticcheck
	}
	done()
}

func BenchmarkLockWispIdle(b *testing.B) {
	var m Mutex
	done := measureCPU(b)
	for b.Loop() {
		m.Lock()
		m.Unlock() //nolint:staticcheck
	}
	done()
}

func BenchmarkLockWispRecording(b *testing.B) {
	benchStart(b)
	var m Mutex
	done := measureCPU(b)
	for b.Loop() {
		m.Lock()
		m.Unlock() //nolint:staticcheck
	}
	done()
}

// BenchmarkLockWispRecordingDeflated is the same with the tracer's bytes deflated too: the
// difference is what the flusher's compression takes from the program on a busy machine
// (the lock's own path is identical).
func BenchmarkLockWispRecordingDeflated(b *testing.B) {
	benchStartWith(b, true)
	var m Mutex
	done := measureCPU(b)
	for b.Loop() {
		m.Lock()
		m.Unlock() //nolint:staticcheck
	}
	done()
}

// BenchmarkTraceLog is one runtime/trace user log of the form a wrapped lock operation
// pays twice (acquired, release): the event in the category, no message (lock.go).
func BenchmarkTraceLog(b *testing.B) {
	benchStart(b)
	done := measureCPU(b)
	for b.Loop() {
		trace.Log(bg, "wisp 10 1 0", "")
	}
	done()
}

// BenchmarkTraceLogMessage is the classic form, category "wisp" and the event as the
// message, which the agent used before: the runtime writes every message out under a lock.
func BenchmarkTraceLogMessage(b *testing.B) {
	benchStart(b)
	done := measureCPU(b)
	for b.Loop() {
		trace.Log(bg, logCategory, "10 1 0")
	}
	done()
}

// workload serves n requests: each is a goroutine that takes a job from a channel, does a
// little hashing under a shared wisp.Mutex and replies on the request's own channel.
func workload(n, work int) {
	var mu Mutex
	jobs := make(chan chan uint64, 64)
	var wg sync.WaitGroup
	total := uint64(0)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for reply := range jobs {
				h := uint64(14695981039346656037)
				for i := 0; i < work; i++ {
					h = (h ^ uint64(i)) * 1099511628211
				}
				mu.Lock()
				total += h & 1
				mu.Unlock()
				reply <- h
			}
		}()
	}
	var clients sync.WaitGroup
	for i := 0; i < n; i++ {
		clients.Add(1)
		go func() {
			defer clients.Done()
			reply := make(chan uint64, 1)
			jobs <- reply
			<-reply
		}()
	}
	clients.Wait()
	close(jobs)
	wg.Wait()
}

// The service-like workload: ~20 µs of work per request (a small handler).
func BenchmarkServiceOff(b *testing.B) {
	done := measureCPU(b)
	for b.Loop() {
		workload(200, 20000)
	}
	done()
}

func BenchmarkServiceOn(b *testing.B) {
	benchStart(b)
	done := measureCPU(b)
	for b.Loop() {
		workload(200, 20000)
	}
	done()
	reportBytes(b)
}

// BenchmarkServiceOnDeflated: the same with the tracer's bytes deflated too, to show what
// that compression costs the program.
func BenchmarkServiceOnDeflated(b *testing.B) {
	benchStartWith(b, true)
	done := measureCPU(b)
	for b.Loop() {
		workload(200, 20000)
	}
	done()
	reportBytes(b)
}

// reportBytes reports the segment bytes written per operation so far (flushed first).
func reportBytes(b *testing.B) {
	r := active.Load()
	_ = r.flush(false)
	r.wmu.Lock()
	defer r.wmu.Unlock()
	b.ReportMetric(float64(r.written)/float64(b.N), "file-B/op")
}

// BenchmarkServiceTracerOnly: the runtime's execution tracer writing to io.Discard and no
// agent: the floor of any tracer-based recording, which the agent cannot go below.
func BenchmarkServiceTracerOnly(b *testing.B) {
	if err := trace.Start(io.Discard); err != nil {
		b.Fatal(err)
	}
	defer trace.Stop()
	done := measureCPU(b)
	for b.Loop() {
		workload(200, 20000)
	}
	done()
}

// The churn workload: ~2 µs of work per request, so goroutine creation, channel hand-offs
// and the lock dominate: the tracer's worst case.
func BenchmarkChurnOff(b *testing.B) {
	done := measureCPU(b)
	for b.Loop() {
		workload(1000, 2000)
	}
	done()
}

func BenchmarkChurnOn(b *testing.B) {
	benchStart(b)
	done := measureCPU(b)
	for b.Loop() {
		workload(1000, 2000)
	}
	done()
}

// BenchmarkServiceHopsOutside: hops mode with a boundary switched on (so the tracer runs)
// while no request of the workload is inside one of its instances: the goroutines' lock
// operations are not logged (one label read each), which is what requests outside every
// boundary cost in hops mode.
func BenchmarkServiceHopsOutside(b *testing.B) {
	cfg := Config{Out: b.TempDir(), Service: "bench", NoSignals: true, Codec: CodecDeflate,
		Control: "off", Mode: "hops", Boundaries: "entry=http:POST /elsewhere"}
	if err := Start(cfg); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(Stop)
	done := measureCPU(b)
	for b.Loop() {
		workload(200, 20000)
	}
	done()
}
