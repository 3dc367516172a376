package wisp

// Hops: the rpc resources of requests and replies, shared by the net/http adapter here and
// the gRPC interceptors (agents/go/wispgrpc).
//
// The attributes are the ones the Python agent writes (docs/format.md "RPC resources"),
// which the hop linker matches: a client resource carries the trace id and the span id it
// put on the wire; a server resource the extracted trace id, the caller's span id as
// parent_span_id, and its own span id. The events are user logs on the goroutine (see
// lock.go): the client's msg.send and unit.block (reason rpc), logged as one ("20 R 7",
// see ClientBegin), and rpc.response; the server's msg.recv and rpc.reply.

import (
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"runtime/trace"
	"strconv"
	"unsafe"
)

const (
	kindMsgSend     = 20
	kindMsgRecv     = 21
	kindRPCReply    = 22
	kindRPCResponse = 23
	reasonRPC       = 7
)

// Hop describes one request as one side sees it.
type Hop struct {
	Name     string // the resource's name; "<Method> <Target>" when empty
	Protocol string // "http", "grpc"
	Library  string // "net/http", "grpc-go"
	Method   string // HTTP method, or the gRPC full method
	Target   string // path without query values
	Peer     string // host:port of the other side
	Headers  string // server side: a JSON object of the allowlisted request headers
}

// Call is a recorded hop in progress; the zero Call records nothing.
type Call struct {
	ctx  context.Context
	r    *recorder
	res  uint32    // the resource number, 0 when nothing is recorded
	rec  *rpcRec   // the resource's content, which holds the room for the call's two logs
	inst *instance // server side: the boundary instance this request opened, if any
}

// Context is the context the handler should run with: ctx, or when the request opened a
// boundary instance, ctx with the instance's profiler label (so that pprof.Do inside the
// handler keeps it, and work handed on with the context counts for the boundary).
func (c Call) Context(ctx context.Context) context.Context {
	if c.inst != nil && c.inst.ctx != nil {
		return c.inst.ctx
	}
	return ctx
}

// ClientBegin records the sending of a request carrying tc: msg.send, then the wait for
// the reply. End the call with ClientEnd. A request made inside a boundary instance is
// recorded whatever the trace's sampling.
func ClientBegin(ctx context.Context, tc TraceContext, h Hop) Call {
	r := active.Load()
	if r == nil || !(r.recordHop(tc) || r.bounds.inside(ctx) != nil) {
		return Call{}
	}
	c := Call{ctx: ctx, r: r}
	c.res, c.rec = r.rpcResource(h, tc, "", false, nil)
	// One log for both events: msg.send with argument reasonRPC is the send and the wait for
	// the reply that follows it at once (unit.block, reason rpc), which the decoder writes
	// (and hopLog, without the tracer). A user log costs the runtime a stack capture, and
	// an HTTP client's stack is deep.
	r.hopLogAs(ctx, kindMsgSend, c.res, reasonRPC, &c.rec.logs[0], &c.rec.unit)
	return c
}

// ClientEnd records the reply's arrival: status is the HTTP status (or gRPC code), -1 on
// error. It may be called on another goroutine than ClientBegin (an HTTP body read or
// closed elsewhere): the reply still ends the wait of the goroutine that sent the request
// (without the tracer the agent writes it on that goroutine's unit; with it the decoder
// moves it there).
func (c Call) ClientEnd(status int) {
	if c.res != 0 {
		c.r.hopLogAs(c.ctx, kindRPCResponse, c.res, status, c.rec.endLog(), &c.rec.unit)
	}
}

// ServerBegin records a request received with context parent (ok=false: none came) and
// answered under own (this server's span). End the call with ServerEnd, on the same
// goroutine. A request that starts a boundary (its entry matches, or the caller's
// tracestate carries `wisp=b-<id>`) opens an instance of it on this goroutine and is
// recorded whatever the sampling; run the handler with c.Context(ctx).
func ServerBegin(ctx context.Context, parent TraceContext, hadParent bool, own TraceContext, h Hop) Call {
	return serverBegin(ctx, parent, hadParent, own, h, nil)
}

