package wisp

// The recorder: one per process, between Start and Stop. It owns the segment file, the
// agent's own small event buffer, the definition records waiting to be written and the
// execution tracer's bytes waiting to be stored.
//
// Who writes what:
//   - the program's goroutines call into lock and HTTP wrappers, which only emit runtime/trace
//     user logs (the tracer attributes them to the goroutine) and, the first time a lock or a
//     request is seen, queue its definition record here (under mu);
//   - the runtime's trace writer goroutine hands the tracer's bytes to traceSink.Write, which
//     appends them here and writes a chunk itself when 4 MiB are waiting (bounded memory
//     without dropping tracer data, which a reader could not resynchronise after);
//   - the flusher goroutine writes a chunk every FlushEvery (≤ 100 ms) when anything waits,
//     and a clock anchor every second.
// Every chunk is one write(2), so a killed process leaves a file readable to its last chunk.
//
// Nothing here may reach the program: errors are counted as faults (fault records and
// agent.fault events), a full buffer counts drops (agent.drop), panics are recovered.
//
// Its parts, one file each:
//   - recorder.go: Start and Stop, the agent's own events and definition records (emit,
//     locations, faults) and the flusher's loop;
//   - tracer.go: starting and stopping the execution tracer, and traceSink, its writer;
//   - flush.go: what a flush writes: the chunks, the tracer's pieces, the stats record;
//   - segment.go: the segment files (opening, rotation) and the process record;
//   - fulldisk.go: chunks the file system refuses.

import (
	"fmt"
	"os"
	"runtime"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AgentVersion is written into the process record.
const AgentVersion = "0.1.0"

const (
	maxEvents   = 1 << 14 // the agent's own events waiting (anchors, faults, flushes)
	maxRecords  = 1 << 16 // definition records waiting; past it they are dropped and counted
	anchorEvery = int64(time.Second)
)

var active atomic.Pointer[recorder]

type recorder struct {
	cfg       Config
	processID string
	inherited TraceContext // from TRACEPARENT
	started   int64        // monotonic ns at Start

	nextRes   atomic.Uint32 // resource numbers, from 1
	nextLoc   atomic.Uint32 // location numbers, from 1
	dataCount atomic.Int64  // data names defined (bounded by maxDataNames)

	// wmu serialises flushes: it guards the file and what was written (f .. writeFailed).
	// A flush takes wmu, then mu only long enough to take what waits, and encodes,
	// compresses and writes with mu free, so the program's goroutines (defining a lock, a
	// request) and the tracer's writer never wait for a compression or a write(2).
	// Lock order: wmu before mu.
	// tmu serialises starting and stopping the execution tracer (Start, Stop, a segment's
	// rotation, a boundary switched in hops mode). Lock order: tmu, then wmu, then mu.
	tmu         sync.Mutex
	tracerOn    bool        // the tracer runs for this recorder (guarded by tmu)
	stopping    bool        // Stop began: the tracer is not started again (guarded by tmu)
	calibrated  bool        // cost_ns_per_event was measured (guarded by tmu)
	streamEpoch int         // the sink's epoch when the current tracer stream began (guarded by tmu)
	tracing     atomic.Bool // tracerOn, for the hot paths (locks, hops); hops read it under hopMu
	hopMu       sync.RWMutex

	ctl    *controlServer // the control channel, nil when off or not set up
	bounds boundaries     // declared boundaries (WILLOWISP_BOUNDARIES, ctl enable)
	gated  bool           // hops mode: only goroutines inside boundary instances are recorded (labels.go)

	wmu sync.Mutex
	// Invariant: out is nil only after close; segment counts from 1.
	out          sink // the segment's file, or the stream to a collector
	segment      int
	written      int64 // bytes in the current segment (rotation at cfg.SegmentBytes)
	wroteProcess bool  // the current segment has its process record
	seq          uint64
	closed       bool
	z            Compressor // reused between chunks
	pieceBuf     []byte     // the last framed tracer piece, reused
	chunkRecs    []Record   // the records of the last chunk flush wrote, reused (wmu)
	writeFailed  bool       // the last write failed (a full disk): one fault per failure run
	rotateFailed bool       // the next segment could not be opened: stay in this one
	path         string     // the current segment's file
	reserve      string     // the reserve file's path, "" when there is none (fulldisk.go)
	refusal      string     // why the file system first refused a chunk ("No space left on device")

	mu          sync.Mutex // guards everything below
	events      []Event
	records     []Record
	locs        map[string]uint32
	units       map[uint32]struct{} // goroutine units the agent defined itself (hopLog without the tracer)
	nEvents     int64               // own events recorded
	dropped     int64
	faults      int64
	lastAnchor  int64
	trace       []byte // tracer bytes not yet stored
	spare       []byte // the other buffer for them (see flush); nil while a flush writes it
	streamOpen  bool   // an embedded stream is open in the current file (more=1 written)
	streamNo    int    // the current stream's number
	streamFirst bool   // the current stream's first piece (its header) is not written yet
	costNS      int64  // one recorded event (a user log), measured at start

	// A full disk (fulldisk.go).
	unsaid       map[uint32]int64 // dropped events per unit not yet said in agent.drop events
	carry        []Record         // definitions of refused chunks, written with the next one
	lostOnWrite  int64            // events lost with refused chunks (the line at exit)
	traceWrites  int64            // the tracer's batches in r.trace (each holds events)
	genEnd       int              // r.trace[:genEnd] ends with a generation's end: whole generations
	genWrites    int64            // the batches in r.trace[:genEnd]
	streamBroken bool             // a piece of the open tracer stream was refused
	lostTrace    int64            // tracer bytes lost with refused pieces (the line at exit)
	restartAt    int64            // monotonic ns when a tracer stopped by a refusal starts again (0: none)
	restartWait  int64            // the next wait before such a restart (doubles, at most a minute)

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Start begins recording with cfg. It returns an error (and records nothing) when the run
// folder cannot be created or written, or when the agent already runs.
func Start(cfg Config) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("agent start failed: %v", p)
		}
	}()
	if err := cfg.validate(); err != nil {
		return err
	}
	if active.Load() != nil {
		return fmt.Errorf("already recording")
	}
	checkLabelsOnce()
	r := &recorder{
		cfg:       cfg,
		processID: randomHex(16),
		started:   nanotime(),
		seq:       1,
		locs:      map[string]uint32{},
		units:     map[uint32]struct{}{},
		unsaid:    map[uint32]int64{},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		gated:     cfg.Mode == "hops" && labelsUsable,
	}
	r.z.huffmanOnly = true
	if tc, ok := ParseTraceparent(cfg.Traceparent); ok {
		r.inherited = tc
	}
	if cfg.Collector == "" { // with a collector the folder is made only if it falls back
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return fmt.Errorf("cannot create %s: %v", cfg.Out, err)
		}
	}
	out, err := r.openSegment(1)
	if err != nil {
		return err
	}
	r.out = out
	r.mu.Lock()
	r.anchorLocked()
	r.mu.Unlock()
	if err = r.flush(false); err != nil {
		r.out.close()
		r.dropReserve()
		return fmt.Errorf("cannot write %s: %v", cfg.Out, err)
	}
	if !active.CompareAndSwap(nil, r) {
		r.out.close()
		r.dropReserve()
		return fmt.Errorf("already recording")
	}
	for _, spec := range strings.Split(cfg.Boundaries, "|") {
		if strings.TrimSpace(spec) == "" {
			continue
		}
		if b, err := ParseBoundary(spec, "WILLOWISP_BOUNDARIES"); err != nil {
			r.fault("boundaries", err)
		} else {
			r.bounds.add(b, "config")
		}
	}
	if cfg.Mode == "hops" && !labelsUsable {
		r.fault("boundaries", fmt.Errorf("cannot read goroutine labels on %s: hops mode records every goroutine while a boundary is on", runtime.Version()))
	}
	r.applyTracer()
	r.announceStart()
	r.startControl()
	go r.loop()
	if !cfg.NoSignals {
		watchSignals()
	}
	return nil
}

