package wisp

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// readBack is a test-only reader: every record of every chunk of a .wtrace file, checking
// the framing (magic, lengths, CRC of the uncompressed payload) on the way.
func readBack(t *testing.T, path string) (records []Record, events int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data[:16], FileHeader) {
		t.Fatalf("header % x", data[:16])
	}
	for p := data[16:]; len(p) > 0; {
		if len(p) < 20 || string(p[:4]) != "WCHK" {
			t.Fatalf("bad chunk header at %d bytes from the end", len(p))
		}
		stored := binary.LittleEndian.Uint32(p[8:])
		rawLen := binary.LittleEndian.Uint32(p[12:])
		payload := p[20 : 20+stored]
		if p[4] == byte(CodecDeflate) {
			zr, err := zlib.NewReader(bytes.NewReader(payload))
			if err != nil {
				t.Fatal(err)
			}
			payload, _ = io.ReadAll(zr)
		}
		if uint32(len(payload)) != rawLen || crc32.ChecksumIEEE(payload) != binary.LittleEndian.Uint32(p[16:]) {
			t.Fatalf("chunk length or CRC wrong")
		}
		recs, n := parsePayload(t, payload)
		records = append(records, recs...)
		events += n
		p = p[20+stored:]
	}
	return records, events
}

func parsePayload(t *testing.T, b []byte) ([]Record, int) {
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			t.Fatal("bad uvarint")
		}
		b = b[n:]
		return v
	}
	var strs []string
	for i, n := 0, int(uv()); i < n; i++ {
		l := int(uv())
		strs = append(strs, string(b[:l]))
		b = b[l:]
	}
	var recs []Record
	for i, n := 0, int(uv()); i < n; i++ {
		r := Record{Type: b[0]}
		b = b[1:]
		r.ID = uv()
		for j, na := 0, int(uv()); j < na; j++ {
			key := strs[uv()]
			vt := b[0]
			b = b[1:]
			switch vt {
			case 0:
				z := uv()
				r.Attrs = append(r.Attrs, Attr{key, int64(z>>1) ^ -int64(z&1)})
			case 1:
				r.Attrs = append(r.Attrs, Attr{key, strs[uv()]})
			case 2:
				l := int(uv())
				r.Attrs = append(r.Attrs, Attr{key, b[:l]})
				b = b[l:]
			}
		}
		recs = append(recs, r)
	}
	return recs, int(uv())
}

func attr(r Record, key string) Value {
	for _, a := range r.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return nil
}

func startTemp(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := Start(Config{Out: dir, Service: "unit test", NoSignals: true, Control: "off"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func segment(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.wtrace"))
	if len(files) != 1 {
		t.Fatalf("%d segments in %s", len(files), dir)
	}
	return files[0]
}

// A recording holds the process record, the lock's resource with its creation site, and
// one complete go-exectrace stream that starts with its header and the tracer's magic.
func TestRecordingHoldsLocksAndTheTracerStream(t *testing.T) {
	dir := startTemp(t)
	pid := ProcessID()
	m := NewMutex("counter")
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				m.Lock()
				m.Unlock() //nolint:staticcheck // an empty critical section is the point
			}
		}()
	}
	wg.Wait()
	Stop()
	Stop() // twice is fine
	path := segment(t, dir)
	if !strings.HasPrefix(filepath.Base(path), "unit_test-") || !strings.Contains(path, pid[:8]) {
		t.Fatalf("segment name %s", path)
	}
	recs, events := readBack(t, path)
	var stream []byte
	var lock, proc, loc *Record
	last := int64(-1)
	for i := range recs {
		r := &recs[i]
		switch r.Type {
		case RecProcess:
			proc = r
		case RecResource:
			if attr(*r, "name") == "counter" {
				lock = r
			}
		case RecLocation:
			if strings.HasSuffix(attr(*r, "file").(string), "agent_test.go") {
				loc = r
			}
		case RecEmbedded:
			stream = append(stream, attr(*r, "data").([]byte)...)
			last = attr(*r, "more").(int64)
		}
	}
	if proc == nil || attr(*proc, "process_id") != pid || attr(*proc, "runtime") != "go" {
		t.Fatalf("process record %+v", proc)
	}
	if lock == nil || attr(*lock, "kind") != "lock" || loc == nil || attr(*lock, "loc") != int64(loc.ID) {
		t.Fatalf("lock %+v at %+v", lock, loc)
	}
	head, rest, _ := bytes.Cut(stream, []byte("\n"))
	if !bytes.Contains(head, []byte(pid)) || !bytes.HasPrefix(rest, []byte("go 1.")) || last != 0 {
		t.Fatalf("stream header %q, trace starts %q, last more=%d", head, rest[:min(16, len(rest))], last)
	}
	if events < 3 {
		t.Fatalf("%d agent events (anchors, flushes)", events)
	}
}

