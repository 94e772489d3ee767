package balancer

import (
	"cmp"
	"math"
	"slices"

	"candor/internal/upstream"
)

// Consistent hashing with bounded loads (Mirrokni, Thorup and
// Zadimoghaddam, "Consistent Hashing with Bounded Loads", SODA 2018,
// arXiv:1608.01350). Each target owns virtual nodes on a ring of 64-bit
// points; a key goes to the owner of the first point clockwise from the
// key's hash (Karger et al., 1997), so removing one of N targets moves
// only the keys it owned, about 1/N of them. The bound: with m requests
// in flight counting the new one, a target may take the key only while its
// load is below ceil(c*m/n); otherwise the walk continues clockwise to the
// next point whose owner has room. Here n is replaced by the target's share
// of the weights, capacity = ceil(c * m * weight / totalWeight), as
// HAProxy's hash-balance-factor does (chash_server_is_eligible), so that a
// heavy target is not capped at the average and weights still bias the
// share of keys; with equal weights it is the paper's bound.
//
// Points are stable across restarts and rebuilds: point j of a target is
// the FNV-1a 64 hash of its URL and j, finalised with MurmurHash3's fmix64
// (FNV alone spreads short, similar strings poorly), and keys are hashed
// the same way. maphash is not used: its seed is random per process.
//
// A target with weight w has 160*w points (the 160 of ketama and nginx),
// while the ring has at most maxRing points; beyond that every target's
// count is scaled down proportionally (at least 1). A point depends only
// on its target and index, so scaling keeps each target's first points and
// still moves few keys.
//
// The bounded-load check needs the total in flight, which Pick computes by
// reading every usable target's counter, only when the key's target is
// busy (a target with nothing in flight is always under the bound).
// HAProxy keeps a running total instead; that would need a counter shared
// by the targets in package upstream.

const (
	// pointsPerWeight is the number of ring points per unit of weight.
	pointsPerWeight = 160
	// maxRing caps the ring's points (12 bytes each).
	maxRing = 1 << 16
	// walkPerTarget bounds the clockwise walk to this many points per
	// target before Pick falls back to a scan of the targets, so that a
	// pick costs O(targets) even when all of them are at their limit.
	walkPerTarget = 8
)

// ring is a consistent-hash ring: points sorted by hash, with the index of
// each point's owner in snapshot.targets.
type ring struct {
	points []uint64
	owners []uint32
	// share is each target's c*weight/totalWeight: its capacity is
	// ceil(share * (inflight+1)).
	share []float64
}

// buildRing builds the ring of targets with the given weights and load
// factor c.
func buildRing(targets []*upstream.Target, weights []int64, c float64) ring {
	var total int64
	for _, w := range weights {
		total += w
	}
	scale := 1.0
	if total*pointsPerWeight > maxRing {
		scale = float64(maxRing) / float64(total*pointsPerWeight)
	}
	type point struct {
		hash  uint64
		owner uint32
		url   string
	}
	var pts []point
	r := ring{share: make([]float64, len(targets))}
	for i, tg := range targets {
		r.share[i] = c * float64(weights[i]) / float64(total)
		n := max(int(float64(weights[i]*pointsPerWeight)*scale), 1)
		base := fnv1a(fnvOffset, tg.URL)
		for j := range n {
			pts = append(pts, point{pointHash(base, uint64(j)), uint32(i), tg.URL})
		}
	}
	// Ties (vanishingly rare) are broken by URL, so that the ring does not
	// depend on the order of the targets.
	slices.SortFunc(pts, func(a, b point) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.url, b.url)
	})
	r.points = make([]uint64, len(pts))
	r.owners = make([]uint32, len(pts))
	for i, p := range pts {
		r.points[i], r.owners[i] = p.hash, p.owner
	}
	return r
}

// consistentHash returns the owner of key's point, walking clockwise past
// targets over their bounded load or at the per-target limit.
func (s *snapshot) consistentHash(key string) *upstream.Target {
	r := &s.ring
	i, _ := slices.BinarySearch(r.points, keyHash(key))
	if i == len(r.points) {
		i = 0
	}
	first := int(r.owners[i])
	total := int64(-1) // computed when first needed
	for range min(len(r.points), walkPerTarget*len(s.targets)) {
		k := int(r.owners[i])
		if s.underBound(k, &total) {
			return s.targets[k]
		}
		if i++; i == len(r.points) {
			i = 0
		}
	}
	// The walk met no target with room, but it is short: scan them all,
	// and when the racing counters leave none under the bound, take any
	// target below the hard limit rather than fail.
	n := len(s.targets)
	for j := range n {
		if k := (first + j) % n; s.underBound(k, &total) {
			return s.targets[k]
		}
	}
	return s.firstFit(first)
}

// underBound reports whether target k may take another request: it is
// below the per-target limit and below its bounded load. *total caches the
// total in flight across calls of one pick; -1 means not yet read.
func (s *snapshot) underBound(k int, total *int64) bool {
	load := s.targets[k].InFlight()
	if !s.fits(load) {
		return false
	}
	if load <= 0 {
		// c >= 1 and the new request count, so every capacity is >= 1.
		return true
	}
	if *total < 0 {
		var sum int64
		for _, tg := range s.targets {
			sum += max(tg.InFlight(), 0)
		}
		*total = sum
	}
	return float64(load) < math.Ceil(s.ring.share[k]*float64(*total+1))
}

// FNV-1a 64 (Fowler, Noll and Vo; IETF draft-eastlake-fnv), written out so
// that hashing a key does not allocate; it matches hash/fnv's New64a.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv1a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// fmix64 is MurmurHash3's 64-bit finaliser: every input bit affects every
// output bit.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// keyHash is the ring position of a request key.
func keyHash(key string) uint64 { return fmix64(fnv1a(fnvOffset, key)) }

// pointHash is the position of point j of the target whose URL hashes to
// base (FNV-1a continued over j's 8 little-endian bytes).
func pointHash(base, j uint64) uint64 {
	h := base
	for range 8 {
		h ^= j & 0xff
		h *= fnvPrime
		j >>= 8
	}
	return fmix64(h)
}
