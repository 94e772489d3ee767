package balancer

import (
	"math"
	"math/rand/v2"

	"candor/internal/upstream"
)

// Least request with the power of two choices (Mitzenmacher, 2001), as
// gRFC A48 specifies it for gRPC's least_request_experimental policy:
//
//	"the picker will sample choice_count random endpoints and select the
//	one with the fewest outstanding requests"
//
// with choice_count 2, and weighted as Envoy's LEAST_REQUEST does when
// weights differ: a target's load is its requests in flight divided by its
// weight. The two samples are distinct, so the most loaded target is never
// chosen while a less loaded one exists: it can only be paired with a
// lighter target, which wins. On a tie the first sample wins, which is
// itself a uniform random choice.
//
// Randomness comes from math/rand/v2's top-level functions, which are
// safe for concurrent use without a lock (a per-thread ChaCha8 state), so
// the balancer keeps no random source of its own.

// leastRequest picks the lighter of two distinct random targets that are
// below the per-target limit; when neither is, it falls back to the
// lightest target below the limit.
func (s *snapshot) leastRequest() *upstream.Target {
	n := len(s.targets)
	if n == 1 {
		return s.firstFit(0)
	}
	// Two distinct indexes from one random word: each half is mapped to
	// [0, n) or [0, n-1) by multiplying and shifting (Lemire, 2019), whose
	// bias, below n/2^32, is negligible.
	r := rand.Uint64()
	i := int((r & math.MaxUint32) * uint64(n) >> 32)
	j := int((r >> 32) * uint64(n-1) >> 32)
	if j >= i {
		j++
	}
	if k := s.choose(i, j); k >= 0 {
		return s.targets[k]
	}
	return s.lightest(i)
}

// choose returns whichever of targets i and j takes the request (i on a
// tie), or -1 when both are at the per-target limit. Each load is read
// once, so the comparison is consistent even as the counts move.
func (s *snapshot) choose(i, j int) int {
	li, lj := s.targets[i].InFlight(), s.targets[j].InFlight()
	fi, fj := s.fits(li), s.fits(lj)
	switch {
	case fi && fj:
		if lighter(lj, s.weights[j], li, s.weights[i]) {
			return j
		}
		return i
	case fi:
		return i
	case fj:
		return j
	}
	return -1
}

// lighter reports whether load la at weight wa is strictly lighter than
// load lb at weight wb: la/wa < lb/wb, compared as la*wb < lb*wa to stay in
// integers. Weights are at most 1000 and loads far below 2^50, so the
// products cannot overflow.
func lighter(la, wa, lb, wb int64) bool {
	return la*wb < lb*wa
}

// lightest returns the lightest target below the per-target limit,
// scanning from index start (which wins ties), or nil when every target is
// at the limit.
func (s *snapshot) lightest(start int) *upstream.Target {
	n := len(s.targets)
	best, bestLoad := -1, int64(0)
	for k := range n {
		i := (start + k) % n
		l := s.targets[i].InFlight()
		if s.fits(l) && (best < 0 || lighter(l, s.weights[i], bestLoad, s.weights[best])) {
			best, bestLoad = i, l
		}
	}
	if best < 0 {
		return nil
	}
	return s.targets[best]
}
