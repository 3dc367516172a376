package wisp

// A full disk (docs/agent-go.md "A full disk"; the Python agent's recorder is the
// reference). The file system may refuse a chunk (ENOSPC, EDQUOT, EFBIG): the program goes
// on, and nothing is lost silently.
//
//   - Whole chunks only: the file sink cuts a refused chunk off again (stream.go).
//   - The refused chunk's events are counted as dropped per unit and said in the next chunk
//     that is written (agent.drop events, the stats record's dropped); its definitions are
//     kept for that chunk; one fault (where: write) per spell of refusals.
//   - The reserve: a 64 KiB file made next to the first segment and deleted at the first
//     refusal, so that a small chunk with the news (process record, anchor, faults, drops,
//     stats) still fits.
//   - The execution tracer's stream cannot be read past a gap: a refused piece ends it
//     (read up to its last complete generation before the piece, as when a collector goes
//     away), the tracer's later bytes are counted (one dropped event per batch the runtime
//     handed over, a lower bound) and not kept, the tracer is stopped and started again,
//     with a new stream, 1, 2, 4 ... 60 s later.
//   - At the end, one line on standard error says how many events could not be written.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	reservePrefix = ".willowisp-reserve-" // `willowisp run` removes a killed process's one
	reserveBytes  = 64 << 10
	maxCarried    = 100_000 // definition records kept from refused chunks
	restartFirst  = int64(time.Second)
	restartMost   = int64(time.Minute)
)

// makeReserve creates the reserve in the run folder (wmu held, or before the recorder is
// shared); without room for it there is none.
func (r *recorder) makeReserve() {
	path := filepath.Join(r.cfg.Out, fmt.Sprintf("%s%d", reservePrefix, os.Getpid()))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, reserveBytes); err != nil {
		_ = os.Remove(path)
		return
	}
	r.reserve = path
}

// dropReserve deletes the reserve (wmu held); says whether there was one to delete.
func (r *recorder) dropReserve() bool {
	path := r.reserve
	r.reserve = ""
	return path != "" && os.Remove(path) == nil
}

// reasonOf is what the system said, as the C library words it ("No space left on device").
func reasonOf(err error) string {
	var errno syscall.Errno
	var pe *os.PathError
	msg := err.Error()
	switch {
	case errors.As(err, &errno):
		msg = errno.Error()
	case errors.As(err, &pe):
		msg = pe.Err.Error()
	case errors.Is(err, io.ErrShortWrite):
		msg = "short write"
	}
	if msg == "" {
		return "unknown error"
	}
	return strings.ToUpper(msg[:1]) + msg[1:]
}

// refused handles a chunk the destination refused (wmu held): its events are dropped and
// counted per unit (said in the next chunk written), its definitions kept for that chunk,
// a fault opens the spell of refusals, and the first refusal spends the reserve on the news.
func (r *recorder) refused(c *Chunk, piece pieceInfo, err error) {
	reason := reasonOf(err)
	r.mu.Lock()
	for _, e := range c.Events {
		if e.Kind == KindAgentDrop { // drops said in it are said again
			r.unsaid[e.Unit] += e.Arg
			continue
		}
		r.unsaid[e.Unit]++
		r.dropped++
		r.lostOnWrite++
	}
	if piece.stream == 0 {
		kept := r.carry
		for _, rec := range c.Records {
			switch rec.Type {
			case RecUnit, RecResource, RecLocation, RecFault:
				kept = append(kept, rec)
			}
		}
		if len(kept) > maxCarried {
			r.dropped += int64(len(kept) - maxCarried)
			r.unsaid[0] += int64(len(kept) - maxCarried)
			kept = kept[len(kept)-maxCarried:]
		}
		r.carry = kept
		r.lastAnchor = 0 // the next chunk has a clock anchor again, and the process record
		r.wroteProcess = false
	}
	spell := !r.writeFailed
	if spell {
		r.faultLocked("write", fmt.Errorf("cannot write %s: %s", r.path, reason))
	}
	r.mu.Unlock()
	r.writeFailed = true
	if r.refusal == "" {
		r.refusal = reason
	}
	if r.dropReserve() {
		r.writeNews()
	}
}

