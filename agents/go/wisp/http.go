package wisp

// net/http: a server middleware (Handler) and a client RoundTripper (Transport) that carry
// W3C trace context (traceparent, tracestate) across the hop and record it (rpc.go).
// Only shapes are kept: method, path with query values elided, peer address, and on the
// server the allowlisted request headers.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// Transport is an http.RoundTripper that injects traceparent into each request (a new span
// of the request context's trace, see Outgoing) and records the call, which ends when the
// response's body is read to its end or closed (body.go): close every body, as net/http
// asks. Base is the transport that does the work (http.DefaultTransport when nil).
type Transport struct {
	Base http.RoundTripper
}

// RoundTrip implements http.RoundTripper; the caller's request is not modified.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	if active.Load() == nil {
		return base.RoundTrip(req)
	}
	ctx := req.Context()
	var tc TraceContext
	var call Call
	func() {
		defer func() { recoverFault("http.client", recover()) }()
		// Header keys in their canonical form, read from the map: what Header.Get does,
		// without canonicalising (an allocation) on every request.
		if existing, ok := ParseTraceparent(headerValue(req.Header, "Traceparent")); ok {
			tc = existing // the program (or another tracer) already propagates
			tc.State = headerValue(req.Header, "Tracestate")
		} else {
			tc = Outgoing(ctx)
			req = withTraceHeaders(req, tc)
		}
		call = ClientBegin(ctx, tc, Hop{
			Protocol: "http", Library: "net/http", Method: req.Method,
			Target: shapeTarget(req.URL), Peer: req.URL.Host,
		})
	}()
	resp, err := base.RoundTrip(req)
	if err != nil || resp == nil {
		call.ClientEnd(-1)
		return resp, err
	}
	// The call ends when the body is done, not at the headers (body.go).
	func() {
		defer func() { recoverFault("http.client", recover()) }()
		call.endWithBody(req, resp)
	}()
	return resp, err
}

// withTraceHeaders is a copy of req whose header carries tc (traceparent, and tracestate
// when tc has one): the request itself is not modified (the RoundTripper contract). A
// shallow copy with a new header map (the value slices of the other keys are shared, never
// written: the new keys get slices of their own) instead of req.Clone, which copies the
// URL, trailers and every header value too.
func withTraceHeaders(req *http.Request, tc TraceContext) *http.Request {
	o := new(outRequest) // the request and the new keys' value slices: one allocation
	o.req = *req
	h := make(http.Header, len(req.Header)+2)
	for k, v := range req.Header {
		h[k] = v
	}
	o.vals[0] = tc.Header()
	h["Traceparent"] = o.vals[0:1:1]
	if tc.State != "" {
		o.vals[1] = tc.State
		h["Tracestate"] = o.vals[1:2:2]
	}
	o.req.Header = h
	return &o.req
}

// outRequest is an outgoing request's copy with room for its trace headers' values.
type outRequest struct {
	req  http.Request
	vals [2]string
}

// headerValue is h.Get(key) for a key already in canonical form.
func headerValue(h http.Header, key string) string {
	if vs := h[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Client is an http.Client whose requests go through Transport.
func Client() *http.Client { return &http.Client{Transport: &Transport{}} }

// Handler wraps h: each request's trace context is extracted (or a root begun), put into
// the request's context (so outgoing calls through Transport continue it) and the request
// recorded as msg.recv ... rpc.reply.
func Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if active.Load() == nil {
			h.ServeHTTP(w, req)
			return
		}
		// The writer and the request's trace context, in one allocation.
		st := &serverState{sw: statusWriter{ResponseWriter: w, status: http.StatusOK}}
		sw := &st.sw
		var call Call
		var hctx context.Context // the handler's context: the trace's, and the instance's label
		func() {
			defer func() { recoverFault("http.server", recover()) }()
			parent, had := ParseTraceparent(headerValue(req.Header, "Traceparent"))
			if had {
				parent.State = headerValue(req.Header, "Tracestate")
			}
			own := ServerContext(parent, had)
			st.ctx = traceCtx{Context: req.Context(), tc: own} // WithTraceContext
			ctx := context.Context(&st.ctx)
			hctx = ctx
			call = serverBegin(ctx, parent, had, own, Hop{
				Protocol: "http", Library: "net/http", Method: req.Method,
				Target: shapeTarget(req.URL), Peer: req.RemoteAddr,
			}, func() string { return headersJSON(req.Header) })
			hctx = call.Context(ctx)
		}()
		if hctx != nil {
			req = req.WithContext(hctx) // one copy of the request
		}
		defer func() { call.ServerEnd(sw.status) }()
		h.ServeHTTP(sw, req)
	})
}

