// A leaked goroutine: it waits on a channel nobody will ever send on. main waits until the
// runtime shows it blocked, stops the agent and returns.
package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

func waitForResult(results chan int) {
	fmt.Println(<-results) // nobody sends: leaked
}

func blockedOnReceive() bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Contains(string(buf[:n]), "[chan receive")
}

func main() {
	results := make(chan int)
	go waitForResult(results)
	for !blockedOnReceive() {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("leaked")
	wisp.Stop()
}
