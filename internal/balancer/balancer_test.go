package balancer

import (
	"sync"
	"testing"

	"candor/internal/upstream"
)

func targets(t *testing.T, n int) []*upstream.Target {
	t.Helper()
	urls := make([]string, n)
	for i := range urls {
		urls[i] = "http://127.0.0.1:" + string(rune('1'+i)) + "000"
	}
	tr, err := upstream.New(upstream.Options{Name: "u"}, urls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr.Targets()
}

func TestRoundRobin(t *testing.T) {
	cases := []struct {
		name  string
		n     int
		picks int
	}{
		{"one target", 1, 10},
		{"three targets", 3, 300},
		{"five targets", 5, 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := targets(t, c.n)
			p := NewRoundRobin(ts)
			counts := map[*upstream.Target]int{}
			for i := range c.picks {
				got := p.Pick()
				if got != ts[i%c.n] {
					t.Fatalf("pick %d: %s, want %s", i, got.Addr, ts[i%c.n].Addr)
				}
				counts[got]++
			}
			for _, tg := range ts {
				if counts[tg] != c.picks/c.n {
					t.Fatalf("%s picked %d times, want %d", tg.Addr, counts[tg], c.picks/c.n)
				}
			}
		})
	}
	if NewRoundRobin(nil).Pick() != nil {
		t.Fatal("no targets must pick nil")
	}
}

// TestRoundRobinConcurrent: concurrent picks stay evenly spread (run with
// -race).
func TestRoundRobinConcurrent(t *testing.T) {
	ts := targets(t, 4)
	p := NewRoundRobin(ts)
	var mu sync.Mutex
	counts := map[*upstream.Target]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			local := map[*upstream.Target]int{}
			for range 1000 {
				local[p.Pick()]++
			}
			mu.Lock()
			for k, v := range local {
				counts[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, tg := range ts {
		if counts[tg] != 2000 {
			t.Fatalf("%s picked %d times, want 2000", tg.Addr, counts[tg])
		}
	}
}
