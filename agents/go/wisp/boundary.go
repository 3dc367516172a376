package wisp

// Declared boundaries (docs/protocols.md "Control channel", the contract's "boundary"):
// `entry=http:POST /checkout;exit=http:reply;runtimes=python,go`. The agent keeps the ones
// WILLOWISP_BOUNDARIES declares and the ones `willowisp ctl PID enable` adds, with their
// switch and counters, and reports them in the control channel's status.
//
// What a boundary changes in the Go agent: in `hops` mode the runtime's execution tracer
// (goroutines, waits, the lock wrappers' logs) runs only while at least one boundary is
// enabled, so a `hops` process without boundaries pays for its hops alone. In `full` mode
// everything is recorded anyway and a boundary only shows up in status.
//
// The parser follows src/willowisp/model/boundary.py (the Python reference), so a SPEC means
// the same thing, and has the same id (the first 8 hex digits of SHA-256 of the entry), in
// every runtime.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
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

// declared is one boundary this process knows, with its switch and counters (guarded by
// the list's mutex).
type declared struct {
	b       Boundary
	enabled bool
	source  string // config or ctl
	entries int64  // inbound hops that matched its entry while it was on
	active  int64  // of those, the ones not yet answered
}

// enter counts an inbound hop in every switched-on boundary whose entry it matches; the
// result is what to hand to leave when the hop is answered (nil when none matched).
func (bs *boundaries) enter(protocol, method, target string) []*declared {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	var in []*declared
	for _, d := range bs.list {
		if d.enabled && d.b.Matches(protocol, method, target) {
			d.entries++
			d.active++
			in = append(in, d)
		}
	}
	return in
}

func (bs *boundaries) leave(in []*declared) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for _, d := range in {
		d.active--
	}
}

// boundaries is the process's list. Guarded by its mutex; the recorder owns one.
type boundaries struct {
	mu   sync.Mutex
	list []*declared // Invariant: one entry per Boundary.Entry
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
	d := &declared{b: b, enabled: true, source: source}
	bs.list = append(bs.list, d)
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

// anyEnabled says whether a boundary is switched on.
func (bs *boundaries) anyEnabled() bool {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for _, d := range bs.list {
		if d.enabled {
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

// status is the list as the control channel's status shows it.
func (bs *boundaries) status() []map[string]any {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	out := []map[string]any{}
	for _, d := range bs.list {
		out = append(out, map[string]any{
			"name": d.b.Entry, "spec": d.b.Spec, "id": d.b.ID(), "enabled": d.enabled,
			"source": d.source, "entries": d.entries, "active": d.active, "events": 0, "cost_ns": 0,
		})
	}
	return out
}
