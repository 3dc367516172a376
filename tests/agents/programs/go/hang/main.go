// A lock-order inversion that hangs, for tests that talk to a live process (the control
// channel, the stream to a collector, a kill without wisp.Stop): "transfer" and "audit"
// take two wisp.Mutex in opposite orders and block for ever. Once the runtime shows both
// blocked in Lock it prints "ready" and waits to be ended by a signal.
package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

var (
	accounts = wisp.NewMutex("accounts")
	ledger   = wisp.NewMutex("ledger")
)

func transfer(holding, other chan struct{}) {
	accounts.Lock()
	close(holding)
	<-other
	ledger.Lock() // blocks for ever: audit holds ledger
}

func audit(holding, other chan struct{}) {
	ledger.Lock()
	close(holding)
	<-other
	accounts.Lock() // blocks for ever: transfer holds accounts
}

// blockedInLock counts goroutines the runtime reports waiting in sync.Mutex.Lock.
func blockedInLock() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "[sync.Mutex.Lock")
}

func main() {
	a, b := make(chan struct{}), make(chan struct{})
	go transfer(a, b)
	go audit(b, a)
	for blockedInLock() < 2 {
		time.Sleep(time.Millisecond) // polls the runtime's own state; no guess about timing
	}
	fmt.Println("ready")
	for {
		time.Sleep(time.Hour) // ended by a signal
	}
}
