package reload

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"candor/internal/config"
)

func TestTracingChanged(t *testing.T) {
	half, one := 0.5, 1.0
	base := func() *config.Tracing {
		return &config.Tracing{OTLPEndpoint: "127.0.0.1:4318", ServiceName: "candor", Sample: &one, TrustTraceparent: []string{"10.0.0.0/8"}}
	}
	with := func(f func(*config.Tracing)) *config.Tracing { c := base(); f(c); return c }
	for _, tc := range []struct {
		name       string
		prev, next *config.Tracing
		want       bool
	}{
		{"both absent", nil, nil, false},
		{"same", base(), base(), false},
		{"added", nil, base(), true},
		{"removed", base(), nil, true},
		{"endpoint", base(), with(func(c *config.Tracing) { c.OTLPEndpoint = "127.0.0.1:4319" }), true},
		{"service name", base(), with(func(c *config.Tracing) { c.ServiceName = "edge" }), true},
		{"sample", base(), with(func(c *config.Tracing) { c.Sample = &half }), true},
		{"trust", base(), with(func(c *config.Tracing) { c.TrustTraceparent = nil }), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tracingChanged(tc.prev, tc.next); got != tc.want {
				t.Fatalf("tracingChanged = %v, want %v", got, tc.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTracingReload: a reload that changes the tracing section is applied,
// with a warning that tracing changes take effect at the next restart; one
// that leaves it alone says nothing of tracing.
func TestTracingReload(t *testing.T) {
	conf := func(sample string) []byte {
		return []byte(`listen: 127.0.0.1:0
tracing: {otlp_endpoint: "127.0.0.1:4318", sample: ` + sample + `}
routes:
  - {name: r, upstream: u}
upstreams:
  u: {targets: [{url: "http://127.0.0.1:9"}]}
`)
	}
	path := filepath.Join(t.TempDir(), "candor.yaml")
	if err := os.WriteFile(path, conf("1"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, data, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	st, err := StartFile(cfg, data, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	}()
	if st.tracer == nil {
		t.Fatal("tracing configured but no tracer")
	}
	const warning = "tracing configuration changed"
	for _, step := range []struct {
		sample string
		warn   bool
	}{
		{"1", false},
		{"0.25", true},
	} {
		before := strings.Count(logs.String(), warning)
		if err := os.WriteFile(path, conf(step.sample), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := st.Reload(); err != nil {
			t.Fatal(err)
		}
		if warned := strings.Count(logs.String(), warning) > before; warned != step.warn {
			t.Fatalf("sample %s: warned %v, want %v; log:\n%s", step.sample, warned, step.warn, logs.String())
		}
	}
}
