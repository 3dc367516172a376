package wisp

// The two small APIs every agent offers the analyses: data accesses (for races, the
// counterpart of Python's willowisp.access) and message send/receive with a message id
// (for queue hops). Both are user logs on the calling goroutine, like the lock wrappers.

import (
	"context"
	"runtime/trace"
	"strconv"
	"sync"
)

const (
	kindDataAccess = 17
	maxDataNames   = 1 << 14 // data resources kept by name; past it each access defines a new one
)

var dataNames sync.Map // name -> *dataRes

type dataRes struct {
	gen *recorder
	msg [2]string // read, write
}

// Access records that the calling goroutine read (write=false) or wrote shared data
// called name (a key, a row, a file: two accesses conflict when their names are equal and
// one of them writes). store says what holds it ("api" when empty).
func Access(ctx context.Context, name, store string, write bool) {
	r := active.Load()
	if r == nil || !r.tracing.Load() || !r.logHere(1) {
		return
	}
	d, _ := dataNames.Load(name)
	res, ok := d.(*dataRes)
	if !ok || res.gen != r {
		if store == "" {
			store = "api"
		}
		id := r.nextRes.Add(1)
		r.define(Record{Type: RecResource, ID: uint64(id), Attrs: []Attr{
			{"kind", "data"}, {"name", name}, {"store", store}, {"statement", ""},
		}})
		n := logCategory + " " + strconv.Itoa(kindDataAccess) + " " + strconv.FormatUint(uint64(id), 10)
		res = &dataRes{gen: r, msg: [2]string{n + " 0", n + " 1"}}
		if r.dataCount.Add(1) <= maxDataNames {
			dataNames.Store(name, res)
		}
	}
	if write {
		trace.Log(ctx, res.msg[1], "") // the compact form: see lock.go
	} else {
		trace.Log(ctx, res.msg[0], "")
	}
}

// Message describes one message as a producer or consumer sees it.
type Message struct {
	Protocol    string // amqp, kafka, sqs, redis, ...
	Library     string
	Destination string // queue, topic, exchange/routing-key, stream
	MessageID   string // the broker's or producer's id, '' if unknown
}

// MessageSend records the sending of a message and returns the trace context to put into
// its headers (tc.Header() as "traceparent").
func MessageSend(ctx context.Context, m Message) TraceContext {
	tc := Outgoing(ctx)
	r := active.Load()
	if r == nil || !(r.recordHop(tc) || r.bounds.inside(ctx) != nil) {
		return tc
	}
	id := r.messageResource(m, tc, "", false, nil)
	r.hopLog(ctx, kindMsgSend, id, 0, nil)
	return tc
}

// MessageReceive records a message received with the traceparent header it carried (""
// if none) and returns ctx carrying the consumer's context for the work the message causes.
// See MessageReceiveState for messages that carry a tracestate header too.
func MessageReceive(ctx context.Context, m Message, traceparent string) context.Context {
	return MessageReceiveState(ctx, m, traceparent, "")
}

// MessageReceiveState is MessageReceive with the message's tracestate header. Call it on
// the goroutine that handles the message: the boundary instance its previous message
// opened on this goroutine ends here, and a message matching a boundary's entry (or whose
// tracestate carries `wisp=b-<id>`) opens one that lasts until the goroutine's next
// message (as the Python agent's consumers do).
func MessageReceiveState(ctx context.Context, m Message, traceparent, tracestate string) context.Context {
	parent, had := ParseTraceparent(traceparent)
	if had {
		parent.State = tracestate
	}
	own := ServerContext(parent, had)
	ctx = WithTraceContext(ctx, own)
	r := active.Load()
	if r == nil {
		return ctx
	}
	var inst *instance
	func() {
		defer func() { recoverFault("message.receive", recover()) }()
		member := ""
		if had {
			member = StateMember(tracestate, stateKey)
		}
		inst = r.bounds.openMessage(r, ctx, m.Protocol, m.Destination, member)
	}()
	if inst == nil && !r.recordHop(own) {
		return ctx
	}
	if inst != nil {
		ctx = inst.ctx
		r.markInstance(ctx, true)
	}
	pspan := ""
	if had {
		pspan = parent.SpanID
	}
	id := r.messageResource(m, own, pspan, true, inst)
	r.hopLog(ctx, kindMsgRecv, id, 0, nil)
	return ctx
}

func (r *recorder) messageResource(m Message, tc TraceContext, parentSpan string, consumer bool, inst *instance) uint32 {
	id := r.nextRes.Add(1)
	attrs := []Attr{
		{"kind", "message"},
		{"name", m.Destination},
		{"protocol", m.Protocol},
		{"library", m.Library},
		{"destination", m.Destination},
		{"message_id", m.MessageID},
		{"trace_id", tc.TraceID},
		{"span_id", tc.SpanID},
		{"sampled", int64(tc.Flags & 1)},
	}
	if consumer {
		attrs = append(attrs, Attr{"parent_span_id", parentSpan})
		attrs = append(attrs, instanceAttrs(inst, tc)...)
	}
	r.define(Record{Type: RecResource, ID: uint64(id), Attrs: attrs})
	return id
}
