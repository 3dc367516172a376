package main

// The conversion: one pass over the trace's events, one output line per event that matters.
//
// What the reader gives and what becomes of it (see docs/import-go.md for the lines):
//
//	goroutine NotExist -> Runnable/Waiting   "create"  (the event's goroutine and stack are the
//	                                                     creator's; the transition's stack is
//	                                                     the new goroutine's start)
//	goroutine Undetermined -> X              "exist"   (it was there before the trace began)
//	goroutine Running -> Waiting             "block"   (with the runtime's reason string)
//	goroutine Waiting -> Runnable            "unblock" (emitted on the unblocker: the event's
//	                                                     goroutine is the waker)
//	goroutine Runnable -> Running            "run";  Running -> Runnable  "stop"
//	goroutine X -> NotExist                  "end"
//	ranges "GC concurrent mark phase", "stop-the-world (...)"   "gc", "stw"
//	tasks, regions, logs                     "task", "region", "log"
//	sync events                              "sync" (with the clock snapshot when the trace
//	                                                 carries one: Go 1.25 and later)
//
// Everything else (procs, threads, syscalls, metrics, labels, CPU samples) is read and
// dropped: the analyses need who waited on what and who woke whom, not scheduling detail.
//
// Source places are interned: the first time a (function, file, line) is needed a "loc"
// line defines its number, and later lines refer to the number. The table is bounded by the
// program's code, not by the trace's length.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/exp/trace"
)

// StreamFormat is the version of the output; bump it when a line changes meaning.
const StreamFormat = 1

// maxStack is how many frames of a wait's stack are kept (from the top).
const maxStack = 8

// maxStacks bounds the stack table; past it, stacks are written inline.
const maxStacks = 1 << 16

// fatalError: nothing usable could be read (exit 2).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// partialError: the trace broke after some of it was streamed (exit 0, summary says so).
type partialError struct{ err error }

func (e *partialError) Error() string { return e.err.Error() }
func (e *partialError) Unwrap() error { return e.err }

type frameKey struct {
	fn, file string
	line     uint64
}

// gstate is what the converter knows about a live goroutine.
type gstate struct {
	fn    string // its entry function, when known
	state trace.GoState
	sys   bool // the runtime's or the tracer's own goroutine
	named bool // its entry function was written (on "create", "exist" or a "block")
}

type converter struct {
	w    *lineWriter
	locs map[frameKey]int // interned source places; Invariant: every id was written as a "loc" line
	gs   map[trace.GoID]*gstate
	// Invariant: gcOn/stwOn mirror the last begin/end written, so a range reported "active"
	// at a generation boundary is not begun twice.
	gcOn, stwOn bool
	events      int // trace events read
	syncs       int // sync events read; one starts each generation and one ends the trace
	seen        int // goroutines met
	clockPairs  int
	lines       map[string]int
	frames      []int // scratch for stacks
	key         []byte
	// Interned stacks (their frames' loc numbers) -> stack number; bounded by maxStacks.
	// Invariant: every id was written as a "stack" line.
	stacks map[string]int
	// The place of an agent event's stack (callerFrame), for the current generation; a
	// lock's and a hop's places are read by different rules (a stack is one or the other).
	callers map[callerKey]int

	// Boundaries (docs/agent-go.md "Boundaries"): the Go agent's first log in a stream,
	// "wisp-gate", says whether the stream keeps every goroutine (0) or only those working
	// for a boundary instance (1, hops mode). Until it is seen, events wait in pending.
	gate    int // 0 not known yet, 1 gated, -1 every goroutine
	pending []trace.Event
	// Gated: the goroutines inside an instance: the depth of their "wisp-in" logs, or 1 for
	// life for a goroutine created by one inside (it inherits the instance's label).
	in    map[trace.GoID]int
	shown map[trace.GoID]bool // gated: goroutines the output has introduced
}

// maxPending bounds the events kept while waiting for the "wisp-gate" log (a trace that
// is not the agent's has none): past it, every goroutine is kept.
const maxPending = 1 << 16

