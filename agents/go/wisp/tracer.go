package wisp

// The execution tracer (runtime/trace) in the recorder. It runs while wantTracer says so:
// all the time in full mode, in hops mode only while a boundary is switched on. Each start
// opens a new embedded stream in the current destination (the next stream number, at most
// 127, its JSON header line first); the tracer is stopped and started again when a segment
// rotates (segment.go), when the stream's destination changes (followDestination) and
// after a refused piece (fulldisk.go). The runtime's trace writer goroutine hands the
// bytes to traceSink.Write; flush (flush.go) stores them as pieces. tmu serialises starting
// and stopping (lock order: tmu, then wmu, then mu).

import (
	"fmt"
	"os"
	"runtime/trace"
)

// StreamFormat is the embedded record format holding the raw execution trace.
const StreamFormat = "go-exectrace"

const (
	evEndOfGeneration = 52      // the runtime's in-band end of a generation (a Write of its own; Go 1.25+)
	traceFlushAt      = 4 << 20 // tracer bytes that make the writer flush by itself
)

// wantTracer: full mode runs the execution tracer all the time; hops mode only while a
// boundary is switched on (declared or enabled through ctl).
func (r *recorder) wantTracer() bool {
	return !r.cfg.NoTracer && (r.cfg.Mode == "full" || r.bounds.anyEnabled())
}

// applyTracer starts or stops the execution tracer as wantTracer says.
func (r *recorder) applyTracer() {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	if r.stopping {
		return
	}
	want := r.wantTracer()
	switch {
	case want && !r.tracerOn:
		r.startTracerLocked()
		if r.tracerOn && !r.calibrated {
			r.calibrated = true
			r.calibrate()
		}
	case !want && r.tracerOn:
		r.stopTracerLocked()
	}
}

// startTracerLocked starts the runtime's execution tracer writing into the recorder (tmu
// held). Another tracer already running (go test -trace, the program's own) is a fault,
// not an error: the agent then records only its own events.
func (r *recorder) startTracerLocked() {
	r.wmu.Lock()
	if r.out != nil {
		r.streamEpoch = r.out.epoch()
	}
	r.wmu.Unlock()
	if r.streamNo >= 127 { // the stream number's range (docs/agent-go.md)
		r.fault("trace.Start", fmt.Errorf("no stream numbers left: the tracer was started 127 times"))
		return
	}
	r.mu.Lock()
	r.streamNo++
	header := fmt.Sprintf(`{"wisp":%q,"format":1,"process_id":%q,"stream":%d,"pid":%d}`+"\n",
		StreamFormat, r.processID, r.streamNo, os.Getpid())
	r.trace = append(r.trace[:0], header...)
	r.traceWrites, r.genEnd, r.genWrites = 0, 0, 0
	r.streamOpen, r.streamFirst = true, true
	r.mu.Unlock()
	if err := trace.Start(traceSink{r}); err != nil {
		r.mu.Lock()
		r.trace, r.streamOpen = r.trace[:0], false
		r.mu.Unlock()
		r.fault("trace.Start", err)
		return
	}
	r.tracerOn = true
	// The first thing in the stream: whether wisp-goimport keeps only the goroutines that
	// work for a boundary instance (hops mode) or every goroutine.
	if r.gated {
		trace.Log(bg, "wisp-gate", "1")
	} else {
		trace.Log(bg, "wisp-gate", "0")
	}
	r.setTracing(true)
}

// stopTracerLocked stops the tracer and closes its stream in the current segment (tmu held).
func (r *recorder) stopTracerLocked() {
	r.setTracing(false) // hops go to the agent's own events from here on
	trace.Stop()        // the last bytes went through traceSink.Write when it returns
	r.tracerOn = false
	_ = r.flush(true)
}

// setTracing switches where hop events go. Under hopMu's write lock, so that no hop is
// logged into a tracer that is stopping (it would be lost) or counted twice.
func (r *recorder) setTracing(on bool) {
	r.hopMu.Lock()
	r.tracing.Store(on)
	r.hopMu.Unlock()
}

// switchBoundary is the control channel's enable / disable.
func (r *recorder) switchBoundary(arg string, on bool) (string, error) {
	name, err := r.bounds.switchTo(arg, on)
	if err == nil {
		r.applyTracer()
	}
	return name, err
}

// followDestination starts a new tracer stream when the stream's destination changed (the
// collector went away, or came back): each destination then holds streams from their start.
func (r *recorder) followDestination(epoch int) {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	if r.stopping || !r.tracerOn || epoch == r.streamEpoch {
		return
	}
	old := r.streamNo
	r.stopTracerLocked()
	r.wmu.Lock()
	lost := r.out.takeLost()
	r.wmu.Unlock()
	if lost > 0 {
		r.fault("stream", fmt.Errorf("execution trace stream %d: %d bytes the collector did not acknowledge are lost (its stream at the collector ends early); stream %d starts in the new destination", old, lost, old+1))
	}
	r.startTracerLocked()
}

// calibrate measures what one recorded event costs the goroutine that records it: a
// runtime/trace user log, timed over a few hundred logs of category "wisp-calibrate"
// (which readers ignore) right after the tracer started. It is the figure the stats
// record reports as cost_ns_per_event; bench/bench_go_agent.py measures it properly.
func (r *recorder) calibrate() {
	const n = 256
	t0 := nanotime()
	for i := 0; i < n; i++ {
		trace.Log(bg, "wisp-calibrate", "") // the shape of a lock's log (lock.go)
	}
	r.mu.Lock()
	r.costNS = (nanotime() - t0) / n
	r.mu.Unlock()
}

// traceSink is the execution tracer's writer.
type traceSink struct{ r *recorder }

func (s traceSink) Write(p []byte) (int, error) {
	r := s.r
	r.mu.Lock()
	if r.streamBroken { // the stream cannot be read past a refused piece: counted, not kept
		r.lostTraceLocked(int64(len(p)), 1)
		r.mu.Unlock()
		return len(p), nil
	}
	r.trace = append(r.trace, p...)
	r.traceWrites++
	if len(p) == 1 && p[0] == evEndOfGeneration {
		r.genEnd, r.genWrites = len(r.trace), r.traceWrites
	}
	full := len(r.trace) >= traceFlushAt
	r.mu.Unlock()
	if full {
		_ = r.flush(false)
	}
	return len(p), nil // never an error: the tracer would stop, and the program notice nothing anyway
}