// serverState is what Handler makes for a recorded request.
type serverState struct {
	sw  statusWriter
	ctx traceCtx
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush, Hijack, ...).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// shapeTarget is the request's path with query values elided: /a?x=1&y=2 -> /a?x=&y=.
func shapeTarget(u *url.URL) string {
	if u == nil {
		return "?"
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		// Each '&'-separated member becomes its key and '=' (strings.Split's members:
		// empty ones too), written into a buffer on the stack and made a string only when
		// it differs from the last shape made (a service's calls have a few shapes).
		var buf [256]byte
		b := append(buf[:0], p...)
		b = append(b, '?')
		rest := u.RawQuery
		for len(b) <= 512 {
			member, tail, more := strings.Cut(rest, "&")
			k, _, _ := strings.Cut(member, "=")
			b = append(b, k...)
			b = append(b, '=')
			if !more {
				break
			}
			b = append(b, '&')
			rest = tail
		}
		return reuse(&lastTarget, b[:min(len(b), 512)])
	}
	if len(p) > 512 {
		p = p[:512]
	}
	return p
}

// The last query shape and header object made: most requests of a service repeat them.
var lastTarget, lastHeaders atomic.Pointer[string]

// reuse is string(b), the last string made through cache when it is the same (no
// allocation then).
func reuse(cache *atomic.Pointer[string], b []byte) string {
	if last := cache.Load(); last != nil && *last == string(b) {
		return *last
	}
	s := string(b)
	cache.Store(&s)
	return s
}

// allowedHeaders are the request headers a server resource keeps (the contract's
// allowlist, in its JSON key order), with their canonical forms (the http.Header keys).
var allowedHeaders = [...]struct{ name, canonical string }{
	{"accept", "Accept"}, {"content-length", "Content-Length"}, {"content-type", "Content-Type"},
	{"traceparent", "Traceparent"}, {"tracestate", "Tracestate"}, {"user-agent", "User-Agent"},
}

// headersJSON is the JSON object of the allowlisted headers, exactly as encoding/json
// writes the map of them (keys sorted, HTML-safe escapes): written directly when every
// value is plain printable ASCII, else through encoding/json.
func headersJSON(h http.Header) string {
	var vals [len(allowedHeaders)]string
	var have [len(allowedHeaders)]bool
	size, plain := 2, true
	for i, a := range allowedHeaders {
		vs := h[a.canonical]
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		if len(vs) > 1 {
			v = strings.Join(vs, ", ")
		}
		if len(v) > 512 {
			v = v[:512]
		}
		vals[i], have[i] = v, true
		size += len(a.name) + len(v) + 6
		plain = plain && plainJSON(v)
	}
	if !plain {
		kept := map[string]string{}
		for i, a := range allowedHeaders {
			if have[i] {
				kept[a.name] = vals[i]
			}
		}
		b, _ := json.Marshal(kept) // encoding/json sorts map keys
		return string(b)
	}
	var buf [256]byte
	b := buf[:0]
	if size > len(buf) {
		b = make([]byte, 0, size)
	}
	b = append(b, '{')
	for i, a := range allowedHeaders {
		if !have[i] {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, a.name...)
		b = append(b, `":"`...)
		b = append(b, vals[i]...)
		b = append(b, '"')
	}
	b = append(b, '}')
	if have[3] || have[4] { // a traceparent or tracestate: new with every request
		return string(b)
	}
	return reuse(&lastHeaders, b)
}

// plainJSON says s is written by encoding/json as it is: printable ASCII without the
// characters it escapes (quote, backslash, and <, >, & for HTML safety).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// recoverFault turns a panic inside the agent into a fault record.
func recoverFault(where string, p any) {
	if p == nil {
		return
	}
	if r := active.Load(); r != nil {
		r.fault(where, panicError{p})
	}
}

type panicError struct{ v any }

func (p panicError) Error() string {
	return "panic: " + strings.TrimSpace(strings.ReplaceAll(sprint(p.v), "\n", " "))
}

func sprint(v any) string {
	switch x := v.(type) {
	case error:
		return x.Error()
	case string:
		return x
	}
	return "non-error panic value"
}
