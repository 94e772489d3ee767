package upstream

import (
	"testing"
	"time"
)

// TestConnStats: a fresh connection counts as opened, taking it from the
// pool as reused, and the reaper closing it as discarded.
func TestConnStats(t *testing.T) {
	s := startServer(t, keepAlive)
	opt := testOptions()
	opt.PoolIdle = 100 * time.Millisecond
	tr, tg := newTestTransport(t, opt, s.url)
	stats := func() [3]uint64 {
		o, r, d := tg.ConnStats()
		return [3]uint64{o, r, d}
	}
	for range 3 {
		if _, _, err := fetch(t.Context(), tr, tg, newRequest("GET")); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := stats(), [3]uint64{1, 2, 0}; got != want {
		t.Fatalf("after 3 requests on one connection: ConnStats = %v, want %v", got, want)
	}
	waitFor(t, 5*time.Second, "the reaper to close the idle connection", func() bool { return tg.IdleConns() == 0 })
	if _, _, err := fetch(t.Context(), tr, tg, newRequest("GET")); err != nil {
		t.Fatal(err)
	}
	if got, want := stats(), [3]uint64{2, 2, 1}; got != want {
		t.Fatalf("after the reaper: ConnStats = %v, want %v", got, want)
	}
}
