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
	maxEvents     = 1 << 14  // the agent's own events waiting (anchors, faults, flushes)
	maxRecords    = 1 << 16  // definition records waiting; past it they are dropped and counted
	tracePieceMax = 16 << 20 // bytes of one embedded piece (docs/format.md)
	traceFlushAt  = 4 << 20  // tracer bytes that make the writer flush by itself
	anchorEvery   = int64(time.Second)
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
	wmu sync.Mutex
	// Invariant: f is nil only after close; segment counts from 1.
	f            *os.File
	segment      int
	written      int64 // bytes in the current segment (for rotation, not done yet: docs/agent-go.md)
	wroteProcess bool  // the current segment has its process record
	seq          uint64
	closed       bool
	z            Compressor // reused between chunks
	writeFailed  bool       // the last write failed (a full disk): one fault per failure run

	mu         sync.Mutex // guards everything below
	events     []Event
	records    []Record
	locs       map[string]uint32
	nEvents    int64 // own events recorded
	dropped    int64
	faults     int64
	lastAnchor int64
	trace      []byte // tracer bytes not yet stored
	streamOpen bool   // an embedded stream is open in the current file (more=1 written)
	streamNo   int    // the current stream's number
	costNS     int64  // one recorded event (a user log), measured at start

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
	r := &recorder{
		cfg:       cfg,
		processID: randomHex(16),
		started:   nanotime(),
		seq:       1,
		locs:      map[string]uint32{},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if tc, ok := ParseTraceparent(cfg.Traceparent); ok {
		r.inherited = tc
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %v", cfg.Out, err)
	}
	if err := r.openSegment(1); err != nil {
		return err
	}
	r.mu.Lock()
	r.anchorLocked()
	r.mu.Unlock()
	if err = r.flush(false); err != nil {
		r.f.Close()
		return fmt.Errorf("cannot write %s: %v", cfg.Out, err)
	}
	if !active.CompareAndSwap(nil, r) {
		r.f.Close()
		return fmt.Errorf("already recording")
	}
	if !cfg.NoTracer {
		r.startTracer()
		r.announceStart()
		r.calibrate()
	}
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
		close(r.stop)
		<-r.done
		if r.streamOpen {
			// Says which goroutine stopped the trace: it is not the program's to judge stuck.
			trace.Log(bg, logCategory, "stop")
			trace.Stop() // returns after the last bytes went through traceSink.Write
		}
		active.CompareAndSwap(r, nil)
		r.mu.Lock()
		r.anchorLocked()
		r.mu.Unlock()
		_ = r.flush(true)
		r.wmu.Lock()
		r.closed = true
		_ = r.f.Close()
		r.wmu.Unlock()
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

func (r *recorder) openSegment(n int) error {
	name := fmt.Sprintf("%s-%d-%s-%d.wtrace", safeName(r.cfg.Service), os.Getpid(), r.processID[:8], n)
	f, err := os.OpenFile(filepath.Join(r.cfg.Out, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("cannot create a segment in %s: %v", r.cfg.Out, err)
	}
	if _, err := f.Write(FileHeader); err != nil {
		f.Close()
		return fmt.Errorf("cannot write %s: %v", f.Name(), err)
	}
	r.f, r.segment, r.written, r.wroteProcess = f, n, int64(len(FileHeader)), false
	return nil
}

// startTracer starts the runtime's execution tracer writing into the recorder. Another
// tracer already running (go test -trace, the program's own) is a fault, not an error:
// the agent then records only its own events.
func (r *recorder) startTracer() {
	r.mu.Lock()
	r.streamNo++
	header := fmt.Sprintf(`{"wisp":%q,"format":1,"process_id":%q,"stream":%d,"pid":%d}`+"\n",
		StreamFormat, r.processID, r.streamNo, os.Getpid())
	r.trace = append(r.trace[:0], header...)
	r.streamOpen = true
	r.mu.Unlock()
	if err := trace.Start(traceSink{r}); err != nil {
		r.mu.Lock()
		r.trace, r.streamOpen = r.trace[:0], false
		r.mu.Unlock()
		r.fault("trace.Start", err)
	}
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
	trace.Log(bg, logCategory, "25 "+strconv.FormatUint(uint64(id), 10)+" "+strconv.Itoa(os.Getppid()))
}

// calibrate measures what one recorded event costs the goroutine that records it: a
// runtime/trace user log, timed over a few hundred logs of category "wisp-calibrate"
// (which readers ignore) right after the tracer started. It is the figure the stats
// record reports as cost_ns_per_event; bench/bench_go_agent.py measures it properly.
func (r *recorder) calibrate() {
	const n = 256
	t0 := nanotime()
	for i := 0; i < n; i++ {
		trace.Log(bg, "wisp-calibrate", "0")
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
	r.trace = append(r.trace, p...)
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
	waiting := len(r.events) > 0 || len(r.records) > 0 || len(r.trace) > 0
	r.mu.Unlock()
	if waiting {
		_ = r.flush(false)
	}
}

// emitLocked adds one of the agent's own events, or counts it dropped.
func (r *recorder) emitLocked(e Event) {
	if len(r.events) >= maxEvents {
		r.dropped++
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

func (r *recorder) processRecord() Record {
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
		{"segment", int64(r.segment)},
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
		{"by_boundary", "{}"},
	}}
}

// flush writes everything waiting as chunks (one write each): tracer bytes beyond one
// piece in chunks of their own, then one chunk with the definitions, the last piece, the
// stats record and the agent's events. final closes the tracer's stream (more=0).
func (r *recorder) flush(final bool) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.f == nil || r.closed {
		return nil
	}
	r.mu.Lock()
	start := nanotime()
	var pieces [][]byte
	for len(r.trace) > tracePieceMax {
		pieces = append(pieces, r.trace[:tracePieceMax])
		r.trace = r.trace[tracePieceMax:]
	}
	var c Chunk
	if !r.wroteProcess {
		c.Records = append(c.Records, r.processRecord())
	}
	c.Records = append(c.Records, r.records...)
	if r.streamOpen && (len(r.trace) > 0 || final) {
		c.Records = append(c.Records, r.embedded(r.trace, !final))
	}
	stream := r.streamNo
	if final {
		r.streamOpen = false
	}
	if r.dropped > 0 {
		r.emitLocked(Event{Kind: KindAgentDrop, Time: uint64(start), Arg: r.dropped})
	}
	r.emitLocked(Event{Kind: KindAgentFlush, Time: uint64(start), Arg: int64(len(r.events) + 1)})
	c.Records = append(c.Records, r.statsRecord())
	c.FirstSeq, c.Events = r.seq, r.events
	r.seq += uint64(len(c.Events))
	// New buffers: the taken ones are written below, with mu free.
	r.events, r.records, r.trace = nil, nil, nil
	r.mu.Unlock()
	var failed error
	for _, p := range pieces {
		pc := Chunk{Records: []Record{{Type: RecEmbedded, ID: uint64(stream), Attrs: []Attr{
			{"format", StreamFormat}, {"data", p}, {"more", int64(1)},
		}}}}
		if err := r.write(&pc); err != nil {
			failed = err
		}
	}
	if err := r.write(&c); err != nil {
		return err
	}
	r.wroteProcess = true
	return failed
}

func (r *recorder) embedded(data []byte, more bool) Record {
	return Record{Type: RecEmbedded, ID: uint64(r.streamNo), Attrs: []Attr{
		{"format", StreamFormat}, {"data", data}, {"more", boolInt(more)},
	}}
}

// write encodes and writes one chunk (wmu held). A failed write (a full disk) drops the
// chunk's events, counted, and keeps the program going.
func (r *recorder) write(c *Chunk) error {
	b, err := r.z.Frame(c.Payload(), r.cfg.Codec)
	if err == nil {
		_, err = r.f.Write(b)
	}
	if err != nil {
		r.mu.Lock()
		r.dropped += int64(len(c.Events))
		if !r.writeFailed {
			r.faults++
		}
		r.mu.Unlock()
		r.writeFailed = true
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