// convert streams the trace read from r as JSON Lines to w; the summary's counts are
// returned for tests. Errors are *fatalError or *partialError.
func convert(r io.Reader, out *bufio.Writer) (map[string]int, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	version, err := readVersion(br)
	if err != nil {
		return nil, &fatalError{err}
	}
	tr, err := trace.NewReader(br)
	if err != nil {
		return nil, &fatalError{fmt.Errorf("not a Go execution trace: %v", err)}
	}
	c := &converter{
		w:       &lineWriter{w: out},
		locs:    map[frameKey]int{},
		gs:      map[trace.GoID]*gstate{},
		lines:   map[string]int{},
		stacks:  map[string]int{},
		callers: map[callerKey]int{},
		in:      map[trace.GoID]int{},
		shown:   map[trace.GoID]bool{},
	}
	c.header(version)
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			c.settle()
			if c.syncs < 2 {
				// Not even one whole generation: nothing trustworthy to hand on.
				return nil, &fatalError{fmt.Errorf("not a readable Go execution trace (cut or damaged in its first part): %v", err)}
			}
			c.summary(err)
			return c.lines, &partialError{fmt.Errorf("trace broken after %d events: %v", c.events, err)}
		}
		c.events++
		c.feed(ev)
	}
	c.settle()
	if c.syncs == 0 {
		return nil, &fatalError{errors.New("the trace holds no events (empty or cut before its first generation)")}
	}
	c.summary(nil)
	return c.lines, nil
}

// readVersion checks the 16-byte header "go 1.NN trace\x00\x00\x00" without consuming it.
func readVersion(br *bufio.Reader) (string, error) {
	head, _ := br.Peek(16)
	if len(head) < 16 || !strings.HasPrefix(string(head), "go 1.") || !strings.HasSuffix(string(head), " trace\x00\x00\x00") {
		return "", errors.New(`not a Go execution trace (it does not start with "go 1.NN trace")`)
	}
	minor := strings.TrimSuffix(strings.TrimPrefix(string(head), "go 1."), " trace\x00\x00\x00")
	if _, err := strconv.Atoi(minor); err != nil {
		return "", fmt.Errorf("not a Go execution trace (bad version %q)", minor)
	}
	return "1." + minor, nil
}

func (c *converter) header(version string) {
	w := c.w.begin("header")
	w.int("format", StreamFormat).str("go", version).str("producer", "wisp-goimport")
	c.end(w, "header")
}

func (c *converter) end(w *lineWriter, kind string) {
	w.finish()
	c.lines[kind]++
}

// feed hands an event on once the gate is known (see converter.gate).
func (c *converter) feed(ev trace.Event) {
	if c.gate != 0 {
		c.event(ev)
		return
	}
	if ev.Kind() == trace.EventLog && ev.Log().Category == "wisp-gate" {
		c.gate = -1
		if ev.Log().Message == "1" {
			c.gate = 1
		}
		c.settle()
		return
	}
	c.pending = append(c.pending, ev)
	if len(c.pending) >= maxPending {
		c.settle()
	}
}

// settle hands on the waiting events (keeping every goroutine if the gate is still not known).
func (c *converter) settle() {
	if c.gate == 0 {
		c.gate = -1
	}
	pending := c.pending
	c.pending = nil
	for _, ev := range pending {
		c.event(ev)
	}
}

// inside says whether a goroutine's events are written: always, unless gated.
func (c *converter) inside(g trace.GoID) bool {
	return c.gate != 1 || c.in[g] > 0
}

// enter: gated, goroutine g begins to work for an instance; the first time the output
// meets it, an "exist" line names it (when its function is known; otherwise the decoder
// names it from its first wait, or by number).
func (c *converter) enter(g trace.GoID, t int64) {
	if c.gate != 1 || g == trace.NoGoroutine {
		return
	}
	c.in[g]++
	if c.in[g] != 1 || c.shown[g] {
		return
	}
	c.shown[g] = true
	gs := c.gs[g]
	if gs == nil || gs.fn == "" {
		return
	}
	gs.named = true
	w := c.w.begin("exist")
	w.int("time", t).int("g", int64(g)).str("fn", gs.fn).str("state", stateWord(trace.GoRunning))
	if gs.sys {
		w.boolean("sys", true)
	}
	c.end(w, "exist")
}

