package wisp

// The stream sink's status (ctl status's `sink`): the collector it tries, on its fallback
// file while the collector is absent, and every failed reconnect counted, past the five
// delays of the schedule.

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// refusingCollector accepts each connection and closes it at once: a hello that fails, as
// when no collector is there, on a real socket.
func refusingCollector(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestStreamStatusCountsEveryFailedReconnect(t *testing.T) {
	address := refusingCollector(t)
	path := filepath.Join(t.TempDir(), "svc-1-01234567-1.wtrace")
	process := func() []byte { return []byte{} }
	faults := 0
	onFault := func(string) int64 { faults++; return int64(faults) }
	s := newStreamSink(address, "", path, map[string]any{}, process, onFault, 0)
	defer s.close()
	want := map[string]any{"kind": "stream", "collector": address, "state": "file",
		"collector_file": "", "file": path, "unacked": 0, "retries": 0}
	check := func(retries int) {
		t.Helper()
		want["retries"] = retries
		got := s.status()
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("status %v, want %v", got, want)
			}
		}
	}
	check(0) // the first attempt fell back at once: no reconnect yet
	for n := 1; n <= 7; n++ {
		s.retryAt = time.Time{} // the delay is over: this write tries the collector again
		if err := s.write([]byte{}, pieceInfo{}); err != nil {
			t.Fatal(err)
		}
		check(n)
	}
	if faults != 1 {
		t.Fatalf("%d faults, want the one fallback", faults)
	}
}
