package wisp

// The control channel of docs/protocols.md, version 1: `willowisp ctl` asks a running Go
// process for its status and switches boundaries on and off.
//
// A Unix socket (mode 0600) in the per-user runtime folder ($WILLOWISP_RUNTIME_DIR, else
// /tmp/willowisp-<uid>, which must be a 0700 folder of ours and not a symlink), plus
// 127.0.0.1 TCP when WILLOWISP_CONTROL=tcp; `off` disables it. The descriptor
// <pid>-<p8>.json (0600, written atomically) names the socket, the port and the session
// token (16 random bytes; WILLOWISP_CONTROL_TOKEN, 32 hex digits, fixes it for the
// conformance test that replays recorded bytes). One goroutine accepts per listener; each
// connection (at most 4 at once, the fifth is told `busy`) is served on its own goroutine
// with the protocol's limits and deadlines, so malformed input ends at most its own
// connection. Errors inside are counted (status's `control`) and recorded as faults; a
// panic is recovered. The goroutines here are the agent's: the trace decoder leaves their
// waits out (their entry functions are in this package).

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

const (
	ctlMagic       = "WCTL"
	ctlMaxBody     = 1 << 20
	ctlMaxArg      = 4096
	ctlMaxConns    = 4
	ctlHelloWait   = 5 * time.Second
	ctlIdleWait    = 30 * time.Second
	ctlLinger      = time.Second
	maxUnixPath    = 107
	maxSafeInt     = 1<<53 - 1
	controlVersion = 1
)

var ctlOps = []string{"ping", "status", "enable", "disable"}

// ctlError is a protocol error: the code the peer is told and a message.
type ctlError struct{ code, msg string }

func (e *ctlError) Error() string { return e.code + ": " + e.msg }

// closesAfter: codes that end the connection even after a hello.
var closesAfter = map[string]bool{
	"bad-frame": true, "frame-too-large": true, "timeout": true, "busy": true,
	"unauthorized": true, "unsupported-version": true, "hello-required": true,
}

type controlServer struct {
	r         *recorder
	token     string
	unixPath  string // "" when there is no Unix socket
	tcpAddr   string // "127.0.0.1:PORT", "" when there is no TCP listener
	descPath  string
	listeners []net.Listener

	// Counters for status.
	connections, requests, malformed, unauthorized, busy, internal atomic.Int64

	mu      sync.Mutex
	conns   map[net.Conn]bool // Invariant: len(conns) <= ctlMaxConns
	closing bool
	wg      sync.WaitGroup
}

// startControl opens the channel as cfg.Control says. Never fails the program: a channel
// that cannot be set up is a fault.
func (r *recorder) startControl() {
	mode := strings.ToLower(strings.TrimSpace(r.cfg.Control))
	if mode == "off" {
		return
	}
	s, err := r.openControl(mode == "tcp")
	if err != nil {
		r.fault("control", err)
		return
	}
	r.ctl = s
}

