package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/trace"
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
	for _, l := range lines(t, out.Bytes()) {
		if l["t"] == "log" {
			got = append(got, l["cat"].(string)+"|"+l["msg"].(string))
		}
	}
	want := []string{"wisp|10 3 0", "wisp|11 3 0", "wisp 99|kept", "wisp-calibrate|"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("logs %v, want %v", got, want)
	}
}
