// An HTTP client: GET the URL given as the first argument through wisp.Transport (which
// injects traceparent and records the call), print the status and the body.
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
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("%d %s\n", resp.StatusCode, body)
}
