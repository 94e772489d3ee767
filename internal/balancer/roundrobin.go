package balancer

import (
	"slices"

	"candor/internal/upstream"
)

// maxSequence caps the length of the precomputed round-robin sequence
// (4096 entries of 4 bytes).
const maxSequence = 4096

// Smooth weighted round robin is nginx's algorithm
// (ngx_http_upstream_get_peer in ngx_http_upstream_round_robin.c, 2012):
// every target has a current weight, initially 0; each pick adds every
// target's weight to its current weight, picks the target with the largest
// current weight (the first on a tie) and subtracts the total weight from
// it. Over total-weight picks each target is chosen exactly weight times,
// and the heavy target's picks are spread out: weights {a:5, b:1, c:1}
// give a a b a c a a, not a a a a a b c.
//
// nginx mutates the current weights under a lock on every pick. To keep
// Pick lock-free the whole period of the sequence is computed when the
// snapshot is built, and Pick indexes it with an atomic counter. The
// sequence's state returns to all zeros after total-weight picks, so the
// precomputed period repeated is exactly nginx's infinite sequence.
//
// The period is the sum of the weights after dividing them by their
// greatest common divisor. When that sum exceeds maxSequence (weights go
// up to 1000, so five targets can exceed it) the weights are first scaled
// to sum to maxSequence, rounding by largest remainder and keeping every
// weight at least 1: each target's share of picks is then off by less than
// 1/4096 of the total, and the order is still smooth.

// roundRobin returns the target at position n of the smooth sequence, or,
// when that target is at its limit, the next one in the sequence that is
// not.
func (s *snapshot) roundRobin(n uint64) *upstream.Target {
	seq := s.seq
	i := int(n % uint64(len(seq)))
	// Walk on along the sequence, which keeps the weights' proportions
	// among the targets that fit, for as many steps as there are targets;
	// then fall back to a scan.
	for range min(len(s.targets), len(seq)) {
		tg := s.targets[seq[i]]
		if s.fits(tg.InFlight()) {
			return tg
		}
		if i++; i == len(seq) {
			i = 0
		}
	}
	return s.firstFit(int(seq[i]))
}

// smoothSequence returns one period of nginx's smooth weighted round-robin
// order for weights, as indexes into weights. The period has sum(weights)
// entries.
func smoothSequence(weights []int64) []uint32 {
	var total int64
	for _, w := range weights {
		total += w
	}
	cur := make([]int64, len(weights))
	seq := make([]uint32, 0, total)
	for range total {
		best := 0
		for i, w := range weights {
			cur[i] += w
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		seq = append(seq, uint32(best))
	}
	return seq
}

// fitWeights returns weights divided by their greatest common divisor,
// scaled down to sum to about limit when they would sum to more (see
// above). The result is a new slice.
func fitWeights(weights []int64, limit int64) []int64 {
	out := reduce(weights)
	var total int64
	for _, w := range out {
		total += w
	}
	if total <= limit {
		return out
	}
	rem := make([]int64, len(out))
	var sum int64
	for i, w := range out {
		out[i], rem[i] = w*limit/total, w*limit%total
		sum += out[i]
	}
	// Largest remainder: the targets that lost most to the floor get the
	// slots that are left, lower index first on a tie.
	order := make([]int, len(out))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case rem[a] > rem[b]:
			return -1
		case rem[a] < rem[b]:
			return 1
		}
		return 0
	})
	for _, i := range order[:limit-sum] {
		out[i]++
	}
	for i := range out {
		out[i] = max(out[i], 1)
	}
	return reduce(out)
}

// reduce returns weights divided by their greatest common divisor, in a
// new slice.
func reduce(weights []int64) []int64 {
	var g int64
	for _, w := range weights {
		g = gcd(g, w)
	}
	out := make([]int64, len(weights))
	for i, w := range weights {
		out[i] = w / max(g, 1)
	}
	return out
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
