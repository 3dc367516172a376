package wisp

// Mutex and RWMutex: drop-in replacements for sync.Mutex and sync.RWMutex that say which
// lock a goroutine waits for and holds.
//
// Go exposes no goroutine id, so the events are not written by the agent: each operation
// is a runtime/trace user log on the calling goroutine, and the execution tracer stamps it
// with that goroutine and the time. The log is the event itself, in the agent's numbering,
// "wisp <kind> <resource> <arg>" with the kinds of docs/format.md (4 unit.block,
// 10 lock.acquired, 11 lock.release), written as the log's *category* with an empty
// message: the runtime interns a category in its per-generation string table (a hash
// lookup) but writes every message out eagerly under a global lock, so this form costs
// about half of trace.Log(ctx, "wisp", "<kind> ...") (measured in bench/bench_go_agent.py).
// wisp-goimport reads it back as the "wisp" log it stands for, and the go-exectrace
// decoder (src/willowisp/ingest/go_trace.py) turns it into that event of the goroutine's
// unit. The price: each lock puts up to six strings into each generation's string table.
// The strings of a lock are made once, when it is first used, so an operation costs a
// try-lock and one trace.Log.
//
// Order, as docs/format.md asks: the acquire is logged after the lock is obtained, the
// release before it is let go, so the next holder's acquire follows it in the trace.
// An uncontended acquisition is a single lock.acquired; a contended one is unit.block
// (reason acquire) first. The resource record (kind lock or rwlock, its name and the
// place it was created or first used) goes into the agent's own chunks.