// Without a recording the wrappers are plain mutexes.
func TestMutexWithoutAgent(t *testing.T) {
	var m RWMutex
	m.RLock()
	if m.TryLock() {
		t.Fatal("TryLock succeeded under a read lock")
	}
	m.RUnlock()
	m.Lock()
	m.Unlock()
	var mu Mutex
	mu.Lock()
	if mu.TryLock() {
		t.Fatal("TryLock succeeded on a locked mutex")
	}
	mu.Unlock()
}

// The client injects a traceparent of a new span; the server continues the caller's trace
// and both record an rpc resource with the ids the hop linker matches.
func TestHTTPPropagation(t *testing.T) {
	dir := startTemp(t)
	var seen string
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Get("traceparent")
		tc, ok := FromContext(r.Context())
		if !ok {
			t.Error("no trace context in the handler's request")
		}
		w.Header().Set("X-Span", tc.SpanID)
		w.WriteHeader(201)
	})))
	defer srv.Close()
	resp, err := Client().Get(srv.URL + "/items?id=7")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	serverSpan := resp.Header.Get("X-Span")
	Stop()
	sent, ok := ParseTraceparent(seen)
	if !ok {
		t.Fatalf("server saw traceparent %q", seen)
	}
	recs, _ := readBack(t, segment(t, dir))
	var client, server *Record
	for i := range recs {
		if recs[i].Type == RecResource && attr(recs[i], "kind") == "rpc" {
			if attr(recs[i], "parent_span_id") == nil {
				client = &recs[i]
			} else {
				server = &recs[i]
			}
		}
	}
	if client == nil || server == nil {
		t.Fatal("missing rpc resources")
	}
	if attr(*client, "span_id") != sent.SpanID || attr(*server, "parent_span_id") != sent.SpanID ||
		attr(*server, "trace_id") != sent.TraceID || attr(*server, "span_id") != serverSpan {
		t.Fatalf("client %+v server %+v sent %+v", client.Attrs, server.Attrs, sent)
	}
	if attr(*client, "target") != "/items?id=" || attr(*server, "method") != "GET" {
		t.Fatalf("shapes: %v %v", attr(*client, "target"), attr(*server, "method"))
	}
}

// With the tracer off, a hop is the agent's own event and its goroutine is known only by
// number: the unit record says so (provisional), so a loader lets the tracer's stream name
// it whichever record it reads last (docs/format.md).
func TestHopWithoutTheTracerDefinesItsGoroutineProvisionally(t *testing.T) {
	dir := t.TempDir()
	if err := Start(Config{Out: dir, Service: "unit test", NoSignals: true, Control: "off", NoTracer: true}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})))
	defer srv.Close()
	resp, err := Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	Stop()
	recs, _ := readBack(t, segment(t, dir))
	guesses := 0
	for _, r := range recs {
		if r.Type != RecUnit {
			continue
		}
		name, _ := attr(r, "name").(string)
		if attr(r, "provisional") != int64(1) || !strings.HasPrefix(name, "goroutine #") ||
			fmt.Sprint(r.ID-1) != strings.TrimPrefix(name, "goroutine #") {
			t.Fatalf("unit record %d %+v", r.ID, r.Attrs)
		}
		guesses++
	}
	if guesses < 2 { // the client's goroutine and the handler's
		t.Fatalf("%d provisional unit records", guesses)
	}
}

