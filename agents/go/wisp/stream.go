package wisp

// Where a segment's chunks go: a file (fileSink), or `willowisp collect --native` over the
// native stream of docs/protocols.md (streamSink), one connection per segment.
//
// The stream sends every chunk exactly as it would be written to a file, keeps it until the
// collector acknowledges it (bounded: 32 MiB or 4096 chunks, then it waits up to 5 s), and
// falls back to the segment file the agent would have written when the collector cannot be
// reached, refuses the hello, goes away, stalls or says bye: the file gets a chunk with the
// process record and a fault record saying what happened (where: stream), then every chunk
// not yet acknowledged, in order, then everything after. A collector's bye (it is shutting
// down in order) loses nothing and is no fault: the file gets no fault record (tracer bytes
// that cannot follow their stream are still counted, see takeLost). It tries the collector again
// 1, 2, 4, 8 and 16 s apart, then every 30 s without end (every delay capped by
// WILLOWISP_STREAM_RETRY_S), when it next has a chunk (no extra goroutine); a connection
// resets that schedule, and a new connection starts with the process record again. At
// the end it says bye and waits up to 2 s for the collector's bye; what is still
// unacknowledged goes to the file.
//
// Trade-off (as in the Python agent): sends happen on the flusher with deadlines and
// acknowledgements are read without blocking after each send, so a slow collector delays
// the flusher (the agent's buffers absorb it, or drops are counted), never the program.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	streamMagic      = "WSTR"
	streamMaxBody    = 64 << 10
	connectTimeout   = time.Second
	helloTimeout     = 2 * time.Second
	sendTimeout      = 5 * time.Second
	closeWait        = 2 * time.Second
	maxUnackedBytes  = 32 << 20
	maxUnackedChunks = 4096
)

// The delays between attempts to reach the collector again: 1, 2, 4, 8, 16 s, then
// retryMax for ever; Config.StreamRetry (WILLOWISP_STREAM_RETRY_S) caps each of them.
var retryDelays = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}

const retryMax = 30 * time.Second

// retryDelay is the wait before attempt n+1 after n failed ones (n from 0), at most limit
// when limit > 0.
func retryDelay(n int, limit time.Duration) time.Duration {
	d := retryMax
	if n >= 0 && n < len(retryDelays) {
		d = retryDelays[n]
	}
	if limit > 0 && d > limit {
		d = limit
	}
	return d
}

// pieceInfo says whether a chunk holds a piece of the execution tracer's stream (stream
// != 0), and whether it is the stream's first piece (with the header a decoder needs).
type pieceInfo struct {
	stream int
	first  bool
	final  bool
}

// sink takes a segment's framed chunks, each in one piece.
type sink interface {
	write(chunk []byte, piece pieceInfo) error
	close()
	// epoch counts the destination's changes (a fall back to the file, a reconnection):
	// the recorder then starts a new tracer stream, so that every stream a destination
	// holds starts there.
	epoch() int
	// takeLost is how many bytes of tracer streams could not go where their stream
	// started (the collector went away) since the last call.
	takeLost() int64
	// status says where chunks go, for the control channel's status (`sink`, its fields
	// as docs/protocols.md and the other agents give them).
	status() map[string]any
}

// fileSink writes a segment file. Whole chunks only: a chunk the file system refuses in
// part (a full disk, a quota) is cut off again, so the file ends at a chunk boundary and a
// later chunk that fits follows the last whole one directly.
type fileSink struct {
	f    *os.File
	path string
	size int64 // the file's length: the end of its last whole chunk
}

func (s *fileSink) write(b []byte, _ pieceInfo) error {
	n, err := s.f.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		if n > 0 {
			_ = s.f.Truncate(s.size)
		}
		_, _ = s.f.Seek(s.size, io.SeekStart)
		return err
	}
	s.size += int64(n)
	return nil
}
func (s *fileSink) close()          { _ = s.f.Close() }
func (s *fileSink) epoch() int      { return 0 }
func (s *fileSink) takeLost() int64 { return 0 }
func (s *fileSink) status() map[string]any {
	return map[string]any{"kind": "file", "path": s.path}
}

// openFileSink creates a segment file exclusively and writes the file header.
func openFileSink(path string) (*fileSink, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot create a segment in %s: %v", filepath.Dir(path), err)
	}
	if _, err := f.Write(FileHeader); err != nil {
		f.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("cannot write %s: %v", path, err)
	}
	return &fileSink{f: f, path: path, size: int64(len(FileHeader))}, nil
}