// Stop ends recording: the tracer's last bytes are stored, the stream closed, everything
// flushed and the file closed. Safe to call more than once, and with no agent running.
func Stop() {
	r := active.Load()
	if r == nil {
		return
	}
	r.once.Do(func() {
		defer func() { _ = recover() }()
		if r.ctl != nil {
			r.ctl.stop()
		}
		close(r.stop)
		<-r.done
		r.tmu.Lock()
		r.stopping = true
		if r.tracerOn {
			// Says which goroutine stopped the trace: it is not the program's to judge stuck.
			trace.Log(bg, logCategory, "stop")
			r.setTracing(false)
			trace.Stop() // returns after the last bytes went through traceSink.Write
			r.tracerOn = false
		}
		r.tmu.Unlock()
		active.CompareAndSwap(r, nil)
		r.mu.Lock()
		r.anchorLocked()
		r.mu.Unlock()
		_ = r.flush(true)
		r.wmu.Lock()
		r.closed = true
		out := r.out
		r.wmu.Unlock()
		out.close() // a stream says bye and waits (bounded) for the last acknowledgements
		r.wmu.Lock()
		r.dropReserve()
		r.wmu.Unlock()
		r.sayLost()
	})
}

// Running says whether the agent records.
func Running() bool { return active.Load() != nil }

// ProcessID is the running agent's process id (” when not recording).
func ProcessID() string {
	if r := active.Load(); r != nil {
		return r.processID
	}
	return ""
}

// announceStart writes proc.start on the starting goroutine when the process inherited a
// context through TRACEPARENT: the other end of the parent's proc.spawn.
func (r *recorder) announceStart() {
	if r.inherited.TraceID == "" {
		return
	}
	id := r.nextRes.Add(1)
	r.define(Record{Type: RecResource, ID: uint64(id), Attrs: []Attr{
		{"kind", "spawn"}, {"name", "start"}, {"trace_id", r.inherited.TraceID},
		{"parent_span_id", r.inherited.SpanID}, {"sampled", int64(r.inherited.Flags & 1)},
	}})
	r.hopLog(bg, 25, id, os.Getppid(), nil)
}

