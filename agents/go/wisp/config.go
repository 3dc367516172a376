package wisp

// Configuration: one small value, validated once (ConfigFromEnv or by the caller), then
// read without checks on every path.

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config says where and how the agent records.
type Config struct {
	Out           string        // the run folder segments are written into (created if missing)
	Mode          string        // "full" (every concurrency event) or "hops" (hops of sampled traces only)
	TraceRatio    float64       // 0..1: share of root operations sampled
	Service       string        // the process's service name
	ClockOffsetNS int64         // simulated skew added to wall anchors (WILLOWISP_CLOCK_OFFSET_NS)
	Traceparent   string        // the context inherited through TRACEPARENT ('' if none)
	Boundaries    string        // WILLOWISP_BOUNDARIES, recorded as given
	Codec         Codec         // chunk compression; CodecDeflate by default
	FlushEvery    time.Duration // at most 100 ms (the durability promise); 50 ms by default
	RunPID        int           // the pid of `willowisp run`, 0 if none
	NoTracer      bool          // do not start the runtime's execution tracer (goroutine semantics lost)
	NoSignals     bool          // do not flush on SIGTERM/SIGINT
	Control       string        // control channel: "unix" (default), "tcp" (127.0.0.1 too) or "off"
	RuntimeDir    string        // where the control socket and descriptor go ('' = /tmp/willowisp-<uid>)
	ControlToken  string        // fixes the control token (32 hex digits; conformance tests)
	Collector     string        // stream to `willowisp collect --native` here instead of files
	Token         string        // the collector's token (WILLOWISP_TOKEN)
	SegmentBytes  int64         // a segment's size before the next one starts (256 MiB)
	CompressTrace bool          // deflate the execution tracer's bytes too (smaller files, more CPU)
	StreamRetry   time.Duration // caps each delay between attempts to reach the collector again (0: 30 s)
}

const (
	defaultSegmentBytes = 256 << 20
	minSegmentBytes     = 64 << 10 // WILLOWISP_SEGMENT_BYTES below this is refused
)

// ErrNotConfigured: the environment does not ask for recording (no WILLOWISP_OUT), or
// WILLOWISP_DISABLED=1.
var ErrNotConfigured = errors.New("not enabled (WILLOWISP_OUT unset or WILLOWISP_DISABLED=1)")

// ConfigFromEnv reads the WILLOWISP_* variables (docs/agent-go.md). It returns
// ErrNotConfigured when recording was not asked for, and a one-line error naming the
// variable for garbage.
func ConfigFromEnv() (Config, error) {
	return configFrom(os.Getenv)
}

func configFrom(get func(string) string) (Config, error) {
	c := Config{Mode: "full", TraceRatio: 1, Codec: CodecDeflate, FlushEvery: 50 * time.Millisecond}
	if v := strings.TrimSpace(get("WILLOWISP_DISABLED")); v != "" && v != "0" && !strings.EqualFold(v, "false") {
		return c, ErrNotConfigured
	}
	c.Out = get("WILLOWISP_OUT")
	if c.Out == "" {
		return c, ErrNotConfigured
	}
	if v := get("WILLOWISP_MODE"); v != "" {
		if v != "full" && v != "hops" {
			return c, fmt.Errorf("WILLOWISP_MODE=%q: expected full or hops", v)
		}
		c.Mode = v
	}
	if v := get("WILLOWISP_TRACE_RATIO"); v != "" {
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || r < 0 || r > 1 || r != r {
			return c, fmt.Errorf("WILLOWISP_TRACE_RATIO=%q: expected a number from 0 to 1", v)
		}
		c.TraceRatio = r
	}
	if v := get("WILLOWISP_CLOCK_OFFSET_NS"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return c, fmt.Errorf("WILLOWISP_CLOCK_OFFSET_NS=%q: expected an integer", v)
		}
		c.ClockOffsetNS = n
	}
	if v := get("WILLOWISP_RUN_PID"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err == nil && n > 0 {
			c.RunPID = n
		}
	}
	c.Service = firstNonEmpty(get("WILLOWISP_SERVICE"), get("OTEL_SERVICE_NAME"), programName())
	c.Traceparent = get("TRACEPARENT")
	c.Boundaries = get("WILLOWISP_BOUNDARIES")
	c.Control = strings.ToLower(strings.TrimSpace(get("WILLOWISP_CONTROL")))
	if c.Control != "" && c.Control != "unix" && c.Control != "tcp" && c.Control != "off" {
		return c, fmt.Errorf("WILLOWISP_CONTROL=%q: expected unix, tcp or off", c.Control)
	}
	c.RuntimeDir = get("WILLOWISP_RUNTIME_DIR")
	c.ControlToken = strings.TrimSpace(get("WILLOWISP_CONTROL_TOKEN"))
	c.Collector = strings.TrimSpace(get("WILLOWISP_COLLECTOR"))
	if c.Collector != "" {
		if _, _, err := dialAddress(c.Collector); err != nil {
			return c, fmt.Errorf("WILLOWISP_COLLECTOR=%q: expected host:port, tcp://host:port or unix:/path", c.Collector)
		}
	}
	c.Token = get("WILLOWISP_TOKEN")
	if v := strings.TrimSpace(get("WILLOWISP_GO_TRACE_CODEC")); v != "" {
		if v != "deflate" && v != "none" {
			return c, fmt.Errorf("WILLOWISP_GO_TRACE_CODEC=%q: expected none or deflate", v)
		}
		c.CompressTrace = v == "deflate"
	}
	if v := strings.TrimSpace(get("WILLOWISP_SEGMENT_BYTES")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < minSegmentBytes {
			return c, fmt.Errorf("WILLOWISP_SEGMENT_BYTES=%q: expected an integer of at least %d", v, minSegmentBytes)
		}
		c.SegmentBytes = n
	}
	if v := strings.TrimSpace(get("WILLOWISP_STREAM_RETRY_S")); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || math.IsInf(f, 1) {
			return c, fmt.Errorf("WILLOWISP_STREAM_RETRY_S=%q: expected a positive number of seconds", v)
		}
		c.StreamRetry = max(time.Duration(min(f, 1e9)*float64(time.Second)), 1) // at least 1 ns
	}
	return c, nil
}

func (c *Config) validate() error {
	if c.Out == "" {
		return errors.New("no output folder")
	}
	if c.Mode == "" {
		c.Mode = "full"
	}
	if c.Mode != "full" && c.Mode != "hops" {
		return fmt.Errorf("mode %q: expected full or hops", c.Mode)
	}
	if c.FlushEvery <= 0 || c.FlushEvery > 100*time.Millisecond {
		c.FlushEvery = 50 * time.Millisecond
	}
	if c.Service == "" {
		c.Service = programName()
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = defaultSegmentBytes
	}
	switch c.Control {
	case "", "unix", "tcp", "off":
	default:
		return fmt.Errorf("control %q: expected unix, tcp or off", c.Control)
	}
	if c.Collector != "" {
		if _, _, err := dialAddress(c.Collector); err != nil {
			return err
		}
	}
	return nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func programName() string {
	if len(os.Args) > 0 && os.Args[0] != "" {
		return filepath.Base(os.Args[0])
	}
	return "go"
}

// safeName keeps a service name usable in a file name.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "go"
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
