// An HTTP service for the boundary tests: POST /checkout and GET /work each hand the
// request to a goroutine the handler starts (checkoutWorker), which updates a cart under
// a wisp.Mutex and replies through a channel; the handler then calls DOWNSTREAM (a URL)
// through wisp.Client with the request's context. Meanwhile a goroutine started at the
// beginning (background) takes another wisp.Mutex on every tick, for no request at all.
// It prints "listening 127.0.0.1:PORT" and serves until SIGTERM.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

var (
	cart  = wisp.NewMutex("cart")
	items int
)

func checkoutWorker(reply chan<- int) {
	cart.Lock()
	items++
	n := items
	cart.Unlock()
	reply <- n
}

func background() {
	own := wisp.NewMutex("background")
	ticks := time.NewTicker(time.Millisecond)
	n := 0
	for range ticks.C {
		own.Lock()
		n++
		own.Unlock()
	}
}

func main() {
	go background()
	downstream := os.Getenv("DOWNSTREAM")
	handle := func(w http.ResponseWriter, r *http.Request) {
		reply := make(chan int, 1)
		go checkoutWorker(reply)
		n := <-reply
		req, err := http.NewRequestWithContext(r.Context(), "GET", downstream, nil)
		if err == nil {
			var resp *http.Response
			if resp, err = wisp.Client().Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "%d\n", n)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /checkout", handle)
	mux.HandleFunc("GET /work", handle)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening", l.Addr())
	_ = http.Serve(l, wisp.Handler(mux))
}
