// Command fdlock traces itself into the file named by its first argument while goroutines
// started on io.Copy share one pipe (each write takes the descriptor's lock inside
// internal/poll, which the runtime reports as a "sync" wait with no program frame on the
// stack, like net/http's connection goroutines in the demo) and workers contend for one
// program mutex (a real contention at the program's own line).
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/trace"
	"sync"
	"time"
)

var mu sync.Mutex

func work(wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; i < 20; i++ {
		mu.Lock() // the program's lock
		time.Sleep(200 * time.Microsecond)
		mu.Unlock()
	}
}

func main() {
	f, err := os.Create(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := trace.Start(f); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	const writers, size = 4, 4 << 20
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go io.Copy(w, bytes.NewReader(make([]byte, size))) // no program frame on its stack
		go work(&wg)
	}
	_, _ = io.CopyN(io.Discard, r, writers*size) // all the writers' bytes
	wg.Wait()
	trace.Stop()
}