func (c *converter) leave(g trace.GoID) {
	if c.in[g] > 1 {
		c.in[g]--
	} else {
		delete(c.in, g)
	}
}

// lockOrData says whether an agent event ("<kind> <resource> <arg>") is a lock or data
// event, which the agent writes in hops mode only on goroutines inside an instance (so one
// met on a goroutine not known inside shows it is: its instance began before the stream).
// Hop events are written for every goroutine and kept.
func lockOrData(msg string) bool {
	// (called for every agent log: no allocation)
	kind, rest, ok := strings.Cut(strings.TrimLeft(msg, " "), " ")
	if !ok {
		return false
	}
	_, arg, ok := strings.Cut(strings.TrimLeft(rest, " "), " ")
	if !ok {
		return false
	}
	arg, _, _ = strings.Cut(strings.TrimLeft(arg, " "), " ")
	switch kind {
	case "10", "11", "17":
		return arg != ""
	case "4":
		return arg == "1" || arg == "2"
	}
	return false
}

// hopEvent says whether an agent event is a hop's: msg.send, msg.recv, rpc.reply or
// rpc.response (kinds 20 to 23 of docs/format.md).
func hopEvent(msg string) bool {
	kind, _, ok := strings.Cut(strings.TrimLeft(msg, " "), " ")
	return ok && len(kind) == 2 && kind[0] == '2' && kind[1] >= '0' && kind[1] <= '3'
}

func (c *converter) event(ev trace.Event) {
	switch ev.Kind() {
	case trace.EventSync:
		c.sync(ev)
	case trace.EventStateTransition:
		st := ev.StateTransition()
		if st.Resource.Kind == trace.ResourceGoroutine {
			c.transition(ev, st)
		}
	case trace.EventRangeBegin, trace.EventRangeActive, trace.EventRangeEnd:
		c.rangeEvent(ev)
	case trace.EventTaskBegin, trace.EventTaskEnd:
		if !c.inside(ev.Goroutine()) {
			return
		}
		t := ev.Task()
		phase := "begin"
		if ev.Kind() == trace.EventTaskEnd {
			phase = "end"
		}
		w := c.w.begin("task")
		w.int("time", int64(ev.Time())).str("phase", phase).uint("id", uint64(t.ID))
		if t.Parent != trace.NoTask && t.Parent != trace.BackgroundTask {
			w.uint("parent", uint64(t.Parent))
		}
		w.str("type", t.Type).int("g", goid(ev.Goroutine()))
		c.end(w, "task")
	case trace.EventRegionBegin, trace.EventRegionEnd:
		if !c.inside(ev.Goroutine()) {
			return
		}
		r := ev.Region()
		phase := "begin"
		if ev.Kind() == trace.EventRegionEnd {
			phase = "end"
		}
		w := c.w.begin("region")
		w.int("time", int64(ev.Time())).str("phase", phase).int("g", goid(ev.Goroutine()))
		w.uint("task", uint64(r.Task)).str("type", r.Type)
		c.end(w, "region")
	case trace.EventLog:
		l := ev.Log()
		g := ev.Goroutine()
		switch l.Category {
		case "wisp-gate":
			return
		case "wisp-in":
			c.enter(g, int64(ev.Time()))
			return
		case "wisp-out":
			c.leave(g)
			return
		}
		cat, msg := l.Category, l.Message
		// The Go agent's compact form (agents/go/wisp/lock.go): the event in the category,
		// "wisp <kind> <resource> <arg>", and no message. The runtime interns a category
		// but writes every message out under a global lock, so this halves a lock
		// operation's cost. Read as the "wisp" log it stands for.
		if rest, ok := strings.CutPrefix(cat, "wisp "); ok && msg == "" {
			cat, msg = "wisp", rest
		}
		if !c.inside(g) {
			switch {
			case cat == "wisp" && lockOrData(msg):
				c.enter(g, int64(ev.Time()))
			case cat != "wisp":
				return // the program's own log, outside every instance
			}
		}
		at := 0
		if cat == "wisp" {
			// Where the program took the lock (or touched the data, or made or served a
			// request): the tracer records a stack with every user log, so the place costs
			// the program nothing. (callerFrame before begin: it may write a "loc" line.)
			if lockOrData(msg) {
				at = c.callerFrame(ev.Stack(), false)
			} else if hopEvent(msg) {
				at = c.callerFrame(ev.Stack(), true)
			}
		}
		w := c.w.begin("log")
		w.int("time", int64(ev.Time())).int("g", goid(g)).uint("task", uint64(l.Task))
		w.str("cat", cat).str("msg", msg)
		if at > 0 {
			w.int("at", int64(at))
		}
		c.end(w, "log")
	}
}

