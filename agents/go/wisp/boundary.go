package wisp

// Declared boundaries (docs/protocols.md "Control channel", the contract's "boundary"):
// `entry=http:POST /checkout;exit=http:reply;runtimes=python,go`. The agent keeps the ones
// WILLOWISP_BOUNDARIES declares and the ones `willowisp ctl PID enable` adds, with their
// switch and counters, and reports them in the control channel's status.
//
// What a boundary changes in the Go agent (docs/agent-go.md "Boundaries"), as in
// src/willowisp/agent/boundaries.py: an inbound hop matching a switched-on boundary's entry,
// or carrying its tracestate member `wisp=b-<id>`, opens an *instance* on the goroutine that
// handles it; the goroutine label it sets (labels.go) marks that goroutine and the ones it
// starts as working for the boundary; outgoing hops made there carry the member on. In
// `hops` mode the runtime's execution tracer runs only while a boundary is switched on, the
// lock wrappers and Access log only on marked goroutines, and the decoder (wisp-goimport)
// keeps only the goroutines inside instances, told by the "wisp-gate", "wisp-in" and
// "wisp-out" logs. In `full` mode everything is recorded and boundaries count their
// instances and the agent's events inside them.
//
// The parser follows src/willowisp/model/boundary.py (the Python reference), so a SPEC means
// the same thing, and has the same id (the first 8 hex digits of SHA-256 of the entry), in
// every runtime.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Boundary is one parsed SPEC.
type Boundary struct {
	Spec     string   // as written
	Entry    string   // "http:POST /checkout": its name
	Exit     string   // "" for the entry's reply
	Runtimes []string // empty means any
}

// ID is the boundary's id: the same in every process and runtime.
func (b Boundary) ID() string {
	h := sha256.Sum256([]byte(b.Entry))
	return hex.EncodeToString(h[:4])
}

var boundaryRuntimes = []string{"python", "go", "java", "rust", "nodejs"}

// ParseBoundary parses one SPEC; the error says what is wrong, naming source and spec.
func ParseBoundary(spec, source string) (Boundary, error) {
	fields := map[string]string{}
	for _, part := range strings.Split(spec, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		key, value, ok := strings.Cut(part, "=")
		key = strings.TrimSpace(key)
		if !ok || (key != "entry" && key != "exit" && key != "runtimes") {
			return Boundary{}, fmt.Errorf("%s %q: %q is not one of entry=..., exit=..., runtimes=...", source, spec, strings.TrimSpace(part))
		}
		if _, dup := fields[key]; dup {
			return Boundary{}, fmt.Errorf("%s %q: %s is given twice", source, spec, key)
		}
		fields[key] = strings.TrimSpace(value)
	}
	entry := fields["entry"]
	proto, what, ok := strings.Cut(entry, ":")
	if !ok || strings.TrimSpace(proto) == "" || strings.TrimSpace(what) == "" {
		return Boundary{}, fmt.Errorf("%s %q: needs entry=PROTOCOL:WHAT, e.g. entry=http:POST /checkout", source, spec)
	}
	exit := fields["exit"]
	if exit != "" && !strings.Contains(exit, ":") {
		return Boundary{}, fmt.Errorf("%s %q: exit must be PROTOCOL:WHAT, e.g. exit=http:reply", source, spec)
	}
	var rts []string
	for _, rt := range strings.Split(fields["runtimes"], ",") {
		rt = strings.TrimSpace(rt)
		if rt == "" {
			continue
		}
		known := false
		for _, k := range boundaryRuntimes {
			known = known || k == rt
		}
		if !known {
			return Boundary{}, fmt.Errorf("%s %q: unknown runtime %q (one of %s)", source, spec, rt, strings.Join(boundaryRuntimes, ", "))
		}
		rts = append(rts, rt)
	}
	return Boundary{Spec: spec, Entry: strings.TrimSpace(entry), Exit: exit, Runtimes: rts}, nil
}