// streamError is what the collector said, or what went wrong on the connection.
type streamError struct{ code, msg string }

func (e *streamError) Error() string {
	if e.code == "" {
		return e.msg
	}
	return e.code + ": " + e.msg
}

type unacked struct {
	n     int // the chunk's number on its connection
	chunk []byte
	piece pieceInfo
}

// streamSink sends one segment's chunks to a collector. Owned by the recorder's writer
// (called with wmu held), so it needs no lock of its own.
type streamSink struct {
	address string
	token   string
	path    string             // the fallback segment file
	hello   map[string]any     // the hello's process fields
	process func() []byte      // a chunk holding the process record
	onFault func(string) int64 // counts a fault of the stream; returns its record id

	conn     net.Conn
	connFile string // the file the collector said (hello) it writes this segment into
	inbuf    []byte
	pending  []unacked     // sent, not yet acknowledged, oldest first
	pendingB int           // Invariant: the sum of pending's chunk lengths
	sent     int           // chunks sent on the current connection
	wrote    bool          // a chunk was taken already (the process record is known)
	file     *fileSink     // the fallback, once fallen back
	retries  int           // failed reconnects since the last connection (see retryDelay)
	retryCap time.Duration // caps every delay between attempts (0: none)
	retryAt  time.Time
	closed   bool

	// Where each tracer stream started: a stream's pieces only make sense after its first
	// one (Go's trace reader needs the start), so a piece goes where its stream began,
	// or nowhere (counted in lost) when that was a connection that is gone.
	connHere map[int]bool // streams begun on the current connection
	fileHere map[int]bool // streams begun in the fallback file
	lost     int64
	changes  int // the destination's changes (epoch)
}

// newStreamSink connects (or falls back at once); retryCap caps the delays between later
// attempts (0: the schedule alone).
func newStreamSink(address, token, path string, hello map[string]any, process func() []byte, onFault func(string) int64, retryCap time.Duration) *streamSink {
	s := &streamSink{address: address, token: token, path: path, hello: hello, process: process,
		onFault: onFault, retryCap: retryCap, connHere: map[int]bool{}, fileHere: map[int]bool{}}
	if err := s.connect(); err != nil {
		s.fallBack(fmt.Sprintf("cannot reach collector %s: %v", address, err), true)
	}
	return s
}

// dialAddress turns host:port, tcp://host:port, [v6]:port or unix:/path into Dial's arguments.
func dialAddress(address string) (network, addr string, err error) {
	a := strings.TrimSpace(address)
	if p, ok := strings.CutPrefix(a, "unix:"); ok {
		p = strings.TrimPrefix(p, "//")
		if !strings.HasPrefix(p, "/") {
			return "", "", fmt.Errorf("collector %q: a Unix socket path must be absolute", address)
		}
		return "unix", p, nil
	}
	a = strings.TrimPrefix(a, "tcp://")
	if _, _, err := net.SplitHostPort(a); err != nil {
		return "", "", fmt.Errorf("collector %q is not host:port, tcp://host:port or unix:/path", address)
	}
	return "tcp", a, nil
}

func (s *streamSink) connect() error {
	network, addr, err := dialAddress(s.address)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout(network, addr, connectTimeout)
	if err != nil {
		return err
	}
	hello := map[string]any{"op": "hello", "versions": []int{1}, "token": s.token, "format": []int{int(FileHeader[6]), int(FileHeader[7])}}
	for k, v := range s.hello {
		hello[k] = v
	}
	_ = c.SetDeadline(time.Now().Add(helloTimeout))
	if _, err := c.Write(frame(streamMagic, hello)); err != nil {
		c.Close()
		return err
	}
	body, err := readFrame(c, streamMagic, streamMaxBody)
	if err == nil && body == nil {
		err = errors.New("collector closed the connection at hello")
	}
	var reply map[string]any
	if err == nil {
		reply, err = parseObject(body)
	}
	if err == nil && reply["ok"] != true {
		err = errorOf(reply)
	}
	if err != nil {
		c.Close()
		return err
	}
	s.conn, s.inbuf, s.sent = c, s.inbuf[:0], 0
	s.connFile, _ = reply["file"].(string)
	clear(s.connHere)
	if s.wrote { // every destination starts self-describing
		_ = s.send(s.process(), pieceInfo{})
	}
	return nil
}

