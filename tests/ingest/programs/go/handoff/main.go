// Command handoff traces itself with runtime/trace into the file named by its argument:
// a mutex handed from main to a waiting goroutine, then a channel ping-pong between two
// goroutines. Every wait happens for certain: main unlocks only once the runtime shows the
// locker parked on the mutex, and an unbuffered ping-pong always parks one side.
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

const rounds = 50

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

	var mu sync.Mutex
	done := make(chan int)
	mu.Lock()
	go locker(&mu, done)
	waitForState("sync.Mutex.Lock")
	mu.Unlock() // hands the mutex to the parked locker
	<-done

	ping, pong := make(chan int), make(chan int)
	finished := make(chan bool)
	go pinger(ping, pong, finished)
	go ponger(ping, pong)
	<-finished

	trace.Stop()
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func locker(mu *sync.Mutex, done chan<- int) {
	mu.Lock() // blocks: main holds it
	n := 42
	mu.Unlock()
	done <- n
}

func pinger(ping chan<- int, pong <-chan int, finished chan<- bool) {
	for i := 0; i < rounds; i++ {
		ping <- i
		<-pong
	}
	close(ping)
	finished <- true
}

func ponger(ping <-chan int, pong chan<- int) {
	for v := range ping {
		pong <- v + 1
	}
}

// waitForState returns once some goroutine is parked with the given wait reason, as the
// runtime's own goroutine dump shows it ("goroutine 7 [sync.Mutex.Lock]:").
func waitForState(reason string) {
	deadline := time.Now().Add(20 * time.Second)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		if strings.Contains(string(buf[:n]), "["+reason) {
			return
		}
		runtime.Gosched()
	}
	fmt.Fprintln(os.Stderr, "no goroutine reached", reason)
	os.Exit(1)
}