// serverBegin is ServerBegin; headers, when given, makes h.Headers only for a request that
// is recorded (nothing is listening for the others: hops mode, unsampled, no instance).
func serverBegin(ctx context.Context, parent TraceContext, hadParent bool, own TraceContext, h Hop, headers func() string) Call {
	r := active.Load()
	if r == nil {
		return Call{}
	}
	member := ""
	if hadParent {
		member = StateMember(parent.State, stateKey)
	}
	var inst *instance
	func() {
		defer func() { recoverFault("boundary", recover()) }()
		inst = r.bounds.enter(ctx, h.Protocol, h.Method, h.Target, member)
	}()
	if inst == nil && !r.recordHop(own) {
		return Call{}
	}
	pspan := ""
	if hadParent {
		pspan = parent.SpanID
	}
	c := Call{ctx: ctx, r: r, inst: inst}
	if inst != nil {
		c.ctx = inst.ctx
		r.markInstance(c.ctx, true)
	}
	if headers != nil {
		h.Headers = headers()
	}
	c.res, c.rec = r.rpcResource(h, own, pspan, true, inst)
	r.hopLogAs(c.ctx, kindMsgRecv, c.res, 0, &c.rec.logs[0], &c.rec.unit)
	return c
}

// ServerEnd records the reply: status is the HTTP status (or gRPC code).
func (c Call) ServerEnd(status int) {
	if c.res != 0 {
		c.r.hopLogAs(c.ctx, kindRPCReply, c.res, status, c.rec.endLog(), &c.rec.unit)
		if c.inst != nil {
			c.r.markInstance(c.ctx, false)
			c.r.bounds.leave(c.inst)
		}
	}
}

// markInstance tells the decoder (wisp-goimport) that the calling goroutine begins or ends
// working for a boundary instance: a user log "wisp-in" / "wisp-out" while the tracer
// runs. In hops mode the decoder keeps only the goroutines inside instances.
func (r *recorder) markInstance(ctx context.Context, in bool) {
	if !r.tracing.Load() {
		return
	}
	if in {
		trace.Log(ctx, "wisp-in", "")
	} else {
		trace.Log(ctx, "wisp-out", "")
	}
}

// ServerContext is the context a server answers a request under: the caller's trace with a
// new span, or a new root (sampling decided here) when the caller sent none.
func ServerContext(parent TraceContext, hadParent bool) TraceContext {
	if hadParent {
		return TraceContext{TraceID: parent.TraceID, SpanID: NewSpanID(), Flags: parent.Flags, State: parent.State}
	}
	return rootContext()
}

// recordHop: full mode records every hop, hops mode the sampled ones.
func (r *recorder) recordHop(tc TraceContext) bool {
	return r.cfg.Mode == "full" || tc.Sampled()
}

// hopLog records one hop event of the calling goroutine. While the execution tracer runs
// it is a user log, which the tracer attributes (like the lock wrappers' events). Without
// the tracer (hops mode with no boundary switched on, Config.NoTracer) it is one of the
// agent's own events, on the unit the decoder would give the goroutine (its id + 1), read
// from runtime.Stack's first line: about a microsecond, paid per hop, not per lock.
//
// room, when given, is where the log's message is written (a call's rpcRec holds room for
// its two logs, so that the message is no allocation of its own): written once and never
// again, so the string made over it is immutable like any other (the runtime copies it out
// anyway, under its string table's lock).
func (r *recorder) hopLog(ctx context.Context, kind int, res uint32, arg int, room *hopRoom) {
	r.hopLogAs(ctx, kind, res, arg, room, nil)
}