func (c *converter) sync(ev trace.Event) {
	s := ev.Sync()
	c.syncs++
	clear(c.callers) // a new generation: its stacks are numbered afresh
	w := c.w.begin("sync")
	w.int("time", int64(ev.Time())).int("n", int64(s.N))
	if cs := s.ClockSnapshot; cs != nil && !cs.Wall.IsZero() {
		// The trace clock and the wall clock read at (nearly) the same moment.
		w.int("trace", int64(cs.Trace)).int("wall", cs.Wall.UnixNano()).uint("mono", cs.Mono)
		c.clockPairs++
	}
	c.end(w, "sync")
}

func (c *converter) rangeEvent(ev trace.Event) {
	r := ev.Range()
	begin := ev.Kind() != trace.EventRangeEnd
	switch {
	case r.Name == "GC concurrent mark phase":
		if begin == c.gcOn {
			return // "active" at a generation start for a phase already begun
		}
		c.gcOn = begin
		w := c.w.begin("gc")
		w.int("time", int64(ev.Time())).str("phase", phaseWord(begin)).int("g", goid(ev.Goroutine()))
		c.end(w, "gc")
	case strings.HasPrefix(r.Name, "stop-the-world ("):
		if begin == c.stwOn {
			return
		}
		c.stwOn = begin
		reason := strings.TrimSuffix(strings.TrimPrefix(r.Name, "stop-the-world ("), ")")
		w := c.w.begin("stw")
		w.int("time", int64(ev.Time())).str("phase", phaseWord(begin)).str("reason", reason)
		w.int("g", goid(ev.Goroutine()))
		c.end(w, "stw")
	}
}

func phaseWord(begin bool) string {
	if begin {
		return "begin"
	}
	return "end"
}

func (c *converter) transition(ev trace.Event, st trace.StateTransition) {
	from, to := st.Goroutine()
	g := st.Resource.Goroutine()
	t := int64(ev.Time())
	gs := c.gs[g]
	switch {
	case from == trace.GoNotExist && to != trace.GoNotExist:
		c.create(ev, st, g, to)
		return
	case from == trace.GoUndetermined && gs == nil:
		c.exist(ev, st, g, to)
		return
	case gs == nil:
		// A goroutine the reader never introduced: keep going, but remember it.
		gs = &gstate{}
		c.gs[g] = gs
		c.seen++
	}
	prev := gs.state
	gs.state = to
	if !c.inside(g) {
		if to == trace.GoWaiting && systemReason(st.Reason) {
			gs.sys = true
		}
		if to == trace.GoNotExist {
			delete(c.gs, g)
		}
		return
	}
	switch {
	case to == trace.GoNotExist:
		delete(c.gs, g)
		delete(c.in, g)
		delete(c.shown, g)
		w := c.w.begin("end")
		w.int("time", t).int("g", int64(g))
		c.end(w, "end")
	case to == trace.GoWaiting && prev != trace.GoWaiting:
		c.block(t, g, gs, st.Reason, pick(st.Stack, ev.Stack()))
	case from == trace.GoWaiting && to == trace.GoRunnable:
		loc := c.userFrame(ev.Stack()) // before begin: it may write a "loc" line
		w := c.w.begin("unblock")
		w.int("time", t).int("g", int64(g)).int("by", goid(ev.Goroutine()))
		if loc > 0 {
			w.int("at", int64(loc))
		}
		c.end(w, "unblock")
	case to == trace.GoRunning && from == trace.GoRunnable:
		w := c.w.begin("run")
		w.int("time", t).int("g", int64(g))
		c.end(w, "run")
	case from == trace.GoRunning && to == trace.GoRunnable:
		w := c.w.begin("stop")
		w.int("time", t).int("g", int64(g)).str("reason", st.Reason)
		c.end(w, "stop")
	}
}

