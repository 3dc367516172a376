package wisp

// net/http: a server middleware (Handler) and a client RoundTripper (Transport) that carry
// W3C trace context (traceparent, tracestate) across the hop and record it (rpc.go).
// Only shapes are kept: method, path with query values elided, peer address, and on the
// server the allowlisted request headers.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// Transport is an http.RoundTripper that injects traceparent into each request (a new span
// of the request context's trace, see Outgoing) and records the call. Base is the
// transport that does the work (http.DefaultTransport when nil).
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
		if existing, ok := ParseTraceparent(req.Header.Get("traceparent")); ok {
			tc = existing // the program (or another tracer) already propagates
			tc.State = req.Header.Get("tracestate")
		} else {
			tc = Outgoing(ctx)
			out := req.Clone(ctx)
			out.Header.Set("traceparent", tc.Header())
			if tc.State != "" {
				out.Header.Set("tracestate", tc.State)
			}
			req = out
		}
		call = ClientBegin(ctx, tc, Hop{
			Protocol: "http", Library: "net/http", Method: req.Method,
			Target: shapeTarget(req.URL), Peer: req.URL.Host,
		})
	}()
	resp, err := base.RoundTrip(req)
	status := -1
	if err == nil && resp != nil {
		status = resp.StatusCode
	}
	call.ClientEnd(status)
	return resp, err
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
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		var call Call
		func() {
			defer func() { recoverFault("http.server", recover()) }()
			parent, had := ParseTraceparent(req.Header.Get("traceparent"))
			if had {
				parent.State = req.Header.Get("tracestate")
			}
			own := ServerContext(parent, had)
			req = req.WithContext(WithTraceContext(req.Context(), own))
			call = ServerBegin(req.Context(), parent, had, own, Hop{
				Protocol: "http", Library: "net/http", Method: req.Method,
				Target: shapeTarget(req.URL), Peer: req.RemoteAddr, Headers: headersJSON(req.Header),
			})
			if ctx := call.Context(req.Context()); ctx != req.Context() {
				req = req.WithContext(ctx)
			}
		}()
		defer func() { call.ServerEnd(sw.status) }()
		h.ServeHTTP(sw, req)
	})
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
		keys := strings.Split(u.RawQuery, "&")
		for i, kv := range keys {
			k, _, _ := strings.Cut(kv, "=")
			keys[i] = k + "="
		}
		p += "?" + strings.Join(keys, "&")
	}
	if len(p) > 512 {
		p = p[:512]
	}
	return p
}

// allowedHeaders are the request headers a server resource keeps (the contract's allowlist).
var allowedHeaders = []string{"accept", "content-length", "content-type", "traceparent", "tracestate", "user-agent"}

func headersJSON(h http.Header) string {
	kept := map[string]string{}
	for _, k := range allowedHeaders {
		if vs := h.Values(k); len(vs) > 0 {
			v := strings.Join(vs, ", ")
			if len(v) > 512 {
				v = v[:512]
			}
			kept[k] = v
		}
	}
	b, _ := json.Marshal(kept) // encoding/json sorts map keys
	return string(b)
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
