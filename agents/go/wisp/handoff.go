package wisp

// Work handed to goroutines that predate a boundary instance.
//
// An instance follows its goroutine's profiler label (labels.go), which the runtime copies
// only to goroutines created by a labelled one. A worker pool started before the request
// (its goroutines fed through a channel) therefore works outside the instance even when it
// does the request's work. Two small calls carry the instance over the hand-off:
//
//   - Within(ctx, f) runs f on the calling goroutine (the worker) inside the instance ctx
//     carries: the context a handler got (Call.Context, wisp.Handler's request context) or
//     any context made from it. Use it where the worker takes the job and its context.
//   - Carry(ctx, f) binds f, where the job is made, to the instance the calling goroutine
//     (or else ctx) works for, and returns the function to hand over: wherever it runs, it
//     runs f as Within would.
//
// While f runs, the worker carries the instance's label (its lock, data and hop events
// count for the boundary and, in hops mode, are recorded; goroutines it starts inherit it)
// and the decoder is told so ("wisp-in" / "wisp-out" logs, as an instance's own goroutine
// is); afterwards its labels are what they were. With the agent off, outside every
// instance, or on a goroutine already working for one, f runs as it is.

import (
	"context"
	"runtime/pprof"
)

// Within runs f inside the boundary instance ctx carries (see the file's comment).
func Within(ctx context.Context, f func()) {
	r := active.Load()
	if r == nil || ctx == nil {
		f()
		return
	}
	d := r.bounds.ofContext(ctx)
	if d == nil {
		f()
		return
	}
	runInside(r, ctx, f)
}

// Carry returns f bound to the boundary instance the calling goroutine, or else ctx, works
// for; f itself when there is none (see the file's comment).
func Carry(ctx context.Context, f func()) func() {
	r := active.Load()
	if r == nil || !labelsUsable || r.bounds.count.Load() == 0 {
		return f
	}
	var lctx context.Context
	if d := r.bounds.current(); d != nil {
		lctx = pprof.WithLabels(context.Background(), pprof.Labels(labelKey, d.label))
	} else if ctx != nil && r.bounds.ofContext(ctx) != nil {
		lctx = ctx
	} else {
		return f
	}
	return func() {
		if active.Load() != r { // the recording ended (or another began) meanwhile
			f()
			return
		}
		runInside(r, lctx, f)
	}
}

// runInside runs f with the goroutine labelled by lctx (which carries an instance's label),
// unless the goroutine works for an instance already.
func runInside(r *recorder, lctx context.Context, f func()) {
	if r.bounds.current() != nil {
		f()
		return
	}
	prev := getProfLabel()
	pprof.SetGoroutineLabels(lctx)
	r.markInstance(lctx, true)
	defer func() {
		r.markInstance(lctx, false)
		setProfLabel(prev)
	}()
	f()
}
