package wisp

// The workload for the tracer's target: a goroutine-heavy HTTP service, shaped like
// the service the Node target names (~50 µs of work per request, one downstream
// call). Each request to /front (through wisp.Handler) fans out to 4 goroutines that do
// ~10 µs of work each and report on a channel, updates shared state under a wisp.Mutex
// and calls a downstream /back through wisp.Transport (which takes the same mutex and does
// ~10 µs of work). A load generator of 16 goroutines sends 200 requests per operation over
// keep-alive connections on 127.0.0.1. The wrappers are installed in every configuration;
// what differs is what records: nothing (the baseline), the runtime's tracer alone
// writing to io.Discard (the floor), or the agent.

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/trace"
	"sync"
	"testing"
)

type httpService struct {
	srv    *httptest.Server
	load   *http.Client // the service's callers: not instrumented (other processes)
	down   *http.Client // the service's own downstream calls: wisp.Transport
	mu     Mutex
	total  uint64
	frontU string
}

func spin(n int) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < n; i++ {
		h = (h ^ uint64(i)) * 1099511628211
	}
	return h
}

func newHTTPService() *httpService {
	s := &httpService{}
	mux := http.NewServeMux()
	mux.HandleFunc("/front", func(w http.ResponseWriter, req *http.Request) {
		results := make(chan uint64, 4)
		for i := 0; i < 4; i++ {
			go func() { results <- spin(9000) }()
		}
		var h uint64
		for i := 0; i < 4; i++ {
			h ^= <-results
		}
		s.mu.Lock()
		s.total += h & 1
		s.mu.Unlock()
		dreq, _ := http.NewRequestWithContext(req.Context(), "GET", s.srv.URL+"/back?id=1", nil)
		resp, err := s.down.Do(dreq)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/back", func(w http.ResponseWriter, req *http.Request) {
		h := spin(9000)
		s.mu.Lock()
		s.total += h & 1
		s.mu.Unlock()
		_, _ = w.Write([]byte("done\n"))
	})
	s.srv = httptest.NewServer(Handler(mux))
	s.load = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	s.down = &http.Client{Transport: &Transport{Base: &http.Transport{MaxIdleConnsPerHost: 32}}}
	s.frontU = s.srv.URL + "/front"
	return s
}

func (s *httpService) close() {
	s.load.CloseIdleConnections()
	s.down.CloseIdleConnections()
	s.srv.Close()
}

// serve sends n requests from 16 concurrent callers.
func (s *httpService) serve(b *testing.B, n int) {
	jobs := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	var failed sync.Once
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				resp, err := s.load.Get(s.frontU)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = io.ErrUnexpectedEOF
					}
				}
				if err != nil {
					failed.Do(func() { b.Error(err) })
				}
			}
		}()
	}
	wg.Wait()
}

func benchHTTP(b *testing.B) {
	s := newHTTPService()
	defer s.close()
	s.serve(b, 50) // warm the connections up
	done := measureCPU(b)
	for b.Loop() {
		s.serve(b, 200)
	}
	done()
}

func BenchmarkHTTPOff(b *testing.B) { benchHTTP(b) }

func BenchmarkHTTPOn(b *testing.B) {
	benchStart(b)
	benchHTTP(b)
	reportBytes(b)
}

func BenchmarkHTTPTracerOnly(b *testing.B) {
	if err := trace.Start(io.Discard); err != nil {
		b.Fatal(err)
	}
	defer trace.Stop()
	benchHTTP(b)
}

// The agent's own per-request work, without the network: the server middleware around a
// handler that does nothing, and the RoundTripper around a base that answers at once. The
// CPU figure includes what the flusher takes to encode and store the request's records.
type stubRT struct{}

func (stubRT) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req}, nil
}

func benchHopServer(b *testing.B) {
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {}))
	// Requests as callers send them: each with a traceparent of its own (the records then
	// hold new ids, as in real traffic, and the flusher compresses them).
	reqs := make([]*http.Request, 4096)
	for i := range reqs {
		req := httptest.NewRequest("GET", "http://svc/front?id=1", nil)
		tc := TraceContext{TraceID: NewTraceID(), SpanID: NewSpanID(), Flags: 1}
		req.Header.Set("traceparent", tc.Header())
		req.Header.Set("user-agent", "Go-http-client/1.1")
		req.Header.Set("accept-encoding", "gzip")
		reqs[i] = req
	}
	w := httptest.NewRecorder()
	done := measureCPU(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.ServeHTTP(w, reqs[i&4095])
		i++
	}
	done()
}

func benchHopClient(b *testing.B) {
	c := &http.Client{Transport: &Transport{Base: stubRT{}}}
	req, _ := http.NewRequest("GET", "http://svc/back?id=1", nil)
	done := measureCPU(b)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	done()
}

func BenchmarkHopServerOff(b *testing.B) { benchHopServer(b) }
func BenchmarkHopServerOn(b *testing.B)  { benchStart(b); benchHopServer(b) }
func BenchmarkHopClientOff(b *testing.B) { benchHopClient(b) }
func BenchmarkHopClientOn(b *testing.B)  { benchStart(b); benchHopClient(b) }

// BenchmarkHTTPOnStored: the agent with its own chunks stored, not deflated (what the
// flusher's compression of the request records costs).
func BenchmarkHTTPOnStored(b *testing.B) {
	cfg := Config{Out: b.TempDir(), Service: "bench", NoSignals: true, Codec: CodecNone, Control: "off"}
	if err := Start(cfg); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(Stop)
	benchHTTP(b)
	reportBytes(b)
}
