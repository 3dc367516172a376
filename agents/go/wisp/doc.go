// Package wisp is Willowisp's Go agent: it records what a Go program's goroutines do into
// `.wtrace` segment files that `willowisp analyze` reads together with the traces of the
// program's Python, Java, Node and Rust peers.
//
// How it fits (docs/agent-go.md has the whole story):
//
//   - goroutine semantics (create, block with reason, wake by whom, end, GC) come from the
//     runtime's execution tracer, whose raw bytes the agent stores as they arrive and which
//     are decoded when the run is analyzed, not inside the program;
//   - what the tracer cannot know (which lock, which request) comes from the wrappers here
//     (Mutex, RWMutex, Handler, Transport, Access, MessageSend/MessageReceive), which log it
//     on the calling goroutine through runtime/trace, so the tracer says who did it;
//   - a boundary instance follows its goroutines' profiler label; work handed to a goroutine
//     that predates the instance (a pool fed through a channel) joins it through Carry or
//     Within;
//   - the agent's own small events (clock anchors, faults, drops, flushes) and the
//     definitions (locks, requests, source places) are written by the recorder, flushed by
//     a background goroutine every 50 ms.
//
// Start with the blank import of package auto (configured by the WILLOWISP_* variables that
// `willowisp run` sets) or with Start, and end with Stop. Nothing here panics into the
// program or returns an agent error from a wrapped operation.
package wisp
