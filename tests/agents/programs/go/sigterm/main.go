// A program that waits to be terminated: it prints "ready" and blocks. SIGTERM must end it
// as usual (killed by the signal) after the agent has written everything.
package main

import (
	"fmt"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

func main() {
	m := wisp.NewMutex("state")
	m.Lock()
	m.Unlock()
	fmt.Println("ready")
	select {}
}