// logHere says whether the calling goroutine's lock and data events are written, and
// counts n of them for the boundary it works for. With boundaries in hops mode (gated) only
// goroutines working for an instance write them; elsewhere everyone does.
func (r *recorder) logHere(n int64) bool {
	if r.bounds.count.Load() == 0 {
		return true
	}
	if d := r.bounds.current(); d != nil {
		d.events.Add(n)
		return true
	}
	return !r.gated
}

// status is the control channel's status result.
func (r *recorder) status() map[string]any {
	r.wmu.Lock()
	segment := r.segment
	r.wmu.Unlock()
	r.mu.Lock()
	events, dropped, faults, cost := r.nEvents, r.dropped, r.faults, r.costNS
	r.mu.Unlock()
	return map[string]any{
		"pid": os.Getpid(), "process_id": r.processID, "service": r.cfg.Service, "runtime": "go",
		"mode": r.cfg.Mode, "events": events, "dropped": dropped, "faults": faults,
		"cost_ns_per_event": cost, "boundaries": r.bounds.status(cost), "gate": r.gated, "tracer": r.tracing.Load(),
		"segment": segment,
	}
}

func (r *recorder) loop() {
	defer close(r.done)
	t := time.NewTicker(r.cfg.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.tick()
		}
	}
}

func (r *recorder) tick() {
	defer func() {
		if p := recover(); p != nil {
			r.fault("flusher", fmt.Errorf("panic: %v", p))
		}
	}()
	r.mu.Lock()
	if nanotime()-r.lastAnchor >= anchorEvery {
		r.anchorLocked()
	}
	waiting := len(r.events) > 0 || len(r.records) > 0 || r.genEnd > 0
	r.mu.Unlock()
	if waiting {
		_ = r.flush(false)
	}
	r.wmu.Lock()
	full := r.written >= r.cfg.SegmentBytes && !r.rotateFailed
	epoch := r.out.epoch()
	r.wmu.Unlock()
	if full {
		r.rotate()
	} else {
		r.followDestination(epoch)
	}
	r.recoverTracer()
}

// emitLocked adds one of the agent's own events, or counts it dropped.
func (r *recorder) emitLocked(e Event) {
	if len(r.events) >= maxEvents {
		r.dropped++
		r.unsaid[e.Unit]++
		return
	}
	r.events = append(r.events, e)
	r.nEvents++
}

func (r *recorder) anchorLocked() {
	mono, wall := anchor(r.cfg.ClockOffsetNS)
	r.lastAnchor = mono
	r.emitLocked(Event{Kind: KindClockAnchor, Time: uint64(mono), Arg: wall})
}

// define queues a definition record (resource, location).
func (r *recorder) define(rec Record) {
	r.mu.Lock()
	if len(r.records) < maxRecords {
		r.records = append(r.records, rec)
	} else {
		r.dropped++
		r.unsaid[0]++
	}
	r.mu.Unlock()
}

// location is the number of a source place, defined once.
func (r *recorder) location(file string, line int, fn string) uint32 {
	key := file + ":" + strconv.Itoa(line)
	r.mu.Lock()
	id, ok := r.locs[key]
	if !ok && len(r.locs) < maxRecords {
		id = r.nextLoc.Add(1)
		r.locs[key] = id
		r.records = append(r.records, Record{Type: RecLocation, ID: uint64(id), Attrs: []Attr{
			{"file", file}, {"line", int64(line)}, {"func", fn},
		}})
	}
	r.mu.Unlock()
	return id
}

// callerLocation is the location of the program's code `skip` frames above its caller.
func (r *recorder) callerLocation(skip int) uint32 {
	pc, file, line, ok := runtime.Caller(skip + 1)
	if !ok {
		return 0
	}
	fn := ""
	if f := runtime.FuncForPC(pc); f != nil {
		fn = f.Name()
	}
	return r.location(file, line, fn)
}

// countFault counts a fault whose record the caller writes itself (the stream's fallback
// file); returns the record's id.
func (r *recorder) countFault(string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults++
	r.emitLocked(Event{Kind: KindAgentFault, Time: uint64(nanotime()), Arg: r.faults})
	return r.faults
}

// fault records an error inside the agent: a fault record and an agent.fault event.
func (r *recorder) fault(where string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faultLocked(where, err)
}

func (r *recorder) faultLocked(where string, err error) {
	r.faults++
	msg := strings.SplitN(err.Error(), "\n", 2)[0]
	if len(msg) > 500 {
		msg = msg[:500]
	}
	if len(r.records) < maxRecords {
		r.records = append(r.records, Record{Type: RecFault, ID: uint64(r.faults), Attrs: []Attr{
			{"message", msg}, {"where", where},
		}})
	}
	r.emitLocked(Event{Kind: KindAgentFault, Time: uint64(nanotime()), Arg: r.faults})
}
