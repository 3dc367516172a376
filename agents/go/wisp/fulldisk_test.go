package wisp

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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

// breakStream swaps in a sink that refuses everything and writes tracer bytes until a
// piece of the open stream was refused. The restart is put off for an hour, so that the
// flusher cannot start a new stream while the disk is still full: the caller says when.
func breakStream(t *testing.T, r *recorder) *refusingSink {
	t.Helper()
	r.mu.Lock()
	r.restartWait = int64(time.Hour)
	r.mu.Unlock()
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
			// restartAt, not streamBroken: the flusher clears streamBroken when it stops the
			// broken tracer, while restartAt stays set until the restart an hour away.
			if restartDue(r) != 0 {
				break
			}
		}
	}
	r.mu.Lock()
	lost := r.lostTrace
	r.mu.Unlock()
	if restartDue(r) == 0 || lost == 0 {
		t.Fatalf("no tracer piece was refused: restart at %d, lost %d", restartDue(r), lost)
	}
	return s
}

func restartDue(r *recorder) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restartAt
}

// makeRestartDue: the wait after the refusal is over.
func makeRestartDue(r *recorder) {
	r.mu.Lock()
	r.restartAt = nanotime()
	r.mu.Unlock()
}

func tracerStream(r *recorder) (bool, int) {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	return r.tracerOn, r.streamNo
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
	s := breakStream(t, r)
	if _, err := os.Stat(filepath.Join(dir, reservePrefix+strconv.Itoa(os.Getpid()))); !os.IsNotExist(err) {
		t.Fatalf("the reserve is still there: %v", err)
	}
	s.refuse.Store(false) // room first: a restart from here on (ours or the flusher's) is whole
	makeRestartDue(r)
	r.recoverTracer() // the flusher may call it too: exactly one new stream starts
	if on, stream := tracerStream(r); !on || stream != 2 {
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

// Two callers that find the same restart due start one new stream, not two: whoever gets
// tmu first restarts the tracer, and the other must see that under tmu rather than act on
// what it read before waiting for it (the flusher and the test above both call it).
func TestADueTracerRestartHappensOnce(t *testing.T) {
	startTemp(t)
	defer Stop()
	r := active.Load()
	// A start or stop in progress from before the refusal: the broken tracer stays on (the
	// flusher cannot stop it yet), and both callers will wait for tmu.
	r.tmu.Lock()
	held := true
	defer func() { // before Stop, which waits for the flusher, which may wait for tmu
		if held {
			r.tmu.Unlock()
		}
	}()
	s := breakStream(t, r)
	s.refuse.Store(false)
	makeRestartDue(r)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.recoverTracer()
		}()
	}
	parked := parkedInRecover(t.Name(), 2)
	held = false
	r.tmu.Unlock()
	wg.Wait()
	if parked < 2 {
		t.Fatalf("%d of 2 callers waited in recoverTracer", parked)
	}
	if on, stream := tracerStream(r); !on || stream != 2 {
		t.Fatalf("tracer on %v, stream %d: want one new stream, 2", on, stream)
	}
}

// parkedInRecover waits (at most 10 s) until n goroutines the named test started are
// parked on a mutex in recoverTracer, and says how many were (a goroutine dump is the only
// place a parked goroutine shows).
func parkedInRecover(test string, n int) int {
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		dump := string(buf[:runtime.Stack(buf, true)])
		parked := 0
		for _, g := range strings.Split(dump, "\n\n") {
			if strings.Contains(g, "[sync.Mutex.Lock") && strings.Contains(g, "(*recorder).recoverTracer") &&
				strings.Contains(g, "created by "+pkgPath+"."+test) {
				parked++
			}
		}
		if parked >= n || time.Now().After(deadline) {
			return parked
		}
		runtime.Gosched()
	}
}

// pkgPath is this package's import path, as goroutine dumps name its functions.
var pkgPath = reflect.TypeOf(recorder{}).PkgPath()

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
