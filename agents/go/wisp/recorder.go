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

import (
	"fmt"
	"os"
	"path/filepath"
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

// StreamFormat is the embedded record format holding the raw execution trace.
const StreamFormat = "go-exectrace"

const (
	evEndOfGeneration = 52       // the runtime's in-band end of a generation (a Write of its own; Go 1.25+)
	maxEvents         = 1 << 14  // the agent's own events waiting (anchors, faults, flushes)
	maxRecords        = 1 << 16  // definition records waiting; past it they are dropped and counted
	maxReusedRecords  = 1 << 12  // a list of records this long or shorter is reused by the next flush
	tracePieceMax     = 16 << 20 // bytes of one embedded piece (docs/format.md)
	traceFlushAt      = 4 << 20  // tracer bytes that make the writer flush by itself
	anchorEvery       = int64(time.Second)
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

// openSegment opens segment n (a file, or a stream connection to the collector) and makes
// it the one the next chunks describe (the caller installs the sink, wmu held or before
// the recorder is shared).
func (r *recorder) openSegment(n int) (sink, error) {
	name := fmt.Sprintf("%s-%d-%s-%d.wtrace", safeName(r.cfg.Service), os.Getpid(), r.processID[:8], n)
	path := filepath.Join(r.cfg.Out, name)
	r.segment, r.written, r.wroteProcess = n, int64(len(FileHeader)), false
	oldPath := r.path
	r.path = path
	if r.cfg.Collector != "" {
		hello := map[string]any{"process_id": r.processID, "service": cut(r.cfg.Service, 256),
			"pid": os.Getpid(), "runtime": "go", "segment": n}
		process := func() []byte { return r.processChunk(n) }
		return newStreamSink(r.cfg.Collector, r.cfg.Token, path, hello, process, r.countFault), nil
	}
	if n == 1 {
		r.makeReserve()
	}
	f, err := openFileSink(path)
	if err != nil {
		r.path = oldPath
		if n == 1 {
			r.dropReserve() // the agent stays off
		}
		return nil, err
	}
	return f, nil
}

// processChunk is a chunk holding only the process record (a stream's new destination
// starts with it).
func (r *recorder) processChunk(segment int) []byte {
	c := Chunk{Records: []Record{r.processRecord(segment)}}
	var z Compressor
	b, _ := z.Frame(c.Payload(), CodecNone)
	return b
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

// rotate closes the current segment and opens the next: the tracer is stopped (its stream
// closed in the old file) and started again with a new stream number in the new one.
func (r *recorder) rotate() {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	if r.stopping {
		return
	}
	tracing := r.tracerOn
	if tracing {
		r.stopTracerLocked()
	} else {
		_ = r.flush(false)
	}
	r.wmu.Lock()
	if r.closed {
		r.wmu.Unlock()
		return
	}
	old, oldSeg, oldWritten := r.out, r.segment, r.written
	next, err := r.openSegment(oldSeg + 1)
	if err != nil {
		r.segment, r.written, r.wroteProcess = oldSeg, oldWritten, true
		r.wmu.Unlock()
		r.fault("segment", err)
		r.rotateFailed = true
	} else {
		r.out = next
		r.wmu.Unlock()
		old.close()
	}
	if tracing {
		r.startTracerLocked()
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

func (r *recorder) processRecord(segment int) Record {
	host, _ := os.Hostname()
	rt := 0
	if r.cfg.RunPID != 0 && os.Getppid() == r.cfg.RunPID {
		rt = 1
	}
	return Record{Type: RecProcess, ID: 0, Attrs: []Attr{
		{"process_id", r.processID},
		{"pid", int64(os.Getpid())},
		{"ppid", int64(os.Getppid())},
		{"host", host},
		{"service", r.cfg.Service},
		{"runtime", "go"},
		{"runtime_version", strings.TrimPrefix(runtime.Version(), "go")},
		{"agent_version", AgentVersion},
		{"boot_id", readTrim("/proc/sys/kernel/random/boot_id")},
		{"time_ns", readLink("/proc/self/ns/time")},
		{"fake_time", ""},
		{"simulated_offset_ns", r.cfg.ClockOffsetNS},
		{"argv", argv()},
		{"traceparent", r.cfg.Traceparent},
		{"parent_process_id", os.Getenv("WILLOWISP_PARENT_PROCESS")},
		{"mode", r.cfg.Mode},
		{"boundaries", r.cfg.Boundaries},
		{"segment", int64(segment)},
		{"run_root", int64(rt)},
		{"go_tracer", boolInt(!r.cfg.NoTracer)},
	}}
}

func (r *recorder) statsRecord() Record {
	return Record{Type: RecStats, ID: 0, Attrs: []Attr{
		{"events", r.nEvents},
		{"dropped", r.dropped},
		{"faults", r.faults},
		{"cost_ns_per_event", r.costNS},
		{"by_boundary", r.bounds.byBoundaryJSON(r.costNS)},
	}}
}

// flush writes everything waiting as chunks (one write each): one chunk with the process
// record (first in a segment), the definitions, the stats record and the agent's events,
// then the tracer's bytes in chunks of their own (at most tracePieceMax each), so that the
// destination can tell a stream's pieces from the rest (stream.go). final closes the
// tracer's stream (more=0).
func (r *recorder) flush(final bool) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.out == nil || r.closed {
		return nil
	}
	r.mu.Lock()
	start := nanotime()
	var pieces []Record
	var infos []pieceInfo
	var pieceWrites int64 // the tracer's batches in pieces
	cut := -1             // r.trace[:cut] goes into pieces; -1: r.trace stays as it is
	if r.streamOpen && r.streamBroken {
		// A piece of this stream was refused: what follows it cannot be read.
		if len(r.trace) > 0 {
			r.lostTraceLocked(int64(len(r.trace)), r.traceWrites)
		}
		r.trace, r.traceWrites, r.genEnd, r.genWrites = r.trace[:0], 0, 0, 0
		cut = 0
		if final {
			r.streamOpen, r.streamBroken = false, false
		}
	} else if r.streamOpen && (r.genEnd > 0 || final || len(r.trace) >= traceFlushAt) {
		// Whole generations only (what follows the last one's end waits for the next
		// flush), so that a stream a refused piece ends is readable up to that piece; at
		// the end, or when 4 MiB wait (memory stays bounded), everything.
		cut = r.genEnd
		pieceWrites = r.genWrites
		if final || len(r.trace) >= traceFlushAt {
			cut, pieceWrites = len(r.trace), r.traceWrites
		}
		r.traceWrites -= pieceWrites
		r.genEnd, r.genWrites = 0, 0
		data := r.trace[:cut]
		for {
			n := min(len(data), tracePieceMax)
			last := n == len(data)
			pieces = append(pieces, r.embedded(data[:n], !(last && final)))
			infos = append(infos, pieceInfo{stream: r.streamNo, first: r.streamFirst, final: last && final})
			r.streamFirst = false
			data = data[n:]
			if last {
				break
			}
		}
	}
	var c Chunk
	c.Records = r.chunkRecs[:0] // reused between flushes (wmu held)
	if !r.wroteProcess {
		c.Records = append(c.Records, r.processRecord(r.segment))
	}
	c.Records = append(c.Records, r.carry...)
	c.Records = append(c.Records, r.records...)
	r.carry = nil
	// The definitions' list is reused (cleared: it keeps nothing alive) unless a burst made
	// it large.
	if cap(r.records) <= maxReusedRecords {
		clear(r.records)
		r.records = r.records[:0]
	} else {
		r.records = nil
	}
	if final {
		r.streamOpen = false
	}
	r.sayDropsLocked(start)
	r.emitLocked(Event{Kind: KindAgentFlush, Time: uint64(start), Arg: int64(len(r.events) + 1)})
	c.Records = append(c.Records, r.statsRecord())
	c.FirstSeq, c.Events = r.seq, r.events
	r.seq += uint64(len(c.Events))
	// New buffers: the taken ones are written below, with mu free. The tracer's bytes
	// alternate between two buffers (taken and spare), so that they make no garbage.
	r.events = nil
	var taken []byte
	if cut >= 0 {
		// What follows the last whole generation moves to the other buffer (usually a few
		// batches); when no piece is made, the buffer stays.
		taken = r.trace
		r.trace, r.spare = append(r.spare[:0], r.trace[cut:]...), nil
	}
	r.mu.Unlock()
	defer func() {
		if taken != nil && cap(taken) <= 2*traceFlushAt {
			r.mu.Lock()
			r.spare = taken[:0]
			r.mu.Unlock()
		}
	}()
	failed := r.write(&c, pieceInfo{})
	if cap(c.Records) <= maxReusedRecords {
		clear(c.Records)
		r.chunkRecs = c.Records[:0]
	}
	if failed == nil {
		r.wroteProcess = true
	}
	for i := range pieces {
		r.mu.Lock()
		broken := r.streamBroken
		r.mu.Unlock()
		data := pieces[i].Attrs[1].Value.([]byte)
		if broken { // an earlier piece of this flush was refused
			r.mu.Lock()
			r.lostTraceLocked(int64(len(data)), 0)
			r.mu.Unlock()
			continue
		}
		pc := Chunk{Records: pieces[i : i+1]}
		if err := r.write(&pc, infos[i]); err != nil {
			r.pieceRefused(infos[i], int64(len(data)), pieceWrites, err)
			r.refused(&pc, infos[i], err) // after the count: the news says it
			failed = err
		}
	}
	return failed
}

func (r *recorder) embedded(data []byte, more bool) Record {
	return Record{Type: RecEmbedded, ID: uint64(r.streamNo), Attrs: []Attr{
		{"format", StreamFormat}, {"data", data}, {"more", boolInt(more)},
	}}
}

// write encodes and writes one chunk (wmu held). A failed write (a full disk) drops the
// chunk's events, counted, and keeps the program going.
func (r *recorder) write(c *Chunk, piece pieceInfo) error {
	var b []byte
	var err error
	if piece.stream != 0 && !r.cfg.CompressTrace {
		// The tracer's bytes are stored as they are by default: deflating them took ~3 % of
		// the CPU of a goroutine-heavy service (bench/bench_go_agent.py), as much as the
		// tracer itself; they are varint-packed already (deflate: ~2.5x smaller). Framed
		// into a reused buffer with one copy: the sinks do not keep what they are given.
		rec := c.Records[0]
		r.pieceBuf = framePiece(r.pieceBuf, rec.ID, rec.Attrs[1].Value.([]byte), rec.Attrs[2].Value.(int64) == 1)
		b = r.pieceBuf
	} else {
		b, err = r.z.frameChunk(c, r.cfg.Codec)
	}
	if err == nil {
		err = r.out.write(b, piece)
	}
	if err != nil {
		if piece.stream == 0 { // a tracer piece's refusal is flush's to handle (pieceRefused)
			r.refused(c, piece, err)
		}
		return err
	}
	r.writeFailed = false
	r.written += int64(len(b))
	return nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readLink(path string) string {
	s, err := os.Readlink(path)
	if err != nil {
		return ""
	}
	return s
}

func argv() string {
	s := strings.Join(os.Args, " ")
	if len(s) > 4096 {
		s = s[:4096]
	}
	return s
}
