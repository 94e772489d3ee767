package balancer

import (
	"fmt"
	"hash/fnv"
	"slices"
	"testing"

	"candor/internal/upstream"
)

const hashKeys = 10000

// owners maps hashKeys keys to the URL of the target b picks for each.
func owners(b *Balancer) []string {
	out := make([]string, hashKeys)
	for i := range out {
		if tg := b.Pick(key(i)); tg != nil {
			out[i] = tg.URL
		}
	}
	return out
}

func newHash(ts []*upstream.Target) *Balancer {
	return New(Options{Policy: PolicyConsistentHash}, ts)
}

// TestHashStable pins the hash: ring positions must not change across
// restarts or releases, or every key would move on upgrade. The values
// were computed independently (FNV-1a 64, then fmix64, in Python).
func TestHashStable(t *testing.T) {
	cases := []struct {
		name string
		key  string
		want uint64
	}{
		{"empty", "", 0xefd01f60ba992926},
		{"user", "user-42", 0xa39532c7ab051e8d},
		{"session", "f3a1c9d2-5b7e-4c1a-9e8f-2d6b0a7c4e19", 0xb0678d392dca9d93},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := keyHash(c.key); got != c.want {
				t.Errorf("keyHash(%q) = %#x, want %#x", c.key, got, c.want)
			}
			h := fnv.New64a()
			h.Write([]byte(c.key))
			if got := fnv1a(fnvOffset, c.key); got != h.Sum64() {
				t.Errorf("fnv1a(%q) = %#x, hash/fnv says %#x", c.key, got, h.Sum64())
			}
		})
	}
}

// TestConsistentHashSameKey: a key maps to the same target on every pick,
// across Update with the same targets, and across a fresh Balancer over
// fresh targets with the same URLs (a restart).
func TestConsistentHashSameKey(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 1}, {1, 2, 3, 4, 5}, ones(10)} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			ts := newTargets(t, weights...)
			b := newHash(ts)
			want := owners(b)
			checks := []struct {
				name string
				b    func() *Balancer
			}{
				{"again", func() *Balancer { return b }},
				{"after Update", func() *Balancer { b.Update(ts); return b }},
				{"after subset and back", func() *Balancer { b.Update(ts[1:]); b.Update(ts); return b }},
				{"restart", func() *Balancer { return newHash(newTargets(t, weights...)) }},
			}
			for _, c := range checks {
				got := owners(c.b())
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("%s: key %q moved from %s to %s", c.name, key(i), want[i], got[i])
					}
				}
			}
		})
	}
}

// TestConsistentHashRemoval: removing one of N targets moves only the keys
// it owned, about 1/N of them (asserted below 1.5/N); every other key
// stays. The hash is deterministic, so the test cannot flake.
func TestConsistentHashRemoval(t *testing.T) {
	cases := []struct {
		name    string
		n       int
		removed int
	}{
		{"3 remove first", 3, 0},
		{"3 remove last", 3, 2},
		{"5 remove middle", 5, 2},
		{"10 remove first", 10, 0},
		{"10 remove last", 10, 9},
		{"20 remove one", 20, 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := newTargets(t, ones(c.n)...)
			b := newHash(ts)
			before := owners(b)
			gone := ts[c.removed].URL
			b.Update(slices.Delete(slices.Clone(ts), c.removed, c.removed+1))
			after := owners(b)
			moved := 0
			for i := range before {
				switch {
				case after[i] == gone:
					t.Fatalf("key %q still maps to the removed target", key(i))
				case before[i] == gone:
					moved++
				case after[i] != before[i]:
					t.Fatalf("key %q of a remaining target moved from %s to %s", key(i), before[i], after[i])
				}
			}
			if share := float64(moved) / hashKeys; share >= 1.5/float64(c.n) || moved == 0 {
				t.Fatalf("%d of %d keys moved (%.3f), want about 1/%d", moved, hashKeys, share, c.n)
			}
			// Adding it back restores the original mapping.
			b.Update(ts)
			for i, o := range owners(b) {
				if o != before[i] {
					t.Fatalf("after re-adding: key %q maps to %s, was %s", key(i), o, before[i])
				}
			}
		})
	}
}

// TestConsistentHashSpread: every target gets its weight's share of keys,
// within ±25%. With 160 points a target's arc of the ring varies by about
// 1/sqrt(160), 8%, so ±25% is three deviations; the hash is deterministic,
// so the test cannot flake.
func TestConsistentHashSpread(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
	}{
		{"equal 3", []int{1, 1, 1}},
		{"equal 10", ones(10)},
		{"1 3", []int{1, 3}},
		{"1 1 2", []int{1, 1, 2}},
		{"1 2 3 4", []int{1, 2, 3, 4}},
		{"heavy weights scaled ring", []int{1000, 500, 1000, 250}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := newTargets(t, c.weights...)
			counts := map[string]int{}
			for _, o := range owners(newHash(ts)) {
				counts[o]++
			}
			total := 0
			for _, w := range c.weights {
				total += w
			}
			for i, tg := range ts {
				got, want := float64(counts[tg.URL])/hashKeys, float64(c.weights[i])/float64(total)
				if got < want*0.75 || got > want*1.25 {
					t.Errorf("target %d (weight %d): %.3f of keys, want %.3f ±25%%", i, c.weights[i], got, want)
				}
			}
		})
	}
}

