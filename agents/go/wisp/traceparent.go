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
	var sb strings.Builder
	sb.Grow(8 + len(t.TraceID) + len(t.SpanID))
	sb.WriteString("00-")
	sb.WriteString(t.TraceID)
	sb.WriteByte('-')
	sb.WriteString(t.SpanID)
	sb.WriteByte('-')
	sb.WriteByte(hexDigits[t.Flags>>4])
	sb.WriteByte(hexDigits[t.Flags&15])
	return sb.String()
}

const hexDigits = "0123456789abcdef"

// ParseTraceparent reads a traceparent header; ok is false for anything malformed
// (all-zero ids, version ff, wrong lengths, upper-case hex). It allocates nothing: the
// ids are slices of h.
func ParseTraceparent(h string) (TraceContext, bool) {
	h = strings.TrimSpace(h)
	// The first four dash-separated fields; extra: a fifth exists (only versions after
	// 00 may have one).
	var p [4]string
	rest := h
	for i := 0; i < 3; i++ {
		j := strings.IndexByte(rest, '-')
		if j < 0 {
			return TraceContext{}, false
		}
		p[i], rest = rest[:j], rest[j+1:]
	}
	extra := false
	if j := strings.IndexByte(rest, '-'); j >= 0 {
		p[3], extra = rest[:j], true
	} else {
		p[3] = rest
	}
	if len(p[0]) != 2 || p[0] == "ff" || (p[0] == "00" && extra) {
		return TraceContext{}, false
	}
	if !lowerHex(p[0], 2) || !lowerHex(p[1], 32) || !lowerHex(p[2], 16) || !lowerHex(p[3], 2) {
		return TraceContext{}, false
	}
	if allZero(p[1]) || allZero(p[2]) {
		return TraceContext{}, false
	}
	return TraceContext{TraceID: p[1], SpanID: p[2], Flags: hexVal(p[3][0])<<4 | hexVal(p[3][1])}, true
}

// hexVal is a lower-case hex digit's value (checked by lowerHex before).
func hexVal(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	bad := byte(0) // one test at the end instead of a branch per digit
	for i := 0; i < len(s); i++ {
		bad |= notLowerHex[s[i]]
	}
	return bad == 0
}

// allZero says s is nothing but '0' digits (an invalid id).
func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// notLowerHex is 1 for every byte that is not a lower-case hex digit.
var notLowerHex = func() (t [256]byte) {
	for c := range t {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			t[c] = 1
		}
	}
	return t
}()

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

// randomID is nbytes random bytes (not all zero) as lower-case hex: the runtime's
// per-thread ChaCha8 generator (math/rand/v2), seeded from the system's entropy, which
// makes the ids W3C asks for (random, unique) without a system call or an allocation
// beyond the string itself. Secrets (the control token) use crypto/rand (randomHex).
func randomID(nbytes int) string {
	var buf [32]byte
	for {
		var any uint64
		for i := 0; i < nbytes; i += 8 {
			v := mrand.Uint64()
			any |= v
			for k := 0; k < 8 && i+k < nbytes; k++ {
				b := byte(v >> (8 * k))
				buf[2*(i+k)] = hexDigits[b>>4]
				buf[2*(i+k)+1] = hexDigits[b&15]
			}
		}
		if any != 0 {
			return string(buf[:2*nbytes])
		}
	}
}

// NewSpanID is a random 16-hex-digit span id.
func NewSpanID() string { return randomID(8) }

// NewTraceID is a random 32-hex-digit trace id.
func NewTraceID() string { return randomID(16) }

type ctxKey struct{}

// WithTraceContext returns ctx carrying tc as the current position in the trace.
func WithTraceContext(ctx context.Context, tc TraceContext) context.Context {
	return &traceCtx{Context: ctx, tc: tc}
}

// traceCtx is a context carrying a TraceContext: one allocation where context.WithValue
// makes two (the context, and the value boxed in an interface), on every request. Every
// other key, Done, Err and Deadline are the parent's (context.WithCancel on it finds the
// parent's cancelCtx through Value, as through context.WithValue's context).
type traceCtx struct {
	context.Context
	tc TraceContext
}

// Value is the traceCtx itself for ctxKey (a pointer: no allocation), else the parent's.
func (c *traceCtx) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// FromContext is the trace context ctx carries, if any.
func FromContext(ctx context.Context) (TraceContext, bool) {
	if c, ok := ctx.Value(ctxKey{}).(*traceCtx); ok {
		return c.tc, true
	}
	return TraceContext{}, false
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
	for state != "" { // the members of strings.Split(state, ","), without the slice
		m, rest, _ := strings.Cut(state, ",")
		state = rest
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
