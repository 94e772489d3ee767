package balancer

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"candor/internal/upstream"
)

// policies lists every policy, for tables that run each.
var policies = []Policy{PolicyRoundRobin, PolicyLeastRequest, PolicyConsistentHash}

// newTargets builds one target per weight, on distinct loopback ports,
// with their weights set.
func newTargets(t testing.TB, weights ...int) []*upstream.Target {
	t.Helper()
	urls := make([]string, len(weights))
	for i := range urls {
		urls[i] = fmt.Sprintf("http://127.0.0.1:%d", 10000+i)
	}
	tr, err := upstream.New(upstream.Options{Name: "u"}, urls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	ts := tr.Targets()
	for i, tg := range ts {
		tg.Weight = weights[i]
	}
	return ts
}

// ones returns n weights of 1.
func ones(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// load puts n requests in flight on tg.
func load(tg *upstream.Target, n int) {
	for range n {
		tg.Acquire()
	}
}

// key returns the i-th test key.
func key(i int) string { return fmt.Sprintf("user-%d", i) }

// pickKey is the key a policy's test picks use: keys vary for consistent
// hashing, and are empty otherwise.
func pickKey(p Policy, i int) string {
	if p == PolicyConsistentHash {
		return key(i)
	}
	return ""
}

func TestPolicyString(t *testing.T) {
	cases := []struct {
		name string
		p    Policy
		want string
	}{
		{"round robin", PolicyRoundRobin, "round_robin"},
		{"least request", PolicyLeastRequest, "least_request"},
		{"consistent hash", PolicyConsistentHash, "consistent_hash"},
		{"unknown", Policy(9), "Policy(9)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.String(); got != c.want {
				t.Fatalf("String() = %q, want %q", got, c.want)
			}
		})
	}
}

func TestNewOptions(t *testing.T) {
	cases := []struct {
		name       string
		opt        Options
		wantFactor float64
		wantLimit  int64
	}{
		{"defaults", Options{}, DefaultHashLoadFactor, 0},
		{"factor kept", Options{HashLoadFactor: 2}, 2, 0},
		{"factor below 1 raised", Options{HashLoadFactor: 0.5}, 1, 0},
		{"negative limit is unlimited", Options{TargetMaxConcurrent: -3}, DefaultHashLoadFactor, 0},
		{"limit kept", Options{TargetMaxConcurrent: 7}, DefaultHashLoadFactor, 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := New(c.opt, nil)
			if b.opt.HashLoadFactor != c.wantFactor || b.opt.TargetMaxConcurrent != c.wantLimit {
				t.Fatalf("options %+v, want factor %v limit %d", b.opt, c.wantFactor, c.wantLimit)
			}
		})
	}
}

// TestNoTargets: with no usable target every policy picks nil, with and
// without a key.
func TestNoTargets(t *testing.T) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			b := New(Options{Policy: p}, nil)
			if got := b.Pick("k"); got != nil || b.Usable() != 0 {
				t.Fatalf("new with no targets: Pick = %v, Usable = %d", got, b.Usable())
			}
			b = New(Options{Policy: p}, newTargets(t, 1, 2))
			b.Update(nil)
			for _, k := range []string{"", "k"} {
				if got := b.Pick(k); got != nil {
					t.Fatalf("after Update(nil): Pick(%q) = %s", k, got.Addr)
				}
			}
			if b.Usable() != 0 {
				t.Fatalf("Usable = %d, want 0", b.Usable())
			}
		})
	}
}

// TestUpdate: after Update, picks return only the usable targets, and all
// of them; restoring the full set brings every target back.
func TestUpdate(t *testing.T) {
	cases := []struct {
		name   string
		usable []int // indexes into 5 targets
	}{
		{"one", []int{2}},
		{"two apart", []int{1, 3}},
		{"first and last", []int{0, 4}},
		{"all but one", []int{0, 1, 2, 4}},
	}
	for _, p := range policies {
		for _, c := range cases {
			t.Run(p.String()+"/"+c.name, func(t *testing.T) {
				ts := newTargets(t, 1, 2, 1, 3, 1)
				b := New(Options{Policy: p}, ts)
				var usable []*upstream.Target
				for _, i := range c.usable {
					usable = append(usable, ts[i])
				}
				b.Update(usable)
				if b.Usable() != len(usable) {
					t.Fatalf("Usable = %d, want %d", b.Usable(), len(usable))
				}
				seen := map[*upstream.Target]int{}
				for i := range 2000 {
					tg := b.Pick(pickKey(p, i))
					if !slices.Contains(usable, tg) {
						t.Fatalf("pick %d: %v is not usable", i, tg)
					}
					seen[tg]++
				}
				if len(seen) != len(usable) {
					t.Fatalf("picked %d distinct targets, want all %d usable", len(seen), len(usable))
				}
				b.Update(ts)
				seen = map[*upstream.Target]int{}
				for i := range 2000 {
					seen[b.Pick(pickKey(p, i))]++
				}
				if len(seen) != len(ts) {
					t.Fatalf("after restoring: picked %d distinct targets, want %d", len(seen), len(ts))
				}
			})
		}
	}
}

// TestUpdateCopies: Update keeps its own copy of the slice.
func TestUpdateCopies(t *testing.T) {
	ts := newTargets(t, 1, 1, 1)
	usable := []*upstream.Target{ts[0], ts[1]}
	b := New(Options{}, usable)
	usable[0] = ts[2]
	for range 10 {
		if tg := b.Pick(""); tg == ts[2] {
			t.Fatal("Pick returned a target written into the caller's slice after Update")
		}
	}
}