// writeNews writes, in the room the reserve left, a small chunk with only the news of the
// loss: the process record, a clock anchor, the faults waiting, one agent.drop per unit and
// the stats (wmu held). Events recorded since wait for the next flush (they may not fit).
func (r *recorder) writeNews() {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := Chunk{FirstSeq: r.seq, Records: []Record{r.processRecord(r.segment)}}
	for _, list := range [][]Record{r.carry, r.records} {
		for _, rec := range list {
			if rec.Type == RecFault {
				c.Records = append(c.Records, rec)
			}
		}
	}
	mono, wall := anchor(r.cfg.ClockOffsetNS)
	c.Events = append(c.Events, Event{Kind: KindClockAnchor, Time: uint64(mono), Arg: wall})
	for u, n := range r.unsaid {
		c.Events = append(c.Events, Event{Kind: KindAgentDrop, Unit: u, Time: uint64(mono), Arg: n})
	}
	c.Records = append(c.Records, r.statsRecord())
	b, err := r.z.frameChunk(&c, r.cfg.Codec)
	if err == nil {
		err = r.out.write(b, pieceInfo{})
	}
	if err != nil {
		return // not even that fits: the line at the end says it
	}
	r.written += int64(len(b))
	r.seq += uint64(len(c.Events))
	r.lastAnchor = mono
	clear(r.unsaid)
	r.carry = withoutFaults(r.carry)
	r.records = withoutFaults(r.records)
}

func withoutFaults(recs []Record) []Record {
	out := recs[:0]
	for _, rec := range recs {
		if rec.Type != RecFault {
			out = append(out, rec)
		}
	}
	return out
}

// sayDropsLocked adds one agent.drop per unit with drops not yet said (mu held). They do
// not count against the event buffer's bound: they are how its overflow is said.
func (r *recorder) sayDropsLocked(t int64) {
	for u, n := range r.unsaid {
		r.events = append(r.events, Event{Kind: KindAgentDrop, Unit: u, Time: uint64(t), Arg: n})
	}
	clear(r.unsaid)
}

// lostTraceLocked counts tracer bytes that cannot be stored (mu held): each batch the
// runtime handed over holds at least one event, counted as one dropped event.
func (r *recorder) lostTraceLocked(bytes, batches int64) {
	r.lostTrace += bytes
	r.dropped += batches
	r.unsaid[0] += batches
	r.lostOnWrite += batches
}

// pieceRefused: a piece of a tracer stream was refused (wmu held). The stream ends there;
// the bytes after it are not kept, and the tracer is restarted with a new stream later.
func (r *recorder) pieceRefused(info pieceInfo, bytes, batches int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lostTraceLocked(bytes, batches)
	if !r.streamOpen || info.stream != r.streamNo {
		return // its last piece: the stream was closed anyway
	}
	r.streamBroken = true
	if len(r.trace) > 0 { // handed over after this flush took its pieces: after the gap
		r.lostTraceLocked(int64(len(r.trace)), r.traceWrites)
		r.trace, r.traceWrites, r.genEnd, r.genWrites = r.trace[:0], 0, 0, 0
	}
	r.faultLocked("trace", fmt.Errorf("execution trace stream %d: a piece of %d bytes could not be written (%s); the stream is read up to its last complete generation before it, and the tracer's bytes after it are lost until a new stream starts", info.stream, bytes, reasonOf(err)))
	if r.restartAt == 0 {
		if r.restartWait == 0 {
			r.restartWait = restartFirst
		}
		r.restartAt = nanotime() + r.restartWait
		r.restartWait = min(2*r.restartWait, restartMost)
	}
}

// recoverTracer (on the flusher) stops a tracer whose stream was broken by a refused
// piece, and starts it again, with a new stream, when its wait is over.
func (r *recorder) recoverTracer() {
	if r.restartPending() == 0 { // the usual tick: no tmu, which ctl's switches may hold
		return
	}
	r.tmu.Lock()
	defer r.tmu.Unlock()
	// Read again under tmu: whoever held it (another caller, a boundary switched through
	// ctl) may have restarted the tracer meanwhile, and acting on the state from before
	// would stop that new stream and start yet another one.
	r.mu.Lock()
	at, broken := r.restartAt, r.streamBroken
	r.mu.Unlock()
	if at == 0 || r.stopping {
		return
	}
	if r.tracerOn && broken {
		r.stopTracerLocked() // its bytes would be lost anyway: the program stops paying for them
	}
	if nanotime() < at {
		return
	}
	r.mu.Lock()
	r.restartAt = 0
	r.mu.Unlock()
	if !r.tracerOn && r.wantTracer() {
		r.startTracerLocked()
	}
}

// restartPending is when a tracer stopped by a refusal starts again (0: none).
func (r *recorder) restartPending() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restartAt
}

// sayLost writes the one line a full disk costs the program's standard error.
func (r *recorder) sayLost() {
	r.mu.Lock()
	n, bytes := r.lostOnWrite, r.lostTrace
	r.mu.Unlock()
	if n == 0 && bytes == 0 {
		return
	}
	r.wmu.Lock()
	path, reason := r.path, r.refusal
	r.wmu.Unlock()
	if path == "" {
		path = r.cfg.Out
	}
	if reason == "" {
		reason = "unknown error"
	}
	fmt.Fprintf(os.Stderr, "willowisp: %d events of %s (pid %d) could not be written to %s: %s\n",
		n, r.cfg.Service, os.Getpid(), path, reason)
}