import (
	"context"
	"os"
	"regexp"
	"runtime"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

const (
	kindBlock    = 4
	kindAcquired = 10
	kindRelease  = 11

	reasonAcquire       = 1
	reasonAcquireShared = 2

	logCategory = "wisp"
)

var bg = context.Background()

// lockInfo is a lock's identity and its prepared messages.
type lockInfo struct {
	gen                         *recorder // the recording it was defined in
	record                      Record    // its resource record, defined by whoever installs it
	block, acquired, release    string
	rblock, racquired, rrelease string // shared (RLock) variants
}

func newLockInfo(r *recorder, kind, name string, skip int) *lockInfo {
	id := r.nextRes.Add(1)
	loc := r.callerLocation(skip + 1)
	if name == "" {
		name = sourceLockName(skip + 1)
	}
	if name == "" {
		name = map[string]string{"lock": "Mutex", "rwlock": "RWMutex"}[kind] + "#" + strconv.Itoa(int(id))
	}
	attrs := []Attr{{"kind", kind}, {"name", name}}
	if loc != 0 {
		attrs = append(attrs, Attr{"loc", int64(loc)})
	}
	n := strconv.FormatUint(uint64(id), 10)
	msg := func(kind, arg int) string {
		return logCategory + " " + strconv.Itoa(kind) + " " + n + " " + strconv.Itoa(arg)
	}
	return &lockInfo{
		gen:       r,
		record:    Record{Type: RecResource, ID: uint64(id), Attrs: attrs},
		block:     msg(kindBlock, reasonAcquire),
		acquired:  msg(kindAcquired, 0),
		release:   msg(kindRelease, 0),
		rblock:    msg(kindBlock, reasonAcquireShared),
		racquired: msg(kindAcquired, 1),
		rrelease:  msg(kindRelease, 1),
	}
}

// lockCall finds the lock a source line calls a method of: `beta.Lock()` -> beta,
// `s.accounts.RLock()` -> accounts.
var lockCall = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*\.\s*(?:Lock|RLock|TryLock|TryRLock)\s*\(`)

// sourceLines caches the lines of the source files lock names were read from (the first
// Lock of each unnamed lock only; bounded).
var sourceLines = struct {
	sync.Mutex
	files map[string][]string
}{files: map[string][]string{}}

// sourceLockName is the name of a zero-value lock from the line that first locks it, `skip`
// frames up (`beta.Lock()` names it beta), when that source file is readable where the
// program runs; "" otherwise (a binary built elsewhere: it keeps Mutex#N).
func sourceLockName(skip int) string {
	_, file, line, ok := runtime.Caller(skip + 1)
	if !ok || line <= 0 {
		return ""
	}
	sourceLines.Lock()
	lines, seen := sourceLines.files[file]
	if !seen {
		if data, err := os.ReadFile(file); err == nil && len(data) <= 4<<20 {
			lines = strings.Split(string(data), "\n")
		}
		if len(sourceLines.files) >= 256 {
			clear(sourceLines.files)
		}
		sourceLines.files[file] = lines
	}
	sourceLines.Unlock()
	if line > len(lines) {
		return ""
	}
	if m := lockCall.FindStringSubmatch(lines[line-1]); m != nil {
		return m[1]
	}
	return ""
}

// identity is the lock's info in the current recording, made on first use (then `skip`
// frames up is where the lock is said to be created, unless New* gave it a place); nil
// when nothing records or the mode records no locks.
func identity(p *atomic.Pointer[lockInfo], name *string, kind string, skip int) *lockInfo {
	r := active.Load()
	if r == nil || !r.tracing.Load() { // hops mode without a boundary: no tracer, no lock events
		return nil
	}
	info := p.Load()
	if info != nil && info.gen == r {
		return info
	}
	fresh := newLockInfo(r, kind, *name, skip+1)
	if p.CompareAndSwap(info, fresh) {
		// defined once: goroutines that first lock it together each made one, one won
		r.define(fresh.record)
		return fresh
	}
	return p.Load()
}

// Mutex is a sync.Mutex whose waits and holds are recorded. The zero value is an unlocked
// mutex; it is identified by the place of its first Lock unless made with NewMutex.
// Like sync.Mutex it must not be copied after first use.
type Mutex struct {
	mu   sync.Mutex
	info atomic.Pointer[lockInfo]
	name string
	held *lockInfo // the current hold was logged: its release is (guarded by mu)
}

// NewMutex is a Mutex named `name` (shown in findings), created here (its creation site).
func NewMutex(name string) *Mutex {
	m := &Mutex{name: name}
	identity(&m.info, &m.name, "lock", 1)
	return m
}

// Lock locks m, recording the wait if it has to wait.
func (m *Mutex) Lock() {
	info := identity(&m.info, &m.name, "lock", 1)
	if info == nil || !info.gen.logHere(1) {
		m.mu.Lock()
		return
	}
	if !m.mu.TryLock() {
		trace.Log(bg, info.block, "")
		m.mu.Lock()
	}
	trace.Log(bg, info.acquired, "")
	m.held = info
}

// TryLock tries to lock m; a success is recorded as an acquisition.
func (m *Mutex) TryLock() bool {
	if !m.mu.TryLock() {
		return false
	}
	if info := identity(&m.info, &m.name, "lock", 1); info != nil && info.gen.logHere(1) {
		trace.Log(bg, info.acquired, "")
		m.held = info
	}
	return true
}

// Unlock unlocks m; the release is recorded first.
func (m *Mutex) Unlock() {
	if h := m.held; h != nil {
		m.held = nil
		if active.Load() == h.gen {
			trace.Log(bg, h.release, "")
		}
	}
	m.mu.Unlock()
}

// RWMutex is a sync.RWMutex whose waits and holds are recorded (resource kind rwlock;
// shared holds have arg 1). The zero value is an unlocked RWMutex.
type RWMutex struct {
	mu   sync.RWMutex
	info atomic.Pointer[lockInfo]
	name string
	held *lockInfo // the current write hold was logged: its release is (guarded by mu)
}

// NewRWMutex is an RWMutex named `name`, created here.
func NewRWMutex(name string) *RWMutex {
	m := &RWMutex{name: name}
	identity(&m.info, &m.name, "rwlock", 1)
	return m
}

// Lock locks m for writing.
func (m *RWMutex) Lock() {
	info := identity(&m.info, &m.name, "rwlock", 1)
	if info == nil || !info.gen.logHere(1) {
		m.mu.Lock()
		return
	}
	if !m.mu.TryLock() {
		trace.Log(bg, info.block, "")
		m.mu.Lock()
	}
	trace.Log(bg, info.acquired, "")
	m.held = info
}

// Unlock unlocks m for writing.
func (m *RWMutex) Unlock() {
	if h := m.held; h != nil {
		m.held = nil
		if active.Load() == h.gen {
			trace.Log(bg, h.release, "")
		}
	}
	m.mu.Unlock()
}

// RLock locks m for reading.
func (m *RWMutex) RLock() {
	info := identity(&m.info, &m.name, "rwlock", 1)
	if info == nil || !info.gen.logHere(1) {
		m.mu.RLock()
		return
	}
	if !m.mu.TryRLock() {
		trace.Log(bg, info.rblock, "")
		m.mu.RLock()
	}
	trace.Log(bg, info.racquired, "")
}

// RUnlock undoes one RLock.
func (m *RWMutex) RUnlock() {
	if info := m.info.Load(); info != nil && active.Load() == info.gen && info.gen.logHere(1) {
		trace.Log(bg, info.rrelease, "")
	}
	m.mu.RUnlock()
}

// TryLock tries to lock m for writing.
func (m *RWMutex) TryLock() bool {
	if !m.mu.TryLock() {
		return false
	}
	if info := identity(&m.info, &m.name, "rwlock", 1); info != nil && info.gen.logHere(1) {
		trace.Log(bg, info.acquired, "")
		m.held = info
	}
	return true
}

// TryRLock tries to lock m for reading.
func (m *RWMutex) TryRLock() bool {
	if !m.mu.TryRLock() {
		return false
	}
	if info := identity(&m.info, &m.name, "rwlock", 1); info != nil && info.gen.logHere(1) {
		trace.Log(bg, info.racquired, "")
	}
	return true
}

// RLocker is a Locker for m's read side, like sync.RWMutex.RLocker.
func (m *RWMutex) RLocker() sync.Locker { return rlocker{m} }

type rlocker struct{ m *RWMutex }

func (r rlocker) Lock()   { r.m.RLock() }
func (r rlocker) Unlock() { r.m.RUnlock() }
