// An HTTP service under wisp.Handler, for tests of what each mode records: POST /work takes
// a job through a channel to a worker goroutine that updates a counter under a wisp.Mutex
// and replies. It prints its address ("listening 127.0.0.1:PORT") and serves until
// SIGTERM; the agent then writes everything and the signal ends the program.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

func main() {
	state := wisp.NewMutex("state")
	jobs := make(chan chan int)
	count := 0
	go func() {
		for reply := range jobs {
			state.Lock()
			count++
			n := count
			state.Unlock()
			reply <- n
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /work", func(w http.ResponseWriter, r *http.Request) {
		reply := make(chan int, 1)
		jobs <- reply
		fmt.Fprintf(w, "%d\n", <-reply)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening", l.Addr())
	_ = http.Serve(l, wisp.Handler(mux))
}