// Matches says whether an inbound hop (protocol, method, path / full method / destination)
// starts the boundary, as src/willowisp/model/boundary.py decides: for http the entry is
// "METHOD PATH", "PATH" or "METHOD", the path (without its query) matched as a glob; for
// grpc the full method as a glob; for other protocols the destination as a glob. Globs
// are fnmatch's: `*` matches any run of characters, `/` included.
func (b Boundary) Matches(protocol, method, target string) bool {
	want, what, _ := strings.Cut(b.Entry, ":")
	want, what = strings.ToLower(strings.TrimSpace(want)), strings.TrimSpace(what)
	if !strings.EqualFold(protocol, want) {
		return false
	}
	switch want {
	case "http":
		wm, wp, _ := strings.Cut(what, " ")
		if wp == "" && strings.HasPrefix(wm, "/") {
			wm, wp = "", wm
		}
		path, _, _ := strings.Cut(target, "?")
		if wm != "" && wm != "*" && !strings.EqualFold(wm, method) {
			return false
		}
		return wp == "" || globMatch(strings.TrimSpace(wp), path)
	case "grpc":
		return globMatch("/"+strings.TrimLeft(what, "/"), "/"+strings.TrimLeft(target, "/"))
	}
	return globMatch(what, target)
}

// globMatch is fnmatch.fnmatchcase: `*` any run, `?` one character, `[...]` a class
// (`[!...]` negated); a `[` without its `]` is itself.
func globMatch(pattern, s string) bool {
	p, t := []rune(pattern), []rune(s)
	var match func(i, j int) bool
	match = func(i, j int) bool {
		for i < len(p) {
			switch p[i] {
			case '*':
				for i < len(p) && p[i] == '*' {
					i++
				}
				for k := j; k <= len(t); k++ {
					if match(i, k) {
						return true
					}
				}
				return false
			case '?':
				if j >= len(t) {
					return false
				}
			case '[':
				end := i + 1
				if end < len(p) && p[end] == '!' {
					end++
				}
				if end < len(p) && p[end] == ']' {
					end++
				}
				for end < len(p) && p[end] != ']' {
					end++
				}
				if end >= len(p) { // no closing bracket: a literal '['
					if j >= len(t) || t[j] != '[' {
						return false
					}
					break
				}
				if j >= len(t) || !inClass(p[i+1:end], t[j]) {
					return false
				}
				i = end
			default:
				if j >= len(t) || t[j] != p[i] {
					return false
				}
			}
			i++
			j++
		}
		return j == len(t)
	}
	return match(0, 0)
}

func inClass(class []rune, c rune) bool {
	neg := len(class) > 0 && class[0] == '!'
	if neg {
		class = class[1:]
	}
	found := false
	for k := 0; k < len(class); k++ {
		if k+2 < len(class) && class[k+1] == '-' {
			found = found || (class[k] <= c && c <= class[k+2])
			k += 2
		} else {
			found = found || class[k] == c
		}
	}
	return found != neg
}

// declared is one boundary this process knows, with its switch and counters (the plain
// fields guarded by the list's mutex; events counted atomically on the hot paths).
type declared struct {
	b          Boundary
	label      string // "b-<id>": the tracestate member's value and the goroutine label's
	enabled    bool
	source     string // config or ctl
	entries    int64  // instances opened by an inbound hop matching its entry
	propagated int64  // instances opened by a caller's `wisp=b-<id>` tracestate member
	active     int64  // instances in flight
	events     atomic.Int64
}

// allows says whether the boundary covers Go processes (no runtimes= means every one).
func (b Boundary) allows(runtime string) bool {
	if len(b.Runtimes) == 0 {
		return true
	}
	for _, rt := range b.Runtimes {
		if rt == runtime {
			return true
		}
	}
	return false
}

// instance is one boundary instance in flight, opened on the goroutine that took the
// inbound hop. While it lasts the goroutine carries the pprof label `wisp.boundary=b-<id>`
// (labels.go), which goroutines it starts inherit; that label is what the lock wrappers,
// Access and the hop adapters read to know they work for the boundary.
type instance struct {
	d       *declared
	prev    unsafe.Pointer  // the goroutine's labels before the instance
	ctx     context.Context // the hop's context with the label (handed to the handler)
	message bool            // opened by a received message: lasts until the next one
	own     unsafe.Pointer  // the labels the instance set (message instances)
}

