// An HTTP client that hands the response's body to another goroutine to read: GET the URL
// given as the first argument through wisp.Transport, read the body on a goroutine of its
// own, print the status and the body. The call ends when that goroutine has read the body,
// and it is main's wait for the reply that ends then.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/willowisp/willowisp/agents/go/wisp"
	_ "github.com/willowisp/willowisp/agents/go/wisp/auto"
)

func main() {
	defer wisp.Stop()
	resp, err := wisp.Client().Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		wisp.Stop()
		os.Exit(1)
	}
	got := make(chan []byte)
	go func() {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- body
	}()
	fmt.Printf("%d %s\n", resp.StatusCode, <-got)
}
