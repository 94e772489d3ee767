package retry

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"candor/internal/failure"
)

func TestSafe(t *testing.T) {
	sent := func(k failure.Kind, n int64) *failure.Error {
		fe := failure.New(k, "")
		fe.BytesSent = n
		return fe
	}
	cases := []struct {
		name       string
		fe         *failure.Error
		replayable bool
		want       bool
	}{
		{"refused, POST", sent(failure.ConnectRefused, 0), false, true},
		{"dns, POST", sent(failure.DNSFailed, 0), false, true},
		{"tls, POST", sent(failure.TLSUntrusted, 0), false, true},
		{"connect timeout, POST", sent(failure.ConnectTimeout, 0), false, true},
		{"reset after sending, POST", sent(failure.ResetBeforeResponse, 300), false, false},
		{"reset after sending, GET", sent(failure.ResetBeforeResponse, 300), true, true},
		{"closed before response, POST", sent(failure.ClosedBeforeResponse, 300), false, false},
		{"write failed, PUT", sent(failure.WriteFailed, 10), true, true},
		{"response timeout, GET: the upstream may be working on it", sent(failure.ResponseTimeout, 300), true, false},
		{"malformed response, GET", sent(failure.MalformedHeader, 300), true, false},
		{"client canceled", sent(failure.ClientCanceled, 0), true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Safe(c.fe, c.replayable); got != c.want {
				t.Fatalf("Safe(%s, replayable=%v) = %v, want %v", c.fe.Kind, c.replayable, got, c.want)
			}
		})
	}
}

func TestReplayable(t *testing.T) {
	cases := []struct {
		name   string
		method string
		key    string
		body   bool
		want   bool
	}{
		{"GET", "GET", "", true, true},
		{"PUT", "PUT", "", true, true},
		{"DELETE", "DELETE", "", true, true},
		{"POST", "POST", "", true, false},
		{"PATCH", "PATCH", "", true, false},
		{"POST with Idempotency-Key", "POST", "k-1", true, true},
		{"PUT whose body was not buffered", "PUT", "", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.key != "" {
				h.Set("Idempotency-Key", c.key)
			}
			if got := Replayable(c.method, h, c.body); got != c.want {
				t.Fatalf("Replayable = %v, want %v", got, c.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	base, max := 10*time.Millisecond, 80*time.Millisecond
	for n := 2; n <= 8; n++ {
		cap := min(base<<(n-2), max)
		for range 200 {
			if d := Backoff(n, base, max); d < 0 || d > cap {
				t.Fatalf("Backoff(%d) = %v, outside [0, %v]", n, d, cap)
			}
		}
	}
	if Backoff(2, 0, max) != 0 {
		t.Fatal("zero base must not wait")
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestBudget(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1_000_000, 0)}
	b := NewBudget(0.2, 1, clk.Now)
	// No traffic: only the floor (1/s over a 10 s window = 10).
	allowed := 0
	for range 100 {
		if b.Allow() {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("floor: %d retries allowed, want 10", allowed)
	}
	// 1000 requests in the window: 20% of them, plus the floor, minus
	// what was used.
	for range 1000 {
		b.Request()
	}
	allowed = 0
	for range 1000 {
		if b.Allow() {
			allowed++
		}
	}
	if allowed != 200 {
		t.Fatalf("ratio: %d more retries allowed, want 200", allowed)
	}
	// Past the window everything is forgotten.
	clk.Add(11 * time.Second)
	allowed = 0
	for range 100 {
		if b.Allow() {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("after the window: %d allowed, want 10", allowed)
	}
}

// TestBudgetConcurrent runs Request and Allow from several goroutines (for
// the race detector) and checks the cap holds.
func TestBudgetConcurrent(t *testing.T) {
	clk := &fakeClock{now: time.Unix(2_000_000, 0)}
	b := NewBudget(0.1, 0, clk.Now)
	for range 1000 {
		b.Request()
	}
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if b.Allow() {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed < 100 || allowed > 108 {
		t.Fatalf("%d retries allowed, want about 100", allowed)
	}
}
