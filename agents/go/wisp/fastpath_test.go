package wisp

// The per-request fast paths write exactly what the straightforward code wrote: each is
// compared here with a reference written the plain way (encoding/json, strings.Split,
// the attribute list through Chunk.Payload).

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
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
	for i, h := range cases {
		if got, want := headersJSON(h), reference(h); got != want {
			t.Fatalf("case %d: headersJSON %q, encoding/json %q", i, got, want)
		}
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
		"/long?" + strings.Repeat("k=v&", 200),
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := shapeTarget(u), reference(u); got != want {
			t.Fatalf("%q: shapeTarget %q, reference %q", raw, got, want)
		}
	}
	if shapeTarget(nil) != "?" {
		t.Fatal("nil URL")
	}
}

func TestParseTraceparentMatchesTheSplitReading(t *testing.T) {
	reference := func(h string) (TraceContext, bool) {
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
	tid, sid := "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	for _, h := range []string{
		"00-" + tid + "-" + sid + "-01", " 00-" + tid + "-" + sid + "-00 ", "00-" + tid + "-" + sid + "-ff",
		"00-" + tid + "-" + sid + "-01-", "01-" + tid + "-" + sid + "-01-extra", "01-" + tid + "-" + sid + "-a7",
		"ff-" + tid + "-" + sid + "-01", "00-" + tid + "-" + sid, "00-" + tid + "-" + sid + "-1",
		"00-" + strings.Repeat("0", 32) + "-" + sid + "-01", "00-" + tid + "-0000000000000000-01",
		"00-" + strings.ToUpper(tid) + "-" + sid + "-01", "0-" + tid + "-" + sid + "-01", "", "---", "00---",
		"0g-" + tid + "-" + sid + "-01", "00-" + tid + "-" + sid + "-0f", "00-" + tid + "-" + sid + "-f0",
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
	if n > 16 {
		t.Fatalf("the server middleware allocates %.0f times per request (13 when written)", n)
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
