package wisp

// The per-request fast paths write exactly what the straightforward code wrote: each is
// compared here with a reference written the plain way (encoding/json, strings.Split,
// the attribute list through Chunk.Payload).

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRPCRecordEncodesLikeItsAttributes(t *testing.T) {
	hop := Hop{Protocol: "http", Library: "net/http", Method: "GET", Target: "/a?x=", Peer: "127.0.0.1:1"}
	named := hop
	named.Name = "checkout"
	withHeaders := hop
	withHeaders.Headers = `{"accept":"*/*"}`
	recs := []*rpcRec{
		{hop: hop, traceID: strings.Repeat("a", 32), spanID: strings.Repeat("b", 16), sampled: 1},
		{hop: named, traceID: "t", spanID: "s", server: true, parentSpan: "p"},
		{hop: withHeaders, traceID: "t", spanID: "s", server: true, parentSpan: "", sampled: 1,
			boundary: "http:GET /a"},
		{hop: withHeaders, traceID: "t", spanID: "s", server: true, boundary: "http:GET /a", callerUnsampled: true},
		{hop: withHeaders, traceID: "t", spanID: "s", server: false}, // a client keeps no headers
		{hop: Hop{Method: "GET", Target: "/a?x=", Protocol: "grpc"}, traceID: "t", spanID: "u"},
		{hop: Hop{Method: "GET /a", Target: "?x="}, traceID: "t", spanID: "u"}, // the same name
	}
	for i, rec := range recs {
		// Records around it share the string table: the interning order must match too.
		other := Record{Type: RecLocation, ID: 9, Attrs: []Attr{{"file", "x.go"}, {"name", "GET /a?x="}}}
		lazy := Chunk{Records: []Record{other, {Type: RecResource, ID: 7, rpc: rec}, other}}
		plain := Chunk{Records: []Record{other, {Type: RecResource, ID: 7, Attrs: rec.attrs()}, other}}
		if got, want := lazy.Payload(), plain.Payload(); !bytes.Equal(got, want) {
			t.Fatalf("case %d: typed rpc record encodes as\n%x\nits attributes as\n%x", i, got, want)
		}
	}
	// All in one chunk, twice, between plain records, through a reused scratch (the
	// flusher's way): the memo of the last values must give the string table's indices.
	var lazy, plain Chunk
	for round := 0; round < 2; round++ {
		for i, rec := range recs {
			lazy.Records = append(lazy.Records, Record{Type: RecResource, ID: uint64(i), rpc: rec})
			plain.Records = append(plain.Records, Record{Type: RecResource, ID: uint64(i), Attrs: rec.attrs()})
			other := Record{Type: RecUnit, ID: 1, Attrs: []Attr{{"name", rec.name()}, {"peer", "x"}}}
			lazy.Records, plain.Records = append(lazy.Records, other), append(plain.Records, other)
		}
	}
	var z Compressor
	for range 3 {
		got, err := z.frameChunk(&lazy, CodecDeflate)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := plain.Encode(CodecDeflate)
		if !bytes.Equal(got, want) {
			t.Fatal("a chunk of typed rpc records differs from its attributes' encoding")
		}
	}
}

func TestHeadersJSONIsEncodingJSON(t *testing.T) {
	reference := func(h http.Header) string {
		kept := map[string]string{}
		for _, k := range []string{"accept", "content-length", "content-type", "traceparent", "tracestate", "user-agent"} {
			if vs := h.Values(k); len(vs) > 0 {
				v := strings.Join(vs, ", ")
				if len(v) > 512 {
					v = v[:512]
				}
				kept[k] = v
			}
		}
		b, _ := json.Marshal(kept)
		return string(b)
	}
	cases := []http.Header{
		{},
		{"User-Agent": {"curl/8"}, "X-Secret": {"no"}},
		{"Accept": {"text/html", "application/json"}, "Content-Type": {"a<b>&c"}},
		{"Tracestate": {`k="v"\x`}, "Traceparent": {"00-x"}, "Content-Length": {"12"}},
		{"User-Agent": {"caf\xc3\xa9 \xff \u2028 \t\n\x01"}},
		{"User-Agent": {strings.Repeat("x", 600)}},
		{"Content-Type": {"a<b"}}, {"Accept": {"x>y"}}, {"Accept": {"p&q"}}, {"Accept": {"\x7f"}},
		{"Accept": {strings.Repeat("é", 300)}}, // cut inside a character: encoding/json writes U+FFFD
	}
	// Twice each, in turns: a header object the same as the last one made is that string
	// again, and one that differs is never the last one's.
	for round := 0; round < 2; round++ {
		for i, h := range cases {
			for range 2 {
				if got, want := headersJSON(h), reference(h); got != want {
					t.Fatalf("case %d: headersJSON %q, encoding/json %q", i, got, want)
				}
			}
		}
	}
	// headersJSON makes objects with a traceparent or tracestate afresh (never reused).
	if allowedHeaders[3].name != "traceparent" || allowedHeaders[4].name != "tracestate" {
		t.Fatal("allowedHeaders changed: headersJSON's have[3], have[4] name the wrong headers")
	}
}

