package wisp

// W3C trace context (https://www.w3.org/TR/trace-context/): parsing and making the
// traceparent header, and carrying the current context in a context.Context.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand/v2"
	"strings"
)

// TraceContext is one position in a distributed trace.
type TraceContext struct {
	TraceID string // 32 lowercase hex digits
	SpanID  string // 16 lowercase hex digits
	Flags   byte   // bit 0: sampled
	State   string // the tracestate header, passed on unchanged
}

// Sampled says whether the trace's root decided to record it.
func (t TraceContext) Sampled() bool { return t.Flags&1 == 1 }

// Header is the traceparent header value.
func (t TraceContext) Header() string {
	return "00-" + t.TraceID + "-" + t.SpanID + "-" + hex.EncodeToString([]byte{t.Flags})
}

// ParseTraceparent reads a traceparent header; ok is false for anything malformed
// (all-zero ids, version ff, wrong lengths, upper-case hex).
func ParseTraceparent(h string) (TraceContext, bool) {
	h = strings.TrimSpace(h)
	parts := strings.Split(h, "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || (parts[0] == "00" && len(parts) != 4) {
		return TraceContext{}, false
	}
	if !lowerHex(parts[0], 2) || !lowerHex(parts[1], 32) || !lowerHex(parts[2], 16) || !lowerHex(parts[3], 2) {
		return TraceContext{}, false
	}
	if strings.Trim(parts[1], "0") == "" || strings.Trim(parts[2], "0") == "" {
		return TraceContext{}, false
	}
	f, _ := hex.DecodeString(parts[3])
	return TraceContext{TraceID: parts[1], SpanID: parts[2], Flags: f[0]}, true
}

func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	for {
		if _, err := rand.Read(b); err != nil {
			for i := range b {
				b[i] = byte(mrand.Uint32())
			}
		}
		for _, x := range b {
			if x != 0 {
				return hex.EncodeToString(b)
			}
		}
	}
}

// NewSpanID is a random 16-hex-digit span id.
func NewSpanID() string { return randomHex(8) }

// NewTraceID is a random 32-hex-digit trace id.
func NewTraceID() string { return randomHex(16) }

type ctxKey struct{}

// WithTraceContext returns ctx carrying tc as the current position in the trace.
func WithTraceContext(ctx context.Context, tc TraceContext) context.Context {
	return context.WithValue(ctx, ctxKey{}, tc)
}

// FromContext is the trace context ctx carries, if any.
func FromContext(ctx context.Context) (TraceContext, bool) {
	tc, ok := ctx.Value(ctxKey{}).(TraceContext)
	return tc, ok
}

// Outgoing is the context to put on an outgoing request made under ctx: a new span of
// the current trace, else of the trace the process inherited through TRACEPARENT, else a
// new root whose sampling is decided here (the configured trace ratio). Made inside a
// boundary instance (the calling goroutine's, or ctx's), its tracestate carries the
// member `wisp=b-<id>`, so that the next process opens an instance of the boundary too.
func Outgoing(ctx context.Context) TraceContext {
	var out TraceContext
	if tc, ok := FromContext(ctx); ok {
		out = TraceContext{TraceID: tc.TraceID, SpanID: NewSpanID(), Flags: tc.Flags, State: tc.State}
	} else {
		out = rootContext()
	}
	if r := active.Load(); r != nil {
		if d := r.bounds.inside(ctx); d != nil {
			out.State = WithStateMember(out.State, stateKey, d.label)
		}
	}
	return out
}

// stateKey is the tracestate member through which a boundary travels: wisp=b-<id>.
const stateKey = "wisp"

// StateMember is the value of the member key in a tracestate header ("" when absent).
func StateMember(state, key string) string {
	for _, m := range strings.Split(state, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(m), "=")
		if ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// WithStateMember is the tracestate header with key=value as its first member (the W3C
// rule for a member a vendor updates), any older value of key removed, at most 32 members.
func WithStateMember(state, key, value string) string {
	out := []string{key + "=" + value}
	for _, m := range strings.Split(state, ",") {
		m = strings.TrimSpace(m)
		k, _, _ := strings.Cut(m, "=")
		if m == "" || k == key {
			continue
		}
		if len(out) == 32 {
			break
		}
		out = append(out, m)
	}
	return strings.Join(out, ",")
}

func rootContext() TraceContext {
	if r := active.Load(); r != nil && r.inherited.TraceID != "" {
		in := r.inherited
		return TraceContext{TraceID: in.TraceID, SpanID: NewSpanID(), Flags: in.Flags, State: in.State}
	}
	return TraceContext{TraceID: NewTraceID(), SpanID: NewSpanID(), Flags: rootFlags()}
}

// rootFlags decides sampling at the root: 1 with probability WILLOWISP_TRACE_RATIO.
func rootFlags() byte {
	r := active.Load()
	ratio := 1.0
	if r != nil {
		ratio = r.cfg.TraceRatio
	}
	if ratio >= 1 || (ratio > 0 && mrand.Float64() < ratio) {
		return 1
	}
	return 0
}
