package health

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"candor/internal/upstream"
)

// waitLimit bounds every wait of these tests.
const waitLimit = 5 * time.Second

// clock is an injected clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// recorder collects the sets published through onChange and checks the
// callback's contract: never two calls at once, never the same set twice
// in a row.
type recorder struct {
	ch      chan []string
	inside  atomic.Int32
	overlap atomic.Bool
	mu      sync.Mutex
	last    []string
	calls   int
	repeats int
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{ch: make(chan []string, 4096)}
	t.Cleanup(func() {
		if r.overlap.Load() {
			t.Error("onChange was called from two goroutines at once")
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.repeats > 0 {
			t.Errorf("onChange published an unchanged set %d times", r.repeats)
		}
	})
	return r
}

func (r *recorder) onChange(usable []*upstream.Target) {
	if r.inside.Add(1) > 1 {
		r.overlap.Store(true)
	}
	defer r.inside.Add(-1)
	addrs := make([]string, len(usable))
	for i, tg := range usable {
		addrs[i] = tg.Addr
	}
	r.mu.Lock()
	if r.calls > 0 && slices.Equal(addrs, r.last) {
		r.repeats++
	}
	r.calls++
	r.last = addrs
	r.mu.Unlock()
	select {
	case r.ch <- addrs:
	default:
		panic("recorder: too many published sets")
	}
}

// wait reads published sets until one equals want.
func (r *recorder) wait(t *testing.T, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	var seen [][]string
	for {
		select {
		case got := <-r.ch:
			if slices.Equal(got, want) {
				return
			}
			seen = append(seen, got)
		case <-deadline.C:
			t.Fatalf("usable set %q never published; saw %q", want, seen)
		}
	}
}

// waitFor polls cond until it holds, for at most waitLimit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// newTransport builds a Transport for urls with bounded timeouts.
func newTransport(t *testing.T, urls ...string) *upstream.Transport {
	t.Helper()
	tr, err := upstream.New(upstream.Options{
		Name:                  "api",
		ConnectTimeout:        time.Second,
		ResponseHeaderTimeout: 3 * time.Second,
		IdleTimeout:           3 * time.Second,
		PoolIdle:              10 * time.Second,
		MaxIdlePerTarget:      2,
		HeadLimits:            upstream.Limits{Bytes: 16 << 10, Fields: 100},
	}, urls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// start builds and starts a Checker; it is closed at the end of the test,
// before the transport.
func start(t *testing.T, opt Options, tr *upstream.Transport) (*Checker, *recorder) {
	t.Helper()
	rec := newRecorder(t)
	c := New(opt, tr, rec.onChange)
	c.Start()
	t.Cleanup(c.Close)
	return c, rec
}

// state returns the state of the target at addr.
func state(t *testing.T, c *Checker, addr string) TargetState {
	t.Helper()
	for _, s := range c.States() {
		if s.Target == addr {
			return s
		}
	}
	t.Fatalf("no state for %s", addr)
	return TargetState{}
}

// logBuffer is a concurrency-safe JSON log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the decoded records whose msg is msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range bytes.Lines(b.buf.Bytes()) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}