func (r *recorder) openControl(tcp bool) (*controlServer, error) {
	dir := r.cfg.RuntimeDir
	if dir == "" {
		dir = fmt.Sprintf("/tmp/willowisp-%d", os.Getuid())
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	sweepStale(dir)
	stem := fmt.Sprintf("%d-%s", os.Getpid(), r.processID[:8])
	s := &controlServer{r: r, conns: map[net.Conn]bool{}, descPath: filepath.Join(dir, stem+".json")}
	s.token = randomHex(16)
	if t := strings.ToLower(r.cfg.ControlToken); len(t) == 32 && isHex(t) {
		s.token = t
	}
	sock := filepath.Join(dir, stem+".sock")
	if len(sock) <= maxUnixPath {
		_ = os.Remove(sock)
		l, err := net.Listen("unix", sock)
		if err != nil {
			return nil, fmt.Errorf("control socket %s: %v", sock, err)
		}
		if err := os.Chmod(sock, 0o600); err != nil { // the folder is 0700: no window
			l.Close()
			return nil, fmt.Errorf("control socket %s: %v", sock, err)
		}
		s.unixPath = sock
		s.listeners = append(s.listeners, l)
	} else if !tcp {
		return nil, fmt.Errorf("control socket path %s is over %d bytes", sock, maxUnixPath)
	}
	if tcp {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("control tcp: %v", err)
		}
		s.tcpAddr = l.Addr().String()
		s.listeners = append(s.listeners, l)
	}
	run, err := filepath.Abs(r.cfg.Out)
	if err == nil {
		if real, e := filepath.EvalSymlinks(run); e == nil {
			run = real
		}
	}
	desc := map[string]any{
		"protocol": "willowisp-control", "versions": []int{controlVersion}, "pid": os.Getpid(),
		"process_id": r.processID, "service": r.cfg.Service, "runtime": "go",
		"agent_version": AgentVersion, "socket": s.unixPath, "tcp": s.tcpAddr,
		"token": s.token, "run": run,
	}
	if err := writePrivateJSON(s.descPath, desc); err != nil {
		s.closeListeners()
		return nil, err
	}
	for _, l := range s.listeners {
		s.wg.Add(1)
		go s.acceptLoop(l)
	}
	return s, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// checkPrivateDir makes sure dir is a real folder of ours that nobody else can enter.
func checkPrivateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("runtime folder %s: %v", dir, err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("runtime folder %s: %v", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("runtime folder %s is not a folder (a symlink?)", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Getuid() {
		return fmt.Errorf("runtime folder %s belongs to uid %d, not %d", dir, sys.Uid, os.Getuid())
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("runtime folder %s has mode %o, not 700", dir, st.Mode().Perm())
	}
	return nil
}

// sweepStale removes descriptors and sockets of processes that no longer exist (killed
// without a chance to clean up), at most 256 entries per start.
func sweepStale(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(512)
	d.Close()
	for _, name := range names {
		pidS, rest, ok := strings.Cut(name, "-")
		if !ok || !(strings.HasSuffix(rest, ".json") || strings.HasSuffix(rest, ".sock")) {
			continue
		}
		pid, err := strconv.Atoi(pidS)
		if err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
}

// writePrivateJSON writes obj (mode 0600) atomically: a temporary file renamed into place.
func writePrivateJSON(path string, obj any) error {
	data, err := json.MarshalIndent(obj, "", " ")
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

func (s *controlServer) closeListeners() {
	for _, l := range s.listeners {
		_ = l.Close() // a Unix listener also removes its socket file
	}
}

// stop ends the channel: listeners closed, open connections ended, files removed.
func (s *controlServer) stop() {
	s.mu.Lock()
	s.closing = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.closeListeners()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	if s.unixPath != "" {
		_ = os.Remove(s.unixPath)
	}
	_ = os.Remove(s.descPath)
}

func (s *controlServer) fault(where string, err error) {
	s.internal.Add(1)
	s.r.fault(where, err)
}

func (s *controlServer) acceptLoop(l net.Listener) {
	defer s.wg.Done()
	defer func() {
		if p := recover(); p != nil {
			s.fault("control accept", fmt.Errorf("panic: %v", p))
		}
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return
			}
			s.fault("control accept", err)
			time.Sleep(100 * time.Millisecond) // out of descriptors: back off, do not spin
			continue
		}
		s.connections.Add(1)
		s.mu.Lock()
		full := len(s.conns) >= ctlMaxConns || s.closing
		if !full {
			s.conns[c] = true
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if full {
			s.busy.Add(1)
			s.refuseBusy(c)
			continue
		}
		go s.serve(c)
	}
}

// refuseBusy answers busy at once, before reading anything, and closes without a reset.
func (s *controlServer) refuseBusy(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	_, _ = c.Write(ctlFrame(errReply("busy", "too many control connections", nil)))
	closeLingering(c, true, 200*time.Millisecond)
}

// closeLingering closes c; with linger, it first half-closes and reads what the peer still
// sends (at most `wait` and 1 MiB), so the close sends no reset that could destroy our
// last reply.
func closeLingering(c net.Conn, linger bool, wait time.Duration) {
	if linger {
		if hc, ok := c.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		_, _ = io.CopyN(io.Discard, c, ctlMaxBody)
	}
	_ = c.Close()
}

func (s *controlServer) serve(c net.Conn) {
	defer s.wg.Done()
	linger := true
	defer func() {
		if p := recover(); p != nil {
			s.fault("control connection", fmt.Errorf("panic: %v", p))
		}
		s.mu.Lock()
		delete(s.conns, c)
		closing := s.closing
		s.mu.Unlock()
		closeLingering(c, linger && !closing, ctlLinger)
	}()
	if uc, ok := c.(*net.UnixConn); ok && !peerIsUs(uc) {
		s.unauthorized.Add(1)
		s.send(c, errReply("unauthorized", "peer is another user", nil))
		return
	}
	hello := false
	wait := ctlHelloWait
	for {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		body, err := readFrame(c, ctlMagic, ctlMaxBody)
		if err != nil {
			var pe *ctlError
			var ne net.Error
			switch {
			case errors.As(err, &pe) && pe.code == "truncated":
				s.malformed.Add(1)
				linger = false
			case errors.As(err, &pe):
				s.malformed.Add(1)
				s.send(c, errReply(pe.code, pe.msg, nil))
			case errors.As(err, &ne) && ne.Timeout():
				s.send(c, errReply("timeout", "no complete frame in time", nil))
			default:
				linger = false // the peer went away, or stop closed us
			}
			return
		}
		if body == nil {
			linger = false
			return
		}
		s.requests.Add(1)
		reply, closeIt := s.handle(&hello, body)
		if !s.send(c, reply) || closeIt {
			return
		}
		wait = ctlIdleWait
	}
}

// send writes one reply; a reply over the limit becomes an `internal` error.
func (s *controlServer) send(c net.Conn, reply map[string]any) bool {
	b := ctlFrame(reply)
	if len(b)-8 > ctlMaxBody {
		b = ctlFrame(errReply("internal", fmt.Sprintf("reply of %d bytes is over the %d-byte limit", len(b), ctlMaxBody), reply["id"]))
	}
	_ = c.SetWriteDeadline(time.Now().Add(ctlIdleWait))
	_, err := c.Write(b)
	return err == nil
}

func peerIsUs(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return true // the 0700 folder and the token still protect
	}
	ok := true
	_ = raw.Control(func(fd uintptr) {
		cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		if err == nil {
			ok = int(cred.Uid) == os.Getuid() || cred.Uid == 0
		}
	})
	return ok
}

// readFrame reads one frame's body: nil at a clean end (closed before any byte); a
// *ctlError "bad-frame", "frame-too-large" (checked before reading the body) or
// "truncated"; or the connection's error (a deadline).
func readFrame(c io.Reader, magic string, max int) ([]byte, error) {
	var head [8]byte
	n, err := io.ReadFull(c, head[:])
	if err != nil {
		if n == 0 && err == io.EOF {
			return nil, nil
		}
		if err == io.ErrUnexpectedEOF {
			return nil, &ctlError{"truncated", "connection closed inside a frame header"}
		}
		return nil, err
	}
	if string(head[:4]) != magic {
		return nil, &ctlError{"bad-frame", fmt.Sprintf("frame starts with %q, expected %q", head[:4], magic)}
	}
	length := binary.LittleEndian.Uint32(head[4:])
	if int64(length) > int64(max) {
		return nil, &ctlError{"frame-too-large", fmt.Sprintf("frame of %d bytes is over %d", length, max)}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(c, body); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, &ctlError{"truncated", fmt.Sprintf("connection closed inside a %d-byte body", length)}
		}
		return nil, err
	}
	return body, nil
}

// frame packs one message: magic, u32 LE length, compact JSON.
func frame(magic string, obj any) []byte {
	body, err := json.Marshal(obj)
	if err != nil {
		body = []byte(`{"ok":false,"error":{"code":"internal","message":"reply is not JSON"}}`)
	}
	out := make([]byte, 8, 8+len(body))
	copy(out, magic)
	binary.LittleEndian.PutUint32(out[4:], uint32(len(body)))
	return append(out, body...)
}

func ctlFrame(obj map[string]any) []byte { return frame(ctlMagic, obj) }

// parseObject reads a body as one JSON object (numbers kept as written): bad-json for
// anything that is not UTF-8 JSON, bad-request for JSON that is not an object.
func parseObject(body []byte) (map[string]any, error) {
	if !utf8.Valid(body) {
		return nil, &ctlError{"bad-json", "body is not UTF-8"}
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, &ctlError{"bad-json", cut("body is not a JSON object: "+err.Error(), 300)}
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, &ctlError{"bad-json", "body has more than one JSON value"}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &ctlError{"bad-request", fmt.Sprintf("body is a JSON %s, not an object", jsonType(v))}
	}
	return obj, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "value"
}

// jsonInt is v as an integer, when it is one written without fraction or exponent.
func jsonInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	return i, err == nil
}

// requestID is the id to echo (nil when absent) and whether it is valid.
func requestID(req map[string]any) (any, bool) {
	v, present := req["id"]
	if !present || v == nil {
		return nil, true
	}
	switch x := v.(type) {
	case string:
		return x, utf8.RuneCountInString(x) <= 64
	case json.Number:
		if i, ok := jsonInt(x); ok && i >= -maxSafeInt && i <= maxSafeInt {
			return x, true
		}
	}
	return nil, false
}

func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

func okReply(result map[string]any, id any) map[string]any {
	out := map[string]any{"ok": true, "result": result}
	if id != nil {
		out["id"] = id
	}
	return out
}

func errReply(code, msg string, id any) map[string]any {
	out := map[string]any{"ok": false, "error": map[string]any{"code": code, "message": cut(msg, 500)}}
	if id != nil {
		out["id"] = id
	}
	return out
}

// handle answers one request; the bool says to close the connection after the reply.
func (s *controlServer) handle(hello *bool, body []byte) (reply map[string]any, closeIt bool) {
	req, err := parseObject(body)
	if err != nil {
		s.malformed.Add(1)
		pe := err.(*ctlError)
		return errReply(pe.code, pe.msg, nil), !*hello
	}
	id, idOK := requestID(req)
	op, opOK := req["op"].(string)
	if !idOK || !opOK {
		s.malformed.Add(1)
		msg := "op must be a string"
		if !idOK {
			msg = "id must be a string of at most 64 characters or an integer below 2^53"
		}
		return errReply("bad-request", msg, nil), !*hello
	}
	if !*hello {
		if op != "hello" {
			s.malformed.Add(1)
			return errReply("hello-required", "the first request must be hello", id), true
		}
		return s.hello(hello, req, id)
	}
	defer func() {
		if p := recover(); p != nil {
			s.fault("control "+cut(op, 64), fmt.Errorf("panic: %v", p))
			reply, closeIt = errReply("internal", fmt.Sprintf("panic: %v", p), id), false
		}
	}()
	result, err := s.command(op, req)
	if err != nil {
		pe := err.(*ctlError)
		if pe.code != "bad-boundary" {
			s.malformed.Add(1)
		}
		return errReply(pe.code, pe.msg, id), false
	}
	return okReply(result, id), false
}

func (s *controlServer) hello(hello *bool, req map[string]any, id any) (map[string]any, bool) {
	tok, _ := req["token"].(string)
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.token)) != 1 {
		s.unauthorized.Add(1)
		return errReply("unauthorized", "missing or wrong token", id), true
	}
	vs, ok := req["versions"].([]any)
	if !ok || len(vs) == 0 || len(vs) > 16 {
		s.malformed.Add(1)
		return errReply("bad-request", "versions must be a list of 1 to 16 integers", id), true
	}
	common := false
	for _, v := range vs {
		n, isInt := jsonInt(v)
		if !isInt {
			s.malformed.Add(1)
			return errReply("bad-request", "versions must be a list of 1 to 16 integers", id), true
		}
		common = common || n == controlVersion
	}
	if !common {
		r := errReply("unsupported-version", fmt.Sprintf("no common version: agent speaks [%d]", controlVersion), id)
		r["error"].(map[string]any)["versions"] = []int{controlVersion}
		return r, true
	}
	*hello = true
	return okReply(map[string]any{"version": controlVersion, "agent": s.agentInfo(), "ops": ctlOps}, id), false
}