func pick(a, b trace.Stack) trace.Stack {
	if a != trace.NoStack {
		return a
	}
	return b
}

func (c *converter) create(ev trace.Event, st trace.StateTransition, g trace.GoID, to trace.GoState) {
	t := int64(ev.Time())
	fn := ""
	start := 0
	for f := range st.Stack.Frames() {
		fn = f.Func
		start = c.loc(f)
		break
	}
	gs := &gstate{fn: fn, state: to, sys: systemFunc(fn), named: fn != ""}
	c.gs[g] = gs
	c.seen++
	if c.gate == 1 {
		if c.in[ev.Goroutine()] == 0 {
			return // created outside every instance
		}
		c.in[g], c.shown[g] = 1, true // it inherits the instance (its creator's label)
	}
	at := c.userFrame(ev.Stack()) // before begin: it may write a "loc" line
	w := c.w.begin("create")
	w.int("time", t).int("g", int64(g)).int("by", goid(ev.Goroutine())).str("fn", fn)
	if start > 0 {
		w.int("start", int64(start))
	}
	if at > 0 {
		w.int("at", int64(at))
	}
	if gs.sys {
		w.boolean("sys", true)
	}
	c.end(w, "create")
	if to == trace.GoWaiting {
		c.block(t, g, gs, st.Reason, st.Stack)
	}
}

// exist introduces a goroutine that was there before the trace (or this part of it) began.
func (c *converter) exist(ev trace.Event, st trace.StateTransition, g trace.GoID, to trace.GoState) {
	t := int64(ev.Time())
	stack := pick(st.Stack, ev.Stack())
	fn := entryFunc(stack)
	gs := &gstate{fn: fn, state: to, sys: systemFunc(fn) || systemReason(st.Reason), named: fn != ""}
	c.gs[g] = gs
	c.seen++
	if !c.inside(g) {
		return
	}
	c.shown[g] = true
	w := c.w.begin("exist")
	w.int("time", t).int("g", int64(g)).str("fn", fn).str("state", stateWord(to))
	if gs.sys {
		w.boolean("sys", true)
	}
	c.end(w, "exist")
	if to == trace.GoWaiting {
		c.block(t, g, gs, st.Reason, stack)
	}
}

func (c *converter) block(t int64, g trace.GoID, gs *gstate, reason string, stack trace.Stack) {
	if systemReason(reason) {
		gs.sys = true
	}
	stackID := c.stack(stack)
	at := c.userFrame(stack) // before begin: it may write a "loc" line
	w := c.w.begin("block")
	w.int("time", t).int("g", int64(g)).str("reason", reason)
	if !gs.named {
		// A goroutine met running (main, usually): its first block's stack names it.
		if fn := entryFunc(stack); fn != "" {
			w.str("fn", fn)
			gs.named = true
		}
	}
	if at > 0 {
		w.int("at", int64(at))
	}
	if stackID > 0 {
		w.int("stack", int64(stackID))
	} else {
		w.ints("stk", c.frames) // the stack table is full: the frames inline
	}
	c.end(w, "block")
}

