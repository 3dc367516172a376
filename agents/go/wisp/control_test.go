package wisp

// The control channel from Go: garbage of every shape never panics the agent or stops its
// listener, the channel answers after each input, and boundaries parse as in Python.
// (tests/agents/test_go_agent.py replays the shared protocol corpus over both transports.)

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testToken = "0123456789abcdef0123456789abcdef"

func startControlled(t *testing.T) *controlServer {
	t.Helper()
	rt, err := os.MkdirTemp("/tmp", "wc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	if err := os.Chmod(rt, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Out: t.TempDir(), Service: "control test", NoSignals: true, Control: "tcp",
		RuntimeDir: rt, ControlToken: testToken, Mode: "hops"}
	if err := Start(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(Stop)
	r := active.Load()
	if r.ctl == nil || r.ctl.unixPath == "" || r.ctl.tcpAddr == "" {
		t.Fatalf("no control channel (faults %d)", r.faults)
	}
	return r.ctl
}

func wctl(obj any) []byte {
	b, _ := json.Marshal(obj)
	return rawFrame("WCTL", b)
}

func rawFrame(magic string, body []byte) []byte {
	out := []byte(magic)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(body)))
	return append(out, body...)
}

// exchange sends data, half-closes and returns the replies until the agent closed.
func exchange(t *testing.T, network, addr string, data []byte) []map[string]any {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(data)
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
	got, _ := io.ReadAll(c)
	var out []map[string]any
	for len(got) > 0 {
		if len(got) < 8 || string(got[:4]) != "WCTL" {
			t.Fatalf("reply is not a frame: %q", got)
		}
		n := int(binary.LittleEndian.Uint32(got[4:]))
		var m map[string]any
		if len(got) < 8+n || json.Unmarshal(got[8:8+n], &m) != nil {
			t.Fatalf("reply body: %q", got)
		}
		out = append(out, m)
		got = got[8+n:]
	}
	return out
}

func hello() []byte {
	return wctl(map[string]any{"op": "hello", "versions": []int{1}, "token": testToken})
}

func alive(t *testing.T, network, addr string) {
	t.Helper()
	replies := exchange(t, network, addr, append(hello(), wctl(map[string]any{"op": "ping", "id": 7})...))
	if len(replies) != 2 || replies[0]["ok"] != true || replies[1]["ok"] != true || replies[1]["id"] != 7.0 {
		t.Fatalf("the channel does not answer: %v", replies)
	}
}

// Random bytes, random frames and mutated valid conversations: every reply is a
// well-formed frame, the listener keeps answering, and the program goes on.
func TestControlGarbageNeverPanics(t *testing.T) {
	s := startControlled(t)
	rng := rand.New(rand.NewSource(42))
	good := append(hello(), wctl(map[string]any{"op": "enable", "boundary": "entry=http:GET /x"})...)
	good = append(good, wctl(map[string]any{"op": "status"})...)
	bodies := [][]byte{
		[]byte(`{"op":"hello","versions":[1e400],"token":"` + testToken + `"}`),
		[]byte(`{"op":"hello","versions":["1"],"token":"` + testToken + `"}`),
		[]byte(`{"op":"hello","versions":[],"token":null}`),
		[]byte(`{"op":"hello","versions":[1],"token":"` + testToken + `"} trailing`),
		[]byte(`{"op":"enable","boundary":"entry=\u0000:\ud800;runtimes=,,"}`),
		[]byte(`{"op":{"x":1},"id":[1]}`),
		bytes.Repeat([]byte("["), 20000),
		[]byte("\xff\xfe\xfd"),
		{},
	}
	networks := [][2]string{{"unix", s.unixPath}, {"tcp", s.tcpAddr}}
	for i := 0; i < 300; i++ {
		var data []byte
		switch i % 4 {
		case 0:
			data = make([]byte, rng.Intn(512))
			rng.Read(data)
		case 1:
			data = append(hello(), rawFrame("WCTL", bodies[rng.Intn(len(bodies))])...)
		case 2:
			data = append([]byte{}, good...)
			for k := 0; k < 1+rng.Intn(8); k++ {
				data[rng.Intn(len(data))] = byte(rng.Intn(256))
			}
		case 3:
			data = good[:rng.Intn(len(good))]
		}
		nw := networks[i%2]
		for _, reply := range exchange(t, nw[0], nw[1], data) {
			ok, _ := reply["ok"].(bool)
			if e, isErr := reply["error"].(map[string]any); !ok && (!isErr || e["code"] == nil) {
				t.Fatalf("input %d: malformed reply %v", i, reply)
			}
		}
		if i%25 == 0 {
			alive(t, nw[0], nw[1])
		}
	}
	alive(t, "unix", s.unixPath)
	alive(t, "tcp", s.tcpAddr)
	if s.internal.Load() != 0 {
		t.Fatalf("%d internal errors", s.internal.Load())
	}
}

// A fifth connection while four are open is told busy at once; the others still work.
func TestControlBusy(t *testing.T) {
	s := startControlled(t)
	var open []net.Conn
	for i := 0; i < ctlMaxConns; i++ {
		c, err := net.Dial("unix", s.unixPath)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write(hello())
		var head [8]byte
		if _, err := io.ReadFull(c, head[:]); err != nil { // served: its hello is answered
			t.Fatal(err)
		}
		body := make([]byte, binary.LittleEndian.Uint32(head[4:]))
		_, _ = io.ReadFull(c, body)
		open = append(open, c)
	}
	replies := exchange(t, "tcp", s.tcpAddr, hello())
	if len(replies) != 1 || replies[0]["error"].(map[string]any)["code"] != "busy" {
		t.Fatalf("fifth connection: %v", replies)
	}
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n < ctlMaxConns || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // the server notices the close
	}
	alive(t, "tcp", s.tcpAddr)
}