// hopLogAs is hopLog; unit, when given, is the unit of the call's first event without the
// tracer: 0 until then, set by it, and used by the call's later events (the client's reply
// belongs to the goroutine that waits for it, and reading the goroutine's id again costs a
// microsecond).
func (r *recorder) hopLogAs(ctx context.Context, kind int, res uint32, arg int, room *hopRoom, unit *uint32) {
	if d := r.bounds.current(); d != nil {
		d.events.Add(1)
	}
	r.hopMu.RLock()
	defer r.hopMu.RUnlock()
	if r.tracing.Load() {
		// "<kind> <res> <arg>": at most 3+1+10+1+20 bytes.
		var buf hopRoom
		b := strconv.AppendInt(buf[:0], int64(kind), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(res), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(arg), 10)
		if room != nil {
			n := copy(room[:], b)
			trace.Log(ctx, logCategory, unsafe.String(&room[0], n))
		} else {
			trace.Log(ctx, logCategory, string(b))
		}
		return
	}
	var u uint32
	g := uint64(0)
	if unit != nil {
		u = *unit
	}
	if u == 0 {
		if g = goid(); g == 0 {
			return
		}
		u = uint32(g + 1)
		if unit != nil {
			*unit = u
		}
	}
	now := nanotime()
	r.mu.Lock()
	if g != 0 { // the unit read from this goroutine: defined once
		if _, seen := r.units[u]; !seen && len(r.units) < maxRecords {
			r.units[u] = struct{}{}
			if len(r.records) < maxRecords {
				r.records = append(r.records, Record{Type: RecUnit, ID: uint64(u), Attrs: []Attr{
					{"kind", "goroutine"}, {"name", "goroutine #" + strconv.FormatUint(g, 10)}, {"parent", int64(0)},
					{"provisional", int64(1)}, // a guess: the tracer's stream may name it, in any order
				}})
			}
		}
	}
	if kind == kindMsgSend && arg == reasonRPC { // the send, then the wait for the reply
		r.emitLocked(Event{Kind: kindMsgSend, Unit: u, Time: uint64(now), Res: res})
		kind = kindBlock
	}
	r.emitLocked(Event{Kind: uint8(kind), Unit: u, Time: uint64(now), Res: res, Arg: int64(arg)})
	r.mu.Unlock()
}

// goid is the calling goroutine's id, from runtime.Stack's "goroutine N [" (0 if unreadable).
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b, ok := bytes.CutPrefix(b, []byte("goroutine "))
	if !ok {
		return 0
	}
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	g, err := strconv.ParseUint(string(b), 10, 63)
	if err != nil {
		return 0
	}
	return g
}

func (r *recorder) rpcResource(h Hop, tc TraceContext, parentSpan string, server bool, inst *instance) (uint32, *rpcRec) {
	id := r.nextRes.Add(1)
	rec := &rpcRec{hop: h, traceID: tc.TraceID, spanID: tc.SpanID, parentSpan: parentSpan,
		sampled: int64(tc.Flags & 1), server: server}
	if inst != nil {
		rec.boundary, rec.callerUnsampled = inst.d.b.Entry, !tc.Sampled()
	}
	r.define(Record{Type: RecResource, ID: uint64(id), rpc: rec})
	return id, rec
}

// hopRoom holds one hop log's message: "<kind> <res> <arg>".
type hopRoom [36]byte

// endLog is the room for the call's second log, nil (a message of its own) when a Call
// is ended more than once: each room is written once.
func (p *rpcRec) endLog() *hopRoom {
	if p.ended {
		return nil
	}
	p.ended = true
	return &p.logs[1]
}

// rpcRec is an rpc resource's content, kept typed until the flusher encodes it: the
// request's goroutine makes one small object instead of a dozen attribute values (each
// string boxed in an interface), and the flusher writes the attributes straight from it
// (appendAttrs), the same bytes as attrs() through Chunk.Payload (encode_test.go).
type rpcRec struct {
	hop             Hop
	traceID, spanID string
	parentSpan      string // server side
	sampled         int64
	server          bool
	boundary        string // the boundary's entry when the request opened an instance
	callerUnsampled bool   // ... and the caller had not sampled the trace

	// The call's side, never read by the flusher: room for the messages of its two logs
	// (hopLog), whether the second has been used, and the goroutine's unit when the agent
	// writes the events itself (hopLogAs).
	logs  [2]hopRoom
	ended bool
	unit  uint32
}

func (p *rpcRec) name() string {
	if p.hop.Name != "" {
		return p.hop.Name
	}
	return p.hop.Method + " " + p.hop.Target
}

// attrs are the resource's attributes, in the order the Python agent writes them.
func (p *rpcRec) attrs() []Attr {
	attrs := []Attr{
		{"kind", "rpc"},
		{"name", p.name()},
		{"trace_id", p.traceID},
		{"span_id", p.spanID},
	}
	if p.server {
		attrs = append(attrs, Attr{"parent_span_id", p.parentSpan})
	}
	attrs = append(attrs,
		Attr{"sampled", p.sampled},
		Attr{"protocol", p.hop.Protocol},
		Attr{"library", p.hop.Library},
		Attr{"method", p.hop.Method},
		Attr{"target", p.hop.Target},
		Attr{"peer", p.hop.Peer},
	)
	if p.server && p.hop.Headers != "" {
		attrs = append(attrs, Attr{"headers", p.hop.Headers})
	}
	if p.boundary != "" {
		attrs = append(attrs, Attr{"boundary", p.boundary})
		if p.callerUnsampled {
			attrs = append(attrs, Attr{"caller_sampled", int64(0)})
		}
	}
	return attrs
}