func TestShapeTargetElidesQueryValues(t *testing.T) {
	reference := func(u *url.URL) string {
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
	for _, raw := range []string{
		"/a", "", "/a?x=1&y=2", "/a?x", "/a?&&", "/a?x=1=2&=3&y", "/p%20q?a=%41",
		"/long?" + strings.Repeat("k=v&", 200), "/a?x=9&y=8", "/a?x=1&z=2",
		strings.Repeat("/p", 300) + "?q=1", strings.Repeat("/p", 255) + "?q=1&r=2",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second time, the shape made the first time
			if got, want := shapeTarget(u), reference(u); got != want {
				t.Fatalf("%q: shapeTarget %q, reference %q", raw, got, want)
			}
		}
	}
	if shapeTarget(nil) != "?" {
		t.Fatal("nil URL")
	}
}

func TestParseTraceparentMatchesTheSplitReading(t *testing.T) {
	hexOK := func(s string, n int) bool { // the plain check: each byte in 0-9 or a-f
		if len(s) != n {
			return false
		}
		for _, c := range []byte(s) {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
		return true
	}
	reference := func(h string) (TraceContext, bool) {
		h = strings.TrimSpace(h)
		parts := strings.Split(h, "-")
		if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || (parts[0] == "00" && len(parts) != 4) {
			return TraceContext{}, false
		}
		if !hexOK(parts[0], 2) || !hexOK(parts[1], 32) || !hexOK(parts[2], 16) || !hexOK(parts[3], 2) {
			return TraceContext{}, false
		}
		if strings.Trim(parts[1], "0") == "" || strings.Trim(parts[2], "0") == "" {
			return TraceContext{}, false
		}
		f, _ := hex.DecodeString(parts[3])
		return TraceContext{TraceID: parts[1], SpanID: parts[2], Flags: f[0]}, true
	}
	tid, sid := "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	for _, h := range []string{
		"00-" + tid + "-" + sid + "-01", " 00-" + tid + "-" + sid + "-00 ", "00-" + tid + "-" + sid + "-ff",
		"00-" + tid + "-" + sid + "-01-", "01-" + tid + "-" + sid + "-01-extra", "01-" + tid + "-" + sid + "-a7",
		"ff-" + tid + "-" + sid + "-01", "00-" + tid + "-" + sid, "00-" + tid + "-" + sid + "-1",
		"00-" + strings.Repeat("0", 32) + "-" + sid + "-01", "00-" + tid + "-0000000000000000-01",
		"00-" + strings.ToUpper(tid) + "-" + sid + "-01", "0-" + tid + "-" + sid + "-01", "", "---", "00---",
		"0g-" + tid + "-" + sid + "-01", "00-" + tid + "-" + sid + "-0f", "00-" + tid + "-" + sid + "-f0",
		"00-" + strings.Repeat("0", 31) + "1-" + sid + "-01", "00-" + tid + "-000000000000000a-01",
		"00-" + tid[:30] + "\xc3\xa9-" + sid + "-01", "00-" + tid + "-" + sid[:15] + "\xff-01",
		"00-" + tid + "-" + sid + "-0/", "00-" + tid + "-" + sid + "-:0", "00-" + tid + "-" + sid + "-`0",
		"00-" + tid + "-" + sid + "-g0", "00-" + tid + "-" + sid + "-@0",
	} {
		got, gok := ParseTraceparent(h)
		want, wok := reference(h)
		if got != want || gok != wok {
			t.Fatalf("%q: got %+v %v, want %+v %v", h, got, gok, want, wok)
		}
	}
}

