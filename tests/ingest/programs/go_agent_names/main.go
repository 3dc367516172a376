// Goroutine names when the agent's own events and the tracer's stream both speak of one
// goroutine: early is created before the agent (and so its tracer) starts, poller after;
// poller keeps making HTTP calls while the agent stops, so some of its hops land in the
// agent's own events (the tracer is already off), which name it only by number.
package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"time"

	"github.com/willowisp/willowisp/agents/go/wisp"
)

func early(release <-chan struct{}, done chan<- struct{}) {
	<-release
	time.Sleep(time.Millisecond)
	done <- struct{}{}
}

func poller(url string, calls *atomic.Int64, quit <-chan struct{}) {
	client := wisp.Client()
	for {
		select {
		case <-quit:
			return
		default:
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			calls.Add(1)
		}
	}
}

func main() {
	release, done := make(chan struct{}), make(chan struct{})
	go early(release, done)
	cfg, err := wisp.ConfigFromEnv()
	if err == nil {
		err = wisp.Start(cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := httptest.NewServer(wisp.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})))
	var calls atomic.Int64
	quit := make(chan struct{})
	go poller(srv.URL, &calls, quit)
	close(release)
	<-done
	for calls.Load() < 20 {
		time.Sleep(time.Millisecond)
	}
	wisp.Stop() // the poller is still calling
	close(quit)
	srv.Close()
	fmt.Println("calls", calls.Load())
}