func errorOf(msg map[string]any) error {
	e, _ := msg["error"].(map[string]any)
	code, _ := e["code"].(string)
	text, _ := e["message"].(string)
	if code == "" && text == "" {
		text = "refused"
	}
	return &streamError{code, text}
}

// send writes one chunk on the connection and keeps it until acknowledged.
func (s *streamSink) send(chunk []byte, piece pieceInfo) error {
	if piece.first {
		s.connHere[piece.stream] = true
	}
	chunk = bytes.Clone(chunk) // kept until acknowledged; the caller reuses its buffer
	s.sent++
	s.pending = append(s.pending, unacked{s.sent, chunk, piece})
	s.pendingB += len(chunk)
	_ = s.conn.SetWriteDeadline(time.Now().Add(sendTimeout))
	_, err := s.conn.Write(chunk)
	return err
}

func (s *streamSink) epoch() int { return s.changes }

// status: streaming while connected, else on the fallback file until a reconnect works;
// file is the fallback file once one was opened ("" before).
func (s *streamSink) status() map[string]any {
	state, file := "file", ""
	if s.conn != nil {
		state = "streaming"
	}
	if s.file != nil {
		file = s.file.path
	}
	return map[string]any{
		"kind": "stream", "collector": s.address, "state": state,
		"collector_file": s.connFile, "file": file,
		"unacked": len(s.pending), "retries": s.retries,
	}
}

func (s *streamSink) takeLost() int64 {
	n := s.lost
	s.lost = 0
	return n
}

func (s *streamSink) write(chunk []byte, piece pieceInfo) error {
	defer func() { s.wrote = true }()
	if s.conn == nil {
		s.maybeReconnect()
	} else if _, err := s.readAcks(false, false); err != nil {
		// a bye that came while idle is seen before sending into a closing connection
		if e := s.fallBack(fmt.Sprintf("collector %s went away: %v", s.address, why(err)), !saidBye(err)); e != nil {
			return e
		}
	}
	if piece.stream != 0 && !piece.first {
		switch {
		case s.conn != nil && s.connHere[piece.stream]:
		case s.fileHere[piece.stream]: // its stream lives in the file, connected or not
			return s.writeFile(chunk, piece)
		default: // its stream began on a connection that is gone
			s.lost += int64(len(chunk))
			return nil
		}
	}
	if s.conn == nil {
		return s.writeFile(chunk, piece)
	}
	err := s.send(chunk, piece)
	if err == nil {
		_, err = s.readAcks(false, false)
	}
	if err == nil && s.tooMany() {
		err = s.waitAcks(sendTimeout, false, true)
		if err == nil && s.tooMany() {
			err = fmt.Errorf("%d chunks not acknowledged in time", len(s.pending))
		}
	}
	if err != nil {
		return s.fallBack(fmt.Sprintf("collector %s went away: %v", s.address, why(err)), !saidBye(err))
	}
	return nil
}

// saidBye: the collector ended the connection in order (it is shutting down).
func saidBye(err error) bool {
	var se *streamError
	return errors.As(err, &se) && se.code == "bye"
}

func why(err error) string {
	var se *streamError
	if errors.As(err, &se) && (se.code == "bye" || se.code == "") {
		return se.msg
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	return err.Error()
}

func (s *streamSink) tooMany() bool {
	return s.pendingB > maxUnackedBytes || len(s.pending) > maxUnackedChunks
}

func (s *streamSink) maybeReconnect() {
	if s.closed || time.Now().Before(s.retryAt) {
		return
	}
	if err := s.connect(); err != nil {
		// uncapped: ctl status reports it, and retryDelay makes every delay past the
		// schedule retryMax
		s.retries++
		s.retryAt = time.Now().Add(retryDelay(s.retries, s.retryCap))
		return
	}
	s.retries = 0
	s.changes++
}

// readAcks reads what the collector sent; bye says the collector said bye (an error
// unless untilBye: it is shutting down). block waits for data until the read deadline.
func (s *streamSink) readAcks(block, untilBye bool) (bye bool, err error) {
	if !block {
		// a deadline already past fails the read before it looks at the socket: give it
		// a moment, so what the collector already sent (acks, its bye) is read
		_ = s.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	}
	var buf [4096]byte
	n, err := s.conn.Read(buf[:])
	if n == 0 && err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !block {
			return false, nil
		}
		if ne != nil && ne.Timeout() {
			return false, err
		}
		return false, &streamError{"", "collector closed the connection"}
	}
	s.inbuf = append(s.inbuf, buf[:n]...)
	for len(s.inbuf) >= 8 {
		length := int(uint32(s.inbuf[4]) | uint32(s.inbuf[5])<<8 | uint32(s.inbuf[6])<<16 | uint32(s.inbuf[7])<<24)
		if string(s.inbuf[:4]) != streamMagic || length > streamMaxBody {
			return false, &streamError{"", fmt.Sprintf("collector sent %q", s.inbuf[:4])}
		}
		if len(s.inbuf) < 8+length {
			break
		}
		msg, perr := parseObject(s.inbuf[8 : 8+length])
		s.inbuf = s.inbuf[8+length:]
		if perr != nil {
			return false, perr
		}
		if n, ok := jsonInt(msg["chunks"]); ok {
			s.acked(int(n))
		}
		switch {
		case msg["op"] == "bye":
			bye = true
		case msg["op"] == "error" || msg["ok"] == false:
			return false, errorOf(msg)
		}
	}
	if bye && !untilBye {
		return true, &streamError{"bye", "collector is shutting down"}
	}
	return bye, nil
}

