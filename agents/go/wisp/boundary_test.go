package wisp

// Boundary instances: opened by an inbound hop, carried by the goroutine label to the
// goroutines the handler starts, written into outgoing tracestate, closed at the reply.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func startHops(t *testing.T, boundaries string) *recorder {
	t.Helper()
	dir := t.TempDir()
	if err := Start(Config{Out: dir, Service: "unit test", NoSignals: true, Control: "off", Mode: "hops", Boundaries: boundaries}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(Stop)
	return active.Load()
}

func TestLabelsAreReadable(t *testing.T) {
	checkLabelsOnce()
	if !labelsUsable {
		t.Fatal("the goroutine label layout check failed on this Go")
	}
	if currentLabel() != "" {
		t.Fatal("a label on a goroutine that set none")
	}
}

func TestTracestateMembers(t *testing.T) {
	if got := WithStateMember("a=1, wisp=b-old,b=2", "wisp", "b-new"); got != "wisp=b-new,a=1,b=2" {
		t.Fatal(got)
	}
	if got := WithStateMember("", "wisp", "b-1"); got != "wisp=b-1" {
		t.Fatal(got)
	}
	long := strings.Repeat("k=v,", 40)
	if n := strings.Count(WithStateMember(long, "wisp", "b-1"), "="); n != 32 {
		t.Fatalf("%d members", n)
	}
	if StateMember("a=1, wisp=b-4f365009 ,c=3", "wisp") != "b-4f365009" || StateMember("a=1", "wisp") != "" {
		t.Fatal("StateMember")
	}
}

// The handler's goroutine and a goroutine it starts work for the instance (their lock
// events count, their outgoing calls carry the member); a goroutine that was there before
// does not; after the reply the handler's goroutine is outside again.
func TestInstanceFollowsTheRequestsGoroutines(t *testing.T) {
	r := startHops(t, "entry=http:POST /checkout;runtimes=python,go")
	var inHandler, inChild, before, poolState string
	var outState string
	outside := make(chan [2]string)
	ask := make(chan context.Context)
	go func() { // started before any instance: a pool's worker, handed the request's context
		for ctx := range ask {
			outside <- [2]string{currentLabel(), Outgoing(ctx).State}
		}
	}()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		outState = req.Header.Get("tracestate")
	}))
	defer down.Close()
	m := NewMutex("cart")
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		inHandler = currentLabel()
		done := make(chan string)
		go func() {
			m.Lock()
			m.Unlock()
			done <- currentLabel()
		}()
		inChild = <-done
		ask <- req.Context()
		got := <-outside
		before, poolState = got[0], got[1]
		out, _ := http.NewRequestWithContext(req.Context(), "GET", down.URL, nil)
		if resp, err := Client().Do(out); err == nil {
			resp.Body.Close()
		}
	})))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/checkout", nil)
	req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
	req.Header.Set("tracestate", "x=1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	close(ask)
	if inHandler != "b-4f365009" || inChild != "b-4f365009" || before != "" {
		t.Fatalf("labels: handler %q, child %q, older goroutine %q", inHandler, inChild, before)
	}
	if outState != "wisp=b-4f365009,x=1" || poolState != "wisp=b-4f365009,x=1" {
		t.Fatalf("outgoing tracestate %q, from the pool's goroutine with the request's context %q", outState, poolState)
	}
	st := r.bounds.status(1)[0]
	if st["entries"] != int64(1) || st["active"] != int64(0) || st["events"].(int64) < 3 {
		t.Fatalf("status %v", st)
	}
}

// A caller's member opens an instance of a boundary that covers Go, not of one that does
// not; a message carrying it opens one that lasts until the goroutine's next message.
func TestPropagatedInstancesAndMessages(t *testing.T) {
	r := startHops(t, "entry=http:POST /a;runtimes=go|entry=http:POST /b;runtimes=python")
	a, b := r.bounds.list[0], r.bounds.list[1]
	if inst := r.bounds.enter(context.Background(), "http", "GET", "/x", b.label); inst != nil {
		t.Fatal("opened an instance of a boundary that does not cover Go")
	}
	inst := r.bounds.enter(context.Background(), "http", "GET", "/x", a.label)
	if inst == nil || currentLabel() != a.label || a.propagated != 1 {
		t.Fatalf("propagated instance %v, label %q", inst, currentLabel())
	}
	if again := r.bounds.enter(context.Background(), "http", "POST", "/a", ""); again != nil {
		t.Fatal("a second instance on a goroutine already inside one")
	}
	r.bounds.leave(inst)
	if currentLabel() != "" || a.active != 0 {
		t.Fatalf("after leave: label %q, active %d", currentLabel(), a.active)
	}
	done := make(chan [3]string)
	go func() {
		var got [3]string
		ctx := MessageReceiveState(context.Background(), Message{Protocol: "amqp", Destination: "orders"},
			"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", "wisp="+a.label)
		got[0] = currentLabel()
		got[1] = Outgoing(ctx).State
		MessageReceive(context.Background(), Message{Protocol: "amqp", Destination: "orders"}, "")
		got[2] = currentLabel()
		done <- got
	}()
	got := <-done
	if got != [3]string{a.label, "wisp=" + a.label, ""} {
		t.Fatalf("message instance: %q", got)
	}
	if a.active != 0 || a.propagated != 2 {
		t.Fatalf("active %d propagated %d", a.active, a.propagated)
	}
}
