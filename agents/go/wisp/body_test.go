package wisp

// The client's call ends when its response body is done (read to its end or closed), not
// when RoundTrip returns: tests and the per-call cost of the body's wrapper.

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// bodyRT answers every request with a small body, as a server's reply would.
type bodyRT struct{}

func (bodyRT) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok")),
		ContentLength: 2, Request: req}, nil
}

func benchHopClientBody(b *testing.B) {
	c := &http.Client{Transport: &Transport{Base: bodyRT{}}}
	req, _ := http.NewRequest("GET", "http://svc/back?id=1", nil)
	done := measureCPU(b)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	done()
}

// A client call whose reply has a body, read to its end and closed.
func BenchmarkHopClientBodyOff(b *testing.B) { benchHopClientBody(b) }
func BenchmarkHopClientBodyOn(b *testing.B)  { benchStart(b); benchHopClientBody(b) }

// startBodyHops starts the agent without the tracer (its hop events are then its own, in
// r.events) and holds the flusher off, so a test reads every event it causes; the events
// are read with hopEvents.
func startBodyHops(t *testing.T) *recorder {
	t.Helper()
	if err := Start(Config{Out: t.TempDir(), Service: "body", NoSignals: true, Control: "off", NoTracer: true, Mode: "full"}); err != nil {
		t.Fatal(err)
	}
	r := active.Load()
	r.wmu.Lock()
	t.Cleanup(func() { r.wmu.Unlock(); Stop() })
	return r
}

// hopEvents are the client-side hop events written so far (send, wait, reply).
func hopEvents(r *recorder) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Kind == kindMsgSend || e.Kind == kindRPCResponse || (e.Kind == kindBlock && e.Arg == reasonRPC) {
			out = append(out, e)
		}
	}
	return out
}

func kinds(es []Event) []int64 {
	var out []int64
	for _, e := range es {
		if e.Kind == kindRPCResponse {
			out = append(out, 1000+e.Arg) // the reply, with its status
		} else {
			out = append(out, int64(e.Kind))
		}
	}
	return out
}

// slowBody is a server whose body comes after its headers, when the test says so.
func slowBody(t *testing.T) (url string, release chan struct{}) {
	t.Helper()
	release = make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusAccepted)
		w.(http.Flusher).Flush() // the headers go now
		select {
		case <-release:
		case <-req.Context().Done():
			return
		}
		_, _ = w.Write([]byte("the body"))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return srv.URL, release
}

// The call ends when the body has been read to its end, not when the headers arrive: the
// reply (with the status) comes after the body, once, on the unit that sent the request,
// however the body is then closed.
func TestClientCallEndsAtTheBodysEnd(t *testing.T) {
	url, release := slowBody(t)
	r := startBodyHops(t)
	resp, err := Client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(hopEvents(r)); len(got) != 2 {
		t.Fatalf("after the headers: events %v, want the send and the wait only", got)
	}
	close(release)
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "the body" {
		t.Fatalf("body %q, %v", b, err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	es := hopEvents(r)
	if got := kinds(es); len(got) != 3 || got[2] != 1000+http.StatusAccepted {
		t.Fatalf("events %v, want send, wait, one reply 202", got)
	}
	if es[2].Unit != es[0].Unit || es[2].Res != es[0].Res || es[2].Time < es[1].Time {
		t.Fatalf("the reply %+v does not follow the send %+v on its unit", es[2], es[0])
	}
}

// A body closed before its end ends the call then, with the status; closing it again,
// or reading after, writes nothing more.
func TestClientCallEndsAtClose(t *testing.T) {
	url, _ := slowBody(t)
	r := startBodyHops(t)
	resp, err := Client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	_ = resp.Body.Close()
	_, _ = resp.Body.Read(make([]byte, 8))
	if got := kinds(hopEvents(r)); len(got) != 3 || got[2] != 1000+http.StatusAccepted {
		t.Fatalf("events %v, want send, wait, one reply 202", got)
	}
}

// A body read on another goroutine ends the wait of the goroutine that sent the request.
func TestClientReplyReadElsewhereEndsTheSendersWait(t *testing.T) {
	url, release := slowBody(t)
	r := startBodyHops(t)
	resp, err := Client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	done := make(chan error)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	es := hopEvents(r)
	if len(es) != 3 || es[2].Unit != es[0].Unit {
		t.Fatalf("events %+v: the reply is not on the sender's unit", es)
	}
}

// A failed body read ends the call with -1.
func TestClientBodyErrorEndsWithMinusOne(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("short")) // then the handler returns: the connection is cut
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	defer srv.Close()
	r := startBodyHops(t)
	resp, err := Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a cut body read without an error")
	}
	_ = resp.Body.Close()
	if got := kinds(hopEvents(r)); len(got) != 3 || got[2] != 1000-1 {
		t.Fatalf("events %v, want send, wait, one reply -1", got)
	}
}

// A response without a body (HEAD, 204, 304, length 0) ends the call at RoundTrip.
func TestClientBodilessReplyEndsAtRoundTrip(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/empty":
			w.Header().Set("Content-Length", "0")
		default:
			_, _ = w.Write([]byte("not for HEAD"))
		}
	}))
	defer srv.Close()
	r := startBodyHops(t)
	c := Client()
	for i, target := range []string{"HEAD /", "GET /204", "GET /304", "GET /empty"} {
		method, path, _ := strings.Cut(target, " ")
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if got := kinds(hopEvents(r)); len(got) != 3*(i+1) || got[len(got)-1] != 1000+int64(resp.StatusCode) {
			t.Fatalf("%s: events %v, want the reply at RoundTrip", target, got)
		}
		_ = resp.Body.Close()
		if got := kinds(hopEvents(r)); len(got) != 3*(i+1) {
			t.Fatalf("%s: closing wrote more: %v", target, got)
		}
	}
}

// writerToBody is a body with io.WriterTo, as a custom transport's may have.
type writerToBody struct{ *strings.Reader }

func (writerToBody) Close() error { return nil }

type writerToRT struct{}

func (writerToRT) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: writerToBody{strings.NewReader("via WriteTo")},
		ContentLength: -1, Request: req}, nil
}

// A body's io.WriterTo is kept (io.Copy uses it), and ends the call when it returns.
func TestClientBodyKeepsWriterTo(t *testing.T) {
	r := startBodyHops(t)
	c := &http.Client{Transport: &Transport{Base: writerToRT{}}}
	resp, err := c.Get("http://svc/x")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Body.(io.WriterTo); !ok {
		t.Fatalf("the body %T lost its WriteTo", resp.Body)
	}
	var sb strings.Builder
	if _, err := io.Copy(&sb, resp.Body); err != nil || sb.String() != "via WriteTo" {
		t.Fatalf("copied %q, %v", sb.String(), err)
	}
	if got := kinds(hopEvents(r)); len(got) != 3 || got[2] != 1200 {
		t.Fatalf("events %v, want send, wait, one reply 200", got)
	}
}