func (c *converter) summary(err error) {
	ids := make([]trace.GoID, 0, len(c.gs))
	for g := range c.gs {
		ids = append(ids, g)
	}
	slices.Sort(ids)
	// Who was still on a CPU (or in a system call) when the trace stopped: one of them ran
	// trace.Stop. With exactly one such user goroutine, that one is the stopper.
	stopper := int64(-1)
	active := 0
	for _, g := range ids {
		gs := c.gs[g]
		w := c.w.begin("live")
		w.int("g", int64(g)).str("state", stateWord(gs.state))
		if gs.sys {
			w.boolean("sys", true)
		}
		c.end(w, "live")
		if !gs.sys && (gs.state == trace.GoRunning || gs.state == trace.GoSyscall) {
			active++
			stopper = int64(g)
		}
	}
	if active != 1 {
		stopper = -1
	}
	w := c.w.begin("summary")
	w.int("events", int64(c.events)).int("goroutines", int64(c.seen)).int("locs", int64(len(c.locs)))
	w.int("stacks", int64(len(c.stacks)))
	w.int("clock_pairs", int64(c.clockPairs)).int("stopper", stopper).boolean("complete", err == nil)
	if err != nil {
		w.str("error", err.Error())
	}
	keys := make([]string, 0, len(c.lines))
	for k := range c.lines {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.object("lines")
	for _, k := range keys {
		w.int(k, int64(c.lines[k]))
	}
	w.close()
	w.finish()
}

// stack interns the top frames of a stack (in c.frames) and returns its number, writing its
// "stack" line first; 0 when the table is full (the caller then writes c.frames inline).
func (c *converter) stack(s trace.Stack) int {
	c.frames = c.frames[:0]
	for f := range s.Frames() {
		if len(c.frames) == maxStack {
			break
		}
		c.frames = append(c.frames, c.loc(f))
	}
	c.key = c.key[:0]
	for _, id := range c.frames {
		c.key = strconv.AppendInt(c.key, int64(id), 36)
		c.key = append(c.key, ' ')
	}
	if id, ok := c.stacks[string(c.key)]; ok {
		return id
	}
	if len(c.stacks) >= maxStacks {
		return 0
	}
	id := len(c.stacks) + 1
	c.stacks[string(c.key)] = id
	w := c.w.begin("stack")
	w.int("id", int64(id)).ints("locs", c.frames)
	c.end(w, "stack")
	return id
}

// loc interns one frame and returns its number (1-based), writing its "loc" line first.
func (c *converter) loc(f trace.StackFrame) int {
	k := frameKey{f.Func, f.File, f.Line}
	if id, ok := c.locs[k]; ok {
		return id
	}
	id := len(c.locs) + 1
	c.locs[k] = id
	w := c.w.begin("loc")
	w.int("id", int64(id)).str("func", f.Func).str("file", f.File).uint("line", f.Line)
	c.end(w, "loc")
	return id
}

// userFrame: the topmost frame in the program's own code (not the runtime or the standard
// library), else the top frame; 0 for an empty stack. This is the line a person would
// point at: the `<-ch`, the `mu.Lock()`, the `go f()`.
func (c *converter) userFrame(s trace.Stack) int {
	var top, user *trace.StackFrame
	for f := range s.Frames() {
		if top == nil {
			top = &f
		}
		if !stdFunc(f.Func) {
			user = &f
			break
		}
	}
	switch {
	case user != nil:
		return c.loc(*user)
	case top != nil:
		return c.loc(*top)
	}
	return 0
}

// callerFrame: where the program called into the agent (a wisp.Mutex's Lock, wisp.Access):
// the topmost frame that is neither the agent's (package wisp) nor the runtime's or the
// standard library's (runtime/trace, and sync when a sync.Cond takes the lock); for a hop
// event (hop), not the gRPC library's or its interceptors' either (hopCallerFunc): the
// program's request, not net/http's or grpc-go's. 0 when the stack has none (a request
// served by wisp.Handler with no middleware of the program's around it).
// Cached by stack (a lock is taken from a few places, millions of times): the cache holds
// one generation's stacks, whose numbers the reader reuses in the next.
func (c *converter) callerFrame(s trace.Stack, hop bool) int {
	key := callerKey{s, hop}
	if at, ok := c.callers[key]; ok {
		return at
	}
	at := 0
	for f := range s.Frames() {
		if (hop && hopCallerFunc(f.Func)) || (!hop && programFunc(f.Func)) {
			at = c.loc(f)
			break
		}
	}
	if len(c.callers) >= maxStacks {
		clear(c.callers)
	}
	c.callers[key] = at
	return at
}

// callerKey: a stack, and whether its place is read as a hop's.
type callerKey struct {
	s   trace.Stack
	hop bool
}

func goid(g trace.GoID) int64 {
	if g == trace.NoGoroutine {
		return -1
	}
	return int64(g)
}

func stateWord(s trace.GoState) string {
	switch s {
	case trace.GoRunnable:
		return "runnable"
	case trace.GoRunning:
		return "running"
	case trace.GoWaiting:
		return "waiting"
	case trace.GoSyscall:
		return "syscall"
	case trace.GoNotExist:
		return "gone"
	}
	return "unknown"
}