func TestIDsAreRandomLowerHex(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		s, tr := NewSpanID(), NewTraceID()
		if !lowerHex(s, 16) || !lowerHex(tr, 32) || strings.Trim(s, "0") == "" || strings.Trim(tr, "0") == "" {
			t.Fatalf("bad ids %q %q", s, tr)
		}
		if seen[s] || seen[tr] {
			t.Fatalf("repeated id after %d", i)
		}
		seen[s], seen[tr] = true, true
	}
	tc := TraceContext{TraceID: "t", SpanID: "s", Flags: 0xa5}
	if tc.Header() != "00-t-s-a5" {
		t.Fatal(tc.Header())
	}
}

// The agent's work per request, in allocations: a guard against losing the fast paths.
func TestHopAllocations(t *testing.T) {
	if err := Start(Config{Out: t.TempDir(), Service: "allocs", NoSignals: true, Control: "off"}); err != nil {
		t.Fatal(err)
	}
	defer Stop()
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {}))
	req, _ := http.NewRequest("GET", "http://svc/front?id=1", nil)
	req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	w := discardWriter{}
	n := testing.AllocsPerRun(200, func() { h.ServeHTTP(w, req) })
	if n > 7 {
		t.Fatalf("the server middleware allocates %.0f times per request (5 when written)", n)
	}
	// The client: wisp.Transport's allocations over its base's, for a call under a request's
	// trace context (a new span of its trace).
	ctx := WithTraceContext(context.Background(), TraceContext{TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331", Flags: 1})
	call, _ := http.NewRequestWithContext(ctx, "GET", "http://svc/back?id=1", nil)
	base := testing.AllocsPerRun(200, func() { _, _ = stubRT{}.RoundTrip(call) })
	wrapped := testing.AllocsPerRun(200, func() { _, _ = (&Transport{Base: stubRT{}}).RoundTrip(call) })
	if wrapped-base > 9 {
		t.Fatalf("wisp.Transport allocates %.0f times per call over its base's (7 when written)", wrapped-base)
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}

// The trace context's own context type behaves as context.WithValue's: the parent's values,
// cancellation and deadline show through, a nested one hides the outer, and
// context.WithCancel under it is cancelled with the parent (found through Value, no
// goroutine).
func TestTraceContextIsAContext(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	outer := TraceContext{TraceID: strings.Repeat("1", 32), SpanID: strings.Repeat("2", 16), Flags: 1}
	inner := TraceContext{TraceID: outer.TraceID, SpanID: strings.Repeat("3", 16), State: "a=b"}
	ctx := WithTraceContext(WithTraceContext(parent, outer), inner)
	if got, ok := FromContext(ctx); !ok || got != inner {
		t.Fatalf("FromContext %+v %v, want %+v", got, ok, inner)
	}
	if ctx.Value(key{}) != "v" {
		t.Fatal("the parent's value is not seen")
	}
	if _, ok := FromContext(parent); ok {
		t.Fatal("a context without one has a trace context")
	}
	child, stop := context.WithCancel(ctx)
	defer stop()
	cancel()
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a child of the trace context was not cancelled with its parent")
	}
	if ctx.Err() != context.Canceled || context.Cause(child) != context.Canceled {
		t.Fatalf("Err %v, Cause %v", ctx.Err(), context.Cause(child))
	}
}

// A Call ended twice writes its second end's message apart (a string of its own): the room
// in the call's record, over which the first end's message was made, is written once.
func TestCallEndedTwiceKeepsTheFirstMessage(t *testing.T) {
	if err := Start(Config{Out: t.TempDir(), Service: "twice", NoSignals: true, Control: "off"}); err != nil {
		t.Fatal(err)
	}
	defer Stop()
	tc := Outgoing(context.Background())
	c := ClientBegin(context.Background(), tc, Hop{Protocol: "http", Library: "net/http", Method: "GET", Target: "/"})
	if c.rec == nil {
		t.Fatal("the call is not recorded")
	}
	c.ClientEnd(200)
	first := unsafeRoom(&c.rec.logs[1])
	c.ClientEnd(503)
	if want := "23 " + strconv.Itoa(int(c.res)) + " 200"; first != want || unsafeRoom(&c.rec.logs[1]) != want {
		t.Fatalf("the first end's message is %q, want %q", first, want)
	}
	if !c.rec.ended {
		t.Fatal("the second end did not see the first")
	}
}

func unsafeRoom(r *hopRoom) string {
	n := bytes.IndexByte(r[:], 0)
	if n < 0 {
		n = len(r)
	}
	return string(r[:n])
}