func (s *controlServer) agentInfo() map[string]any {
	return map[string]any{
		"pid": os.Getpid(), "process_id": s.r.processID, "service": s.r.cfg.Service,
		"runtime": "go", "agent_version": AgentVersion,
	}
}

func (s *controlServer) command(op string, req map[string]any) (map[string]any, error) {
	switch op {
	case "ping":
		return map[string]any{}, nil
	case "status":
		out := s.r.status()
		out["control"] = map[string]any{
			"connections": s.connections.Load(), "requests": s.requests.Load(),
			"malformed": s.malformed.Load(), "unauthorized": s.unauthorized.Load(),
			"busy": s.busy.Load(), "internal_errors": s.internal.Load(),
			"socket": s.unixPath, "tcp": s.tcpAddr,
		}
		out["sink"] = s.r.sinkStatus()
		return out, nil
	case "enable", "disable":
		arg, ok := req["boundary"].(string)
		if !ok || strings.TrimSpace(arg) == "" {
			return nil, &ctlError{"bad-request", op + " needs a non-empty string 'boundary'"}
		}
		if len(arg) > ctlMaxArg {
			return nil, &ctlError{"bad-request", fmt.Sprintf("boundary is over %d bytes", ctlMaxArg)}
		}
		name, err := s.r.switchBoundary(arg, op == "enable")
		if err != nil {
			return nil, &ctlError{"bad-boundary", err.Error()}
		}
		return map[string]any{"boundary": name, "enabled": op == "enable"}, nil
	case "hello":
		return nil, &ctlError{"bad-request", "hello was already done on this connection"}
	}
	return nil, &ctlError{"unknown-command", fmt.Sprintf("unknown op %q; known: %s", cut(op, 64), strings.Join(ctlOps, ", "))}
}
