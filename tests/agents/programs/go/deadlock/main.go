// A lock-order inversion that deadlocks: "transfer" takes accounts then ledger, "audit"
// takes ledger then accounts. Each takes its first lock and waits until the other has
// too, so both then block for ever on their second. A watchdog waits until the runtime
// shows both goroutines blocked in Lock, then stops the agent and exits.
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
	fmt.Println("deadlocked")
	wisp.Stop()
	os.Exit(0)
}
