package main

// Telling the program's own code from the Go runtime's and the standard library's.

import (
	"strings"

	"golang.org/x/exp/trace"
)

// agentPackage is the Go agent's package: its frames are never the program's place.
const agentPackage = "github.com/willowisp/willowisp/agents/go/wisp"

// hopPackages: the packages a hop event's stack passes through between the program's
// call and the agent (besides the standard library's net/http): the gRPC interceptors
// (wispgrpc) and grpc-go itself, which calls them.
var hopPackages = [...]string{"github.com/willowisp/willowisp/agents/go/wispgrpc", "google.golang.org/grpc"}

// funcPackage is the import path of a function's package:
// "github.com/a/b.(*T).M" -> "github.com/a/b", "main.main.func1" -> "main".
func funcPackage(fn string) string {
	slash := strings.LastIndexByte(fn, '/')
	dot := strings.IndexByte(fn[slash+1:], '.')
	if dot < 0 {
		return fn
	}
	return fn[:slash+1+dot]
}

// stdFunc: is fn in the runtime or the standard library? Standard packages are the ones
// whose first path element has no dot (runtime, sync, internal/poll, net/http), except main.
func stdFunc(fn string) bool {
	pkg := funcPackage(fn)
	if pkg == "main" || fn == "" {
		return false
	}
	first, _, _ := strings.Cut(pkg, "/")
	return !strings.Contains(first, ".")
}

// programFunc: is fn the program's own code, neither the agent's nor the standard library's?
func programFunc(fn string) bool {
	return funcPackage(fn) != agentPackage && !stdFunc(fn)
}

// hopCallerFunc: is fn where the program made or served a request: the program's own
// code, and not the gRPC library or its interceptors (which are other modules).
func hopCallerFunc(fn string) bool {
	if !programFunc(fn) {
		return false
	}
	pkg := funcPackage(fn)
	for _, p := range hopPackages {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return false
		}
	}
	return true
}

// systemFunc: does a goroutine starting in fn belong to the runtime or the tracer rather than
// the program (GC workers, the sweeper, the scavenger, finalizers, the trace writer)?
// runtime.main is the program's main goroutine.
func systemFunc(fn string) bool {
	if fn == "runtime.main" {
		return false
	}
	return strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(fn, "runtime/trace.")
}

// systemReason: wait reasons only the runtime's own goroutines give.
func systemReason(reason string) bool {
	return reason == "system goroutine wait" || reason == "GC background sweeper wait"
}

// entryFunc is the function a goroutine started in, read from the bottom of a stack:
// the frame above runtime.goexit, and main.main above runtime.main.
func entryFunc(s trace.Stack) string {
	var frames []string
	for f := range s.Frames() {
		frames = append(frames, f.Func)
	}
	for i := len(frames) - 1; i >= 0; i-- {
		switch frames[i] {
		case "runtime.goexit":
			continue
		case "runtime.main":
			if i > 0 {
				return frames[i-1]
			}
		}
		return frames[i]
	}
	return ""
}
