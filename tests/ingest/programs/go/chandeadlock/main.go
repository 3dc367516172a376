// Command chandeadlock traces itself into the file named by its argument and deadlocks on
// channels: left waits to receive from a, right waits to receive from b, and each would
// send on the channel the other receives from only after its own receive; main waits on
// done, which left would close. Go's runtime would call this "all goroutines are asleep"
// but for the pending timer: a time.AfterFunc goroutine waits until the runtime shows all
// three parked, then stops the trace, closes the file and exits 0.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/trace"
	"strings"
	"time"
)

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
	a, b := make(chan int), make(chan int)
	done := make(chan struct{})
	go left(a, b, done)
	go right(a, b)
	time.AfterFunc(time.Millisecond, func() {
		waitForParked(3, "chan receive")
		trace.Stop()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	})
	<-done // main waits here
}

func left(a <-chan int, b chan<- int, done chan<- struct{}) {
	v := <-a // left waits here
	b <- v
	close(done)
}

func right(a chan<- int, b <-chan int) {
	v := <-b // right waits here
	a <- v
}

// waitForParked returns once n goroutines are parked with the given wait reason, as the
// runtime's own goroutine dump shows them ("goroutine 7 [chan receive]:").
func waitForParked(n int, reason string) {
	deadline := time.Now().Add(20 * time.Second)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		k := runtime.Stack(buf, true)
		if strings.Count(string(buf[:k]), "["+reason+"]") >= n {
			return
		}
		runtime.Gosched()
	}
	fmt.Fprintln(os.Stderr, "fewer than", n, "goroutines reached", reason)
	os.Exit(1)
}
