// Four goroutines increment a counter under one wisp.Mutex and main prints the total
// (4000): a program that must behave the same whatever the agent's configuration.
package main

import (
	"fmt"
	"sync"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

func main() {
	defer wisp.Stop()
	var mu wisp.Mutex
	var wg sync.WaitGroup
	n := 0
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Println(n)
}
