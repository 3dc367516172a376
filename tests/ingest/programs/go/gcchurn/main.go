// Command gcchurn traces itself into the file named by its first argument while the
// garbage collector works: main allocates and forces three collections, so the runtime's
// own goroutines (GC mark workers, the background sweeper) are scheduled many times while
// one program goroutine hands main a result over a channel. The test checks that the
// runtime's scheduling is counted, not written, and the program's is kept.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/trace"
)

var sink [][]byte

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
	done := make(chan int)
	go func() {
		n := 0
		for i := 0; i < 20000; i++ {
			sink = append(sink, make([]byte, 512))
			n += len(sink[i])
		}
		done <- n
	}()
	total := <-done
	for i := 0; i < 3; i++ {
		sink = nil
		runtime.GC()
		sink = append(sink, make([]byte, 1<<20))
	}
	trace.Stop()
	f.Close()
	fmt.Println(total > 0)
}
