// Command mutexqueue traces itself with runtime/trace into the file named by its argument:
// a queue of goroutines on one sync.Mutex, as in a service whose workers all update one
// shared account. Main holds the mutex until every worker is parked on it, then lets go;
// each worker keeps the mutex for 2 ms, so every one of them waits, for certain. The trace
// shows the waits and the unblocks, never an acquisition or a release.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/trace"
	"strings"
	"sync"
	"time"
)

const workers = 4

type account struct {
	mu      sync.Mutex
	balance int
}

func main() {
	f, err := os.Create(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := trace.Start(f); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	acct := &account{}
	var wg sync.WaitGroup
	acct.mu.Lock()
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go deposit(acct, &wg)
	}
	waitForParked("sync.Mutex.Lock", workers)
	acct.mu.Unlock()
	wg.Wait()

	trace.Stop()
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func deposit(acct *account, wg *sync.WaitGroup) {
	defer wg.Done()
	acct.mu.Lock() // waits: main, then the workers before it, hold the mutex
	time.Sleep(2 * time.Millisecond)
	acct.balance++
	acct.mu.Unlock()
}

// waitForParked returns once n goroutines are parked with the given wait reason, as the
// runtime's goroutine dump shows them ("goroutine 7 [sync.Mutex.Lock]:").
func waitForParked(reason string, n int) {
	deadline := time.Now().Add(20 * time.Second)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		got := runtime.Stack(buf, true)
		if strings.Count(string(buf[:got]), "["+reason) >= n {
			return
		}
		runtime.Gosched()
	}
	fmt.Fprintf(os.Stderr, "fewer than %d goroutines reached %s\n", n, reason)
	os.Exit(1)
}