// In hops mode the execution tracer runs only while a boundary is switched on.
func TestHopsModeTracerFollowsBoundaries(t *testing.T) {
	s := startControlled(t)
	r := s.r
	if r.tracing.Load() {
		t.Fatal("hops mode without a boundary runs the tracer")
	}
	replies := exchange(t, "unix", s.unixPath, append(hello(),
		wctl(map[string]any{"op": "enable", "boundary": "entry=http:POST /checkout;runtimes=go"})...))
	if len(replies) != 2 || replies[1]["ok"] != true || !r.tracing.Load() {
		t.Fatalf("enable: %v, tracing %v", replies, r.tracing.Load())
	}
	replies = exchange(t, "unix", s.unixPath, append(hello(),
		wctl(map[string]any{"op": "disable", "boundary": "4f365009"})...))
	if len(replies) != 2 || replies[1]["ok"] != true || r.tracing.Load() {
		t.Fatalf("disable by id: %v, tracing %v", replies, r.tracing.Load())
	}
}

func TestBoundarySpecs(t *testing.T) {
	b, err := ParseBoundary(" entry = http:POST /checkout ; runtimes=python, go", "test")
	if err != nil || b.Entry != "http:POST /checkout" || b.ID() != "4f365009" || len(b.Runtimes) != 2 {
		t.Fatalf("%+v %v", b, err)
	}
	for _, bad := range []string{"entry=", "exit=http:reply", "entry=http:/x;entry=http:/y", "entry=http:/x;exit=reply", "entry=http:/x;runtimes=cobol", "nonsense"} {
		if _, err := ParseBoundary(bad, "test"); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzControlRequest: any body after or instead of a hello is answered without a panic.
func FuzzControlRequest(f *testing.F) {
	for _, seed := range []string{`{"op":"ping"}`, `{"op":"enable","boundary":"entry=http:/x"}`, `[`, `{"id":1e99}`, "\xff"} {
		f.Add([]byte(seed), true)
	}
	s := &controlServer{r: &recorder{cfg: Config{NoTracer: true}}, token: testToken, conns: map[net.Conn]bool{}}
	f.Fuzz(func(t *testing.T, body []byte, helloDone bool) {
		h := helloDone
		reply, _ := s.handle(&h, body)
		if _, err := json.Marshal(reply); err != nil {
			t.Fatal(err)
		}
	})
}

// A runtime folder someone else could enter (mode 0755), or a file in its place: no
// channel, one fault, and recording goes on.
func TestUnsafeRuntimeFolderIsAFaultNotAnError(t *testing.T) {
	open, err := os.MkdirTemp("/tmp", "wc-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(open)
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	file := open + "/not-a-folder"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{open, file} {
		cfg := Config{Out: t.TempDir(), Service: "unsafe", NoSignals: true, RuntimeDir: dir, NoTracer: true}
		if err := Start(cfg); err != nil {
			t.Fatal(err)
		}
		r := active.Load()
		if r.ctl != nil || r.faults != 1 {
			t.Fatalf("%s: channel %v, %d faults", dir, r.ctl, r.faults)
		}
		Stop()
	}
	if names, _ := os.ReadDir(open); len(names) != 1 {
		t.Fatalf("the agent wrote into an unsafe folder: %v", names)
	}
}

// Entries match as in src/willowisp/model/boundary.py (fnmatch globs, `*` crossing `/`).
func TestBoundaryMatching(t *testing.T) {
	cases := []struct {
		entry, protocol, method, target string
		want                            bool
	}{
		{"http:POST /checkout", "http", "post", "/checkout?x=1", true},
		{"http:POST /checkout", "http", "GET", "/checkout", false},
		{"http:/orders/*", "http", "GET", "/orders/7/items", true},
		{"http:/orders/?", "http", "GET", "/orders/17", false},
		{"http:GET", "http", "GET", "/anything", true},
		{"http:* /a[0-9]", "http", "PUT", "/a5", true},
		{"http:/a[!0-9]", "http", "PUT", "/a5", false},
		{"grpc:shop.Cart/*", "grpc", "", "/shop.Cart/Add", true},
		{"amqp:orders.*", "amqp", "", "orders.eu", true},
		{"amqp:orders.*", "kafka", "", "orders.eu", false},
		{"http:/a[b", "http", "GET", "/a[b", true},
	}
	for _, c := range cases {
		if got := (Boundary{Entry: c.entry}).Matches(c.protocol, c.method, c.target); got != c.want {
			t.Errorf("%q vs %s %s %s: %v", c.entry, c.protocol, c.method, c.target, got)
		}
	}
}

// status says where the chunks go: with no collector, the segment file being written.
func TestStatusSaysTheSegmentFile(t *testing.T) {
	s := startControlled(t)
	replies := exchange(t, "unix", s.unixPath, append(hello(), wctl(map[string]any{"op": "status"})...))
	if len(replies) != 2 || replies[1]["ok"] != true {
		t.Fatalf("status: %v", replies)
	}
	sink, _ := replies[1]["result"].(map[string]any)["sink"].(map[string]any)
	path, _ := sink["path"].(string)
	if sink["kind"] != "file" || filepath.Dir(path) != s.r.cfg.Out || !strings.HasSuffix(path, "-1.wtrace") {
		t.Fatalf("sink %v, want the first segment file in %s", sink, s.r.cfg.Out)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the sink's file: %v", err)
	}
}