// TestUpdateConcurrent: picks racing with Updates only ever return a
// target of some snapshot (run with -race).
func TestUpdateConcurrent(t *testing.T) {
	for _, p := range policies {
		t.Run(p.String(), func(t *testing.T) {
			ts := newTargets(t, 1, 2, 3, 1)
			subsets := [][]*upstream.Target{ts, ts[:1], ts[1:3], {ts[0], ts[3]}, ts[2:]}
			b := New(Options{Policy: p, TargetMaxConcurrent: 1000}, ts)
			var wg sync.WaitGroup
			errs := make(chan string, 4)
			stop := make(chan struct{})
			for g := range 4 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						tg := b.Pick(pickKey(p, g*100000+i))
						if tg == nil || !slices.Contains(ts, tg) {
							errs <- fmt.Sprintf("goroutine %d pick %d: %v", g, i, tg)
							return
						}
						tg.Acquire()
						tg.Release()
					}
				})
			}
			for i := range 300 {
				b.Update(subsets[i%len(subsets)])
			}
			close(stop)
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
		})
	}
}

// TestTargetMaxConcurrent: every policy skips targets at the limit, and
// picks nil only when all usable targets are at it.
func TestTargetMaxConcurrent(t *testing.T) {
	const limit = 3
	cases := []struct {
		name    string
		weights []int
		loads   []int
		want    []int // targets that may be picked; empty: nil
	}{
		{"none at limit", []int{1, 1, 1}, []int{0, 2, 1}, []int{0, 1, 2}},
		{"first at limit", []int{1, 1, 1}, []int{3, 0, 1}, []int{1, 2}},
		{"heavy at limit", []int{5, 1, 1}, []int{4, 0, 0}, []int{1, 2}},
		{"light one left", []int{1, 1, 1}, []int{3, 3, 2}, []int{2}},
		{"all at limit", []int{1, 1, 1}, []int{3, 3, 3}, nil},
		{"one target at limit", []int{1}, []int{3}, nil},
		{"one target below", []int{1}, []int{2}, []int{0}},
		{"all over limit", []int{2, 1}, []int{9, 4}, nil},
	}
	for _, p := range policies {
		for _, c := range cases {
			t.Run(p.String()+"/"+c.name, func(t *testing.T) {
				ts := newTargets(t, c.weights...)
				for i, n := range c.loads {
					load(ts[i], n)
				}
				var want []*upstream.Target
				for _, i := range c.want {
					want = append(want, ts[i])
				}
				b := New(Options{Policy: p, TargetMaxConcurrent: limit}, ts)
				seen := map[*upstream.Target]bool{}
				for i := range 1000 {
					for _, k := range []string{pickKey(p, i), ""} {
						tg := b.Pick(k)
						switch {
						case want == nil && tg != nil:
							t.Fatalf("Pick(%q) = %s, want nil with every target at the limit", k, tg.Addr)
						case want != nil && !slices.Contains(want, tg):
							t.Fatalf("Pick(%q) = %v, want one of the targets below the limit", k, tg)
						}
						seen[tg] = true
					}
				}
				// Round robin cycles, so it reaches every target below the
				// limit; the other policies may rightly avoid a loaded one.
				if p == PolicyRoundRobin && want != nil && len(seen) != len(want) {
					t.Fatalf("picked %d distinct targets, want all %d below the limit", len(seen), len(want))
				}
				if b.Usable() != len(ts) {
					t.Fatalf("Usable = %d, want %d", b.Usable(), len(ts))
				}
			})
		}
	}
}

// TestPickAllocs: Pick allocates nothing, with and without load.
func TestPickAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, p := range policies {
		for _, loaded := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/loaded=%v", p, loaded), func(t *testing.T) {
				ts := newTargets(t, 1, 2, 3, 1, 1)
				if loaded {
					for i, tg := range ts {
						load(tg, i+1)
					}
				}
				b := New(Options{Policy: p, TargetMaxConcurrent: 4}, ts)
				if n := testing.AllocsPerRun(1000, func() { b.Pick("user-42") }); n != 0 {
					t.Fatalf("Pick allocates %v times", n)
				}
			})
		}
	}
}

// BenchmarkPick measures Pick per policy over 10 targets, idle and with
// requests in flight (which makes consistent hashing read every target's
// counter for the bounded-load check).
func BenchmarkPick(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = key(i)
	}
	for _, p := range policies {
		for _, loaded := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/loaded=%v", p, loaded), func(b *testing.B) {
				ts := newTargets(b, 1, 2, 3, 1, 1, 1, 2, 3, 1, 1)
				if loaded {
					for i, tg := range ts {
						load(tg, 10+i%3)
					}
				}
				bl := New(Options{Policy: p, TargetMaxConcurrent: 1000}, ts)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					bl.Pick(keys[i&1023])
					i++
				}
			})
		}
	}
}

// BenchmarkPickParallel measures Pick from all Ps at once, which is how
// the proxy calls it.
func BenchmarkPickParallel(b *testing.B) {
	keys := make([]string, 8)
	for i := range keys {
		keys[i] = key(i)
	}
	for _, p := range policies {
		b.Run(p.String(), func(b *testing.B) {
			ts := newTargets(b, 1, 2, 3, 1, 1, 1, 2, 3, 1, 1)
			bl := New(Options{Policy: p}, ts)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					bl.Pick(keys[i&7])
					i++
				}
			})
		})
	}
}
