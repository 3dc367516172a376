// The Go service of the polyglot scenario (orchestrator.py starts it). It listens on a
// loopback port, prints "PORT <n>", and serves three paths through wisp.Handler; every
// path takes the one wisp.Mutex `inventory` and calls the Node service through wisp.Client:
//
//	/work  lock inventory, call Node /step, answer with what it said (the healthy path)
//	/b     lock inventory, print "go-b-holding", call Node /c (the deadlock's holder)
//	/a     print "go-a-waiting", lock inventory (the deadlock's waiter), call Node /step
//
// The lines on stdout are the orchestrator's signals. SIGTERM ends the program; the agent
// stores its recording first (wisp/auto installs that handler).
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

var inventory = wisp.NewMutex("inventory")

// stdoutMu keeps signal lines whole when handlers print at the same time.
var stdoutMu sync.Mutex

func say(line string) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	fmt.Println(line)
}

// callNode forwards the request's context (so wisp.Transport continues its trace) to the
// Node service's path and copies the answer.
func callNode(w http.ResponseWriter, req *http.Request, nodePort, path string) {
	out, err := http.NewRequestWithContext(req.Context(), http.MethodGet,
		"http://127.0.0.1:"+nodePort+path, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp, err := wisp.Client().Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	w.WriteHeader(resp.StatusCode)
	fmt.Fprintf(w, "go:%s", body)
}

func main() {
	defer wisp.Stop()
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gosvc NODE_PORT")
		os.Exit(2)
	}
	nodePort := os.Args[1]
	mux := http.NewServeMux()
	mux.HandleFunc("/work", func(w http.ResponseWriter, req *http.Request) {
		inventory.Lock()
		defer inventory.Unlock()
		callNode(w, req, nodePort, "/step")
	})
	mux.HandleFunc("/b", func(w http.ResponseWriter, req *http.Request) {
		inventory.Lock()
		defer inventory.Unlock()
		say("go-b-holding")
		callNode(w, req, nodePort, "/c")
	})
	mux.HandleFunc("/a", func(w http.ResponseWriter, req *http.Request) {
		say("go-a-waiting")
		inventory.Lock()
		defer inventory.Unlock()
		callNode(w, req, nodePort, "/step")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	say(fmt.Sprintf("PORT %d", ln.Addr().(*net.TCPAddr).Port))
	if err := http.Serve(ln, wisp.Handler(mux)); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
