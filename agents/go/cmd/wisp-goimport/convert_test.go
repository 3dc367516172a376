package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/trace"
	"slices"
	"strings"
	"testing"
)

// traceSomething records, in this process, a channel handoff between two goroutines.
func traceSomething(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	ch := make(chan int)
	done := make(chan bool)
	go func() { // receives: parks until the sender comes
		<-ch
		done <- true
	}()
	go func() {
		ch <- 1
	}()
	<-done
	trace.Stop()
	return buf.Bytes()
}

func lines(t *testing.T, stream []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// The stream of a real trace has a header, creations, a channel wait and who ended it.
func TestStreamHasCreateBlockUnblock(t *testing.T) {
	data := traceSomething(t)
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if _, err := convert(bytes.NewReader(data), w); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	ls := lines(t, out.Bytes())
	if ls[0]["t"] != "header" || ls[0]["format"] != float64(StreamFormat) {
		t.Fatalf("first line is not the header: %v", ls[0])
	}
	if last := ls[len(ls)-1]; last["t"] != "summary" || last["complete"] != true {
		t.Fatalf("last line is not a complete summary: %v", last)
	}
	created := map[float64]string{}
	blockedOnChan := map[float64]bool{}
	var wakes []map[string]any
	for _, l := range ls {
		switch l["t"] {
		case "create":
			created[l["g"].(float64)] = l["fn"].(string)
		case "block":
			if strings.HasPrefix(l["reason"].(string), "chan ") {
				blockedOnChan[l["g"].(float64)] = true
			}
		case "unblock":
			wakes = append(wakes, l)
		}
	}
	found := false
	for _, u := range wakes {
		g, by := u["g"].(float64), u["by"].(float64)
		if blockedOnChan[g] && strings.Contains(created[g], "traceSomething") &&
			strings.Contains(created[by], "traceSomething") && g != by {
			found = true
		}
	}
	if !found {
		t.Fatalf("no goroutine of the test woke another from a channel wait; creates=%v unblocks=%v", created, wakes)
	}
}

// Bytes that are not a trace end with exit status 2 and one line on standard error.
func TestNotATrace(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(nil, strings.NewReader("hello, not a trace at all"), &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if msg := stderr.String(); strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "not a Go execution trace") {
		t.Fatalf("stderr %q", msg)
	}
}

// A trace cut in its first generation cannot be read: exit 2, the file named.
func TestTruncated(t *testing.T) {
	data := traceSomething(t)
	p := filepath.Join(t.TempDir(), "cut.out")
	if err := os.WriteFile(p, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{p}, nil, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), p) {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// The Go agent's compact log (the event in the category, no message) reads as the "wisp"
// log it stands for; the classic form and other categories pass unchanged.
func TestCompactAgentLogs(t *testing.T) {
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	_, _, line, _ := runtime.Caller(0)
	trace.Log(context.Background(), "wisp 10 3 0", "")
	trace.Log(context.Background(), "wisp", "11 3 0")
	trace.Log(context.Background(), "wisp 99", "kept")
	trace.Log(context.Background(), "wisp-calibrate", "")
	trace.Stop()
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if _, err := convert(bytes.NewReader(buf.Bytes()), w); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	var got []string
	locs := map[float64]string{}
	for _, l := range lines(t, out.Bytes()) {
		switch l["t"] {
		case "loc":
			// (a test's package main is named by its import path)
			fn := l["func"].(string)
			locs[l["id"].(float64)] = fmt.Sprintf("%s %s:%v", fn[strings.LastIndexByte(fn, '.')+1:], filepath.Base(l["file"].(string)), l["line"])
		case "log":
			place := ""
			if at, ok := l["at"].(float64); ok {
				place = " @ " + locs[at]
			}
			got = append(got, l["cat"].(string)+"|"+l["msg"].(string)+place)
		}
	}
	// A lock event carries the place that logged it (here the test, for want of a
	// wisp.Mutex's caller); other logs carry none.
	at := func(n int) string { return fmt.Sprintf(" @ TestCompactAgentLogs convert_test.go:%d", n) }
	want := []string{"wisp|10 3 0" + at(line+1), "wisp|11 3 0" + at(line+2), "wisp 99|kept", "wisp-calibrate|"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("logs %v, want %v", got, want)
	}
}

// The place of an agent event is the first frame of the program's own code: not package
// wisp's (only that package: other modules' functions are the program's), not the
// runtime's or the standard library's (runtime/trace, sync when a sync.Cond locks).
func TestProgramFunc(t *testing.T) {
	for fn, want := range map[string]bool{
		"main.transfer":      true,
		"main.main.func1":    true,
		"example.com/shop.F": true,
		"github.com/willowisp/willowisp/agents/go/wisp.(*Mutex).Lock":   false,
		"github.com/willowisp/willowisp/agents/go/wisp.Handler.func1":   false,
		"github.com/willowisp/willowisp/agents/go/wispgrpc.Unary.func1": true,
		"runtime/trace.Log":              false,
		"sync.(*Cond).Wait":              false,
		"net/http.HandlerFunc.ServeHTTP": false,
	} {
		if got := programFunc(fn); got != want {
			t.Errorf("programFunc(%q) = %v, want %v", fn, got, want)
		}
	}
}

func insideFn() {}

// gatedTrace: a trace as the agent writes it in hops mode, with or without the gate: a
// goroutine works for an instance (wisp-in ... wisp-out) and starts a child that waits on
// a channel; another goroutine, outside, waits on a channel too and logs a hop event.
func gatedTrace(t *testing.T, gate string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	trace.Log(ctx, "wisp-gate", gate)
	outside := make(chan int)
	outsideDone := make(chan bool)
	go func() { // outsider: waits, logs a hop event, a program log
		<-outside
		trace.Log(ctx, "wisp 20 7 0", "")
		trace.Log(ctx, "program", "outside")
		outsideDone <- true
	}()
	done := make(chan bool)
	go func() { // the instance's goroutine
		trace.Log(ctx, "wisp-in", "")
		ch := make(chan int)
		childDone := make(chan bool)
		go func() { // its child: inside for life
			insideFn()
			<-ch
			trace.Log(ctx, "wisp 10 3 0", "")
			childDone <- true
		}()
		ch <- 1
		<-childDone
		trace.Log(ctx, "program", "inside")
		trace.Log(ctx, "wisp-out", "")
		done <- true
	}()
	<-done
	outside <- 1
	<-outsideDone
	late := make(chan int)
	lateDone := make(chan bool)
	go func() { // inside an instance that began before the stream: known by its lock log
		trace.Log(ctx, "wisp 10 4 0", "")
		<-late
		lateDone <- true
	}()
	late <- 1
	<-lateDone
	trace.Stop()
	return buf.Bytes()
}

// Gated (hops mode): only the goroutines working for an instance appear, with their waits
// and lock events; another goroutine's waits and program logs do not, its hop events do.
// Not gated: everything appears.
func TestGateKeepsOnlyGoroutinesInsideInstances(t *testing.T) {
	// fns: the goroutines the stream introduces (create, exist), by the last part of their
	// function's name (func1 the outsider, func2 the instance's, func2.1 its child, func3
	// the one inside an instance begun before the stream); blocks: the functions whose
	// channel waits are in it.
	count := func(gate string) (fns, blocks map[string]bool, logs []string) {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if _, err := convert(bytes.NewReader(gatedTrace(t, gate)), w); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		fns, blocks = map[string]bool{}, map[string]bool{}
		funcs := map[float64]string{}
		short := func(fn string) string {
			_, after, _ := strings.Cut(fn, "gatedTrace.")
			return after
		}
		for _, l := range lines(t, out.Bytes()) {
			switch l["t"] {
			case "loc":
				funcs[l["id"].(float64)] = l["func"].(string)
			case "create", "exist":
				fns[short(l["fn"].(string))] = true
			case "block":
				if at, ok := l["at"].(float64); ok && strings.HasPrefix(l["reason"].(string), "chan") {
					blocks[short(funcs[at])] = true
				}
			case "log":
				logs = append(logs, l["cat"].(string)+":"+l["msg"].(string))
				if strings.HasPrefix(l["cat"].(string), "wisp-") {
					t.Fatalf("a marker reached the stream: %v", l)
				}
			}
		}
		return fns, blocks, logs
	}
	fns, _, logs := count("0")
	for _, fn := range []string{"func1", "func2", "func2.1", "func3"} {
		if !fns[fn] {
			t.Fatalf("not gated: goroutines %v lack %s", fns, fn)
		}
	}
	if !slices.Contains(logs, "program:outside") || !slices.Contains(logs, "program:inside") {
		t.Fatalf("not gated: logs %v", logs)
	}
	fns, blocks, logs := count("1")
	if fns["func1"] || blocks["func1"] || !fns["func2"] || !fns["func2.1"] || !fns["func3"] {
		t.Fatalf("gated: goroutines %v, channel waits in %v (the outsider func1 must not be there)", fns, blocks)
	}
	if slices.Contains(logs, "program:outside") || !slices.Contains(logs, "program:inside") {
		t.Fatalf("gated: logs %v", logs)
	}
	if !slices.Contains(logs, "wisp:20 7 0") || !slices.Contains(logs, "wisp:10 3 0") || !slices.Contains(logs, "wisp:10 4 0") {
		t.Fatalf("gated: agent events %v", logs)
	}
}

// lockOrData reads "<kind> <resource> <arg>" without allocating, as strings.Fields would.
func TestLockOrData(t *testing.T) {
	for msg, want := range map[string]bool{
		"10 3 0": true, "11 3 1": true, "17 4 1": true, "17 4 1 5": true, "4 3 1": true,
		"4 3 2": true, "4 3 0": false, "4 3 3": false, "12 3 0": false, "10 3": false,
		"10 3 ": false, "10  3  0": true, " 10 3 0": true, "": false, "stop": false,
	} {
		if got := lockOrData(msg); got != want {
			t.Errorf("lockOrData(%q) = %v, want %v", msg, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { lockOrData("10 3 0") }); n != 0 {
		t.Errorf("lockOrData allocates %v times", n)
	}
}

// A hop event (the client's send and reply, the server's receive and reply) carries the
// place that logged it, as a lock event does: the program's request, not net/http's.
func TestHopEventsCarryTheProgramsPlace(t *testing.T) {
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _, line, _ := runtime.Caller(0)
	trace.Log(ctx, "wisp", "20 5 7")
	trace.Log(ctx, "wisp", "23 5 200")
	trace.Log(ctx, "wisp", "21 6 0")
	trace.Log(ctx, "wisp", "22 6 200")
	trace.Log(ctx, "wisp", "25 1 0") // proc.start: no place
	trace.Stop()
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if _, err := convert(bytes.NewReader(buf.Bytes()), w); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	locs := map[float64]string{}
	var got []string
	for _, l := range lines(t, out.Bytes()) {
		switch l["t"] {
		case "loc":
			locs[l["id"].(float64)] = fmt.Sprintf("%s:%v", filepath.Base(l["file"].(string)), l["line"])
		case "log":
			place := ""
			if at, ok := l["at"].(float64); ok {
				place = " @ " + locs[at]
			}
			got = append(got, l["msg"].(string)+place)
		}
	}
	at := func(n int) string { return fmt.Sprintf(" @ convert_test.go:%d", line+n) }
	want := []string{"20 5 7" + at(1), "23 5 200" + at(2), "21 6 0" + at(3), "22 6 200" + at(4), "25 1 0"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("logs %v, want %v", got, want)
	}
}

// A hop's place skips the gRPC library and the agent's interceptors as well.
func TestHopCallerFunc(t *testing.T) {
	for fn, want := range map[string]bool{
		"main.get": true,
		"example.com/shop/pb.(*greeterClient).SayHello":                      true,
		"google.golang.org/grpc.(*ClientConn).Invoke":                        false,
		"google.golang.org/grpc/internal/transport.(*http2Client).NewStream": false,
		"google.golang.org/grpcx.F":                                          true,
		"github.com/willowisp/willowisp/agents/go/wispgrpc.Unary.func1":      false,
		"github.com/willowisp/willowisp/agents/go/wisp.ClientBegin":          false,
		"net/http.(*Client).do":                                              false,
	} {
		if got := hopCallerFunc(fn); got != want {
			t.Errorf("hopCallerFunc(%q) = %v, want %v", fn, got, want)
		}
	}
	for msg, want := range map[string]bool{"20 5 7": true, "23 5 -1": true, "21 6 0": true,
		"22 6 200": true, "24 1 0": false, "2 1 0": false, "10 3 0": false, "stop": false} {
		if got := hopEvent(msg); got != want {
			t.Errorf("hopEvent(%q) = %v, want %v", msg, got, want)
		}
	}
}