// The rpc attributes' keys, in their order, for the string table's memo (internTable).
const (
	rkKind = iota
	rkName
	rkTraceID
	rkSpanID
	rkParentSpan
	rkSampled
	rkProtocol
	rkLibrary
	rkMethod
	rkTarget
	rkPeer
	rkHeaders
	rkBoundary
	rkCallerSampled
	rpcKeys
)

var rpcKeyNames = [rpcKeys]string{"kind", "name", "trace_id", "span_id", "parent_span_id", "sampled",
	"protocol", "library", "method", "target", "peer", "headers", "boundary", "caller_sampled"}

// rpcKey is the index of rpc key k, interned at its first use.
func (t *internTable) rpcKeyIndex(k int) uint64 {
	if i := t.rpcKey[k]; i != 0 {
		return i - 1
	}
	i := t.intern(rpcKeyNames[k])
	t.rpcKey[k] = i + 1
	return i
}

// rpcValue is the index of v, the value of rpc attribute k: the last one's when v is the
// same string (most are: the protocol, the library, a service's few methods and peers).
func (t *internTable) rpcValue(k int, v string) uint64 {
	if t.rpcLast[k] == v && t.rpcIdx[k] != 0 {
		return t.rpcIdx[k] - 1
	}
	i := t.intern(v)
	t.rpcLast[k], t.rpcIdx[k] = v, i+1
	return i
}

// appendAttrs writes what Payload writes for attrs(): the count, then each key and value.
func (p *rpcRec) appendAttrs(b []byte, t *internTable) []byte {
	n := 10
	if p.server {
		n++
		if p.hop.Headers != "" {
			n++
		}
	}
	if p.boundary != "" {
		n++
		if p.callerUnsampled {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	str := func(b []byte, k int, v string) []byte {
		b = binary.AppendUvarint(b, t.rpcKeyIndex(k))
		b = append(b, 1)
		return binary.AppendUvarint(b, t.rpcValue(k, v))
	}
	b = str(b, rkKind, "rpc")
	if p.hop.Name != "" {
		b = str(b, rkName, p.hop.Name)
	} else {
		// "<method> <target>", made only when it is not the last one's.
		last := t.rpcLast[rkName]
		if t.rpcIdx[rkName] != 0 && len(last) == len(p.hop.Method)+1+len(p.hop.Target) &&
			last[:len(p.hop.Method)] == p.hop.Method && last[len(p.hop.Method)] == ' ' &&
			last[len(p.hop.Method)+1:] == p.hop.Target {
			b = str(b, rkName, last)
		} else {
			b = str(b, rkName, p.hop.Method+" "+p.hop.Target)
		}
	}
	b = str(b, rkTraceID, p.traceID)
	b = str(b, rkSpanID, p.spanID)
	if p.server {
		b = str(b, rkParentSpan, p.parentSpan)
	}
	b = binary.AppendUvarint(b, t.rpcKeyIndex(rkSampled))
	b = appendInt(b, p.sampled)
	b = str(b, rkProtocol, p.hop.Protocol)
	b = str(b, rkLibrary, p.hop.Library)
	b = str(b, rkMethod, p.hop.Method)
	b = str(b, rkTarget, p.hop.Target)
	b = str(b, rkPeer, p.hop.Peer)
	if p.server && p.hop.Headers != "" {
		b = str(b, rkHeaders, p.hop.Headers)
	}
	if p.boundary != "" {
		b = str(b, rkBoundary, p.boundary)
		if p.callerUnsampled {
			b = binary.AppendUvarint(b, t.rpcKeyIndex(rkCallerSampled))
			b = appendInt(b, 0)
		}
	}
	return b
}

// instanceAttrs are the attributes of a server resource recorded because it opened a
// boundary instance: the boundary, and caller_sampled=0 when the caller had not sampled the
// trace (its side of the hop was not recorded; analyze does not call that a broken link).
func instanceAttrs(inst *instance, tc TraceContext) []Attr {
	if inst == nil {
		return nil
	}
	out := []Attr{{"boundary", inst.d.b.Entry}}
	if !tc.Sampled() {
		out = append(out, Attr{"caller_sampled", int64(0)})
	}
	return out
}
