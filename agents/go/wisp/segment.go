package wisp

// Segments: the recorder writes <service>-<pid>-<process id prefix>-<n>.wtrace files in the
// run folder (or streams them to a collector, stream.go), from n = 1. The flusher rotates
// to the next one when the current one holds cfg.SegmentBytes; each starts with the process
// record, so that each can be read on its own. When the next one cannot be opened, the
// recorder stays in the current one (a fault).

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// openSegment opens segment n (a file, or a stream connection to the collector) and makes
// it the one the next chunks describe (the caller installs the sink, wmu held or before
// the recorder is shared).
func (r *recorder) openSegment(n int) (sink, error) {
	name := fmt.Sprintf("%s-%d-%s-%d.wtrace", safeName(r.cfg.Service), os.Getpid(), r.processID[:8], n)
	path := filepath.Join(r.cfg.Out, name)
	r.segment, r.written, r.wroteProcess = n, int64(len(FileHeader)), false
	oldPath := r.path
	r.path = path
	if r.cfg.Collector != "" {
		hello := map[string]any{"process_id": r.processID, "service": cut(r.cfg.Service, 256),
			"pid": os.Getpid(), "runtime": "go", "segment": n}
		process := func() []byte { return r.processChunk(n) }
		return newStreamSink(r.cfg.Collector, r.cfg.Token, path, hello, process, r.countFault, r.cfg.StreamRetry), nil
	}
	if n == 1 {
		r.makeReserve()
	}
	f, err := openFileSink(path)
	if err != nil {
		r.path = oldPath
		if n == 1 {
			r.dropReserve() // the agent stays off
		}
		return nil, err
	}
	return f, nil
}

// sinkStatus is where chunks go now, for the control channel's status (`sink`). It waits
// for a flush in progress (wmu), as the segment number in status does: the sink is the
// flusher's alone.
func (r *recorder) sinkStatus() map[string]any {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.out == nil { // not started, or nothing could be opened
		return map[string]any{"kind": "file", "path": ""}
	}
	return r.out.status()
}

// rotate closes the current segment and opens the next: the tracer is stopped (its stream
// closed in the old file) and started again with a new stream number in the new one.
func (r *recorder) rotate() {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	if r.stopping {
		return
	}
	tracing := r.tracerOn
	if tracing {
		r.stopTracerLocked()
	} else {
		_ = r.flush(false)
	}
	r.wmu.Lock()
	if r.closed {
		r.wmu.Unlock()
		return
	}
	old, oldSeg, oldWritten := r.out, r.segment, r.written
	next, err := r.openSegment(oldSeg + 1)
	if err != nil {
		r.segment, r.written, r.wroteProcess = oldSeg, oldWritten, true
		r.wmu.Unlock()
		r.fault("segment", err)
		r.rotateFailed = true
	} else {
		r.out = next
		r.wmu.Unlock()
		old.close()
	}
	if tracing {
		r.startTracerLocked()
	}
}

// processChunk is a chunk holding only the process record (a stream's new destination
// starts with it).
func (r *recorder) processChunk(segment int) []byte {
	c := Chunk{Records: []Record{r.processRecord(segment)}}
	var z Compressor
	b, _ := z.Frame(c.Payload(), CodecNone)
	return b
}

func (r *recorder) processRecord(segment int) Record {
	host, _ := os.Hostname()
	rt := 0
	if r.cfg.RunPID != 0 && os.Getppid() == r.cfg.RunPID {
		rt = 1
	}
	return Record{Type: RecProcess, ID: 0, Attrs: []Attr{
		{"process_id", r.processID},
		{"pid", int64(os.Getpid())},
		{"ppid", int64(os.Getppid())},
		{"host", host},
		{"service", r.cfg.Service},
		{"runtime", "go"},
		{"runtime_version", strings.TrimPrefix(runtime.Version(), "go")},
		{"agent_version", AgentVersion},
		{"boot_id", readTrim("/proc/sys/kernel/random/boot_id")},
		{"time_ns", readLink("/proc/self/ns/time")},
		{"fake_time", ""},
		{"simulated_offset_ns", r.cfg.ClockOffsetNS},
		{"argv", argv()},
		{"traceparent", r.cfg.Traceparent},
		{"parent_process_id", os.Getenv("WILLOWISP_PARENT_PROCESS")},
		{"mode", r.cfg.Mode},
		{"boundaries", r.cfg.Boundaries},
		{"segment", int64(segment)},
		{"run_root", int64(rt)},
		{"go_tracer", boolInt(!r.cfg.NoTracer)},
	}}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readLink(path string) string {
	s, err := os.Readlink(path)
	if err != nil {
		return ""
	}
	return s
}

func argv() string {
	s := strings.Join(os.Args, " ")
	if len(s) > 4096 {
		s = s[:4096]
	}
	return s
}
