// Command wisp-goimport turns a Go execution trace into Willowisp's Go event stream.
//
// Usage:
//
//	wisp-goimport [TRACE]      (reads standard input when TRACE is omitted or "-")
//
// It reads the trace with golang.org/x/exp/trace (every trace version that reader knows,
// Go 1.11 to 1.26) and writes JSON Lines to standard output: a header, then one line per
// goroutine life event, wait, wake-up, GC phase, user task, region and log, then a summary.
// docs/import-go.md describes every line. The stream is written as the trace is read, so
// memory stays bounded by what is alive at one moment (goroutines, distinct source places),
// not by the length of the trace.
//
// Exit status: 0 when the trace was read to its end, or when it broke after at least one
// generation (the summary then carries "error" and "complete": false); 2 when the input is
// not a Go execution trace or nothing of it could be read, with one line on standard error.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: arguments, streams and the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 1 || (len(args) == 1 && (args[0] == "-h" || args[0] == "--help")) {
		fmt.Fprintln(stderr, "usage: wisp-goimport [TRACE]  (standard input when TRACE is omitted or -)")
		return 2
	}
	name := "<stdin>"
	in := stdin
	if len(args) == 1 && args[0] != "-" {
		name = args[0]
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "wisp-goimport: %v\n", err)
			return 2
		}
		defer f.Close()
		in = f
	}
	out := bufio.NewWriterSize(stdout, 1<<16)
	_, err := convert(in, out)
	if ferr := out.Flush(); ferr != nil && err == nil {
		err = &fatalError{fmt.Errorf("writing the stream: %w", ferr)}
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "wisp-goimport: %s: %v\n", name, err)
	if _, partial := err.(*partialError); partial {
		return 0
	}
	return 2
}
