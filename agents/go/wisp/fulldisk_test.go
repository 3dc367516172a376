package wisp

import (
	"os"
	"path/filepath"
	"runtime/trace"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// refusingSink refuses every chunk while refuse is set, as a full disk does.
type refusingSink struct {
	sink
	refuse atomic.Bool
}

func (s *refusingSink) write(b []byte, p pieceInfo) error {
	if s.refuse.Load() {
		return &os.PathError{Op: "write", Path: "test", Err: syscall.ENOSPC}
	}
	return s.sink.write(b, p)
}

// A refused tracer piece ends its stream where the file has it (no later piece of it is
// written), the loss is counted and said (faults where write and trace, drops), and the
// tracer starts again with a new, complete stream once there is room.
func TestRefusedTracerPieceEndsItsStreamAndANewOneStarts(t *testing.T) {
	dir := startTemp(t)
	defer Stop()
	r := active.Load()
	if _, err := os.Stat(filepath.Join(dir, reservePrefix+strconv.Itoa(os.Getpid()))); err != nil {
		t.Fatalf("no reserve: %v", err)
	}
	r.wmu.Lock()
	s := &refusingSink{sink: r.out}
	r.out = s
	r.wmu.Unlock()
	s.refuse.Store(true)
	filler := strings.Repeat("x", 256) // 4 MiB of tracer bytes make a piece at once
	for i := 0; i < 1_000_000; i++ {   // until a piece of the stream was refused
		trace.Log(bg, "test", filler)
		if i%1000 == 999 {
			_ = r.flush(false)
			r.mu.Lock()
			broken := r.streamBroken
			r.mu.Unlock()
			if broken {
				break
			}
		}
	}
	r.mu.Lock()
	broken, lost := r.streamBroken, r.lostTrace
	r.restartAt = nanotime() // no wait
	r.mu.Unlock()
	if !broken || lost == 0 {
		t.Fatalf("broken %v, lost %d", broken, lost)
	}
	if _, err := os.Stat(filepath.Join(dir, reservePrefix+strconv.Itoa(os.Getpid()))); !os.IsNotExist(err) {
		t.Fatalf("the reserve is still there: %v", err)
	}
	s.refuse.Store(false)
	r.recoverTracer()
	r.tmu.Lock()
	on, stream := r.tracerOn, r.streamNo
	r.tmu.Unlock()
	if !on || stream != 2 {
		t.Fatalf("tracer on %v, stream %d: want a new stream 2", on, stream)
	}
	Stop()
	records, _ := readBack(t, segment(t, dir))
	more := map[uint64][]int64{}
	wheres := map[string]bool{}
	var dropped int64
	for _, rec := range records {
		switch rec.Type {
		case RecEmbedded:
			more[rec.ID] = append(more[rec.ID], attr(rec, "more").(int64))
		case RecFault:
			wheres[attr(rec, "where").(string)] = true
		case RecStats:
			dropped = attr(rec, "dropped").(int64)
		}
	}
	if len(more[1]) != 0 { // the refused pieces were the first: nothing of stream 1 is there
		if last := more[1][len(more[1])-1]; last != 1 {
			t.Fatalf("stream 1 was closed after a refused piece: %v", more[1])
		}
	}
	if m := more[2]; len(m) == 0 || m[len(m)-1] != 0 {
		t.Fatalf("stream 2 is not complete: %v", m)
	}
	if !wheres["write"] || !wheres["trace"] || dropped == 0 {
		t.Fatalf("faults %v, dropped %d", wheres, dropped)
	}
	if _, err := os.Stat(filepath.Join(dir, reservePrefix+strconv.Itoa(os.Getpid()))); !os.IsNotExist(err) {
		t.Fatal("the reserve outlived Stop")
	}
}

// Without the tracer, the client's send and its wait for the reply (one log with the
// tracer, see ClientBegin) are two of the agent's own events, as the decoder makes them.
func TestClientSendAndWaitWithoutTheTracer(t *testing.T) {
	if err := Start(Config{Out: t.TempDir(), Service: "hops", NoSignals: true, Control: "off", NoTracer: true, Mode: "full"}); err != nil {
		t.Fatal(err)
	}
	defer Stop()
	r := active.Load()
	r.wmu.Lock() // no flush meanwhile
	r.mu.Lock()
	before := len(r.events)
	r.mu.Unlock()
	c := ClientBegin(bg, rootContext(), Hop{Protocol: "http", Library: "net/http", Method: "GET", Target: "/x"})
	r.mu.Lock()
	got := append([]Event(nil), r.events[before:]...)
	r.mu.Unlock()
	r.wmu.Unlock()
	c.ClientEnd(200)
	if len(got) != 2 || got[0].Kind != kindMsgSend || got[0].Arg != 0 || got[1].Kind != kindBlock ||
		got[1].Arg != reasonRPC || got[0].Res != c.res || got[1].Res != c.res || got[0].Unit != got[1].Unit {
		t.Fatalf("events %+v", got)
	}
}
