package wisp

// Which goroutines work for a boundary instance.
//
// Go has no goroutine-local storage, but it has one goroutine-scoped value the runtime
// hands from a goroutine to the goroutines it starts: the profiler labels
// (runtime/pprof.SetGoroutineLabels). An instance (boundary.go) puts the label
// `wisp.boundary=b-<id>` on the goroutine that took the inbound hop, through the public
// pprof API (so the CPU profiler reads it as any other label, and a program's own
// pprof.Do inside the handler keeps it: labels merge), and takes it off when the hop is
// answered. Reading it back on a hot path (a lock operation) must be cheap: the public
// API needs a context, so the agent reads the goroutine's label pointer through
// runtime/pprof.runtime_getProfLabel (a linkname the runtime keeps for this use, see
// go.dev/issue/67401) and walks the label list (internal/runtime/pprof/label.Set: a slice
// of key/value string pairs, Go 1.21 and later). That layout is checked once at start
// (labelsUsable): if reading back a label just set gives anything else, the agent does not
// rely on it (boundaries then count entries only, and hops mode records the goroutines of
// the whole process while a boundary is on, as before), and says so in a fault.

import (
	"context"
	"runtime/pprof"
	"sync"
	"unsafe"
)

// labelKey is the goroutine label an instance sets.
const labelKey = "wisp.boundary"

//go:linkname getProfLabel runtime/pprof.runtime_getProfLabel
func getProfLabel() unsafe.Pointer

//go:linkname setProfLabel runtime/pprof.runtime_setProfLabel
func setProfLabel(labels unsafe.Pointer)

// labelSet mirrors internal/runtime/pprof/label.Set (runtime/pprof's labelMap embeds it).
type labelSet struct {
	list []struct{ key, value string }
}

// labelsUsable says the label layout was checked (see the file's comment): by the first
// Start, before the recorder is published, so that a program that never records never
// runs the check.
var (
	labelsUsable bool
	labelsOnce   sync.Once
)

func checkLabelsOnce() {
	labelsOnce.Do(func() { labelsUsable = checkLabels() })
}

// currentLabel is the calling goroutine's `wisp.boundary` label, "" when none.
func currentLabel() string {
	if !labelsUsable {
		return ""
	}
	p := getProfLabel()
	if p == nil {
		return ""
	}
	for _, l := range (*labelSet)(p).list {
		if l.key == labelKey {
			return l.value
		}
	}
	return ""
}

// checkLabels sets labels on a goroutine of its own and reads them back the agent's way.
func checkLabels() (ok bool) {
	done := make(chan bool, 1)
	go func() {
		defer func() {
			if recover() != nil {
				done <- false
			}
		}()
		ctx := pprof.WithLabels(context.Background(), pprof.Labels("a", "1", labelKey, "b-check", "z", "2"))
		pprof.SetGoroutineLabels(ctx)
		p := getProfLabel()
		if p == nil {
			done <- false
			return
		}
		list := (*labelSet)(p).list
		good := len(list) == 3
		found := ""
		for _, l := range list {
			if l.key == labelKey {
				found = l.value
			}
		}
		v, _ := pprof.Label(ctx, labelKey)
		done <- good && found == "b-check" && v == "b-check"
	}()
	return <-done
}
