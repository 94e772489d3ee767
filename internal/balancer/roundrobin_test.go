package balancer

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSmoothSequence checks the order of picks against nginx's smooth
// weighted round robin, worked by hand.
func TestSmoothSequence(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
		want    string // one period, targets named a, b, c, ...
	}{
		// The example of nginx's commit introducing the algorithm.
		{"nginx 5 1 1", []int{5, 1, 1}, "aabacaa"},
		{"equal two alternate", []int{1, 1}, "ab"},
		{"equal three cycle", []int{1, 1, 1}, "abc"},
		{"equal large weights reduce", []int{7, 7, 7}, "abc"},
		{"one target", []int{3}, "a"},
		{"3 1", []int{3, 1}, "aaba"},
		{"gcd 2 of 2 4", []int{2, 4}, "bab"},
		{"light first", []int{1, 5, 1}, "bbabcbb"},
		{"4 2 1", []int{4, 2, 1}, "abacaba"},
		{"weight below 1 counts as 1", []int{0, -2}, "ab"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := newTargets(t, c.weights...)
			b := NewRoundRobin(ts)
			name := map[any]byte{}
			for i, tg := range ts {
				name[tg] = byte('a' + i)
			}
			got := make([]byte, 0, 3*len(c.want))
			for range 3 * len(c.want) {
				got = append(got, name[b.Pick("")])
			}
			want := c.want + c.want + c.want
			if diff := cmp.Diff(want, string(got)); diff != "" {
				t.Fatalf("three periods of picks (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWeightedDistribution: over 1000 periods every target is picked
// exactly 1000 times its weight.
func TestWeightedDistribution(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
	}{
		{"one", []int{1}},
		{"equal", []int{1, 1, 1, 1}},
		{"nginx", []int{5, 1, 1}},
		{"two", []int{3, 2}},
		{"ascending", []int{1, 2, 3, 4}},
		{"descending", []int{4, 3, 2, 1}},
		{"wide", []int{10, 1, 100}},
		{"common divisor", []int{7, 7, 14}},
		{"max weight", []int{1000, 999, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := newTargets(t, c.weights...)
			b := NewRoundRobin(ts)
			sum := 0
			for _, w := range c.weights {
				sum += w
			}
			counts := map[any]int{}
			for range 1000 * sum {
				counts[b.Pick("")]++
			}
			for i, tg := range ts {
				if counts[tg] != 1000*c.weights[i] {
					t.Errorf("%s (weight %d) picked %d times, want %d", tg.Addr, c.weights[i], counts[tg], 1000*c.weights[i])
				}
			}
		})
	}
}

// TestSmoothness: the picks are spread out: after any number k of picks
// each target has been picked within one of its fair share k*w/sum, where
// plain weighted round robin would pick the heavy target w times in a row
// first.
func TestSmoothness(t *testing.T) {
	cases := []struct {
		name    string
		weights []int64
	}{
		{"equal", []int64{1, 1, 1, 1, 1}},
		{"nginx", []int64{5, 1, 1}},
		{"half", []int64{2, 1, 1}},
		{"one heavy of many", []int64{4, 1, 1, 1, 1}},
		{"ascending", []int64{1, 2, 3, 4, 5}},
		{"wide", []int64{100, 10, 1}},
		{"primes", []int64{13, 7, 5, 3, 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := fitWeights(c.weights, maxSequence)
			seq := smoothSequence(w)
			sum := int64(len(seq))
			counts := make([]int64, len(w))
			for k, i := range seq {
				counts[i]++
				for j := range w {
					// |counts - (k+1)*w/sum| < 1, in integers.
					if d := counts[j]*sum - int64(k+1)*w[j]; d >= sum || d <= -sum {
						t.Fatalf("after %d picks target %d was picked %d times, fair share %.2f", k+1, j, counts[j], float64(int64(k+1)*w[j])/float64(sum))
					}
				}
			}
		})
	}
}

// TestSequenceCap: weights summing past maxSequence are scaled so that the
// sequence stays near maxSequence and each share is within 1/maxSequence.
func TestSequenceCap(t *testing.T) {
	cases := []struct {
		name    string
		weights []int64
	}{
		{"five heavy", []int64{1000, 999, 998, 997, 996}},
		{"heavy and light", []int64{1000, 1000, 1000, 1000, 1000, 1}},
		{"many", func() []int64 {
			w := make([]int64, 50)
			for i := range w {
				w[i] = int64(1 + i*20)
			}
			return w
		}()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seq := smoothSequence(fitWeights(c.weights, maxSequence))
			if len(seq) > maxSequence+len(c.weights) {
				t.Fatalf("sequence has %d entries, want at most %d", len(seq), maxSequence+len(c.weights))
			}
			var total int64
			for _, w := range c.weights {
				total += w
			}
			counts := make([]int, len(c.weights))
			for _, i := range seq {
				counts[i]++
			}
			for i, w := range c.weights {
				got, want := float64(counts[i])/float64(len(seq)), float64(w)/float64(total)
				if d := got - want; d > 1.0/maxSequence || d < -1.0/maxSequence {
					t.Errorf("target %d (weight %d): share %.5f, want %.5f within 1/%d", i, w, got, want, maxSequence)
				}
				if counts[i] == 0 {
					t.Errorf("target %d never picked", i)
				}
			}
		})
	}
}

func TestFitWeights(t *testing.T) {
	cases := []struct {
		name    string
		weights []int64
		limit   int64
		want    []int64
	}{
		{"reduced by gcd", []int64{4, 6, 10}, 100, []int64{2, 3, 5}},
		{"under limit kept", []int64{3, 5}, 8, []int64{3, 5}},
		{"scaled", []int64{60, 30, 10}, 10, []int64{6, 3, 1}},
		{"largest remainder", []int64{5, 3, 2}, 4, []int64{2, 1, 1}},
		{"at least 1", []int64{1000, 1}, 10, []int64{10, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, fitWeights(c.weights, c.limit)); diff != "" {
				t.Fatalf("fitWeights(%v, %d) (-want +got):\n%s", c.weights, c.limit, diff)
			}
		})
	}
}
