// A program that records a few hundred KB at an even pace over about three seconds (so the
// execution tracer's first generation, about a second, is a third of it), for the full disk
// test (tests/agents/test_go_agent.py): 60 rounds, 50 ms apart on average, in each of which four
// goroutines take a wisp.Mutex 60 times. It prints the total (14400) and exits 0.
package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

// Pauses of several lengths (50 ms on average): a constant one would be a timer rhythm.
var pauses = []time.Duration{20 * time.Millisecond, 35 * time.Millisecond, 50 * time.Millisecond, 65 * time.Millisecond, 80 * time.Millisecond}

func main() {
	defer wisp.Stop()
	mu := wisp.NewMutex("total")
	n := 0
	for round := 0; round < 60; round++ {
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 60; j++ {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		time.Sleep(pauses[round%len(pauses)])
	}
	fmt.Println(n)
}
