package wisp

import (
	"context"
	"testing"
)

// A worker pool started before the instance works outside it, unless the job is handed
// over with Carry (bound where the job is made) or run with Within (the job's context):
// then the worker carries the instance's label while the job runs, its lock events count
// for the boundary, and afterwards it is outside again.
func TestHandedOffWorkJoinsTheInstance(t *testing.T) {
	r := startHops(t, "entry=http:POST /checkout")
	d := r.bounds.list[0]
	type job struct {
		ctx context.Context // nil: run f as it is
		f   func()
	}
	jobs := make(chan job)
	after := make(chan string)
	go func() { // the pool's worker: older than every instance
		for j := range jobs {
			if j.ctx != nil {
				Within(j.ctx, j.f)
			} else {
				j.f()
			}
			after <- currentLabel()
		}
	}()
	defer close(jobs)
	m := NewMutex("stock")
	results := make(chan []string, 1)
	go func() { // the request's goroutine
		own := ServerContext(TraceContext{}, false)
		call := ServerBegin(context.Background(), TraceContext{}, false, own,
			Hop{Protocol: "http", Library: "net/http", Method: "POST", Target: "/checkout"})
		ctx := call.Context(context.Background())
		var out []string
		record := func(label string, n int64) { out = append(out, label, itoa(n)) }
		var label string
		body := func() { label = currentLabel(); m.Lock(); m.Unlock() }
		for _, j := range []job{
			{nil, body},                              // handed over as it is: outside
			{nil, Carry(context.Background(), body)}, // bound to this goroutine's instance
			{ctx, body},                              // run Within the request's context
			{context.Background(), body},             // Within a context of no instance
		} {
			before := d.events.Load()
			jobs <- j
			if left := <-after; left != "" {
				out = append(out, "worker still labelled "+left)
			}
			record(label, d.events.Load()-before)
		}
		call.ServerEnd(200)
		results <- out
	}()
	got := <-results
	want := []string{"", "0", d.label, "1", d.label, "1", "", "0"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q (pairs: label inside the job, lock events counted)", got, want)
		}
	}
	// Outside every instance Carry hands f over unchanged, and Within runs it as it is.
	label := "unset"
	Carry(context.Background(), func() { label = currentLabel() })()
	Within(context.Background(), func() {})
	if label != "" {
		t.Fatalf("outside an instance the job ran with label %q", label)
	}
}

func itoa(n int64) string {
	if n < 0 || n > 9 {
		return "many"
	}
	return string(rune('0' + n))
}
