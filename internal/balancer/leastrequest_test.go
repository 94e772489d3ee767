package balancer

import (
	"testing"
)

// lrCases are permutations of loads (and weights) for least request: the
// bug to catch is a comparison that only works for ascending loads
// (STYLE.md §10).
var lrCases = []struct {
	name    string
	loads   []int
	weights []int // nil: all 1
}{
	{"ascending", []int{0, 5, 10}, nil},
	{"descending", []int{10, 5, 0}, nil},
	{"middle lightest", []int{5, 0, 10}, nil},
	{"all equal", []int{3, 3, 3}, nil},
	{"all idle", []int{0, 0, 0, 0}, nil},
	{"one hot", []int{0, 100, 0}, nil},
	{"hot last", []int{0, 0, 100}, nil},
	{"one cold", []int{7, 7, 0, 7}, nil},
	{"four descending", []int{4, 3, 2, 1}, nil},
	{"five ascending", []int{1, 2, 3, 4, 5}, nil},
	{"two", []int{9, 2}, nil},
	{"weights equalise", []int{4, 2, 1}, []int{4, 2, 1}},
	{"weight outweighs load", []int{6, 2, 1}, []int{6, 1, 1}},
	{"heavy weight descending", []int{30, 20, 10}, []int{10, 1, 1}},
	{"weighted ties", []int{2, 1, 4}, []int{2, 1, 4}},
}

// lrRatio compares targets a and b by load/weight: -1, 0 or 1.
func lrRatio(loads, weights []int, a, b int) int {
	x, y := loads[a]*weights[b], loads[b]*weights[a]
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func lrWeights(n int, w []int) []int {
	if w == nil {
		return ones(n)
	}
	return w
}

// TestLighter checks the comparator on its own.
func TestLighter(t *testing.T) {
	cases := []struct {
		name           string
		la, wa, lb, wb int64
		want           bool
	}{
		{"less load", 1, 1, 2, 1, true},
		{"more load", 2, 1, 1, 1, false},
		{"equal", 3, 1, 3, 1, false},
		{"both idle", 0, 1, 0, 5, false},
		{"heavier weight wins", 4, 4, 2, 1, true},
		{"same ratio", 4, 2, 2, 1, false},
		{"idle beats busy", 0, 1, 1, 100, true},
		{"busy never beats idle", 1, 1000, 0, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := lighter(c.la, c.wa, c.lb, c.wb); got != c.want {
				t.Fatalf("lighter(%d/%d, %d/%d) = %v, want %v", c.la, c.wa, c.lb, c.wb, got, c.want)
			}
		})
	}
}

// TestChoose: for every pair, in both orders, the strictly lighter target
// is chosen, and on a tie the first.
func TestChoose(t *testing.T) {
	for _, c := range lrCases {
		t.Run(c.name, func(t *testing.T) {
			w := lrWeights(len(c.loads), c.weights)
			ts := newTargets(t, w...)
			for i, n := range c.loads {
				load(ts[i], n)
			}
			s := New(Options{Policy: PolicyLeastRequest}, ts).snap.Load()
			for i := range ts {
				for j := range ts {
					if i == j {
						continue
					}
					want := i
					if lrRatio(c.loads, w, j, i) < 0 {
						want = j
					}
					if got := s.choose(i, j); got != want {
						t.Errorf("choose(%d, %d) with loads %d, %d = %d, want %d", i, j, c.loads[i], c.loads[j], got, want)
					}
				}
			}
		})
	}
}

// TestLeastRequestDistribution: over 10,000 picks each target's share
// matches power of two choices: a target wins every pair with a strictly
// heavier target and half its ties, out of n*(n-1)/2 equally likely pairs.
// A target heavier than every other is never picked, exactly. The
// tolerance, 0.03, is over six standard deviations (at most 0.005 for
// 10,000 picks), so the test cannot flake in practice.
func TestLeastRequestDistribution(t *testing.T) {
	const picks = 10000
	for _, c := range lrCases {
		t.Run(c.name, func(t *testing.T) {
			n := len(c.loads)
			w := lrWeights(n, c.weights)
			ts := newTargets(t, w...)
			for i, l := range c.loads {
				load(ts[i], l)
			}
			b := New(Options{Policy: PolicyLeastRequest}, ts)
			counts := map[any]int{}
			for range picks {
				counts[b.Pick("")]++
			}
			pairs := float64(n*(n-1)) / 2
			best, bestShare := -1, 0.0
			for i, tg := range ts {
				var wins float64
				for j := range ts {
					switch {
					case i == j:
					case lrRatio(c.loads, w, i, j) < 0:
						wins++
					case lrRatio(c.loads, w, i, j) == 0:
						wins += 0.5
					}
				}
				want := wins / pairs
				got := float64(counts[tg]) / picks
				if want == 0 && counts[tg] != 0 {
					t.Errorf("target %d (load %d, weight %d) is heavier than all others but was picked %d times", i, c.loads[i], w[i], counts[tg])
				}
				if d := got - want; d > 0.03 || d < -0.03 {
					t.Errorf("target %d (load %d, weight %d): share %.3f, want %.3f", i, c.loads[i], w[i], got, want)
				}
				if want > bestShare {
					best, bestShare = i, want
				}
			}
			// The lightest target (by load/weight) is picked the most.
			for i, tg := range ts {
				if lrRatio(c.loads, w, best, i) < 0 && counts[tg] >= counts[ts[best]] {
					t.Errorf("target %d picked %d times, as often as the lightest target %d (%d)", i, counts[tg], best, counts[ts[best]])
				}
			}
		})
	}
}

// TestLeastRequestOne: a single target is always picked.
func TestLeastRequestOne(t *testing.T) {
	ts := newTargets(t, 1)
	load(ts[0], 50)
	b := New(Options{Policy: PolicyLeastRequest}, ts)
	for range 100 {
		if got := b.Pick(""); got != ts[0] {
			t.Fatalf("Pick = %v, want the only target", got)
		}
	}
}

// TestLightest: the fallback when both samples are at the limit returns
// the lightest target below it, or nil.
func TestLightest(t *testing.T) {
	cases := []struct {
		name  string
		loads []int
		start int
		want  int // -1: nil
	}{
		{"lightest below limit", []int{5, 3, 1, 2}, 0, 2},
		{"skip at limit", []int{5, 5, 4, 5}, 0, 2},
		{"tie goes to start", []int{1, 1, 5, 1}, 3, 3},
		{"none", []int{5, 6, 5, 9}, 1, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := newTargets(t, ones(len(c.loads))...)
			for i, l := range c.loads {
				load(ts[i], l)
			}
			s := New(Options{Policy: PolicyLeastRequest, TargetMaxConcurrent: 5}, ts).snap.Load()
			got := s.lightest(c.start)
			switch {
			case c.want < 0 && got != nil:
				t.Fatalf("lightest = %s, want nil", got.Addr)
			case c.want >= 0 && got != ts[c.want]:
				t.Fatalf("lightest = %v, want target %d", got, c.want)
			}
		})
	}
}