func (s *streamSink) acked(n int) {
	for len(s.pending) > 0 && s.pending[0].n <= n {
		s.pendingB -= len(s.pending[0].chunk)
		s.pending = s.pending[1:]
	}
}

// waitAcks reads until nothing is missing (or, belowBound, until back under the bounds;
// untilBye, until the collector's bye) or timeout passes (not an error).
func (s *streamSink) waitAcks(timeout time.Duration, untilBye, belowBound bool) error {
	deadline := time.Now().Add(timeout)
	for s.conn != nil && (len(s.pending) > 0 || untilBye) {
		if belowBound && !s.tooMany() {
			return nil
		}
		if !time.Now().Before(deadline) {
			return nil
		}
		_ = s.conn.SetReadDeadline(deadline)
		bye, err := s.readAcks(true, untilBye)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if err != nil || bye {
			return err
		}
	}
	return nil
}

// fallBack switches to the file: the process record, a fault record (when fault), then
// every unacknowledged chunk.
func (s *streamSink) fallBack(reason string, fault bool) error {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	err := s.writeFile(s.process(), pieceInfo{})
	if fault {
		reason = cut(reason, 500)
		fid := s.onFault(reason)
		head := Chunk{Records: []Record{{Type: RecFault, ID: uint64(fid), Attrs: []Attr{{"message", reason}, {"where", "stream"}}}}}
		var z Compressor
		b, _ := z.Frame(head.Payload(), CodecNone)
		if e := s.writeFile(b, pieceInfo{}); err == nil {
			err = e
		}
	}
	for _, p := range s.pending {
		if p.piece.stream != 0 && !p.piece.first && !s.fileHere[p.piece.stream] {
			s.lost += int64(len(p.chunk)) // its stream's start is at the collector
			continue
		}
		if e := s.writeFile(p.chunk, p.piece); err == nil {
			err = e
		}
	}
	s.pending, s.pendingB = nil, 0
	s.changes++
	if !s.closed {
		s.retryAt = time.Now().Add(retryDelay(s.retries, s.retryCap))
	}
	return err
}

func (s *streamSink) writeFile(chunk []byte, piece pieceInfo) error {
	if piece.first {
		s.fileHere[piece.stream] = true
	}
	if s.file == nil {
		if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
			return err
		}
		f, err := openFileSink(s.path)
		if err != nil {
			return err
		}
		s.file = f
	}
	return s.file.write(chunk, piece)
}

// close says bye and waits (bounded) for the last acknowledgements; what is still not
// acknowledged goes to the file, with a fault.
func (s *streamSink) close() {
	if s.closed {
		return
	}
	s.closed = true
	if s.conn != nil {
		_ = s.conn.SetWriteDeadline(time.Now().Add(sendTimeout))
		_, err := s.conn.Write(frame(streamMagic, map[string]string{"op": "bye"}))
		if err == nil {
			err = s.waitAcks(closeWait, true, false)
		}
		switch {
		case err != nil && len(s.pending) > 0:
			_ = s.fallBack(fmt.Sprintf("collector %s went away: %v", s.address, why(err)), true)
		case len(s.pending) > 0:
			_ = s.fallBack(fmt.Sprintf("collector %s did not acknowledge %d chunks within %v of the end", s.address, len(s.pending), closeWait), true)
		}
		if s.conn != nil {
			_ = s.conn.Close()
			s.conn = nil
		}
	}
	if s.file != nil {
		s.file.close()
		s.file = nil
	}
}
