// A service whose requests are served by a worker pool started before any request, for
// the hand-off test (tests/agents/test_go_agent.py): GET /carried hands the job over with
// wisp.Carry, GET /within sends it with the request's context and the worker runs it with
// wisp.Within, GET /plain hands it over as it is. The job sleeps a millisecond (a wait
// the tracer records, before any lock event of the worker) and takes the wisp.Mutex "stock".
// It prints "listening 127.0.0.1:PORT" and serves until SIGTERM.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

type job struct {
	ctx  context.Context // run with wisp.Within when set
	f    func()
	done chan struct{}
}

var (
	stock = wisp.NewMutex("stock")
	count int
)

func poolWorker(jobs <-chan job) {
	for j := range jobs {
		if j.ctx != nil {
			wisp.Within(j.ctx, j.f)
		} else {
			j.f()
		}
		close(j.done)
	}
}

func main() {
	jobs := make(chan job)
	for i := 0; i < 2; i++ {
		go poolWorker(jobs)
	}
	handle := func(w http.ResponseWriter, r *http.Request) {
		take := func() {
			time.Sleep(time.Millisecond)
			stock.Lock()
			count++
			stock.Unlock()
		}
		j := job{f: take, done: make(chan struct{})}
		switch r.URL.Path {
		case "/carried":
			j.f = wisp.Carry(r.Context(), take)
		case "/within":
			j.ctx = r.Context()
		}
		jobs <- j
		<-j.done
		fmt.Fprintln(w, "ok")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening", l.Addr())
	_ = http.Serve(l, wisp.Handler(http.HandlerFunc(handle)))
}