// enter opens an instance when an inbound hop starts a switched-on boundary (its entry
// matches, or the caller's tracestate carried the boundary's member and the boundary
// covers Go), as src/willowisp/agent/boundaries.py does: nil when none, or when the
// goroutine already works for one.
func (bs *boundaries) enter(ctx context.Context, protocol, method, target, member string) *instance {
	if bs.count.Load() == 0 || bs.current() != nil {
		return nil
	}
	bs.mu.Lock()
	var found *declared
	for _, d := range bs.list {
		if d.enabled && d.b.Matches(protocol, method, target) {
			found = d
			d.entries++
			break
		}
	}
	if found == nil && strings.HasPrefix(member, "b-") {
		for _, d := range bs.list {
			if d.enabled && d.label == member && d.b.allows("go") {
				found = d
				d.propagated++
				break
			}
		}
	}
	if found != nil {
		found.active++
	}
	bs.mu.Unlock()
	if found == nil {
		return nil
	}
	inst := &instance{d: found, prev: getProfLabel(), ctx: ctx}
	if labelsUsable {
		inst.ctx = pprof.WithLabels(ctx, pprof.Labels(labelKey, found.label))
		pprof.SetGoroutineLabels(inst.ctx)
		inst.own = getProfLabel()
	}
	return inst
}

// leave closes an instance on the goroutine that opened it: its labels are what they were.
func (bs *boundaries) leave(inst *instance) {
	if inst == nil {
		return
	}
	if labelsUsable {
		setProfLabel(inst.prev)
	}
	bs.mu.Lock()
	if inst.d.active > 0 {
		inst.d.active--
	}
	bs.mu.Unlock()
}

// current is the boundary the calling goroutine works for (its label), nil when none.
func (bs *boundaries) current() *declared {
	v := currentLabel()
	if v == "" {
		return nil
	}
	if m := bs.byLabel.Load(); m != nil {
		return (*m)[v]
	}
	return nil
}

// ofContext is the boundary a context carries (the label of an instance's context), so
// that work handed to an older goroutine with the request's context still counts.
func (bs *boundaries) ofContext(ctx context.Context) *declared {
	if ctx == nil || !labelsUsable || bs.count.Load() == 0 {
		return nil
	}
	v, ok := pprof.Label(ctx, labelKey)
	if !ok {
		return nil
	}
	if m := bs.byLabel.Load(); m != nil {
		return (*m)[v]
	}
	return nil
}

// inside is the boundary the calling goroutine, else ctx, works for (nil when none).
func (bs *boundaries) inside(ctx context.Context) *declared {
	if bs.count.Load() == 0 {
		return nil
	}
	if d := bs.current(); d != nil {
		return d
	}
	return bs.ofContext(ctx)
}

// openMessage: a consumer took a message. The instance the goroutine's previous message
// opened ends here; a new one opens when this message starts a boundary (or carries one).
func (bs *boundaries) openMessage(r *recorder, ctx context.Context, protocol, destination, member string) *instance {
	if bs.count.Load() == 0 {
		return nil
	}
	if labelsUsable {
		if p := getProfLabel(); p != nil {
			bs.mu.Lock()
			prev := bs.messages[p]
			delete(bs.messages, p)
			bs.mu.Unlock()
			if prev != nil {
				r.markInstance(prev.ctx, false)
				bs.leave(prev)
			}
		}
	}
	inst := bs.enter(ctx, protocol, "", destination, member)
	if inst == nil || inst.own == nil {
		return inst
	}
	inst.message = true
	bs.mu.Lock()
	if bs.messages == nil {
		bs.messages = map[unsafe.Pointer]*instance{}
	}
	if len(bs.messages) < maxMessageInstances {
		bs.messages[inst.own] = inst
	}
	bs.mu.Unlock()
	return inst
}

// maxMessageInstances bounds the message instances kept open (one per consuming goroutine;
// past it an instance is not closed by the next message, its goroutine keeps the label).
const maxMessageInstances = 4096