// TestBoundedLoad: a key's target takes it only while its load is below
// ceil(c * (total+1) * weight/totalWeight); otherwise the key spills
// clockwise.
func TestBoundedLoad(t *testing.T) {
	cases := []struct {
		name   string
		c      float64
		loads  []int // target 0 is the key's owner
		accept bool
	}{
		{"idle", 1.25, []int{0, 0, 0}, true},
		{"one in flight alone", 1.25, []int{1, 0, 0}, false}, // ceil(1.25*2/3) = 1
		{"under bound", 1.25, []int{2, 1, 1}, true},          // ceil(1.25*5/3) = 3
		{"at bound", 1.25, []int{3, 1, 1}, false},            // ceil(1.25*6/3) = 3
		{"looser factor", 2, []int{3, 1, 1}, true},           // ceil(2*6/3) = 4
		{"factor 1 at average", 1, []int{2, 2, 2}, true},     // ceil(7/3) = 3
		{"factor 1 over average", 1, []int{3, 2, 1}, false},  // ceil(7/3) = 3
		{"hot", 1.25, []int{100, 0, 0}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := newTargets(t, 1, 1, 1)
			b := New(Options{Policy: PolicyConsistentHash, HashLoadFactor: c.c}, ts)
			// Find keys owned by target 0 while idle.
			var mine []string
			for i := 0; len(mine) < 50; i++ {
				if b.Pick(key(i)) == ts[0] {
					mine = append(mine, key(i))
				}
			}
			for i, l := range c.loads {
				load(ts[i], l)
			}
			spilled := map[*upstream.Target]int{}
			for _, k := range mine {
				got := b.Pick(k)
				if (got == ts[0]) != c.accept {
					t.Fatalf("Pick(%q) = %s with loads %v, want owner accepted = %v", k, got.Addr, c.loads, c.accept)
				}
				spilled[got]++
			}
			if !c.accept && (spilled[ts[1]] == 0 || spilled[ts[2]] == 0) {
				t.Fatalf("spilled keys went to %v: want both other targets (the walk is clockwise, over all targets' points)", spilled)
			}
		})
	}
}

// TestBoundedLoadHotTarget: with one of three targets overloaded, none of
// 10,000 keys goes to it, and the keys of the other targets stay put.
func TestBoundedLoadHotTarget(t *testing.T) {
	ts := newTargets(t, 1, 1, 1)
	b := newHash(ts)
	before := owners(b)
	load(ts[1], 100)
	for i, o := range owners(b) {
		switch {
		case o == ts[1].URL:
			t.Fatalf("key %q went to the overloaded target", key(i))
		case before[i] != ts[1].URL && o != before[i]:
			t.Fatalf("key %q of an idle target moved from %s to %s", key(i), before[i], o)
		}
	}
}

// TestBoundedLoadWeighted: the bound scales with weight, so a heavy
// target keeps its keys at loads that would spill a light one.
func TestBoundedLoadWeighted(t *testing.T) {
	ts := newTargets(t, 4, 1, 1)
	b := newHash(ts)
	var heavy, light string
	for i := 0; heavy == "" || light == ""; i++ {
		switch b.Pick(key(i)) {
		case ts[0]:
			heavy = key(i)
		case ts[1]:
			light = key(i)
		}
	}
	// Total 5: the heavy target's capacity is ceil(1.25*6*4/6) = 5, the
	// light one's ceil(1.25*6/6) = 2.
	load(ts[0], 3)
	load(ts[1], 2)
	if got := b.Pick(heavy); got != ts[0] {
		t.Errorf("heavy target with 3 of 5 in flight gave up its key to %s", got.Addr)
	}
	if got := b.Pick(light); got == ts[1] {
		t.Errorf("light target with 2 of 5 in flight kept its key")
	}
}

// TestConsistentHashEmptyKey: requests without a key are balanced round
// robin over the usable targets.
func TestConsistentHashEmptyKey(t *testing.T) {
	ts := newTargets(t, 1, 1, 1)
	b := newHash(ts)
	for i := range 9 {
		if got := b.Pick(""); got != ts[i%3] {
			t.Fatalf("pick %d: %v, want %s", i, got, ts[i%3].Addr)
		}
	}
	b.Update(ts[1:])
	for i := range 10 {
		if got := b.Pick(""); got == ts[0] {
			t.Fatalf("pick %d: returned a target removed by Update", i)
		}
	}
}

// TestConsistentHashWalkFallback: when every point's owner within the walk
// is busy, the scan still finds the one target with room.
func TestConsistentHashWalkFallback(t *testing.T) {
	ts := newTargets(t, ones(40)...)
	for _, tg := range ts[:39] {
		load(tg, 5)
	}
	b := New(Options{Policy: PolicyConsistentHash, TargetMaxConcurrent: 5}, ts)
	for i := range 1000 {
		if got := b.Pick(key(i)); got != ts[39] {
			t.Fatalf("Pick(%q) = %v, want the only target below its limit", key(i), got)
		}
	}
}

// FuzzConsistentHash: any key maps to a usable target, the same one twice,
// and the one a linear scan of the ring names.
func FuzzConsistentHash(f *testing.F) {
	for _, k := range []string{"a", "user-42", "\x00", "ünïcode", "f3a1c9d2-5b7e-4c1a-9e8f-2d6b0a7c4e19"} {
		f.Add(k)
	}
	ts := newTargets(f, 1, 2, 3, 1, 5)
	b := newHash(ts)
	s := b.snap.Load()
	f.Fuzz(func(t *testing.T, k string) {
		if k == "" {
			return // round robin
		}
		got := b.Pick(k)
		if got == nil || got != b.Pick(k) {
			t.Fatalf("Pick(%q) = %v, then %v", k, got, b.Pick(k))
		}
		h, want := keyHash(k), s.targets[s.ring.owners[0]]
		for i, p := range s.ring.points {
			if p >= h {
				want = s.targets[s.ring.owners[i]]
				break
			}
		}
		if got != want {
			t.Fatalf("Pick(%q) = %s, the ring's first point clockwise is %s's", k, got.Addr, want.Addr)
		}
	})
}