// Garbage in the environment is one clear error naming the variable; nothing else.
func TestConfigFromEnv(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	if _, err := configFrom(env(map[string]string{})); err != ErrNotConfigured {
		t.Fatalf("no WILLOWISP_OUT: %v", err)
	}
	if _, err := configFrom(env(map[string]string{"WILLOWISP_OUT": "/x", "WILLOWISP_DISABLED": "1"})); err != ErrNotConfigured {
		t.Fatalf("disabled: %v", err)
	}
	for k, v := range map[string]string{"WILLOWISP_MODE": "fast", "WILLOWISP_TRACE_RATIO": "2", "WILLOWISP_CLOCK_OFFSET_NS": "x"} {
		_, err := configFrom(env(map[string]string{"WILLOWISP_OUT": "/x", k: v}))
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Fatalf("%s=%s: %v", k, v, err)
		}
	}
	c, err := configFrom(env(map[string]string{"WILLOWISP_OUT": "/x", "OTEL_SERVICE_NAME": "svc", "WILLOWISP_MODE": "hops",
		"WILLOWISP_TRACE_RATIO": "0.25", "WILLOWISP_CLOCK_OFFSET_NS": "-5"}))
	if err != nil || c.Service != "svc" || c.Mode != "hops" || c.TraceRatio != 0.25 || c.ClockOffsetNS != -5 {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestTraceparent(t *testing.T) {
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tc, ok := ParseTraceparent(good)
	if !ok || tc.Header() != good || !tc.Sampled() {
		t.Fatalf("%+v %v", tc, ok)
	}
	for _, bad := range []string{"", "zz", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		if _, ok := ParseTraceparent(bad); ok {
			t.Fatalf("accepted %q", bad)
		}
	}
}

// Data accesses define one data resource per name; a message's consumer records the
// producer's span id as its parent, with the same destination and message id.
func TestAccessAndMessages(t *testing.T) {
	dir := startTemp(t)
	ctx := WithTraceContext(bg, TraceContext{TraceID: NewTraceID(), SpanID: NewSpanID(), Flags: 1})
	Access(ctx, "cart:42", "redis", false)
	Access(ctx, "cart:42", "redis", true)
	m := Message{Protocol: "amqp", Library: "test", Destination: "orders", MessageID: "m-1"}
	sent := MessageSend(ctx, m)
	got := MessageReceive(bg, m, sent.Header())
	if tc, _ := FromContext(got); tc.TraceID != sent.TraceID {
		t.Fatalf("consumer context %+v, sent %+v", tc, sent)
	}
	Stop()
	recs, _ := readBack(t, segment(t, dir))
	data, producer, consumer := 0, 0, 0
	for _, r := range recs {
		switch {
		case r.Type == RecResource && attr(r, "kind") == "data" && attr(r, "name") == "cart:42":
			data++
		case r.Type == RecResource && attr(r, "kind") == "message" && attr(r, "span_id") == sent.SpanID:
			producer++
		case r.Type == RecResource && attr(r, "kind") == "message" && attr(r, "parent_span_id") == sent.SpanID:
			if attr(r, "message_id") != "m-1" || attr(r, "destination") != "orders" {
				t.Fatalf("consumer %+v", r.Attrs)
			}
			consumer++
		}
	}
	if data != 1 || producer != 1 || consumer != 1 {
		t.Fatalf("data %d producer %d consumer %d", data, producer, consumer)
	}
}

// A segment that can no longer be written (a full disk, a closed descriptor) costs the
// program nothing: operations go on, the lost chunks are counted as drops and a fault.
func TestWriteFailuresAreCountedNotRaised(t *testing.T) {
	startTemp(t)
	r := active.Load()
	r.wmu.Lock()
	_ = r.out.(*fileSink).f.Close() // every later write fails with EBADF
	r.wmu.Unlock()
	m := NewMutex("after the disk filled")
	for i := 0; i < 100; i++ {
		m.Lock()
		m.Unlock() //nolint:staticcheck
	}
	r.mu.Lock()
	r.anchorLocked()
	r.mu.Unlock()
	if err := r.flush(false); err == nil {
		t.Fatal("a write to a closed file succeeded")
	}
	_ = r.flush(false)
	Stop()
	// one fault per failure run (where: write), and one for the tracer stream the first
	// refused piece ended (where: trace), if a piece was pending then
	if r.faults < 1 || r.faults > 2 || r.dropped < 2 {
		t.Fatalf("faults %d (want 1 per failure run, +1 for the tracer stream), dropped %d", r.faults, r.dropped)
	}
}

// At the size limit the flusher rotates: every segment starts with the process record
// (its segment number) and holds one complete tracer stream of its own, numbered on.
func TestSegmentsRotateWithATracerStreamEach(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Out: dir, Service: "rotate", NoSignals: true, Control: "off", SegmentBytes: 64 << 10, FlushEvery: 10 * time.Millisecond}
	if err := Start(cfg); err != nil {
		t.Fatal(err)
	}
	m := NewMutex("busy")
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.wtrace"))
		if len(files) >= 3 || time.Now().After(deadline) {
			break
		}
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.Lock()
				m.Unlock() //nolint:staticcheck
			}()
		}
		wg.Wait()
	}
	Stop()
	files, _ := filepath.Glob(filepath.Join(dir, "*.wtrace"))
	if len(files) < 3 {
		t.Fatalf("%d segments", len(files))
	}
	seen := map[uint64]bool{}
	for n := 1; n <= len(files); n++ {
		path := filepath.Join(dir, fmt.Sprintf("rotate-%d-%s-%d.wtrace", os.Getpid(), processIDOf(files[0]), n))
		recs, _ := readBack(t, path)
		if recs[0].Type != RecProcess || attr(recs[0], "segment") != int64(n) {
			t.Fatalf("segment %d starts with %+v", n, recs[0])
		}
		var stream []byte
		var id uint64
		last := int64(-1)
		for _, r := range recs {
			if r.Type == RecEmbedded {
				if id != 0 && r.ID != id {
					t.Fatalf("segment %d holds streams %d and %d", n, id, r.ID)
				}
				id = r.ID
				stream = append(stream, attr(r, "data").([]byte)...)
				last = attr(r, "more").(int64)
			}
		}
		head, rest, _ := bytes.Cut(stream, []byte("\n"))
		if seen[id] || !bytes.Contains(head, []byte(fmt.Sprintf(`"stream":%d`, id))) || !bytes.HasPrefix(rest, []byte("go 1.")) || last != 0 {
			t.Fatalf("segment %d: stream %d header %q, complete %v", n, id, head, last == 0)
		}
		seen[id] = true
	}
}

// processIDOf is the process id prefix in a segment's name.
func processIDOf(path string) string {
	parts := strings.Split(filepath.Base(path), "-")
	return parts[len(parts)-2]
}