// boundaries is the process's list. Guarded by its mutex; the recorder owns one.
type boundaries struct {
	mu       sync.Mutex
	list     []*declared                  // Invariant: one entry per Boundary.Entry
	messages map[unsafe.Pointer]*instance // open message instances, by the labels they set
	// byLabel maps "b-<id>" to its boundary for the hot paths: replaced, never changed.
	byLabel atomic.Pointer[map[string]*declared]
	count   atomic.Int32 // len(list)
}

// add declares b (or returns the one with the same entry).
func (bs *boundaries) add(b Boundary, source string) *declared {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for _, d := range bs.list {
		if d.b.Entry == b.Entry {
			return d
		}
	}
	d := &declared{b: b, label: "b-" + b.ID(), enabled: true, source: source}
	bs.list = append(bs.list, d)
	m := map[string]*declared{}
	for _, x := range bs.list {
		m[x.label] = x
	}
	bs.byLabel.Store(&m)
	bs.count.Store(int32(len(bs.list)))
	return d
}

func (bs *boundaries) find(name string) *declared {
	key := strings.TrimSpace(name)
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for _, d := range bs.list {
		if key == d.b.Entry || key == d.b.Spec || key == d.b.ID() || key == "b-"+d.b.ID() {
			return d
		}
	}
	return nil
}

// anyEnabled says whether a boundary that covers Go processes is switched on (one whose
// runtimes= leaves Go out records nothing here, so it must not start the tracer: it cost
// the whole process the tracer's CPU and bytes for nothing).
func (bs *boundaries) anyEnabled() bool {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for _, d := range bs.list {
		if d.enabled && d.b.allows("go") {
			return true
		}
	}
	return false
}

// switchTo enables (a known one, or a new one from a SPEC) or disables a boundary; the
// result is its name. An error is the refusal's message (bad-boundary).
func (bs *boundaries) switchTo(arg string, on bool) (string, error) {
	d := bs.find(arg)
	if d == nil {
		if !on {
			return "", fmt.Errorf("no boundary %q in this process (known: %s)", arg, bs.names())
		}
		b, err := ParseBoundary(arg, "enable")
		if err != nil {
			return "", err
		}
		d = bs.add(b, "ctl")
	}
	bs.mu.Lock()
	d.enabled = on
	bs.mu.Unlock()
	return d.b.Entry, nil
}

func (bs *boundaries) names() string {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	var out []string
	for _, d := range bs.list {
		out = append(out, fmt.Sprintf("%q", d.b.Entry))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// status is the list as the control channel's status shows it; costNS is the measured
// cost of one event.
func (bs *boundaries) status(costNS int64) []map[string]any {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	out := []map[string]any{}
	for _, d := range bs.list {
		c := d.costs(costNS)
		c["name"], c["id"], c["enabled"] = d.b.Entry, d.b.ID(), d.enabled
		out = append(out, c)
	}
	return out
}

// costs are a boundary's counters as the stats record's by_boundary and status give them
// (the fields of the Python agent's): events are the agent's logs (lock, data, hop events)
// written by goroutines working for one of its instances; cost_ns is events times the
// measured cost of one (all of it the hook's: the tracer, not the agent, encodes them).
func (d *declared) costs(costNS int64) map[string]any {
	ev := d.events.Load()
	return map[string]any{
		"spec": d.b.Spec, "source": d.source, "entries": d.entries, "propagated": d.propagated,
		"active": d.active, "events": ev, "hook_ns": ev * costNS, "serialize_ns": int64(0),
		"cost_ns": ev * costNS,
	}
}

// byBoundaryJSON is the stats record's by_boundary attribute: {name: costs}, "" when no
// boundary is declared.
func (bs *boundaries) byBoundaryJSON(costNS int64) string {
	bs.mu.Lock()
	out := map[string]any{}
	for _, d := range bs.list {
		out[d.b.Entry] = d.costs(costNS)
	}
	bs.mu.Unlock()
	if len(out) == 0 {
		return ""
	}
	b, err := json.Marshal(out)
	if err != nil {
		return ""
	}
	return string(b)
}
