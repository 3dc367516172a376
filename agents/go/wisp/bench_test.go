package wisp

// Benchmarks for bench/bench_go_agent.py (which runs them and prints the ratios):
//   - a lock operation (Lock+Unlock, uncontended) with sync.Mutex, with wisp.Mutex and no
//     recording, and with wisp.Mutex while recording (the execution tracer on);
//   - a goroutine-heavy service-like workload (per request: a goroutine, a channel
//     hand-off, a little work under a lock, a reply channel) with the agent off and on.

import (
	"runtime/trace"
	"sync"
	"testing"
)

func benchStart(b *testing.B) {
	b.Helper()
	if err := Start(Config{Out: b.TempDir(), Service: "bench", NoSignals: true, Codec: CodecDeflate}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(Stop)
}

func BenchmarkLockSync(b *testing.B) {
	var m sync.Mutex
	for b.Loop() {
		m.Lock()
		m.Unlock() //nolint:staticcheck
	}
}

func BenchmarkLockWispIdle(b *testing.B) {
	var m Mutex
	for b.Loop() {
		m.Lock()
		m.Unlock() //nolint:staticcheck
	}
}

func BenchmarkLockWispRecording(b *testing.B) {
	benchStart(b)
	var m Mutex
	for b.Loop() {
		m.Lock()
		m.Unlock() //nolint:staticcheck
	}
}

// BenchmarkTraceLog is one runtime/trace user log while recording: the unit a wrapped
// lock operation pays twice (acquired, release).
func BenchmarkTraceLog(b *testing.B) {
	benchStart(b)
	for b.Loop() {
		trace.Log(bg, logCategory, "10 1 0")
	}
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
	for b.Loop() {
		workload(200, 20000)
	}
}

func BenchmarkServiceOn(b *testing.B) {
	benchStart(b)
	for b.Loop() {
		workload(200, 20000)
	}
}

// The churn workload: ~2 µs of work per request, so goroutine creation, channel hand-offs
// and the lock dominate: the tracer's worst case.
func BenchmarkChurnOff(b *testing.B) {
	for b.Loop() {
		workload(1000, 2000)
	}
}

func BenchmarkChurnOn(b *testing.B) {
	benchStart(b)
	for b.Loop() {
		workload(1000, 2000)
	}
}
