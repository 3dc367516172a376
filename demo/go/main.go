// inventory: the demo shop's Go service (willowisp.demo.shop starts it with the shop's and
// the pricing worker's ports). A goroutine consumes the price updates the pricing worker
// puts on the shop's work queue: it polls GET /jobs/next, and sleeps pollPeriod between two
// looks (seeded bug: a structural delay); it prints "applied <job id>" per update. It listens
// on a loopback port, prints "PORT <n>", serves the gRPC method /demo.Inventory/Reserve
// on another (grpc.go; prints "GRPC <n>"), and serves, through wisp.Handler:
//
//	/reserve?order=N  take the wisp.Mutex `inventory` and book the item
//	/b                take `inventory`, print "go-b-holding", call pricing's /c: the
//	                  deadlock's holder (seeded bug)
//	/a                print "go-a-waiting", then take `inventory`: the deadlock's waiter
//
// Lines on stdout are the orchestrator's signals. SIGTERM ends it; wisp/auto stores the
// recording first.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/trace"
	"sync"
	"time"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

// pollPeriod is how long the price consumer sleeps between two looks at the work queue.
const pollPeriod = 200 * time.Millisecond

var inventory = wisp.NewMutex("inventory")

// stock is what inventory guards: units left per order line.
var stock = map[string]int{"sku-1": 1000}

// stdoutMu keeps signal lines whole when handlers print at the same time.
var stdoutMu sync.Mutex

func say(line string) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	fmt.Println(line)
}

type job struct {
	ID      string            `json:"id"`
	Sku     string            `json:"sku"`
	Price   int               `json:"price"`
	Headers map[string]string `json:"headers"`
}

// catalog is the price list the consumer keeps up to date.
var (
	catalog   = map[string]int{}
	catalogMu = wisp.NewMutex("catalog")
)

// poll asks the shop's work queue for the next job: (job, true), or false when it is empty
// or cannot be reached.
func poll(shopPort string) (job, bool) {
	var j job
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+shopPort+"/jobs/next", nil)
	if err != nil {
		return j, false
	}
	resp, err := wisp.Client().Do(req)
	if err != nil {
		return j, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return j, false
	}
	return j, json.NewDecoder(resp.Body).Decode(&j) == nil
}

// consume is the price consumer: it looks at the work queue every pollPeriod (seeded bug:
// every price update waits for the next look, however fast the rest is). A job it takes is
// received through wisp.MessageReceive (its id and the traceparent from its headers).
func consume(shopPort string) {
	for {
		if j, ok := poll(shopPort); ok {
			ctx := wisp.MessageReceive(context.Background(), wisp.Message{
				Protocol: "workqueue", Library: "demo", Destination: "prices", MessageID: j.ID,
			}, j.Headers["traceparent"])
			trace.WithRegion(ctx, "apply price", func() {
				catalogMu.Lock()
				catalog[j.Sku] = j.Price
				catalogMu.Unlock()
			})
			say("applied " + j.ID)
		}
		time.Sleep(pollPeriod)
	}
}

func callPricing(w http.ResponseWriter, req *http.Request, pricingPort, path string) {
	out, err := http.NewRequestWithContext(req.Context(), http.MethodGet,
		"http://127.0.0.1:"+pricingPort+path, nil)
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
	fmt.Fprintf(w, "inventory:%s", body)
}

func main() {
	defer wisp.Stop()
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: inventory SHOP_PORT PRICING_PORT")
		os.Exit(2)
	}
	shopPort, pricingPort := os.Args[1], os.Args[2]
	mux := http.NewServeMux()
	mux.HandleFunc("/reserve", func(w http.ResponseWriter, req *http.Request) {
		inventory.Lock()
		stock["sku-1"]--
		inventory.Unlock()
		fmt.Fprintf(w, "reserved %s", req.URL.Query().Get("order"))
	})
	mux.HandleFunc("/b", func(w http.ResponseWriter, req *http.Request) {
		inventory.Lock()
		defer inventory.Unlock()
		say("go-b-holding")
		callPricing(w, req, pricingPort, "/c")
	})
	mux.HandleFunc("/a", func(w http.ResponseWriter, req *http.Request) {
		say("go-a-waiting")
		inventory.Lock()
		defer inventory.Unlock()
		fmt.Fprint(w, "inventory:a")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	say(fmt.Sprintf("PORT %d", ln.Addr().(*net.TCPAddr).Port))
	go func() {
		if err := serveGRPC(); err != nil {
			fmt.Fprintln(os.Stderr, "grpc:", err)
		}
	}()
	go consume(shopPort)
	if err := http.Serve(ln, wisp.Handler(mux)); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
