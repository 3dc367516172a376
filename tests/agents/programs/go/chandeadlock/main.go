// A channel deadlock: "ping" waits to receive on pongs before it sends on pings, "pong"
// waits on pings before it sends on pongs, so both wait for ever. main waits until the
// runtime shows both blocked, stops the agent and exits.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

func ping(pings chan<- int, pongs <-chan int) {
	n := <-pongs
	pings <- n + 1
}

func pong(pings <-chan int, pongs chan<- int) {
	n := <-pings
	pongs <- n + 1
}

func blockedOnReceive() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "[chan receive")
}

func main() {
	pings, pongs := make(chan int), make(chan int)
	go ping(pings, pongs)
	go pong(pings, pongs)
	for blockedOnReceive() < 2 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("deadlocked")
	wisp.Stop()
	os.Exit(0)
}
